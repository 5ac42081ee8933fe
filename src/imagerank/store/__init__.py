"""Where vectors and image records are kept: the `VectorStore` interface and `ImageRecord` (`base`), the
`open_store` factory (`factory`, which imports a backend only when a location names it), the embedded
SQLite + FAISS store (`faiss_store` with its SQLite rows, FAISS files and recall parts), the FAISS layouts
(`ann`) and the Milvus backend (`milvus`). It may import only `imagerank.errors`: a store holds vectors and
never computes them or ranks them.
"""
