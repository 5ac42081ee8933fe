"""How good a ranking is, measured on labelled images: reproducible train/query/candidate splits
(`protocols`), pure metric functions such as P@K, AP and recall@K (`metrics`), evaluation of ranking methods
on embedded arrays (`evaluate`) and of the whole product through a real index (`product`). It may import
`imagerank.errors`, `embedding`, `store`, `ranking` and `index`; nothing below it imports it.
"""
