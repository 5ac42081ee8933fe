"""The index a user opens: `Index` (`core`) ties an embedder, a store, fitted ranking methods and a text
ranker together. Its writing half (`building`: `sync`, `add`, uploads, `IndexReport`) and its reading half
(`searching`: search by image, vector, id or text, `fit`) are mixed into it; `files` makes the record of a
file and remembers the files that could not be decoded; `fitted` fits, saves and searches with ranking
methods over a store. It may import `imagerank.errors`, `embedding`, `store`, `ranking` and `text`; only
`evaluation`, `server` and `cli` import it.
"""
