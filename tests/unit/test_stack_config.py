"""The local stack's CHATSTACK_* variables: malformed values are refused, naming the variable."""

from __future__ import annotations

import pytest

from deploy.local import stack
from deploy.local.config import StackConfig
from deploy.local.processes import StackError


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CHATSTACK_NGINX_PORT", "abc", "CHATSTACK_NGINX_PORT must be a whole number, got 'abc'"),
        ("CHATSTACK_MONGO_PORT", "70000", "CHATSTACK_MONGO_PORT must be between 1 and 65535"),
        ("CHATSTACK_RELAY_PORTS", "8103;8104", "CHATSTACK_RELAY_PORTS must be a whole number"),
        ("CHATSTACK_RELAY_PORTS", ",", "CHATSTACK_RELAY_PORTS must name at least one port"),
        ("CHATSTACK_DB_BACKEND", "postgres", "CHATSTACK_DB_BACKEND must be postgresql or sqlite"),
        ("CHATSTACK_KAFKA_BROKERS", "2", "CHATSTACK_KAFKA_BROKERS must be 1 or 3, got 2"),
        ("CHATSTACK_CONTROLLERS", "0", "CHATSTACK_CONTROLLERS must be between 1 and 9, got 0"),
        ("CHATSTACK_NGINX_API_BURST", "-1", "CHATSTACK_NGINX_API_BURST must be between 1"),
    ],
)
def test_malformed_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    """A malformed CHATSTACK_* value raises a StackError that names the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(StackError, match=said):
        StackConfig.from_env()


def test_well_formed_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports, port lists and the backend choice come out typed."""
    monkeypatch.setenv("CHATSTACK_RELAY_PORTS", " 9103, 9104 ")
    monkeypatch.setenv("CHATSTACK_DB_BACKEND", "sqlite")
    monkeypatch.setenv("CHATSTACK_NGINX_PORT", "9080")
    cfg = StackConfig.from_env()
    assert (cfg.relay_ports, cfg.db_backend, cfg.nginx_port) == ((9103, 9104), "sqlite", 9080)


def test_stack_command_reports_a_malformed_value_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stack status` with a bad value exits 1 with a `[stack] error:` line, not a traceback."""
    monkeypatch.setenv("CHATSTACK_NGINX_PORT", "abc")
    assert stack.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[stack] error: CHATSTACK_NGINX_PORT must be a whole number")
    assert "Traceback" not in err
