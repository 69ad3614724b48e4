"""Centrifugo v6 as the comparison's reference server: its config, its tokens, its process.

The config mirrors what our stack guarantees as far as Centrifugo can: the memory engine, and a
namespace that keeps every publication in history with recovery forced on, so each publication
is stored before it is fanned out (as ours is persisted first). Secrets are generated per run
and live only in a private temporary folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

NAMESPACE = "bench"
# Enough to hold every publication of the longest run (history is what recovery replays).
HISTORY_SIZE = 10_000
HISTORY_TTL = "600s"
# The same per-socket send buffer as our relay's CHAT_WS_SEND_BUFFER_BYTES default.
QUEUE_MAX_BYTES = 1024 * 1024


def config(port: int, hmac_secret: str, api_key: str) -> dict[str, Any]:
    """Centrifugo's JSON config for the run (keys as `centrifugo defaultconfig` names them)."""
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "warn"},
        # It would otherwise try to report usage to the internet.
        "usage_stats": {"disabled": True},
        "health": {"enabled": True},
        "engine": {"type": "memory"},
        "client": {
            "token": {"hmac_secret_key": hmac_secret},
            "queue_max_size": QUEUE_MAX_BYTES,
        },
        "http_api": {"key": api_key},
        "channel": {
            "namespaces": [
                {
                    "name": NAMESPACE,
                    "history_size": HISTORY_SIZE,
                    "history_ttl": HISTORY_TTL,
                    "force_recovery": True,
                    "allow_subscribe_for_client": True,
                    "allow_publish_for_client": True,
                }
            ]
        },
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(secret: str, claims: dict[str, Any]) -> str:
    """A compact HS256 JWT (what Centrifugo's `hmac_secret_key` verifies)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


def free_port(ports: range) -> int:
    """The first port of the range nothing listens on (bound once to check, then released)."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


class CentrifugoServer:
    """One Centrifugo process on a free port of ``ports``, stopped by ``stop`` (or ``with``)."""

    def __init__(self, binary: Path, workdir: Path, ports: range) -> None:
        self.binary = binary
        self.workdir = workdir
        self.ports = ports
        self.hmac_secret = secrets.token_hex(32)
        self.api_key = secrets.token_hex(16)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("centrifugo is not running")
        return self._proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/publish"

    @property
    def log_path(self) -> Path:
        return self.workdir / "centrifugo.log"

    def token(self, user: str, ttl_s: int = 3600) -> str:
        return hs256_token(self.hmac_secret, {"sub": user, "exp": int(time.time()) + ttl_s})

    def start(self, timeout_s: float = 20.0) -> None:
        self.port = free_port(self.ports)
        path = self.workdir / "centrifugo.json"
        path.write_text(json.dumps(config(self.port, self.hmac_secret, self.api_key)))
        path.chmod(0o600)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "--config", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"centrifugo exited at start:\n{self._log_tail()}")
            if self._healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"centrifugo not healthy after {timeout_s:.0f}s:\n{self._log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> CentrifugoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
