"""`imagerank label`: give indexed images a label, or their folder's again (as the API and the page do)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from imagerank.cli.common import EXIT_USAGE, print_error
from imagerank.cli.options import IndexOption, fail, out
from imagerank.errors import ImageRankError, InvalidLabelError


def label_command(
    ids: Annotated[list[int], typer.Option("--id", help="An indexed image's id (repeat it for several).")],
    label: Annotated[str | None, typer.Option("--label", help="The label to give them.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Give them their folder's label again.")] = False,
    index: IndexOption = Path("imagerank.index"),
) -> None:
    """Label indexed images by id. The label overrides their folder's and is kept when the folder is indexed
    again; ranking methods the change makes stale are fitted again at once."""
    from imagerank.index.core import Index

    if (label is None) != clear:
        print_error("give either --label NAME or --clear")
        raise typer.Exit(EXIT_USAGE)
    try:
        with Index.open(index) as opened:
            change = opened.set_labels(ids, label)
    except InvalidLabelError as error:
        print_error(str(error))
        raise typer.Exit(EXIT_USAGE) from error
    except ImageRankError as error:
        raise fail(error) from error
    given = f"the label {label!r}" if label is not None else "their folder's label"
    already = f" ({len(change.unchanged)} already had it)" if change.unchanged else ""
    out.print(escape(f"{len(change.changed)} image(s) given {given}{already}."), highlight=False)
    for fitted in change.refitted:
        info = fitted.info
        out.print(
            escape(
                f"Fitted {info.method} again: {info.n_labelled:,} labelled images, {info.n_labels} labels."
            )
        )
