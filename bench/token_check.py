"""What checking a token's account and login costs a REST request, on the stack's database.

    make stack-up
    .venv/bin/python -m bench.token_check --requests 2000 --runs 3

Every REST request of auth and management verifies its access token, then asks the database
whether the account is disabled and (for a token with a ``sid``) whether its login was ended by a
logout: two lookups by ``_id`` (``chatcore.tokens.JwtVerifier``, ``chatcore.accounts``). This signs
tokens with a throwaway key and verifies them one after another, with an account check only (a
token without ``sid``, as before logins were named) and with both (the requests of one login,
which share its answer for a second, and every request a login of its own, the worst case), and
prints per verification the median of ``--runs`` for the wall time (p50 and p95) and the calling
thread's CPU. Drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.pipeline import stack_settings
from chatcore.accounts import MongoAccountStatus
from chatcore.mongo import database, make_mongo_client
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier, StaticJwksSource
from services.auth.keys import KeyRing, TokenIssuer, generate_key_file
from services.auth.sessions import EndedSession, MongoEndedSessionStore

DB = "bench_token_check"


async def _run(verifier: JwtVerifier, tokens: list[str]) -> tuple[float, float, float]:
    walls: list[float] = []
    cpu_started = time.thread_time()
    for token in tokens:
        started = time.perf_counter()
        await verifier.verify(token)
        walls.append(time.perf_counter() - started)
    cpu = (time.thread_time() - cpu_started) / len(tokens)
    walls.sort()
    return walls[len(walls) // 2] * 1e3, walls[int(len(walls) * 0.95)] * 1e3, cpu * 1e6


async def main(requests: int, runs: int) -> None:
    settings = dataclasses.replace(stack_settings(), mongo_db=DB)
    client = make_mongo_client(settings)
    db = database(client, settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "bench.pem"
            generate_key_file(key)
            keys = KeyRing.from_settings(Settings(auth_signing_keys=(str(key),)))
        issuer = TokenIssuer(keys, issuer="bench", audience="bench", ttl_s=900)
        user_id, sid = uuid.uuid4().hex, uuid.uuid4().hex
        await db.users.insert_one({"_id": user_id, "email": "b@example.com", "disabled": False})
        # A few hundred ended logins of others: the collection a busy hour leaves behind.
        ended = MongoEndedSessionStore(db)
        until = datetime.now(UTC) + timedelta(minutes=15)
        await ended.end(
            [EndedSession(uuid.uuid4().hex, uuid.uuid4().hex, until) for _ in range(300)]
        )
        verifier = JwtVerifier(
            StaticJwksSource(keys.jwks()),
            issuer="bench",
            audience="bench",
            algorithms=["EdDSA"],
            cache_s=300,
            leeway_s=5,
            accounts=MongoAccountStatus(db),
        )
        # One login's tokens (its requests share the login's answer for a second), and as
        # many logins as requests (every check a lookup: the worst case).
        one_login = [issuer.issue(user_id, session_id=sid).token for _ in range(requests)]
        many_logins = [issuer.issue(user_id).token for _ in range(requests)]
        # A token as issued before logins were named: no sid, so no login lookup.
        without_sid = [issuer.issue(user_id, session_id="").token for _ in range(requests)]
        await _run(verifier, without_sid[:100])  # warm the connection pool
        cases = {
            "account only (no sid)": without_sid,
            "account + login, 1 login": one_login,
            "account + login, each new": many_logins,
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, tokens in cases.items():
                results[name].append(await _run(verifier, tokens))
        for name, runs_of in results.items():
            p50, p95, cpu = (statistics.median(r[i] for r in runs_of) for i in range(3))
            print(f"{name:27} p50 {p50:.2f} ms  p95 {p95:.2f} ms  CPU {cpu:.0f} µs")
    finally:
        await client.drop_database(DB)
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.runs))
