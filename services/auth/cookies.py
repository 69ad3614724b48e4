"""The refresh cookie: where a browser keeps its refresh token so that page scripts never can.

A login with ``refresh_in: "cookie"`` gets its refresh token as an ``HttpOnly`` cookie scoped to
``/v1/auth`` instead of in the body; ``POST /v1/auth/refresh`` and ``/logout`` with an empty body
``{}`` then use that cookie and rotate or clear it. A reload (or a second tab) of the web app
resumes the session from it without the password, and no script on the page can read the token
(docs/decisions.md, "Where the refresh token lives").

Cross-site requests cannot use it: the cookie is ``SameSite=Strict``, and every request that sets
or uses it must be ``Content-Type: application/json``, which a form on another origin of the same
site cannot send without a CORS preflight that we never grant. It is ``Secure`` whenever the
request came over https (directly, or as a trusted proxy's ``X-Forwarded-Proto``), so it is never
sent back over plain http there. Plain functions over header values; ``api.py`` applies them.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatcore.proxies import is_trusted

REFRESH_COOKIE = "chat_refresh"
# Only the refresh and logout calls ever carry it (and login, which sets it).
COOKIE_PATH = "/v1/auth"


def refresh_cookie(token: str, *, max_age_s: int, secure: bool) -> str:
    """The ``Set-Cookie`` value that hands the browser a refresh token."""
    return _cookie(token, max_age_s, secure)


def cleared_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that makes the browser drop the refresh token."""
    return _cookie("", 0, secure)


def _cookie(value: str, max_age_s: int, secure: bool) -> str:
    # Our tokens are URL-safe base64, which needs no quoting in a cookie value.
    parts = [
        f"{REFRESH_COOKIE}={value}",
        f"Path={COOKIE_PATH}",
        f"Max-Age={max_age_s}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def came_over_https(
    scheme: str, peer: str | None, forwarded_proto: str | None, trusted_proxies: Sequence[str]
) -> bool:
    """Whether the browser's request was https: our own TLS, or a trusted proxy saying so."""
    if scheme == "https":
        return True
    if not is_trusted(peer, trusted_proxies) or forwarded_proto is None:
        return False
    return forwarded_proto.split(",", 1)[0].strip().lower() == "https"


def is_json(content_type: str | None) -> bool:
    """``application/json`` (parameters allowed): what no cross-origin form can send."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
