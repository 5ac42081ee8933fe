"""`python -m imagerank.server --index DIR`: the same as `imagerank serve`."""

import typer

from imagerank.cli.serve import serve_command

if __name__ == "__main__":
    typer.run(serve_command)
