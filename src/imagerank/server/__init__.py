"""HTTP server: a FastAPI app serving search over an index, plus a web page (see `create_app`): settings,
dependencies, error handlers, uploads, thumbnails and the `api` routers. It may import `imagerank.errors`,
`embedding`, `store`, `ranking`, `text` and `index`; only `imagerank.cli` and its own `__main__` import it.
"""

from imagerank.server.app import create_app
from imagerank.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
