"""What every `imagerank` command module shares, importing nothing heavy: exit codes, consoles, defaults.

The command line imports a library module only inside the command that needs it, so `imagerank --help`
and `imagerank search --id` never load a deep-learning framework. The defaults shown in the help are
therefore spelt out here; `tests/test_cli_startup.py` checks that they equal the library's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3

DEFAULT_MODEL = "mobilenet_v2"
"""`imagerank.embedding.models.DEFAULT_MODEL`."""
DEFAULT_METHOD = "hybrid"
"""`imagerank.ranking.DEFAULT_METHOD`."""
INDEX_TYPES = ("auto", "flat", "fp16", "sq8", "hnsw", "ivfpq")
"""`imagerank.store.ann.INDEX_TYPES`."""
IMAGE_EXTENSIONS = (
    ".avif", ".bmp", ".gif", ".heic", ".heif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp",
)  # fmt: skip
"""`imagerank.embedding.decoding.IMAGE_EXTENSIONS`, sorted."""
PROTOCOL_NAMES = ("auto", "seed", "per-label")
"""`evaluation.protocols.PROTOCOLS`, plus ``auto``: the reference split when the folder allows it."""

# Messages name files: never wrap them (stderr often goes to a log) nor read their brackets as markup.
err = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


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
