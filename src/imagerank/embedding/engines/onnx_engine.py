"""The ONNX Runtime engine: the cached ONNX export run on the CPU."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime

from imagerank.embedding.engines.export import exported_onnx_path

if TYPE_CHECKING:
    from torch import nn

    from imagerank.embedding.models import BackboneSpec


class OnnxEngine:
    """Runs the ONNX export in ONNX Runtime with one intra-op thread per core."""

    name = "onnx"

    def __init__(
        self, network: nn.Module | None, spec: BackboneSpec, device: str = "cpu", latency: bool = False
    ) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle inference threads must yield the cores to the decoding threads instead of spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = exported_onnx_path(network, spec)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
