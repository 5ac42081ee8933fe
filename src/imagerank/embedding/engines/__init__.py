"""Inference engines: run a backbone's network on (N, H, W, 3) uint8 batches and return (N, dim) features.

Engines are registered here by name together with the module that implements them; that module (and the
library it wraps: PyTorch, ONNX Runtime, OpenVINO) is imported only when the engine is created, so choosing an
engine never imports the others. `engine="auto"` takes the first engine of `AUTO_ORDER` that is installed;
the order is the one `benchmarks/embed_throughput.py` measures (README, "Speed"). An engine asked for by name
but not installed falls back to the automatic choice, with a warning saying how to install it.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    from torch import nn

    from imagerank.embedding.models import BackboneSpec

logger = logging.getLogger(__name__)


class Engine(Protocol):
    """Maps a C-contiguous (N, H, W, 3) uint8 batch to (N, dim) float32 features; thread-safe.

    An engine may say how many calls the embedding pipeline should run at once (`concurrent_calls`, 1 when
    absent): more than one pays only where calls share the engine's workers without slowing each other.
    """

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EngineEntry:
    """A registered engine: `module:Class` builds it as `Class(network, spec, device=..., latency=...)`."""

    name: str
    target: str
    requires: str
    install: str
    cpu_only: bool = True


_REGISTRY: dict[str, EngineEntry] = {}

AUTO_ORDER: tuple[str, ...] = ("openvino", "onnx", "torch")
"""Fastest first on CPUs, as measured by benchmarks/embed_throughput.py; on other devices only torch runs."""
EXPORT_ENGINES = frozenset({"openvino", "onnx"})
"""Engines that run the cached ONNX export: with it cached, they start without PyTorch."""


def register_engine(entry: EngineEntry) -> EngineEntry:
    _REGISTRY[entry.name] = entry
    return entry


def engine_names() -> tuple[str, ...]:
    """Registered engine names, those of `AUTO_ORDER` first, in that order."""
    return tuple(sorted(_REGISTRY, key=lambda name: (*AUTO_ORDER, name).index(name)))


def engine_available(name: str) -> bool:
    """Whether the library behind engine `name` can be imported here."""
    try:
        importlib.import_module(_entry(name).requires)
    except ImportError:
        return False
    return True


def resolve_engine(name: str, device: str = "cpu") -> str:
    """The engine that will run for a requested `name` ("auto" or a registered engine) on `device`.

    Raises:
        ImageRankError: an unknown name, a CPU-only engine asked for on another device, or no engine at all.
    """
    on_cpu = device == "cpu"
    if name != "auto":
        entry = _entry(name)
        if entry.cpu_only and not on_cpu:
            raise ImageRankError(
                f"engine {name!r} runs on the CPU only; use --engine torch for --device {device}"
            )
        if engine_available(name):
            return name
    candidates = [engine for engine in AUTO_ORDER if on_cpu or not _REGISTRY[engine].cpu_only]
    chosen = next((engine for engine in candidates if engine_available(engine)), None)
    if chosen is None:
        raise ImageRankError(f"no inference engine is installed for device {device!r}")
    if name != "auto":
        logger.warning(
            "engine %r is not installed (%s); using %r instead", name, _REGISTRY[name].install, chosen
        )
    return chosen


def create_engine(
    name: str, network: nn.Module | None, spec: BackboneSpec, device: str = "cpu", latency: bool = False
) -> Engine:
    """An engine running `network` (whose preprocessing is `spec`); `name` is resolved by `resolve_engine`.

    `network` may be None for the `EXPORT_ENGINES` when the backbone's ONNX export is already cached.

    `latency` tunes the engine for one image at a time (search queries) rather than for throughput.
    """
    entry = _entry(resolve_engine(name, device))
    module_name, class_name = entry.target.split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(network, spec, device=device, latency=latency)


def _entry(name: str) -> EngineEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(("auto", *engine_names()))
        raise ImageRankError(f"unknown engine {name!r}; choose one of {choices}") from None


register_engine(
    EngineEntry(
        name="openvino",
        target="imagerank.embedding.engines.openvino_engine:OpenVinoEngine",
        requires="openvino",
        install="pip install openvino",
    )
)
register_engine(
    EngineEntry(
        name="onnx",
        target="imagerank.embedding.engines.onnx_engine:OnnxEngine",
        requires="onnxruntime",
        install="pip install onnxruntime",
    )
)
register_engine(
    EngineEntry(
        name="torch",
        target="imagerank.embedding.engines.torch_engine:TorchEngine",
        requires="torch",
        install="pip install torch",
        cpu_only=False,
    )
)
