"""How good a ranking is, measured on labelled images: reproducible train/query/candidate splits
(`protocols`), pure metric functions such as P@K, AP and recall@K (`metrics`), the labelled images embedded
once through a content-keyed cache (`embeddings`), evaluation of ranking methods on those arrays
(`evaluate`), of search by words with each label name as a query (`text`) and of the whole product through
a real index (`product`). It may import `imagerank.errors`, `embedding`, `store`, `ranking`, `text` and
`index`; only `report` and `cli` import it.
"""
