"""What every `imagerank` command module shares, importing nothing heavy: exit codes, consoles, defaults.

The command line imports a library module only inside the command that needs it, so `imagerank --help`
and `imagerank search --id` never load a deep-learning framework. The defaults shown in the help are
therefore spelt out here; `tests/test_cli_startup.py` checks that they equal the library's own.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from imagerank.errors import BadImageError, printable_path

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


def report_skipped(skipped: list[BadImageError]) -> None:
    """One stderr line per skipped file with its reason (a name that is not UTF-8 shown with escapes)."""
    for error in skipped:
        path = printable_path(error.path)
        err.print(f"[yellow]skipped[/] {escape(path)}: {escape(error.reason)}", highlight=False)
