"""GET /healthz: 200 when the database answers, 503 when it does not (for load balancers)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    ok = db.ping(db.engine())
    return jsonify({"status": "ok" if ok else "unavailable", "database": ok}), 200 if ok else 503
