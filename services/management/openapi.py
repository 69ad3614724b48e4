"""The OpenAPI 3.1 document of the whole public REST API, kept at docs/openapi.json.

One file is the source, edited by hand: the management service serves it verbatim at
``/v1/openapi.json`` (loaded once at start-up; a missing or broken file stops the start). Its
constraints are the code's own constants (patterns from ``validation``, ``attachment_rules`` and
``chatcore.schema``): tests/unit/test_management_openapi.py checks that they are equal and that
the document and the parsers accept the same values, the integration tests check every real
response against it, and tests/integration/test_api_fuzz.py fuzzes the API against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatcore.settings import ConfigError

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def load_openapi(path: Path = OPENAPI_PATH) -> tuple[dict[str, Any], bytes]:
    """The parsed document and its bytes as served; a missing or broken file stops start-up."""
    try:
        raw = path.read_bytes()
        document = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the OpenAPI document {path}: {exc}") from exc
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3.1"):
        raise ConfigError(f"{path} is not an OpenAPI 3.1 document")
    return document, raw
