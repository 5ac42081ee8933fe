"""The OpenVINO engine: the cached ONNX export compiled by OpenVINO for the CPU.

For indexing it is compiled with the THROUGHPUT hint: OpenVINO runs several streams (one per pair of cores or
so; two on a 2-core machine), each with its own infer request, and a batch is split across the free requests
so they run in parallel. A stream needs no barrier with the other streams, so a core briefly taken by a
decoding thread delays only one of them. For search queries (`latency=True`) it is compiled with the LATENCY
hint: one stream using every core for one image.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING

import numpy as np
import openvino

from imagerank.embedding.engines.export import exported_onnx_path

if TYPE_CHECKING:
    from torch import nn

    from imagerank.embedding.models import BackboneSpec


class OpenVinoEngine:
    """Runs the ONNX export with OpenVINO on the CPU, in float32 (the vectors match PyTorch's)."""

    name = "openvino"

    def __init__(
        self, network: nn.Module | None, spec: BackboneSpec, device: str = "cpu", latency: bool = False
    ) -> None:
        core = openvino.Core()
        model = core.read_model(str(exported_onnx_path(network, spec)))
        config = {
            "PERFORMANCE_HINT": "LATENCY" if latency else "THROUGHPUT",
            # Some CPUs (AVX512-BF16, AMX) would otherwise run in bfloat16 and change the vectors.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self.requests_count = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._idle: queue.SimpleQueue[openvino.InferRequest] = queue.SimpleQueue()
        for _ in range(self.requests_count):
            self._idle.put(self.compiled.create_infer_request())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        requests = self._take_requests(len(batch))
        parts = np.array_split(batch, len(requests))
        try:
            for request, part in zip(requests, parts, strict=True):
                request.start_async({0: part}, share_inputs=True)
            outputs = []
            for request in requests:
                request.wait()
                outputs.append(request.get_output_tensor(0).data.copy())
        finally:
            for request in requests:
                self._idle.put(request)
        return np.concatenate(outputs)

    def _take_requests(self, images: int) -> list[openvino.InferRequest]:
        """One idle request (waiting for it if needed), plus those idle right now, one image each at most.

        Waiting for one request only means concurrent callers share the requests without deadlock.
        """
        requests = [self._idle.get()]
        while len(requests) < images:
            try:
                requests.append(self._idle.get_nowait())
            except queue.Empty:
                break
        return requests
