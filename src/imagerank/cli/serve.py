"""`imagerank serve`: search over HTTP and in a web page.

Register it with `app.command("serve")(serve_command)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagerank.errors import ImageRankError

EXIT_ERROR = 1
_err = Console(stderr=True)


def serve(
    index: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    engine: str = "auto",
    weights: Path | None = None,
    max_upload_mb: float = 20,
    log_level: str = "info",
    allow_uploads: bool = False,
    protect_reads: bool = False,
    uploads_dir: Path | None = None,
    cors_origins: list[str] | None = None,
) -> None:
    """Open the index, load its backbone, and serve the API and web page with uvicorn until stopped.

    The API key comes from IMAGERANK_API_KEY only (never an argument, which other users could read).

    Raises:
        ImageRankError: an unsafe exposure (see `exposure_problem`), or the index or the backbone's weights
            cannot be opened.
    """
    import uvicorn  # the web stack is only imported by this command

    from imagerank.server import create_app
    from imagerank.server.settings import ServerSettings, exposure_problem

    options = {
        "engine": engine,
        "weights": weights,
        "max_upload_bytes": int(max_upload_mb * 2**20),
        "allow_uploads": allow_uploads,
        "protect_reads": protect_reads,
        "uploads_dir": uploads_dir,
        "cors_origins": cors_origins or [],
    }
    problem = exposure_problem(host, ServerSettings(index=index, **options))
    if problem:
        raise ImageRankError(problem)
    app = create_app(index, **options)
    serving = f"serving the index at {index.resolve()} on http://{host}:{port}"
    _err.print(serving, highlight=False, soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def serve_command(
    index: Annotated[
        Path,
        typer.Option("--index", "-i", envvar="IMAGERANK_INDEX", help="Index directory.", show_default=True),
    ] = Path("imagerank.index"),
    host: Annotated[
        str, typer.Option("--host", envvar="IMAGERANK_HOST", help="Interface to listen on (0.0.0.0: all).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", envvar="IMAGERANK_PORT", min=0, max=65535)] = 8000,
    engine: Annotated[
        str, typer.Option("--engine", help="Inference engine: auto, openvino, onnx (fast on CPU) or torch.")
    ] = "auto",
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="State-dict file to use instead of installed or downloaded weights."),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="Largest upload accepted, in MB.")
    ] = 20,
    allow_uploads: Annotated[
        bool,
        typer.Option(
            "--allow-uploads",
            envvar="IMAGERANK_ALLOW_UPLOADS",
            help="Accept POST /api/images. Needs IMAGERANK_API_KEY unless the host is loopback.",
        ),
    ] = False,
    protect_reads: Annotated[
        bool,
        typer.Option(
            "--protect-reads",
            envvar="IMAGERANK_PROTECT_READS",
            help="Require IMAGERANK_API_KEY for searches and images too (the page asks for it).",
        ),
    ] = False,
    uploads_dir: Annotated[
        Path | None,
        typer.Option(
            "--uploads-dir", envvar="IMAGERANK_UPLOADS_DIR", help="Uploads folder [default: INDEX/uploads]."
        ),
    ] = None,
    cors_origins: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="An origin allowed to call the API from a browser (repeatable)."),
    ] = None,
) -> None:
    """Serve search over HTTP: a web page at /, the API under /api, its docs at /docs.

    Writes (adding images) are off unless --allow-uploads; set IMAGERANK_API_KEY to require
    `Authorization: Bearer KEY` for them.
    """
    try:
        serve(
            index,
            host,
            port,
            engine=engine,
            weights=weights,
            max_upload_mb=max_upload_mb,
            allow_uploads=allow_uploads,
            protect_reads=protect_reads,
            uploads_dir=uploads_dir,
            cors_origins=cors_origins,
        )
    except ImageRankError as error:
        _err.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from error
