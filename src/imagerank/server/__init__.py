"""HTTP server: a FastAPI app serving search over an index, plus a web page (see `create_app`)."""

from imagerank.server.app import create_app
from imagerank.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
