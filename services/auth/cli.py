"""Operator commands: ``python -m services.auth disable|enable --email X``.

Reads the same ``CHAT_*`` settings as the service (database and Kafka), prints one line saying
what happened, and exits 0 on success, 1 when the database or Kafka failed (the message says what
stands and that re-running is safe), 2 for a bad or unknown email.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from chatcore.errors import NotFound, Unavailable
from chatcore.kafka import make_producer
from chatcore.lifecycle import EXIT_CONFIG
from chatcore.logging import configure_logging, new_request_id
from chatcore.mongo import database, make_mongo_client
from chatcore.settings import ConfigError, Settings
from services.auth.admin import AccountAdmin
from services.auth.events import EventProducer, KafkaUserEvents
from services.auth.store import MongoRefreshStore, MongoUserStore
from services.auth.validation import valid_email


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.auth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    disable = sub.add_parser(
        "disable", help="disable an account: REST at once, sessions revoked, sockets closed"
    )
    enable = sub.add_parser("enable", help="let a disabled account log in again")
    for command in (disable, enable):
        command.add_argument("--email", required=True, help="the account's email address")
        command.add_argument(
            "--actor", default=None, help="who is doing this (default: the OS user name)"
        )
    disable.add_argument(
        "--kafka-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying until Kafka acknowledges the event (default 30)",
    )
    return parser


def _actor(given: str | None) -> str:
    if given:
        return given[:64]
    try:
        return f"operator:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "operator"


async def _run(args: argparse.Namespace, settings: Settings) -> str:
    email = valid_email(args.email)
    if email is None:
        raise NotFound(f"{args.email!r} is not a valid email address")
    actor = _actor(args.actor)
    client = make_mongo_client(settings)
    try:
        db = database(client, settings)

        def producer() -> EventProducer:
            made: EventProducer = make_producer(
                settings, client_id=f"auth-admin-{new_request_id()[:8]}"
            )
            return made

        admin = AccountAdmin(
            users=MongoUserStore(db),
            refresh_tokens=MongoRefreshStore(db),
            events=KafkaUserEvents(producer, timeout_s=getattr(args, "kafka_timeout", 30.0)),
        )
        if args.command == "disable":
            change = await admin.disable(email, actor=actor)
            return (
                f"disabled {email} (user {change.user.id}"
                f"{', already disabled' if change.was_disabled else ''}): "
                f"{change.revoked_refresh_tokens} refresh tokens revoked, "
                "user_disabled event acknowledged by Kafka"
            )
        change = await admin.enable(email, actor=actor)
        state = "was not disabled" if not change.was_disabled else "can log in again"
        return f"enabled {email} (user {change.user.id}): {state}"
    finally:
        await client.close()


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    # Log lines go to stderr; stdout carries the one-line result.
    configure_logging("auth-admin", settings.log_level, stream=sys.stderr)
    try:
        print(asyncio.run(_run(args, settings)))
    except NotFound as exc:
        print(f"{args.command} failed: {exc.message}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        if args.command == "disable":
            print(
                f"disable INCOMPLETE: {exc.message}. If the account was found, it is disabled "
                "for REST and its refresh tokens are revoked, but relays may not have closed "
                "its sockets; re-run the same command (it is idempotent) once the problem is "
                "fixed.",
                file=sys.stderr,
            )
        else:
            print(f"enable failed: {exc.message}", file=sys.stderr)
        return 1
    return 0
