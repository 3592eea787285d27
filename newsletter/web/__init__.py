"""The web app: signup with double opt-in, preferences, one-click unsubscribe, archive, admin API.

``create_app(app)`` builds the FastAPI application from an :class:`~newsletter.bootstrap.App`;
``newsletter web`` (:mod:`newsletter.web.command`) serves it with uvicorn. Importing does no I/O.
"""

from newsletter.web.app import create_app

__all__ = ["create_app"]
