"""The local stack's attachment store and its scanner: the S3 server (versitygw) with the bucket and
its CORS rules, and clamd with only the EICAR test signature."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from deploy.local.config import (
    StackConfig,
    s3_credentials,
    service_env,
)
from deploy.local.processes import Component, StackError, http_answers

# --- S3 (versitygw) ----------------------------------------------------------------------------


def s3_component(cfg: StackConfig) -> Component:
    # versitygw rejects a sidecar path that merely starts with the root's path, so use siblings.
    root = cfg.data / "s3" / "root"
    sidecar = cfg.data / "s3" / "meta"
    access, secret = s3_credentials(cfg)

    def prepare() -> None:
        if not cfg.versitygw_bin.exists():
            raise StackError(f"s3: {cfg.versitygw_bin} missing; run deploy/local/install.sh")
        root.mkdir(parents=True, exist_ok=True)
        sidecar.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        # An S3 error document (no credentials) is an answer too: the server is up.
        return http_answers(f"http://127.0.0.1:{cfg.s3_port}/")

    def after_ready() -> None:
        from chatcore.s3 import ensure_bucket, make_s3_client
        from chatcore.settings import Settings

        settings = Settings.from_env(service_env(cfg))
        client = make_s3_client(settings)
        ensure_bucket(client, settings.s3_bucket)
        # Browsers upload with a presigned POST straight to S3 and download with a presigned
        # GET: both are cross-origin requests from the app's origins (the WebSocket allowlist).
        client.put_bucket_cors(
            Bucket=settings.s3_bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": list(settings.ws_origins),
                        "AllowedMethods": ["GET", "HEAD", "POST"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag", "Content-Length", "Content-Disposition"],
                        "MaxAgeSeconds": 600,
                    }
                ]
            },
        )

    return Component(
        name="s3",
        argv=[
            str(cfg.versitygw_bin),
            "--port",
            f"127.0.0.1:{cfg.s3_port}",
            "--region",
            "us-east-1",
            "--quiet",
            "posix",
            "--sidecar",
            str(sidecar),
            str(root),
        ],
        # The root keys travel in the environment, not argv, so `ps` does not show them.
        env={"ROOT_ACCESS_KEY": access, "ROOT_SECRET_KEY": secret},
        ready=ready,
        ports=(cfg.s3_port,),
        prepare=prepare,
        after_ready=after_ready,
    )


# --- ClamAV (clamd) ------------------------------------------------------------------------------

# The EICAR anti-virus test file (eicar.org), kept as hex so that no scanner flags this source.
EICAR_HEX = (
    "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e44415244"
    "2d414e544956495255532d544553542d46494c452124482b482a"
)


def clamd_signatures() -> str:
    """A ClamAV body-signature database (``.ndb``) holding only the EICAR test signature.

    Format ``name:target type:offset:hex body``; target 0 (any file) and offset ``*`` (anywhere).
    Production loads the real databases with freshclam instead (docs/operations.md).
    """
    return f"Chatstack.Test.EICAR:0:*:{EICAR_HEX}\n"


def clamd_ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when clamd on 127.0.0.1:port answers ``zPING`` with ``PONG``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"zPING\0")
            reply = sock.recv(64)
    except OSError:
        return False  # still loading its signatures: not listening yet
    return reply.rstrip(b"\0\n") == b"PONG"


def clamd_component(cfg: StackConfig) -> Component:
    conf_dir = cfg.home / "clamav"
    conf = conf_dir / "clamd.conf"
    db_dir = cfg.data / "clamav"
    clamd = shutil.which("clamd") or "/usr/sbin/clamd"

    def prepare() -> None:
        if not Path(clamd).exists():
            raise StackError("clamd: not installed; run deploy/local/install.sh")
        conf_dir.mkdir(parents=True, exist_ok=True)
        db_dir.mkdir(parents=True, exist_ok=True)
        # Only our own signature file: no freshclam and no network on these machines.
        (db_dir / "chatstack-test.ndb").write_text(clamd_signatures())
        conf.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"DatabaseDirectory {db_dir}",
                    f"TCPSocket {cfg.clamd_port}",
                    "TCPAddr 127.0.0.1",
                    # Attachments are at most 5 MiB; anything bigger is refused, never skipped.
                    "StreamMaxLength 10M",
                    "MaxThreads 4",
                    "ReadTimeout 30",
                    "CommandReadTimeout 10",
                    "SelfCheck 3600",
                    "Bytecode no",
                    "LogTime yes",
                    "",
                ]
            )
        )

    return Component(
        name="clamd",
        argv=[clamd, f"--config-file={conf}"],
        ready=lambda: clamd_ping(cfg.clamd_port),
        ports=(cfg.clamd_port,),
        prepare=prepare,
        ready_timeout_s=60.0,
    )
