"""The options several `imagerank` commands share (index, weights, engine, device, method), their checks,
and the console results are printed to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagerank.cli.common import DEFAULT_METHOD, EXIT_ERROR, EXIT_USAGE, print_error

out = Console()

IndexOption = Annotated[
    Path, typer.Option("--index", "-i", envvar="IMAGERANK_INDEX", help="Index directory.", show_default=True)
]
WeightsOption = Annotated[
    Path | None,
    typer.Option("--weights", help="State-dict file to use instead of installed or downloaded weights."),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Inference engine: auto (fastest installed), openvino, onnx, torch (GPU: --device), "
        "ray (cluster: --address).",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", envvar="IMAGERANK_DEVICE", help="Torch device, e.g. cuda (with --engine torch/auto)."
    ),
]


def fail(error: Exception) -> typer.Exit:
    print_error(str(error))
    return typer.Exit(EXIT_ERROR)


def valid_method(method: str | None) -> str | None:
    """``method`` checked against the registry before any work is done (exit 2 listing the methods)."""
    if method is None:
        return None
    from imagerank.index.fitted import UnknownMethodError, checked_method

    try:
        return checked_method(method)
    except UnknownMethodError as error:
        print_error(str(error))
        raise typer.Exit(EXIT_USAGE) from error


MethodOption = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="Ranking method: cosine, probe+qe, kreciprocal, ... (see `imagerank evaluate --help`) "
        "[default: the index's own, else " + DEFAULT_METHOD + "].",
    ),
]
