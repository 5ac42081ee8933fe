"""The `imagerank` command line: one command per verb, a thin layer over the library.

Exit codes: 0 success; 1 error (nothing was changed); 2 usage error; 3 indexing finished but some files
were skipped (each one is reported on stderr with its reason). A file skipped once is remembered with its
size and modification time and not decoded again until it changes; it still counts as skipped, so an index
run exits with 3 for as long as the folder holds a bad file (the message says how many were known).

Library modules are imported inside the commands: `imagerank --help` loads no library, and a search by id
loads the index's store but no deep-learning framework.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagerank.cli_common import (
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    EXIT_ERROR,
    EXIT_SKIPPED,
    EXIT_USAGE,
    IMAGE_EXTENSIONS,
    INDEX_TYPES,
    err,
    print_error,
)
from imagerank.cli_evaluate import evaluate_command
from imagerank.cli_report import plot_app, report_command
from imagerank.cli_serve import serve_command
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    from imagerank.fitted import FittedMethod
    from imagerank.index import IndexReport
    from imagerank.models import BackboneSpec

app = typer.Typer(
    name="imagerank",
    help="Semantic image search: index a folder of images, then find the images that mean the same thing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: Rich's help panels import a Markdown renderer, a quarter of the time `--help` may take.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)
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
    from imagerank.fitted import UnknownMethodError, checked_method

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


@app.command("index")
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
    from imagerank.index import Index

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
    report_skipped(report)
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


def report_skipped(report: IndexReport) -> None:
    for problem in report.skipped:
        err.print(
            f"[yellow]skipped[/] {escape(str(problem.path))}: {escape(problem.reason)}", highlight=False
        )


@app.command("search")
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
    from imagerank.index import Index

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
    from imagerank.text import TextQueryError, checked_text

    if method is not None:
        print_error("--method ranks image queries; words are ranked by the index's text ranker")
        raise typer.Exit(EXIT_USAGE)
    try:
        return checked_text(text)
    except TextQueryError as error:
        print_error(str(error))
        raise typer.Exit(EXIT_USAGE) from error


@app.command("info")
def info_command(
    index: IndexOption = Path("imagerank.index"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe an index: model, number of images, labels, size on disk."""
    from imagerank.index import Index

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


@app.command("models")
def models_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the backbones, their embedding size, and whether their weights are available offline."""
    from imagerank.models import get_backbone_entry, list_backbones, offline_weights_path

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


app.command("serve")(serve_command)
app.command("evaluate")(evaluate_command)
app.command("report")(report_command)
app.add_typer(plot_app, name="plot")


def _resize_policy(spec: BackboneSpec) -> str:
    return f"resize {spec.resize_size}, center crop" if spec.crop else "whole image, resized"


@app.callback()
def configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
