"""`imagerank search`: the images of an index closest to a query: an image file, an indexed id or words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from imagerank.cli.common import EXIT_USAGE, err, print_error
from imagerank.cli.options import (
    DeviceOption,
    EngineOption,
    IndexOption,
    MethodOption,
    WeightsOption,
    fail,
    out,
    valid_method,
)
from imagerank.errors import ImageRankError


def search_command(
    query: Annotated[Path | None, typer.Argument(help="Query image file.")] = None,
    index: IndexOption = Path("imagerank.index"),
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Number of results.")] = 10,
    image_id: Annotated[
        int | None, typer.Option("--id", help="Search with an indexed image (by id) instead of a file.")
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", "-t", help='Search by words instead, e.g. --text "a dog on a sofa".'),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Only return images with this label (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    method: MethodOption = None,
    weights: WeightsOption = None,
    engine: EngineOption = "auto",
    device: DeviceOption = "cpu",
) -> None:
    """Rank the indexed images by similarity in meaning to a query image, or to words (--text).

    The index's default method learns from its label folders; --method picks another. Words are matched by
    the backbone's text tower for clip: models, else by the offline bridge through the ImageNet classes.
    """
    given = [source for source in (query, image_id, text) if source is not None]
    if not given:
        print_error("give a QUERY image file, or --id N to search with an indexed image, or --text WORDS")
        raise typer.Exit(EXIT_USAGE)
    if len(given) > 1:
        print_error("give only one of a QUERY image file, --id and --text")
        raise typer.Exit(EXIT_USAGE)
    if text is not None:
        text = valid_text(text, method)
    method = valid_method(method)
    from imagerank.index.core import Index

    try:
        with Index.open(index, weights=weights, engine=engine, device=device) as opened:
            method = method or ("text" if text is not None else opened.default_method)
            if text is not None:
                scores, ids = opened.search_text(text, k, labels=label)
            elif image_id is not None:
                scores, ids = opened.search_by_id(image_id, k, labels=label, method=method)
            else:
                scores, ids = opened.search(query, k, labels=label, method=method)
            fitted = None if method in ("cosine", "text") else opened.fitted(method)
            results = [
                {
                    "rank": rank,
                    "id": record.id,
                    "score": round(float(score), 6),
                    "path": record.path,
                    "label": record.label,
                }
                for rank, (score, record) in enumerate(
                    zip(scores[0], opened.records(ids[0]), strict=False), start=1
                )
            ]
            about = query if image_id is None else f"id {image_id} ({opened.records([image_id])[0].path})"
            about = f"the words {text!r}" if text is not None else about
    except KeyError as error:
        raise fail(ImageRankError(error.args[0])) from error
    except ImageRankError as error:
        raise fail(error) from error
    ranked_with = fitted.info.fitted_method if fitted else method
    note = fitted.info.note if fitted else None
    if as_json:
        source = {"id": image_id} if image_id is not None else {"file": str(query)}
        source = {"text": text} if text is not None else source
        document = {"query": source, "model": opened.model, "method": ranked_with, "note": note}
        print(json.dumps({**document, "results": results}, indent=2))
        return
    if note:
        err.print(f"note: {note}", highlight=False, markup=False)
    where = f" labelled {', '.join(label)}" if label else ""
    table = Table(title=escape(f"Top {len(results)}{where} like {about} (method: {ranked_with})"))
    for column, justify in (
        ("rank", "right"),
        ("id", "right"),
        ("score", "right"),
        ("path", "left"),
        ("label", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for result in results:
        table.add_row(
            str(result["rank"]),
            str(result["id"]),
            f"{result['score']:.4f}",
            escape(result["path"]),
            escape(result["label"] or ""),
        )
    out.print(table)


def valid_text(text: str, method: str | None) -> str:
    """A --text query checked before the index is opened (exit 2 saying what is wrong), whitespace folded."""
    from imagerank.text.base import TextQueryError, checked_text

    if method is not None:
        print_error("--method ranks image queries; words are ranked by the index's text ranker")
        raise typer.Exit(EXIT_USAGE)
    try:
        return checked_text(text)
    except TextQueryError as error:
        print_error(str(error))
        raise typer.Exit(EXIT_USAGE) from error
