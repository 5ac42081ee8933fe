"""The cached ONNX export of a backbone, shared by the ONNX Runtime and OpenVINO engines."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from imagerank.embedding.models import BackboneSpec

logger = logging.getLogger(__name__)

CACHE_ENV = "IMAGERANK_CACHE"


def cache_dir() -> Path:
    """Where exported ONNX graphs and other derived files are kept (`$IMAGERANK_CACHE` overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagerank"
    return Path(os.environ.get(CACHE_ENV, default))


def onnx_cache_path(spec: BackboneSpec) -> Path:
    """Where the ONNX export of this backbone with these weights is cached."""
    weights_tag = spec.weights_id.replace("#", "-").replace("/", "_") or "default"
    return cache_dir() / "onnx" / f"{spec.name.replace(':', '_')}-{weights_tag}.onnx"


def exported_onnx_path(network: nn.Module | None, spec: BackboneSpec) -> Path:
    """The cached ONNX file for this backbone and these weights, exporting it first if needed.

    Without a `network` the export must already be cached; then PyTorch is never imported. The file is
    written beside its final name and renamed into place, so concurrent or interrupted exports never leave
    a half-written graph behind.
    """
    path = onnx_cache_path(spec)
    if path.is_file():
        return path
    if network is None:
        raise FileNotFoundError(f"no cached ONNX export of {spec.name} at {path}")
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    example = torch.zeros(2, spec.input_size, spec.input_size, 3, dtype=torch.uint8)
    logger.info("exporting %s to ONNX at %s", spec.name, path)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of one that needs onnxscript; it still
        # exports these CNNs exactly, and the tests compare its output with PyTorch's.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing a transformer (open_clip's image towers) warns about shape checks it keeps as constants;
        # the traced graph takes any batch size, which the engine tests check against PyTorch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export_onnx(network, example, partial)
    partial.replace(path)
    return path


def _export_onnx(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    torch.onnx.export(
        network.cpu().eval(),
        (example,),
        str(path),
        input_names=["images"],
        output_names=["features"],
        dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
