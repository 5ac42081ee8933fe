"""Images to vectors: the backbone registry (`models`, with what a backbone is in `spec` and the network
builders and weight sources in `builders`), open_clip backbones (`clip`), robust image decoding
(`decoding`), the inference engines behind one interface (`engines`: PyTorch, ONNX Runtime, OpenVINO), the
batching `Embedder` (`embedder`), its factory `create_embedder` (`factory`) and the Ray embedder for a
cluster (`ray_embedder`). It may import only `imagerank.errors`; nothing here knows about stores, rankings
or indexes.
"""
