"""`imagerank evaluate`: every ranking method on a labelled folder, as a table with intervals and as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imagerank.ann import INDEX_TYPES
from imagerank.errors import ImageRankError
from imagerank.evaluation import EvaluationResult, dataset_embeddings, evaluate_protocol, labelled_images
from imagerank.models import DEFAULT_MODEL
from imagerank.product_evaluation import evaluate_split_through_index
from imagerank.protocols import PROTOCOLS, protocol_named
from imagerank.ranking import get_method

DEFAULT_METHODS = "random,cosine,lda,propagation,qe,dba,kreciprocal,probe,probe+qe"

# The table is wide (a column per metric, each with its interval): do not squeeze it into 80 columns in logs.
_out = Console() if sys.stdout.isatty() else Console(width=150)
_err = Console(stderr=True, soft_wrap=True)


def evaluate_command(
    dataset_dir: Annotated[
        Path, typer.Argument(help="Labelled folder: one subfolder per label.", exists=True, file_okay=False)
    ],
    protocol: Annotated[
        str, typer.Option("--protocol", help=f"Split protocol: {', '.join(PROTOCOLS)}.")
    ] = "seed",
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
    k: Annotated[int, typer.Option("-k", min=1, help="Cut-off of P@K, AP@K, recall@K, nDCG@K.")] = 10,
    test_per_label: Annotated[
        int | None, typer.Option("--test-per-label", min=2, help="Images per label held out of training.")
    ] = None,
    queries_per_label: Annotated[
        int | None, typer.Option("--queries-per-label", min=1, help="Of those, how many are queries.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed of the split.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON file [default: evaluation-PROTOCOL-MODEL.json].")
    ] = None,
    through_index: Annotated[
        str | None,
        typer.Option(
            "--through-index",
            help=f"Also run the protocol through an index and its search path, in this layout "
            f"({', '.join(t for t in INDEX_TYPES if t != 'auto')}): training images labelled, candidates "
            "unlabelled, every query searched with Index.search. Prints both tables.",
        ),
    ] = None,
) -> None:
    """Evaluate ranking methods on a labelled folder: P@K, AP@K, mAP, recall@K, nDCG@K with 95% intervals."""
    names = [name.strip() for name in methods.split(",") if name.strip()]
    try:
        chosen = protocol_named(protocol, test_per_label, queries_per_label, seed)
        for name in names:  # fail on a misspelt method before spending minutes on embeddings
            get_method(name)
        paths, labels = labelled_images(dataset_dir)
        started = time.perf_counter()
        vectors = dataset_embeddings(paths, model, show_progress_bar=True)
        embedding_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = evaluate_protocol(vectors, labels, chosen, names, k=k)
        evaluation_seconds = time.perf_counter() - started
        searched = (
            evaluate_split_through_index(
                vectors, labels, chosen.split(labels), names, chosen.name, k=k, index_type=through_index
            )
            if through_index
            else None
        )
    except (ImageRankError, ValueError) as error:
        _err.print(f"[bold red]error:[/] {escape(str(error))}")
        raise typer.Exit(1) from error
    _out.print(results_table(result, model))
    if searched is not None:
        _out.print(results_table(searched, model))
    _out.print(
        f"{len(paths)} images; train {result.n_train}, candidates {result.n_candidates}, "
        f"queries {result.n_queries}. Embeddings {embedding_seconds:.1f} s (cached by file content), "
        f"evaluation {evaluation_seconds:.1f} s.",
        highlight=False,
    )
    target = out or Path(f"evaluation-{chosen.name}-{model.replace(':', '_')}.json")
    document = {
        "dataset": str(dataset_dir),
        "model": model,
        "embedding_seconds": embedding_seconds,
        "evaluation_seconds": evaluation_seconds,
        **result.to_dict(),
    }
    if searched is not None:
        document["through_index"] = searched.to_dict()
    target.write_text(json.dumps(document, indent=2), encoding="utf-8")
    _out.print(f"wrote {escape(str(target))}", highlight=False)


def results_table(result: EvaluationResult, model: str) -> Table:
    """Method x metric: the mean over queries and its 95% bootstrap interval."""
    table = Table(title=f"{result.protocol} protocol, {model}, K={result.k} (mean [95% interval])")
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
