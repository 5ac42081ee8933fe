"""Figures and the HTML report: matplotlib figures as functions returning a ``Figure`` (`plots`, which offers
the search-result figures of `retrieval` and the shared colors and `save_figure` of `drawing` too), a
labelled dataset embedded and evaluated once for them (`dataset`), and the self-contained HTML report
(`html`). It may import `imagerank.errors`, `embedding` (decoding images, backbone names), `ranking` and
`evaluation`; it never touches an index or a store.
"""
