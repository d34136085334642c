"""Live routes: drama (issue 13)."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from miniapp_api.api import _json_object_body

bp = APIBlueprint("live_drama", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="live-drama", description="live commerce: drama")
