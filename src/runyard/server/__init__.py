"""The HTTP server: ``create_app()`` builds the FastAPI application (OpenAPI at
``/openapi.json``, docs at ``/docs``); ``serve()`` runs it with uvicorn.

::

    from runyard.server import create_app, serve
    asyncio.run(serve(create_app(), "127.0.0.1", 8000))

FastAPI and uvicorn are imported only when this package is.
"""

from .application import create_app, serve
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]
