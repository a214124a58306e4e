"""The field-visit companion server: create_app() builds the Flask app; nothing starts at import."""

from __future__ import annotations

import gc
import logging
from typing import Any

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from server import config as config_module

__version__ = "0.1.0"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(config_module.load(app.instance_path, config))
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if app.config["TRUST_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    from server import cli, db, errors
    from server.api import init_app as init_api
    from server.api.security import request_id
    from server.extensions import limiter

    db.init_app(app)
    from server.services import changes

    for key in ("db_sessionmaker", "db_writer_sessionmaker"):
        changes.install(app.extensions[key])  # number every write for the devices' pull
    limiter.init_app(app)
    errors.register(app)
    init_api(app)
    from server import console

    console.init_app(app)
    cli.init_app(app)

    @app.after_request
    def _request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response

    return app


def settle(app: Flask) -> Flask:
    """Ready `app` for a long-running process (wsgi.py: every gunicorn worker, the scheduler).

    What start-up built (modules, the app, mappers, schemas) lives as long as the process, yet
    Python's cyclic collector walks all of it again on every full collection: a 60–100 ms pause
    every dozen or so list requests of a busy worker, which is the p95 of the API's visit lists.
    Freezing it moves it out of the collector's sight; garbage made by requests is still collected.
    """
    gc.collect()
    gc.freeze()
    return app
