"""Unit tests for chatcore.logging: JSON lines, context ids and secret redaction."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from chatcore.logging import (
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    new_request_id,
    redact,
    redact_text,
    reset_context,
)
from tests.logs import json_logs

# Shaped like a real access token; only the shape matters to the redactor.
JWT = (
    "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCJ9"
    ".eyJzdWIiOiJ1XzEyMyIsImV4cCI6MTgwMDAwMDAwMH0"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmUtc2lnbmF0dXJl"
)


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """Logging configured into a StringIO; root logger and context restored afterwards."""
    with json_logs("relay") as buf:
        yield buf
    clear_context()
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_lines_are_json_with_standard_fields(out: io.StringIO) -> None:
    """Every line is one JSON object with timestamp, level, event, service and logger."""
    get_logger("chat.test").info("hello", user_id="u_1", count=3)
    get_logger("chat.test").warning("careful")
    first, second = lines(out)
    assert first["event"] == "hello"
    assert first["level"] == "info"
    assert first["service"] == "relay"
    assert first["logger"] == "chat.test"
    assert first["user_id"] == "u_1"
    assert first["count"] == 3
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "warning"


def test_level_filters_lower_levels(out: io.StringIO) -> None:
    """At level info, debug lines from structlog and stdlib are dropped."""
    get_logger("chat.test").debug("noise")
    logging.getLogger("aiokafka").debug("noise")
    assert out.getvalue() == ""


def test_context_ids_appear_on_every_line(out: io.StringIO) -> None:
    """Bound request and correlation ids show on structlog and stdlib lines until reset."""
    request_id = new_request_id()
    assert len(request_id) == 32
    tokens = bind_context(request_id=request_id, correlation_id="corr-7")
    get_logger("chat.test").info("one")
    logging.getLogger("aiohttp.access").info("two")
    reset_context(tokens)
    get_logger("chat.test").info("three")
    one, two, three = lines(out)
    assert one["request_id"] == two["request_id"] == request_id
    assert one["correlation_id"] == two["correlation_id"] == "corr-7"
    assert "request_id" not in three


def test_secrets_removed_rest_survives(out: io.StringIO) -> None:
    """Passwords, auth headers, ?token= URLs, bearer strings and JWTs vanish; the rest stays."""
    get_logger("chat.test").info(
        "login attempt",
        email="ann@example.com",
        password="hunter2-pw",
        headers={"Authorization": "Bearer opaque-abc-123", "X-Request-ID": "rid-1"},
        url="/v1/ws?token=query-secret-42&channel=team-9",
        note="client sent Bearer another-secret-77 twice",
        text=f"echo {JWT} back",
        items=[{"x_refresh_token": "refresh-secret-5", "id": "i-1"}],
    )
    raw = out.getvalue()
    for secret in (
        "hunter2-pw",
        "opaque-abc-123",
        "query-secret-42",
        "another-secret-77",
        JWT,
        "refresh-secret-5",
    ):
        assert secret not in raw
    (line,) = lines(out)
    assert line["email"] == "ann@example.com"
    assert line["password"] == "[REDACTED]"
    assert line["headers"] == {"Authorization": "[REDACTED]", "X-Request-ID": "rid-1"}
    assert line["url"] == "/v1/ws?token=[REDACTED]&channel=team-9"
    assert line["note"] == "client sent Bearer [REDACTED] twice"
    assert line["text"] == "echo [REDACTED_JWT] back"
    assert line["items"] == [{"x_refresh_token": "[REDACTED]", "id": "i-1"}]


def test_exception_text_is_redacted(out: io.StringIO) -> None:
    """A JWT inside an exception message is scrubbed from the rendered traceback."""
    try:
        raise ValueError(f"could not parse {JWT} for user u_9")
    except ValueError:
        get_logger("chat.test").exception("verify failed")
    (line,) = lines(out)
    assert JWT not in out.getvalue()
    assert "Traceback" in line["exception"]
    assert "ValueError: could not parse [REDACTED_JWT] for user u_9" in line["exception"]


def test_stdlib_library_lines_are_json_and_redacted(out: io.StringIO) -> None:
    """aiohttp's access log goes through the same JSON renderer and redaction."""
    logging.getLogger("aiohttp.access").info(
        '%s "%s" %d', "10.0.0.5", f"GET /v1/ws?access_token={JWT}&v=2 HTTP/1.1", 101
    )
    (line,) = lines(out)
    assert line["logger"] == "aiohttp.access"
    assert line["service"] == "relay"
    assert line["level"] == "info"
    assert line["event"] == '10.0.0.5 "GET /v1/ws?access_token=[REDACTED]&v=2 HTTP/1.1" 101'


def test_stdlib_exception_is_redacted(out: io.StringIO) -> None:
    """A library's logged exception is JSON, with secrets scrubbed from its traceback."""
    try:
        raise ConnectionError("auth failed for mongodb://app:pw@db/?password=dbpass-1")
    except ConnectionError:
        logging.getLogger("pymongo").exception("connect failed")
    (line,) = lines(out)
    assert "dbpass-1" not in out.getvalue()
    assert "password=[REDACTED]" in line["exception"]


def test_configure_twice_does_not_duplicate(out: io.StringIO) -> None:
    """Reconfiguring replaces the handler: one line per event, on the new stream."""
    second = io.StringIO()
    configure_logging("relay", stream=second)
    configure_logging("relay", stream=second)
    get_logger("chat.test").info("once")
    logging.getLogger("grpc").warning("once too")
    assert out.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once", "once too"]


def test_unknown_level_rejected() -> None:
    """A misspelt level is a clear error rather than silently logging everything."""
    with pytest.raises(ValueError, match="level"):
        configure_logging("relay", "verbose", stream=io.StringIO())


def test_redact_processor_nested_structures() -> None:
    """The processor walks dicts, lists and tuples and repr()s other objects before scrubbing."""

    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque(auth=Bearer {JWT})"

    event = {
        "event": "e",
        "Cookie": "sid=1",
        "nested": {"deeper": [("ok", {"api_key": "k-1"})], "private_key": "pk"},
        "obj": Opaque(),
        "n": 5,
        "flag": True,
        "none": None,
    }
    result = redact(None, "info", event)
    assert result == {
        "event": "e",
        "Cookie": "[REDACTED]",
        "nested": {"deeper": [["ok", {"api_key": "[REDACTED]"}]], "private_key": "[REDACTED]"},
        "obj": "Opaque(auth=Bearer [REDACTED])",
        "n": 5,
        "flag": True,
        "none": None,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws?token=abc&x=1", "/ws?token=[REDACTED]&x=1"),
        ("/ws?x=1&access_token=abc", "/ws?x=1&access_token=[REDACTED]"),
        ("authorization: bearer xyz", "authorization: bearer [REDACTED]"),
        ('{"password": "p\\"w", "name": "ann"}', '{"password": "[REDACTED]", "name": "ann"}'),
        (f"t={JWT}.", "t=[REDACTED_JWT]."),
        ("tokens are fine to mention", "tokens are fine to mention"),
        (f"host.{JWT}.tail", "host.[REDACTED_JWT].tail"),
        ("unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "unsigned [REDACTED_JWT]"),
        (
            "x-api-key=zz refresh_token=yy Private_Key=ww",
            "x-api-key=[REDACTED] refresh_token=[REDACTED] Private_Key=[REDACTED]",
        ),
        ("controller.batch.persist eyJ.x", "controller.batch.persist eyJ.x"),
        ("next=/reset?password=hunter2&x=1", "next=/reset?password=[REDACTED]&x=1"),
        ("redirect=/v1/ws?token=opaque123", "redirect=/v1/ws?token=[REDACTED]"),
        ("token=a=b&c=d", "token=[REDACTED]&c=d"),
        (
            "cannot reach mongodb://chat:hunter2@mongo:27017/chat?authSource=chat",
            "cannot reach mongodb://chat:[REDACTED]@mongo:27017/chat?authSource=chat",
        ),
        ("amqp://:p%40ss@h/ and http://a@b/", "amqp://:[REDACTED]@h/ and http://a@b/"),
        ("mail ada@example.com at 10:30", "mail ada@example.com at 10:30"),
        (
            "https://api.example.com:443?to=ada@example.com",
            "https://api.example.com:443?to=ada@example.com",
        ),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    """String scrubbing handles query params, bearer values, URL passwords, JSON pairs and bare
    JWTs."""
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/v1/=" + "token" * 40_000 + "/",
        '"' + "password" * 25_000 + '" x',
        "eyJ" * 70_000,
        "a=" + "eyJa." * 40_000,
        "bearer " * 30_000,
        "://a:" * 40_000 + "@",
        "x://" + ":" * 200_000 + "@",
    ],
)
def test_redacting_hostile_text_takes_linear_time(text: str) -> None:
    """200 KB crafted to make backtracking patterns quadratic is scrubbed at once (an
    unauthenticated request path is logged, so this is a denial of service otherwise)."""
    started = time.perf_counter()
    redact_text(text)
    # Linear: a few ms; the quadratic patterns this replaced took 25 s and more on such input.
    assert time.perf_counter() - started < 2.0
