"""`imagerank info`: what an index holds, how it is stored and how it ranks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from imagerank.cli.index import describe_store
from imagerank.cli.options import IndexOption, fail, out
from imagerank.errors import ImageRankError


def info_command(
    index: IndexOption = Path("imagerank.index"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe an index: model, number of images, labels, size on disk."""
    from imagerank.index.core import Index

    try:
        with Index.open(index) as opened:
            info = opened.info()
    except ImageRankError as error:
        raise fail(error) from error
    if as_json:
        print(json.dumps(info, indent=2))
        return
    labels = info["labels"]
    shown = ", ".join(f"{name} ({count})" for name, count in list(labels.items())[:12])
    more = f", ... ({len(labels)} labels)" if len(labels) > 12 else ""
    if info.get("assigned_labels"):
        more += f"; {info['assigned_labels']} images labelled by id (imagerank label)"
    table = Table(show_header=False, title=escape(str(index)))
    for key, value in (
        ("model", f"{info['model']} ({info['dim']}-d)"),
        ("weights", info["weights_id"]),
        ("images", str(info["count"])),
        ("labels", shown + more),
        ("vectors", describe_store(info["store"])),
        ("ranking", describe_ranking(info["ranking"])),
        ("root", str(info["root"])),
        ("uploads", f"{info['uploads']['count']} in {info['uploads']['folder']}"),
        ("size on disk", f"{info['size_bytes'] / 2**20:.1f} MiB"),
        ("created", f"{info['created']} (imagerank {info['imagerank_version']})"),
    ):
        table.add_row(key, escape(value))
    out.print(table)


def describe_ranking(ranking: dict) -> str:
    """The default method, the labels it learns from and the state of each fit, for `info`."""
    lines = [
        f"default {ranking['default_method']}; {ranking['labelled_images']:,} labelled images "
        f"({ranking['labels']} labels), {ranking['unlabelled_images']:,} unlabelled"
    ]
    for fit in ranking["fits"]:
        state = f"stale: {fit['stale_reason']}" if fit["stale"] else "current"
        used = f" (ranks with {fit['fitted_method']})" if fit["fitted_method"] != fit["method"] else ""
        lines.append(
            f"{fit['method']}{used}: fitted {fit['fitted_at']} on {fit['n_labelled']:,} labelled of "
            f"{fit['n_images']:,} images, {fit['seconds']:.1f} s; {state}"
        )
    return "\n".join(lines)
