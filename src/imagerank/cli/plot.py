"""`imagerank plot ...`: one figure of the report alone (PNG, SVG or PDF).

Register in the main CLI with::

    app.add_typer(plot_app, name="plot")

The library modules are imported inside the commands, so `imagerank --help` stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from imagerank.cli.common import DEFAULT_MODEL
from imagerank.cli.report import (
    DEFAULT_METHODS,
    ColorsOption,
    DatasetArgument,
    HeightOption,
    KOption,
    MethodOption,
    MethodsOption,
    ModelOption,
    OutFile,
    ProtocolOption,
    QueriesOption,
    QuietOption,
    SeedOption,
    TestOption,
    WidthOption,
    _clean_errors,
    _err,
    _names,
)
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from imagerank.report.html import EvaluatedDataset

plot_app = typer.Typer(
    help="Draw one figure of the report alone (PNG, SVG or PDF, from the --out suffix).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as the main command line's
)


@plot_app.command("counts")
def counts_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """Bar chart of images per label."""
    from imagerank.evaluation.embeddings import labelled_images
    from imagerank.report import plots

    with _clean_errors():
        _, labels = labelled_images(dataset_dir)
        _write(plots.label_counts_figure(labels), out, width, height, colors)


@plot_app.command("thumbnails")
def thumbnails_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    per_label: Annotated[int, typer.Option("--per-label", min=1)] = 4,
    seed: SeedOption = 0,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """Sample thumbnails of every label."""
    from imagerank.evaluation.embeddings import labelled_images
    from imagerank.report import plots

    with _clean_errors():
        paths, labels = labelled_images(dataset_dir)
        _write(
            plots.label_thumbnails_figure(paths, labels, per_label=per_label, seed=seed),
            out,
            width,
            height,
            colors,
        )


@plot_app.command("sizes")
def sizes_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """Distribution of image sizes and aspect ratios."""
    from imagerank.evaluation.embeddings import labelled_images
    from imagerank.report import plots
    from imagerank.report.html import image_sizes

    with _clean_errors():
        paths, _ = labelled_images(dataset_dir)
        _write(plots.image_size_figure(image_sizes(paths)), out, width, height, colors)


@plot_app.command("map")
def map_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    model: ModelOption = DEFAULT_MODEL,
    after: Annotated[
        str | None, typer.Option("--after", help="Map the space of this learned method (e.g. lda) instead.")
    ] = None,
    per_label: Annotated[int, typer.Option("--per-label", min=1, help="Images per label on the map.")] = 10,
    protocol: ProtocolOption = "auto",
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """2-D maps (PCA and t-SNE) of the candidates and queries, colored by label."""
    from imagerank.report import plots

    with _clean_errors():
        data = _evaluate(
            dataset_dir, model, protocol, after or "cosine", 10, test_per_label, queries_per_label, quiet
        )
        ids = data.map_sample(per_label, seed)
        spaces = data.learned_spaces(ids)
        if after is not None and after not in spaces:
            raise ImageRankError(f"method {after!r} learns no projection to map")
        space = spaces[after] if after else data.vectors[ids]
        with _status("projecting", quiet):
            projections = {
                name: plots.project_2d(space, method, seed)
                for name, method in (("PCA", "pca"), ("t-SNE", "tsne"))
            }
        title = f"{model} after {after}" if after else f"{model} embeddings"
        _write(plots.embedding_maps_figure(projections, data.labels[ids], title), out, width, height, colors)


@plot_app.command("curves")
def curves_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    model: ModelOption = DEFAULT_MODEL,
    protocol: ProtocolOption = "auto",
    methods: MethodsOption = DEFAULT_METHODS,
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    quiet: QuietOption = False,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """P@K and recall@K for K = 1..50, one line per method."""
    from imagerank.report import plots

    with _clean_errors():
        data = _evaluate(dataset_dir, model, protocol, methods, 10, test_per_label, queries_per_label, quiet)
        _write(plots.precision_recall_figure(data.result), out, width, height, colors)


@plot_app.command("label-ap")
def label_ap_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    method: MethodOption = None,
    model: ModelOption = DEFAULT_MODEL,
    protocol: ProtocolOption = "auto",
    methods: MethodsOption = DEFAULT_METHODS,
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    quiet: QuietOption = False,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """Best and worst labels by average precision."""
    from imagerank.report import plots

    with _clean_errors():
        data = _evaluate(
            dataset_dir, model, protocol, _with(methods, method), 10, test_per_label, queries_per_label, quiet
        )
        chosen = method or data.best_method()
        _write(plots.label_ap_figure(data.ap_by_label(chosen), chosen), out, width, height, colors)


@plot_app.command("results")
def results_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    method: MethodOption = None,
    k: KOption = 8,
    queries: Annotated[int, typer.Option("--queries", min=1, help="Number of example queries.")] = 6,
    seed: SeedOption = 0,
    model: ModelOption = DEFAULT_MODEL,
    protocol: ProtocolOption = "auto",
    methods: MethodsOption = DEFAULT_METHODS,
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    quiet: QuietOption = False,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """Example queries and their top-K results with scores; wrong results framed in red."""
    from imagerank.report import plots

    with _clean_errors():
        data = _evaluate(
            dataset_dir, model, protocol, _with(methods, method), k, test_per_label, queries_per_label, quiet
        )
        chosen = method or data.best_method()
        rows = data.query_results(chosen, data.example_queries(queries, seed), k)
        _write(
            plots.retrieval_grid_figure(rows, title=f"Top {k} results: {chosen}"), out, width, height, colors
        )


@plot_app.command("compare")
def compare_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    methods: Annotated[str, typer.Option("--methods", help="Two comma-separated methods.")] = "cosine,lda",
    k: KOption = 5,
    queries: Annotated[int, typer.Option("--queries", min=1, help="Number of example queries.")] = 6,
    seed: SeedOption = 0,
    model: ModelOption = DEFAULT_MODEL,
    protocol: ProtocolOption = "auto",
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    quiet: QuietOption = False,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """The same example queries ranked by two methods, side by side."""
    from imagerank.report import plots

    with _clean_errors():
        data = _evaluate(dataset_dir, model, protocol, methods, k, test_per_label, queries_per_label, quiet)
        positions = data.example_queries(queries, seed)
        by_method = {name: data.query_results(name, positions, k) for name in _names(methods)}
        _write(plots.retrieval_comparison_figure(by_method), out, width, height, colors)


@plot_app.command("confusion")
def confusion_command(
    dataset_dir: DatasetArgument,
    out: OutFile,
    method: MethodOption = None,
    k: KOption = 10,
    model: ModelOption = DEFAULT_MODEL,
    protocol: ProtocolOption = "auto",
    methods: MethodsOption = DEFAULT_METHODS,
    test_per_label: TestOption = None,
    queries_per_label: QueriesOption = None,
    quiet: QuietOption = False,
    width: WidthOption = None,
    height: HeightOption = None,
    colors: ColorsOption = None,
) -> None:
    """Which labels are retrieved for which: the top confusions as a heatmap, also listed on stdout."""
    from imagerank.report import plots

    with _clean_errors():
        data = _evaluate(
            dataset_dir, model, protocol, _with(methods, method), k, test_per_label, queries_per_label, quiet
        )
        chosen = method or data.best_method()
        confusion, names = data.confusion(chosen, k)
        _write(plots.confusion_figure(confusion, names, k, chosen), out, width, height, colors)
        for query, found, share in plots.top_confusions(confusion, names):
            print(f"{query}\t{found}\t{share:.3f}")


def _evaluate(
    dataset_dir: Path,
    model: str,
    protocol: str,
    methods: str,
    k: int,
    test_per_label: int | None,
    queries_per_label: int | None,
    quiet: bool,
) -> EvaluatedDataset:
    from imagerank.cli.common import report_skipped
    from imagerank.evaluation.protocols import protocol_named
    from imagerank.report.html import evaluate_dataset

    chosen = protocol_named(protocol, test_per_label, queries_per_label)
    data = evaluate_dataset(dataset_dir, model, chosen, _names(methods), k, show_progress_bar=not quiet)
    report_skipped(data.skipped)
    return data


def _with(methods: str, method: str | None) -> str:
    """Return the method list with ``method`` added, so a figure of one method never needs two flags."""
    return methods if method is None or method in _names(methods) else f"{methods},{method}"


def _write(figure: Figure, out: Path, width: int | None, height: int | None, colors: int | None) -> None:
    from imagerank.report.html import save_figure

    save_figure(figure, out, width, height, colors)
    _err.print(f"wrote {escape(str(out))}", highlight=False)


@contextmanager
def _status(message: str, quiet: bool) -> Iterator[None]:
    if quiet:
        yield
        return
    with _err.status(f"{message}..."):
        yield
