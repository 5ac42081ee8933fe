"""Where vectors and image records are kept: the `VectorStore` interface, `ImageRecord` and the manifest
(`base`); the `open_store` factory (`factory`, which imports a backend only when a location names it); the
embedded SQLite + FAISS store (`faiss_store`, built from its SQLite rows in `rows`, its FAISS files and
change log in `faiss_files`, and filtered search, re-ranking and recall in `recall`); the FAISS layouts
(`ann`); and the Milvus backend (`milvus`, talking to Milvus through `milvus_client`). It may import only
`imagerank.errors`: a store keeps vectors and never computes or ranks them.
"""
