"""Figures and the HTML report: matplotlib figures as display objects (`plots` and its parts) and the
self-contained HTML report over an evaluated dataset (`html`). It may import `imagerank.errors`,
`embedding` (decoding images, backbone names), `ranking` and `evaluation`; it never touches an index.
"""
