"""`imagerank models`: the registered backbones and whether their weights are available offline."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from imagerank.cli.options import out

if TYPE_CHECKING:
    from imagerank.embedding.models import BackboneSpec


def models_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the backbones, their embedding size, and whether their weights are available offline."""
    from imagerank.embedding.models import get_backbone_entry, list_backbones, offline_weights_path

    rows = []
    for name in list_backbones():
        entry = get_backbone_entry(name)
        local = offline_weights_path(name)
        spec = entry.spec
        rows.append(
            {
                "name": name,
                "dim": spec.dim,
                "input": f"{spec.input_size}px ({_resize_policy(spec)}, {spec.interpolation})",
                "offline": local is not None,
                "weights": str(local) if local else f"download ({entry.weights_file})",
                "description": entry.description,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        title="Backbones (any timm model also works as timm:<name>, any open_clip one as clip:<name>)"
    )
    for column in ("name", "dim", "input", "offline", "weights"):
        table.add_column(column, overflow="fold")  # a cut path is of no use: wrap it whole
    for row in rows:
        table.add_row(
            row["name"], str(row["dim"]), row["input"], "yes" if row["offline"] else "no", row["weights"]
        )
    out.print(table)


def _resize_policy(spec: BackboneSpec) -> str:
    return f"resize {spec.resize_size}, center crop" if spec.crop else "whole image, resized"
