"""The refresh cookie's rules: its attributes, when it is Secure, which requests may use it."""

from __future__ import annotations

from services.auth.cookies import came_over_https, cleared_cookie, is_json, refresh_cookie

PROXIES = ("127.0.0.1", "::1")


def test_the_refresh_cookie_is_http_only_strict_and_scoped_to_auth() -> None:
    """Page scripts cannot read it, other sites cannot send it, other routes never get it."""
    assert refresh_cookie("tok_EN-1", max_age_s=60, secure=True) == (
        "chat_refresh=tok_EN-1; Path=/v1/auth; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
    )
    assert cleared_cookie(secure=False) == (
        "chat_refresh=; Path=/v1/auth; Max-Age=0; HttpOnly; SameSite=Strict"
    )


def test_secure_only_over_https_or_a_trusted_proxy_saying_so() -> None:
    """Our own TLS, or X-Forwarded-Proto from a trusted peer; anyone else's header is ignored."""
    assert came_over_https("https", "203.0.113.9", None, PROXIES)
    assert came_over_https("http", "127.0.0.1", "https", PROXIES)
    assert came_over_https("http", "::1", "HTTPS, http", PROXIES)
    assert not came_over_https("http", "127.0.0.1", "http", PROXIES)
    assert not came_over_https("http", "127.0.0.1", None, PROXIES)
    assert not came_over_https("http", "203.0.113.9", "https", PROXIES)
    assert not came_over_https("http", None, "https", PROXIES)


def test_only_json_requests_may_use_the_cookie() -> None:
    """application/json, with parameters or in another case; forms and plain text are not."""
    assert is_json("application/json")
    assert is_json("Application/JSON; charset=utf-8")
    for other in (
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        assert not is_json(other)
