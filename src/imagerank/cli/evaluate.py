"""`imagerank evaluate`: every ranking method on a labelled folder, as a table with intervals and as JSON.

The library is imported inside the command, so registering it costs the rest of the command line nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from imagerank.cli.common import (
    DEFAULT_MODEL,
    EXIT_ERROR,
    INDEX_TYPES,
    PROTOCOL_NAMES,
    err,
    print_error,
    report_skipped,
)
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    from rich.table import Table

    from imagerank.evaluation.embeddings import LabelledEmbeddings
    from imagerank.evaluation.evaluate import EvaluationResult
    from imagerank.evaluation.protocols import Protocol

DEFAULT_METHODS = "random,cosine,lda,propagation,qe,dba,kreciprocal,dba+kreciprocal,probe,probe+qe,hybrid"

# The table is wide (a column per metric, each with its interval): do not squeeze it into 80 columns in logs.
_out = Console() if sys.stdout.isatty() else Console(width=150)


def evaluate_command(
    dataset_dir: Annotated[
        Path,
        typer.Argument(
            help="Labelled folder: images in subfolders named by label (at any depth, as `index` labels).",
            exists=True,
            file_okay=False,
        ),
    ],
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help=f"Split protocol: {', '.join(PROTOCOL_NAMES)}. auto is seed (20 test images per label, 5 of "
            "them queries) when every label has more than 20 images, else per-label with as many as the "
            "smallest label allows.",
        ),
    ] = "auto",
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Backbone; join several with '+' (e.g. mobilenet_v2+efficientnet_lite0)."
        ),
    ] = DEFAULT_MODEL,
    methods: Annotated[
        str,
        typer.Option("--methods", help="Comma-separated ranking methods; compose with '+' (e.g. probe+qe)."),
    ] = DEFAULT_METHODS,
    k: Annotated[
        int, typer.Option("-k", "--top-k", min=1, help="Cut-off of P@K, AP@K, recall@K, nDCG@K.")
    ] = 10,
    test_per_label: Annotated[
        int | None, typer.Option("--test-per-label", min=2, help="Images per label held out of training.")
    ] = None,
    queries_per_label: Annotated[
        int | None, typer.Option("--queries-per-label", min=1, help="Of those, how many are queries.")
    ] = None,
    min_per_label: Annotated[
        int, typer.Option("--min-per-label", min=1, help="Leave out labels with fewer images than this.")
    ] = 1,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed of the split.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON file (default: evaluation-PROTOCOL-MODEL.json).")
    ] = None,
    through_index: Annotated[
        str | None,
        typer.Option(
            "--through-index",
            help=f"Also run the protocol through an index and its search path, in this layout "
            f"({', '.join(t for t in INDEX_TYPES if t != 'auto')}): training images labelled, candidates "
            "unlabelled, every query searched with Index.search (the other queries never returned). "
            "Prints both tables.",
        ),
    ] = None,
    text: Annotated[
        bool,
        typer.Option(
            "--text",
            help="Evaluate search by words instead of the methods: each label name is a text query, "
            "zero-shot (every image ranked, no label used) and with the protocol's training images labelled.",
        ),
    ] = False,
) -> None:
    """Evaluate ranking methods on a labelled folder: P@K, AP@K, mAP, recall@K, nDCG@K with 95% intervals."""
    from imagerank.evaluation.embeddings import embed_labelled_folder
    from imagerank.evaluation.evaluate import evaluate_protocol
    from imagerank.evaluation.product import evaluate_split_through_index
    from imagerank.evaluation.protocols import protocol_named
    from imagerank.ranking import get_method

    names = [name.strip() for name in methods.split(",") if name.strip()]
    try:
        requested = protocol_named(protocol, test_per_label, queries_per_label, seed)
        for name in names:  # fail on a misspelt method before spending minutes on embeddings
            get_method(name)
        if "" in [part.strip() for part in model.split("+")]:
            raise ValueError(
                f"empty backbone name in {model!r}; join backbones as 'mobilenet_v2+efficientnet_lite0'"
            )
        started = time.perf_counter()
        embedded = embed_labelled_folder(dataset_dir, [model], min_per_label, show_progress_bar=True)
        embedding_seconds = time.perf_counter() - started
        report_skipped(embedded.skipped)
        chosen = requested.fitted(embedded.labels)
        if requested.name == "auto":
            err.print(f"protocol: {escape(chosen.describe())}", highlight=False)
        if text:
            text_evaluation(
                dataset_dir,
                embedded,
                model,
                chosen,
                k,
                out or Path(f"evaluation-text-{model.replace(':', '_')}.json"),
            )
            return
        started = time.perf_counter()
        result = evaluate_protocol(embedded.vectors[model], embedded.labels, chosen, names, k=k)
        evaluation_seconds = time.perf_counter() - started
        searched = (
            evaluate_split_through_index(
                embedded.vectors[model],
                embedded.labels,
                chosen.split(embedded.labels),
                names,
                chosen.name,
                k=k,
                index_type=through_index,
            )
            if through_index
            else None
        )
    except (ImageRankError, ValueError) as error:
        print_error(str(error))
        raise typer.Exit(EXIT_ERROR) from error
    _out.print(results_table(result, model, chosen.describe()))
    if searched is not None:
        _out.print(results_table(searched, model, f"{chosen.describe()}, through a {through_index} index"))
    skipped = f"; {len(embedded.skipped)} files skipped" if embedded.skipped else ""
    dropped = (
        f"; labels left out (fewer than {min_per_label} images): {', '.join(embedded.dropped_labels)}"
        if embedded.dropped_labels
        else ""
    )
    _out.print(
        f"{len(embedded.paths)} images{skipped}{dropped}; train {result.n_train}, candidates "
        f"{result.n_candidates}, queries {result.n_queries}. Embeddings {embedding_seconds:.1f} s (cached by "
        f"file content), evaluation {evaluation_seconds:.1f} s.",
        highlight=False,
    )
    target = out or Path(f"evaluation-{chosen.name}-{model.replace(':', '_')}.json")
    document = {
        "dataset": str(dataset_dir),
        "model": model,
        "embedding_seconds": embedding_seconds,
        "evaluation_seconds": evaluation_seconds,
        "skipped": [{"path": str(error.path), "reason": error.reason} for error in embedded.skipped],
        **result.to_dict(),
    }
    if searched is not None:
        document["through_index"] = searched.to_dict()
    target.write_text(json.dumps(document, indent=2), encoding="utf-8")
    _out.print(f"wrote {escape(str(target))}", highlight=False)


def text_evaluation(
    dataset_dir: Path, embedded: LabelledEmbeddings, model: str, protocol: Protocol, k: int, target: Path
) -> None:
    """Run `imagerank.evaluation.text.evaluate_text`, print its table and write its JSON to ``target``."""
    from rich.table import Table

    from imagerank.evaluation.text import evaluate_text

    started = time.perf_counter()
    result = evaluate_text(embedded.vectors[model], embedded.labels, model, protocol, k=k)
    seconds = time.perf_counter() - started
    table = Table(
        title=f"search by words, {escape(model)}: each of {len(result.zero_shot.names)} label names a query"
    )
    for column in ("setting", "images ranked", f"mean P@{k}", "mAP", f"names at P@{k} 0"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    for setting, scores in (
        ("zero-shot (no labels)", result.zero_shot),
        (f"with labels ({protocol.name} protocol)", result.with_labels),
        (f"zero-shot, then feedback on the first {k}", result.after_feedback),
    ):
        table.add_row(
            setting,
            str(scores.n_ranked),
            f"{scores.mean_precision:.4f}",
            f"{scores.mean_average_precision:.4f}",
            str(len(scores.names_at_zero)),
        )
    _out.print(table)
    _out.print(f"{len(embedded.paths)} images; text evaluation {seconds:.1f} s.", highlight=False)
    document = {"dataset": str(dataset_dir), **result.to_dict()}
    target.write_text(json.dumps(document, indent=2), encoding="utf-8")
    _out.print(f"wrote {escape(str(target))}", highlight=False)


def results_table(result: EvaluationResult, model: str, protocol: str | None = None) -> Table:
    """Method x metric: the mean over queries and its 95% bootstrap interval."""
    from rich.table import Table

    table = Table(
        title=f"{escape(model)}, K={result.k}, protocol {escape(protocol or result.protocol)}: "
        "mean [95% interval]"
    )
    table.add_column("method")
    for metric in result.metric_names:
        table.add_column(metric, justify="right")
    for method, scores in result.methods.items():
        cells = []
        for metric in result.metric_names:
            low, high = scores.interval(metric)
            cells.append(f"{scores.mean(metric):.4f} [{low:.3f}-{high:.3f}]")
        table.add_row(method, *cells)
    return table
