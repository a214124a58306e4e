"""The Blueprint every API module uses: flask-smorest's, with webargs' parser made to answer every
body that is not JSON with 400."""

from __future__ import annotations

import json
from typing import Any

import flask
import flask_smorest
from webargs.flaskparser import FlaskParser


class Parser(FlaskParser):
    """webargs' parser, which answers malformed JSON with 400 but knows only JSONDecodeError.

    Python's json refuses an integer of more than 4,300 digits (sys.get_int_max_str_digits(), a
    guard against quadratic parsing) with a plain ValueError, which was a 500. It is malformed
    JSON to this API as well.
    """

    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except ValueError as e:
            raise json.JSONDecodeError(str(e), "?", 0) from e


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()
