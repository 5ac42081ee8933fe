"""`imagerank search`: the images of an index closest to a query image, a file or an indexed id."""

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
    """Rank the indexed images by similarity in meaning to a query image.

    The index's default method learns from its label folders; --method picks another.
    """
    if query is None and image_id is None:
        print_error("give a QUERY image file, or --id N to search with an indexed image")
        raise typer.Exit(EXIT_USAGE)
    if query is not None and image_id is not None:
        print_error("give either a QUERY image file or --id, not both")
        raise typer.Exit(EXIT_USAGE)
    method = valid_method(method)
    from imagerank.index.core import Index

    try:
        with Index.open(index, weights=weights, engine=engine, device=device) as opened:
            method = method or opened.default_method
            if image_id is not None:
                scores, ids = opened.search_by_id(image_id, k, labels=label, method=method)
            else:
                scores, ids = opened.search(query, k, labels=label, method=method)
            fitted = None if method == "cosine" else opened.fitted(method)
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
    except KeyError as error:
        raise fail(ImageRankError(error.args[0])) from error
    except ImageRankError as error:
        raise fail(error) from error
    ranked_with = fitted.info.fitted_method if fitted else method
    note = fitted.info.note if fitted else None
    if as_json:
        source = {"id": image_id} if image_id is not None else {"file": str(query)}
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
