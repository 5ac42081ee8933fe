"""The `imagerank` command line: one command per verb, a thin layer over the library.

Exit codes: 0 success; 1 error (nothing was changed); 2 usage error; 3 indexing finished but some files
were skipped (each one is reported on stderr with its reason). A file skipped once is remembered with its
size and modification time and not decoded again until it changes; it still counts as skipped, so an index
run exits with 3 for as long as the folder holds a bad file (the message says how many were known).

Library modules are imported inside the commands: `imagerank --help` loads no library, and a search by id
loads the index's store but no deep-learning framework.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from imagerank.cli.evaluate import evaluate_command
from imagerank.cli.index import index_command
from imagerank.cli.info import info_command
from imagerank.cli.label import label_command
from imagerank.cli.models import models_command
from imagerank.cli.plot import plot_app
from imagerank.cli.report import report_command
from imagerank.cli.search import search_command
from imagerank.cli.serve import serve_command

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

app.command("index")(index_command)
app.command("search")(search_command)
app.command("info")(info_command)
app.command("label")(label_command)
app.command("models")(models_command)
app.command("serve")(serve_command)
app.command("evaluate")(evaluate_command)
app.command("report")(report_command)
app.add_typer(plot_app, name="plot")


@app.callback()
def configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
