"""The `imagerank` command line: the Typer app (`main`, the console script `imagerank.cli:app`), one module
per verb (`index`, `search`, `info`, `models`, `evaluate`, `report`, `plot`, `serve`), the options they share
(`options`) and their exit codes, defaults and messages (`common`). Commands import the library inside their
functions, so `imagerank --help` starts without numpy, PyTorch or FAISS. It may import every other
subpackage; only the entry points (`imagerank.__main__`, `imagerank.server.__main__`) import it.
"""

from imagerank.cli.main import app

__all__ = ["app"]
