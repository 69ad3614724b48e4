"""The range of every numeric setting, checked at start-up and stated in docs/configuration.md.

One table instead of a check per variable, so a number can never slip through unchecked: a unit
test fails for a numeric ``Settings`` field without a bound here, and for a bound that
docs/configuration.md does not state in the variable's row. Rules between two settings (the
heartbeat against the session timeout, say) stay in ``Settings.validate``.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatcore.errors import ConfigError

_PORT_MAX = 65535
_EN_DASH = "\u2013"  # the docs write a closed range with an en dash


@dataclass(frozen=True, slots=True)
class Bound:
    """``low`` to ``high`` inclusive (``high`` None: no upper end); ``low_open``: above ``low``."""

    low: float
    high: float | None = None
    low_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)

    def text(self) -> str:
        """The range as docs/configuration.md writes it: ``1`` en dash ``60``, ``≥ 1``, ``> 0``,
        ``> 0, ≤ 30``."""
        low, high = _number(self.low), None if self.high is None else _number(self.high)
        if self.low_open:
            return f"> {low}" if high is None else f"> {low}, ≤ {high}"
        return f"≥ {low}" if high is None else f"{low}{_EN_DASH}{high}"

    def check(self, variable: str, value: float) -> None:
        if not self.admits(value):
            raise ConfigError(f"{variable} must be {self._words()}, got {_number(value)}")

    def _words(self) -> str:
        low, high = _number(self.low), None if self.high is None else _number(self.high)
        if self.low_open:
            base = "positive" if self.low == 0 else f"greater than {low}"
            return base if high is None else f"{base} and at most {high}"
        if high is None:
            return "zero or more" if self.low == 0 else f"at least {low}"
        return f"between {low} and {high}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Bound(0, low_open=True)
NOT_NEGATIVE = Bound(0)
AT_LEAST_ONE = Bound(1)
PORT = Bound(0, _PORT_MAX)  # 0: any free port (tests start services that way)


# Field name -> bound. Loose where a value is merely unusual, tight where the protocol or a
# guarantee sets the limit (the reasons are in docs/configuration.md's rows).
BOUNDS: dict[str, Bound] = {
    "kafka_messages_partitions": AT_LEAST_ONE,
    "kafka_replication_factor": AT_LEAST_ONE,
    "kafka_min_insync_replicas": AT_LEAST_ONE,
    "kafka_session_timeout_ms": Bound(1000, 1_800_000),
    "kafka_heartbeat_interval_ms": POSITIVE,
    "kafka_linger_ms": Bound(0, 60_000),
    "kafka_request_timeout_ms": AT_LEAST_ONE,
    "relay_write_window_ms": Bound(0, 100),
    "relay_write_window_audience": Bound(0, 100_000),
    "mongo_timeout_ms": AT_LEAST_ONE,
    "jwks_cache_s": POSITIVE,
    "jwks_stale_s": NOT_NEGATIVE,
    "jwks_wait_s": Bound(0, 30, low_open=True),
    "jwt_leeway_s": Bound(0, 300),
    "max_body_bytes": Bound(1024),
    "drain_timeout_s": NOT_NEGATIVE,
    "auth_port": PORT,
    "access_token_ttl_s": Bound(60, 3600),
    "refresh_token_ttl_s": Bound(60),
    "refresh_sweep_interval_s": POSITIVE,
    "argon2_time_cost": AT_LEAST_ONE,
    "argon2_memory_kib": Bound(8),
    "argon2_parallelism": Bound(1, 255),
    "argon2_workers": Bound(1, 64),
    "argon2_wait_s": Bound(0, 60),
    "login_ip_burst": AT_LEAST_ONE,
    "login_ip_per_minute": POSITIVE,
    "login_email_burst": AT_LEAST_ONE,
    "login_email_per_minute": POSITIVE,
    "register_ip_burst": AT_LEAST_ONE,
    "register_ip_per_minute": POSITIVE,
    "login_account_burst": AT_LEAST_ONE,
    "login_account_per_minute": POSITIVE,
    "logins_per_account": AT_LEAST_ONE,
    "account_change_burst": AT_LEAST_ONE,
    "account_change_per_minute": POSITIVE,
    "email_lookup_burst": AT_LEAST_ONE,
    "email_lookup_per_minute": POSITIVE,
    "login_tracked_keys": AT_LEAST_ONE,
    "controller_grpc_port": PORT,
    "controller_http_port": PORT,
    "controller_batch_max": AT_LEAST_ONE,
    "controller_insert_parallel": Bound(1, 16),
    "controller_poll_timeout_ms": AT_LEAST_ONE,
    "controller_stream_queue": AT_LEAST_ONE,
    "controller_stream_queue_bytes": Bound(65536),
    "controller_delivery_batch_bytes": Bound(65536, 3 * 1024 * 1024),
    "controller_retry_max_s": POSITIVE,
    "controller_start_grace_s": NOT_NEGATIVE,
    "controller_state_flush_ms": Bound(0, 5000),
    "controller_announce_interval_s": Bound(0.1, 60),
    "management_port": PORT,
    "auth_timeout_s": POSITIVE,
    "outbox_retry_interval_s": POSITIVE,
    "outbox_send_timeout_s": POSITIVE,
    "lease_ttl_s": AT_LEAST_ONE,
    "lease_wait_s": POSITIVE,
    "management_write_burst": AT_LEAST_ONE,
    "management_write_per_s": POSITIVE,
    "management_teams_per_user_max": Bound(1, 100_000),
    "management_scan_concurrency": AT_LEAST_ONE,
    "management_scan_wait_s": NOT_NEGATIVE,
    "management_scans_per_user": AT_LEAST_ONE,
    "management_read_burst": AT_LEAST_ONE,
    "management_read_per_s": POSITIVE,
    "attachment_max_bytes": Bound(1, 5 * 1024 * 1024),
    "attachment_upload_ttl_s": Bound(1, 900),
    "attachment_download_ttl_s": Bound(1, 300),
    "attachment_pending_max_age_s": AT_LEAST_ONE,
    "attachment_bytes_per_user_day": AT_LEAST_ONE,
    "attachment_sweep_interval_s": POSITIVE,
    "clamd_timeout_s": POSITIVE,
    "relay_port": PORT,
    "ws_max_frame_bytes": Bound(1024),
    "ws_heartbeat_s": Bound(1, 300),
    "ws_send_buffer_bytes": Bound(1024),
    "ws_rate_burst": AT_LEAST_ONE,
    "ws_rate_per_s": POSITIVE,
    "ws_user_rate_burst": AT_LEAST_ONE,
    "ws_user_rate_per_s": POSITIVE,
    "ws_typing_burst": AT_LEAST_ONE,
    "ws_typing_per_s": POSITIVE,
    "ws_max_connections_per_user": AT_LEAST_ONE,
    "relay_subscribe_timeout_s": Bound(0, 30, low_open=True),
    "relay_audit_interval_s": Bound(1, 60),
    "relay_listen_backlog": Bound(1, _PORT_MAX),
    "presence_heartbeat_s": Bound(1, 60),
    "presence_grace_s": Bound(0, 30),
    "presence_leaving_s": Bound(1, 60),
    "edit_window_s": Bound(0, 7 * 24 * 3600, low_open=True),
}
