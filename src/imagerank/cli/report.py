"""`imagerank report`: the report folder; and the options and helpers `imagerank plot ...` shares with it.

Register in the main CLI with::

    app.command("report")(report_command)

The library modules are imported inside the commands, so `imagerank --help` stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from imagerank.cli.common import DEFAULT_MODEL, PROTOCOL_NAMES
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    pass

EXIT_ERROR = 1
DEFAULT_METHODS = "random,cosine,lda"

_err = Console(stderr=True, soft_wrap=True)

DatasetArgument = Annotated[
    Path, typer.Argument(help="Folder of images with one subfolder per label.", exists=True, file_okay=False)
]
OutFile = Annotated[Path, typer.Option("--out", "-o", help="Image file to write (.png, .svg or .pdf).")]
WidthOption = Annotated[
    int | None, typer.Option("--width", min=100, help="Width in pixels (keeps the aspect).")
]
HeightOption = Annotated[int | None, typer.Option("--height", min=100, help="Height in pixels.")]
ColorsOption = Annotated[
    int | None, typer.Option("--colors", min=2, max=256, help="Reduce a PNG to a palette (smaller files).")
]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Backbone that embeds the images.")]
ProtocolOption = Annotated[
    str,
    typer.Option(
        "--protocol",
        help=f"Evaluation protocol: {', '.join(PROTOCOL_NAMES)} (auto: seed when every label has more than "
        "20 images, else per-label sized for the smallest label).",
    ),
]
MethodsOption = Annotated[str, typer.Option("--methods", help="Comma-separated ranking methods.")]
MethodOption = Annotated[
    str | None, typer.Option("--method", help="Ranking method (default: the best by mAP).")
]
KOption = Annotated[int, typer.Option("-k", "--top-k", min=1, help="Results per query.")]
TestOption = Annotated[
    int | None,
    typer.Option("--test-per-label", min=2, help="Override the protocol's images searched per label."),
]
QueriesOption = Annotated[
    int | None, typer.Option("--queries-per-label", min=1, help="Override the protocol's queries per label.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the sampled images and queries.")]
MinPerLabelOption = Annotated[
    int, typer.Option("--min-per-label", min=1, help="Leave out labels with fewer images than this.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def report_command(
    dataset_dir: DatasetArgument,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write index.html and figures/ to.")
    ] = Path("report"),
    protocol: ProtocolOption = "auto",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help=f"Backbone, repeatable (default: {DEFAULT_MODEL})."),
    ] = None,
    methods: MethodsOption = DEFAULT_METHODS,
    k: KOption = 10,
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    examples: Annotated[int, typer.Option("--examples", min=1, help="Example queries shown.")] = 6,
    map_per_label: Annotated[
        int, typer.Option("--map-per-label", min=1, help="Images per label on maps.")
    ] = 10,
    seed: SeedOption = 0,
    min_per_label: MinPerLabelOption = 1,
    quiet: QuietOption = False,
) -> None:
    """Write an HTML report on a labelled dataset: overview, embedding maps, quality, examples, confusions.

    The folder is written under a temporary name and renamed into place when complete."""
    from imagerank.cli.common import report_skipped
    from imagerank.evaluation.protocols import protocol_named
    from imagerank.report.html import build_report

    with _clean_errors():
        report = build_report(
            dataset_dir,
            out,
            protocol=protocol_named(protocol, test_per_label, queries_per_label),
            models=model or [DEFAULT_MODEL],
            methods=_names(methods),
            k=k,
            n_examples=examples,
            map_per_label=map_per_label,
            seed=seed,
            show_progress=not quiet,
            min_per_label=min_per_label,
        )
    report_skipped(report.skipped)
    _err.print(f"protocol: {escape(report.protocol.describe())}", highlight=False)
    _err.print(
        f"report written to {escape(str(report.html))} ({len(report.figures)} figure files)", highlight=False
    )


def _names(methods: str) -> list[str]:
    names = [name.strip() for name in methods.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one method", param_hint="--methods")
    return list(dict.fromkeys(names))


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn the library's errors (and bad arguments it rejects) into one clean line and exit code 1."""
    try:
        yield
    except (ImageRankError, ValueError, FileNotFoundError) as error:
        _err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from error
