"""The OpenVINO engine: the cached ONNX export compiled by OpenVINO for the CPU.

The network is compiled for a fixed input of `IMAGES_PER_REQUEST` images (static shapes let OpenVINO pick its
fastest kernels and plan memory once), and a batch is cut into requests of that size, kept in an
`AsyncInferQueue` shared by every call. For indexing it is compiled with the THROUGHPUT hint: several streams
(one per core on 2 cores) run their requests without a barrier between them, so a core briefly taken by a
decoding thread delays only one of them; each stream has two requests, so its next image is queued when one
finishes; and as the pipeline submits the next batch while the last images of this one still run, no stream
waits at a batch boundary. For search queries (`latency=True`) it is compiled with the LATENCY hint: one
stream using every core for one image. Small static requests were the fastest measured here: MobileNetV2 runs
1.3x faster than in two dynamic-shape requests of 16 images (README, "Speed").
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import TYPE_CHECKING

import numpy as np
import openvino

from imagerank.embedding.engines.export import exported_onnx_path

if TYPE_CHECKING:
    from torch import nn

    from imagerank.embedding.models import BackboneSpec

IMAGES_PER_REQUEST = 1
"""Images in one infer request. One needs no padding, so an image's vector never depends on its batch."""


class OpenVinoEngine:
    """Runs the ONNX export with OpenVINO on the CPU, in float32 (the vectors match PyTorch's)."""

    name = "openvino"
    concurrent_calls = 2
    """Calls that may run at once: they share the infer requests, so overlapping two keeps every one busy."""

    def __init__(
        self, network: nn.Module | None, spec: BackboneSpec, device: str = "cpu", latency: bool = False
    ) -> None:
        core = openvino.Core()
        model = core.read_model(str(exported_onnx_path(network, spec)))
        model.reshape({0: [IMAGES_PER_REQUEST, spec.input_size, spec.input_size, 3]})
        config = {
            "PERFORMANCE_HINT": "LATENCY" if latency else "THROUGHPUT",
            # Some CPUs (AVX512-BF16, AMX) would otherwise run in bfloat16 and change the vectors.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self.dim = int(self.compiled.output(0).get_shape()[1])
        # Twice the requests the streams can run: each stream has the next image queued when one finishes,
        # instead of waiting for Python (and the GIL) to hand it one (EfficientNet-Lite0 1.08x end to end).
        streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue = openvino.AsyncInferQueue(self.compiled, 2 * streams)
        self.queue.set_callback(_store_features)
        self._submitting = threading.Lock()  # the queue hands an idle request to one caller at a time
        atexit.register(_release_at_exit, weakref.ref(self))

    def release(self) -> None:
        """Wait for the running requests, then free the queue and the compiled network (the engine is unusable
        after)."""
        self.queue.wait_all()
        del self.queue, self.compiled

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        call = _Call(np.empty((len(batch), self.dim), np.float32))
        for start in range(0, len(batch), IMAGES_PER_REQUEST):
            part = batch[start : start + IMAGES_PER_REQUEST]
            # Blocks until a request is idle; `batch` outlives the request, so its memory is shared as is.
            with self._submitting:
                self.queue.start_async({0: part}, (call, start), share_inputs=True)
        return call.result()


def _release_at_exit(engine: weakref.ref[OpenVinoEngine]) -> None:
    """Free an engine still alive at exit while the interpreter is whole. Freed during the interpreter's
    shutdown instead, the queue's C++ destructor, which drops its Python callback, can abort the process
    ("terminate called without an active exception", seen once in CI after `imagerank search` had printed
    its results)."""
    alive = engine()
    if alive is not None and hasattr(alive, "queue"):
        alive.release()


class _Call:
    """The features of one call, filled in by the requests' callbacks."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = features
        self.error: BaseException | None = None
        self._pending = -(-len(features) // IMAGES_PER_REQUEST)
        self._lock = threading.Lock()
        self._done = threading.Event()
        if self._pending == 0:
            self._done.set()

    def stored(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._done.set()

    def result(self) -> np.ndarray:
        """The features, once every request has stored its part; a callback's error is raised here."""
        self._done.wait()
        if self.error is not None:
            raise self.error
        return self.features


def _store_features(request: openvino.InferRequest, userdata: tuple[_Call, int]) -> None:
    """Runs in OpenVINO's thread when a request finishes: copies its features into its call's array."""
    call, start = userdata
    try:
        call.features[start : start + IMAGES_PER_REQUEST] = request.get_output_tensor(0).data
    except BaseException as error:  # raised in the caller's thread, not lost in OpenVINO's
        call.error = error
    finally:
        call.stored()
