"""`python -m imagerank` runs the command line."""

from imagerank.cli import app

app()
