"""Structured JSON logging for every service, with secrets scrubbed from every line.

structlog loggers and stdlib loggers (aiohttp, aiokafka, pymongo, grpc) share one formatter, so
library lines get the same JSON shape, context ids and redaction as ours.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Request and correlation ids arriving from outside (HTTP headers, gRPC metadata) are echoed into
# headers and log lines: only short, plain tokens are accepted.
CORRELATION_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
REDACTED = "[REDACTED]"
REDACTED_JWT = "[REDACTED_JWT]"
_MAX_DEPTH = 16

# Substrings of key names whose values are secrets; keys are compared lower-cased with "-"
# turned into "_" so HTTP header names ("X-Refresh-Token") match too.
_SENSITIVE_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
)
# Any name: which ones are secret is decided per match (``_is_secret_name``). A name pattern that
# contained the secret words between two unbounded runs of name characters backtracked
# quadratically (0.1 s of CPU for one 8 KB request path of "token" repeated); this one matches
# each name once, from its start (the lookbehind), and never backtracks into it.
_NAME = r"[A-Za-z0-9_.\-]+"

# Runs of base64url characters and dots, each taken whole from its start: a JWT is looked for
# inside one by ``_redact_jwts`` with string operations (a regex that started a match at every
# "eyJ" scanned the rest of the run from each: 41 ms for 8 KB of "eyJ" repeated).
_DOTTED_RUN_RE = re.compile(r"(?<![A-Za-z0-9_.\-])[A-Za-z0-9_.\-]+")
_BEARER_RE = re.compile(r"\b(bearer)\s+[^\s\"'),;]+", re.IGNORECASE)
# name=value pairs in query strings, form bodies and "k=v" log text (?token=, &access_token=):
# the name and "=" only, so a pair inside another's value (next=/reset?password=x) is seen too.
_PAIR_NAME_RE = re.compile(rf"(?<![A-Za-z0-9_.\-])({_NAME})=")
_PAIR_VALUE_RE = re.compile(r"[^&#\s\"',;]*")
# "name": "value" inside JSON that was logged as a string (a request body, an error payload).
_JSON_PAIR_RE = re.compile(rf"(\"({_NAME})\"\s*:\s*)\"(?:[^\"\\]|\\.)*\"")

# A password in a URL's user information (mongodb://chat:secret@mongo/): an error message from a
# driver may quote the URL it was given. Neither class can run past the next "/" or ":", so
# each "://" is scanned to its host at most.
_URL_PASSWORD_RE = re.compile(r"(://[^/\s:@?#]*):[^/\s@?#]*@")

# Every pattern above needs one of these in the text: most logged strings (ids, event names)
# have none and are passed by one scan instead of five.
_MAYBE_SECRET_RE = re.compile(r"=|\"|eyJ|bearer|@", re.IGNORECASE)

_HANDLER_MARK = "_chatcore_json_handler"


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return any(word in name for word in _SENSITIVE_WORDS)


def _is_secret_key(key: object) -> bool:
    # Log lines reuse a handful of key names: decide each once.
    return _is_secret_name(str(key))


def _redact_jwts(match: re.Match[str]) -> str:
    """JWS compact form: a header segment from "eyJ" (base64url of '{"'), a non-empty payload and
    a signature, which may be empty (alg "none": a token is a secret even when unsigned)."""
    run = match.group(0)
    if "eyJ" not in run:
        return run
    parts = run.split(".")
    out: list[str] = []
    i = 0
    while i < len(parts):
        at = parts[i].find("eyJ")
        if at >= 0 and i + 2 < len(parts) and parts[i + 1]:
            out.append(parts[i][:at] + REDACTED_JWT)
            i += 3
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


def _redact_pairs(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _PAIR_NAME_RE.finditer(text):
        if match.start() < pos or not _is_secret_name(match.group(1)):
            continue  # inside a value already redacted, or not a secret
        out += (text[pos : match.end()], REDACTED)
        value = _PAIR_VALUE_RE.match(text, match.end())
        pos = value.end() if value is not None else match.end()
    out.append(text[pos:])
    return "".join(out)


def _redact_json_pair(match: re.Match[str]) -> str:
    if not _is_secret_name(match.group(2)):
        return match.group(0)
    return f'{match.group(1)}"{REDACTED}"'


def redact_text(text: str) -> str:
    """Scrub bearer credentials, URL passwords, token query parameters, secret pairs and JWTs
    from a string."""
    if _MAYBE_SECRET_RE.search(text) is None:
        return text
    text = _BEARER_RE.sub(rf"\1 {REDACTED}", text)
    if "@" in text:
        text = _URL_PASSWORD_RE.sub(rf"\1:{REDACTED}@", text)
    text = _redact_pairs(text)
    text = _JSON_PAIR_RE.sub(_redact_json_pair, text)
    return _DOTTED_RUN_RE.sub(_redact_jwts, text) if "eyJ" in text else text


def _redact_value(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        # Deep or cyclic structures are not worth the risk of printing unscrubbed.
        return "[TOO_DEEP]"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _is_secret_key(k) else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item, depth + 1) for item in value]
    # The JSON renderer would fall back to repr() anyway; doing it here lets us scrub it.
    return redact_text(repr(value))


def redact(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace secret values anywhere in the event dict."""
    return {
        key: REDACTED if _is_secret_key(key) else _redact_value(value, 0)
        for key, value in event_dict.items()
    }


def _add_service(service: str) -> Processor:
    def add_service(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def configure_logging(service: str, level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send JSON lines for structlog and stdlib loggers to ``stream``; safe to call again."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")

    # Runs for both our events and foreign (stdlib) records, before the formatter's chain.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Caching would pin loggers to the first configuration and defeat reconfiguration and
        # structlog.testing.capture_logs in tests.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            # Last before rendering, so the traceback text rendered just above is scrubbed too.
            redact,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)


def bind_context(**values: str) -> Mapping[str, contextvars.Token[Any]]:
    """Attach ids such as ``request_id`` / ``correlation_id`` to every line logged in this context.

    Returns tokens for ``reset_context`` so a handler can restore the outer context.
    """
    return structlog.contextvars.bind_contextvars(**values)


def reset_context(tokens: Mapping[str, contextvars.Token[Any]]) -> None:
    """Undo one ``bind_context`` call."""
    structlog.contextvars.reset_contextvars(**tokens)


def clear_context() -> None:
    """Drop every bound id, e.g. at the start of a request on a reused task."""
    structlog.contextvars.clear_contextvars()


def new_request_id() -> str:
    """A fresh request id (uuid4 hex)."""
    return uuid.uuid4().hex


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a stdlib logger, so level settings per module apply."""
    return structlog.stdlib.get_logger(name)


def current_correlation_id() -> str | None:
    """This context's ``correlation_id``, else its ``request_id`` (for outgoing calls)."""
    bound = structlog.contextvars.get_contextvars()
    value = bound.get("correlation_id") or bound.get("request_id")
    return str(value) if value else None
