"""schemathesis against /v1/openapi.json through nginx, authenticated, with every check: no
failures at all, and a run that really tested every operation."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.integration.management_support import PASSWORD

# Bounded and reproducible: under three minutes on two cores (the suite's longest test, paced by
# the rate below; the whole of `make test` must stay under 20 minutes, so more examples would
# need a reason). 12 since the account operations were added (15 took the suite to 19.5 min).
SEED = 20261202
EXAMPLES_PER_OPERATION = 12
# Below nginx's per-address limit on /v1/auth/ (10 r/s), so no check ever sees nginx's 429.
REQUESTS_PER_S = 8


def _call(base: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=15) as resp:  # noqa: S310
        return json.loads(resp.read())["data"]


def _account(base: str) -> tuple[str, str]:
    """A registered, logged-in user: (id, access token)."""
    email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    _call(base, "POST", "/v1/auth/register", {"email": email, "password": PASSWORD, "name": "F"})
    session = _call(base, "POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
    return str(session["user"]["id"]), str(session["access_token"])


def _real_objects(base: str) -> tuple[str, dict[str, str]]:
    """The fuzzer's token, and ids of objects it may act on: its team (with a second member, so
    its super_admin cannot simply leave and delete it) and an upload in it. User ids are left to
    the fuzzer and to the document's links: a fixed one would not be a member of the teams the
    stateful phase creates, and their 404 reads as "created resource missing"."""
    _me, token = _account(base)
    other, _ = _account(base)
    team = _call(base, "POST", "/v1/teams", {"name": "fuzzed"}, token)["id"]
    _call(base, "POST", f"/v1/teams/{team}/members", {"user_id": other}, token)
    upload = {"filename": "fuzz.txt", "content_type": "text/plain", "size": 4}
    attachment = _call(base, "POST", f"/v1/teams/{team}/attachments", upload, token)["id"]
    return token, {"team_id": team, "attachment_id": attachment}


def test_schemathesis_finds_no_failures(stack_env: dict[str, str], tmp_path: Path) -> None:
    """Every operation is fuzzed with every check (positive and negative data, stateful links,
    auth probes, undeclared methods) through nginx, and nothing fails."""
    base = stack_env["CHATSTACK_NGINX_URL"]  # never a default: another stack may hold 8080
    token, ids = _real_objects(base)
    config = tmp_path / "schemathesis.toml"
    # A declared size above the attachment limit is refused with 413 too_large, the contract's
    # code for "over a size limit"; schemathesis' default list of refusals lacks 413.
    refusals = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
    config.write_text(
        "[parameters]\n"
        + "".join(f'{name} = "{value}"\n' for name, value in ids.items())
        + "\n[checks.negative_data_rejection]\n"
        + f"expected-statuses = {json.dumps(refusals)}\n"
        # Stateful sequences follow the document's explicit links only (and those carry path
        # parameters, no request bodies: schemathesis 4.32 filled a linked body from another
        # step's response, so "add member" named an attachment id and its correct 404 read as
        # a missing created resource). An inferred link runs
        # POST /v1/teams, then POST .../leave (the creator, last member, leaves: the team is
        # gone), then GET: a correct 404 that the resource-availability check, which only counts
        # DELETE as removal, reports as "created resource not found".
        + "\n[phases.stateful.inference]\nalgorithms = []\n"
    )
    report = tmp_path / "report.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{base}/v1/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--rate-limit",
        f"{REQUESTS_PER_S}/s",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False
    )
    output = run.stdout[-20000:] + run.stderr[-5000:]
    assert report.exists(), output
    result = json.loads(report.read_text())

    assert result["complete"], output
    assert result["errors"] == [], output
    operations = result["operations"]
    assert operations["tested"] == operations["selected"] == operations["total"] >= 22, output
    assert result["test_cases"]["generated"] >= 10 * operations["total"], output
    assert result["failures"] == [], output
    assert result["warnings"]["rate_limited"] == [], output
