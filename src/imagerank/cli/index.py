"""`imagerank index FOLDER`: embed a folder into an index, incrementally, and report what was skipped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imagerank.cli.common import (
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    EXIT_SKIPPED,
    IMAGE_EXTENSIONS,
    INDEX_TYPES,
    err,
    report_skipped,
)
from imagerank.cli.options import DeviceOption, EngineOption, IndexOption, WeightsOption, fail, valid_method
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    from imagerank.index.fitted import FittedMethod


def index_command(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder of images (one subfolder per label is optional).", exists=True, file_okay=False
        ),
    ],
    index: IndexOption = Path("imagerank.index"),
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help=f"Backbone for a new index (default: {DEFAULT_MODEL})."),
    ] = None,
    weights: WeightsOption = None,
    engine: EngineOption = "auto",
    device: DeviceOption = "cpu",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    index_type: Annotated[
        str | None,
        typer.Option(
            "--index-type",
            help=f"Vector layout: {', '.join(INDEX_TYPES)} (default: auto, or the index's own). auto picks "
            "exact search for small collections, HNSW, then IVF-PQ as they grow.",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Where a new index keeps its vectors: faiss (embedded, default), milvus-lite:PATH.db or "
            "milvus://HOST:PORT/COLLECTION.",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster address for --engine ray (default: $RAY_ADDRESS or local)."
        ),
    ] = None,
    extensions: Annotated[
        str, typer.Option("--extensions", help="Comma-separated file extensions to index.")
    ] = ",".join(IMAGE_EXTENSIONS),
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="Make this the index's default ranking method [default: " + DEFAULT_METHOD + "]. It is "
            "fitted on the label folders after indexing, and again whenever the labels change.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Embed every image under FOLDER into the index; later runs embed only new or changed files.

    Images in label folders teach the ranking method; images directly in FOLDER or in a folder named
    `unlabelled` have no label and are searched all the same.
    """
    method = valid_method(method)
    from imagerank.index.core import Index

    try:
        if address is not None and engine != "ray":
            raise ImageRankError("--address is for --engine ray")
        with Index.open_or_create(
            index,
            model=model,
            weights=weights,
            engine=engine,
            device=device,
            index_type=index_type,
            store=store,
            address=address,
        ) as opened:
            if method is not None:
                opened.set_default_method(method)
            report = opened.sync(
                folder,
                extensions=[part.strip() for part in extensions.split(",") if part.strip()],
                batch_size=batch_size,
                show_progress_bar=not quiet,
            )
            layout = describe_store(opened.store.describe())
    except ImageRankError as error:
        raise fail(error) from error
    report_skipped(report.skipped)
    err.print(f"{index}: {report.summary()}; vectors: {layout}", highlight=False, markup=False)
    for fitted in report.fitted:
        err.print(f"ranking: {describe_fit(fitted)}", highlight=False, markup=False)
    if report.skipped:
        raise typer.Exit(EXIT_SKIPPED)


def describe_store(store: dict) -> str:
    """One line on where the vectors are, their layout and, for approximate ones, the recall measured."""
    line = store.get("layout") or store.get("index_type", "")
    if store.get("backend") != "faiss":
        line = f"{store.get('backend')} {store.get('uri', '')} {line}".strip()
    recall = store.get("recall") or {}
    if "recall_at_10" in recall:
        line += (
            f"; recall@10 {recall['recall_at_10']:.3f} against exact search "
            f"({recall['queries']} sampled queries, {recall['vectors']:,} vectors)"
        )
    return line


def describe_fit(fitted: FittedMethod) -> str:
    """One line on a fitted ranking method: on what, how long it took, and any fallback."""
    info = fitted.info
    line = (
        f"{info.method} fitted on {info.n_labelled:,} labelled images ({info.n_labels} labels) of "
        f"{info.n_images:,} in {info.seconds:.1f} s"
    )
    return f"{line}; {info.note}" if info.note else line
