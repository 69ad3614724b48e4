"""Signing keys and access-token issuing.

Keys are PEM files named in ``CHAT_AUTH_SIGNING_KEYS``; the first signs, all are published in the
JWKS, so a key can be introduced before it signs and kept after it stops, and rotation logs nobody
out (procedure in docs/operations.md). The key id is the RFC 7638 thumbprint of the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from chatcore.settings import ConfigError, Settings

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its algorithm, key id and public JWK."""

    kid: str
    alg: str
    private_key: PrivateKey
    public_jwk: dict[str, str]

    @classmethod
    def from_private_key(cls, key: PrivateKey) -> SigningKey:
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
            alg = "EdDSA"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            numbers = key.public_key().public_numbers()
            members = {
                "crv": "P-256",
                "kty": "EC",
                "x": _b64(numbers.x.to_bytes(32, "big")),
                "y": _b64(numbers.y.to_bytes(32, "big")),
            }
            alg = "ES256"
        else:
            raise ConfigError("signing keys must be Ed25519 or EC P-256")
        canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
        kid = _b64(hashlib.sha256(canonical).digest())
        return cls(kid, alg, key, {**members, "kid": kid, "alg": alg, "use": "sig"})


def load_signing_key(path: Path) -> SigningKey:
    """Read one PEM private key (PKCS#8, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"signing key file {path} does not exist") from None
    except ValueError:
        raise ConfigError(f"signing key file {path} is not an unencrypted PEM key") from None
    except OSError as exc:  # unreadable: its owner or mode (compose runs as uid 10001)
        raise ConfigError(f"signing key file {path} cannot be read: {exc.strerror}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"signing key file {path} holds an unsupported key type")
    return SigningKey.from_private_key(key)


def generate_key_file(path: Path) -> None:
    """Write a new Ed25519 private key (mode 0600); used for development keys only."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


class KeyRing:
    """The published keys; the first one signs."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise ConfigError("CHAT_AUTH_SIGNING_KEYS must name at least one key file")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ConfigError("CHAT_AUTH_SIGNING_KEYS names the same key twice")
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls([load_signing_key(Path(p)) for p in settings.auth_signing_keys])

    @property
    def current(self) -> SigningKey:
        return self._keys[0]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document: ``{"keys": [...]}``."""
        return {"keys": [dict(k.public_jwk) for k in self._keys]}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    jti: str


class TokenIssuer:
    """Signs access tokens: ``typ: at+jwt``, ``kid``, and iss/aud/sub/iat/nbf/exp/jti/sid."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        self._clock = clock

    def issue(self, user_id: str, *, session_id: str | None = None) -> IssuedToken:
        """A token of the login ``session_id`` (a refresh-token family); without one (tests,
        tools) the token is a login of its own, which nothing can end early."""
        key = self._keys.current
        now = int(self._clock())
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl_s,
            "jti": jti,
            "sid": session_id if session_id is not None else secrets.token_hex(16),
        }
        token = jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return IssuedToken(token=token, expires_in=self._ttl_s, jti=jti)
