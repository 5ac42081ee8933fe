"""The index a user opens: `Index` (`core`) ties an embedder, a store, a fitted ranking method and a text
ranker together; its helpers scan folders and remember skipped files, and `fitted` fits, saves and searches
with ranking methods over a store. It may import `imagerank.errors`, `embedding`, `store`, `ranking` and
`text`; only `evaluation`, `server` and `cli` import it.
"""
