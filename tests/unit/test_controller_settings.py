"""The controller's settings: defaults, parsing from the environment, and refusals."""

from __future__ import annotations

import pytest

from chatcore.settings import ConfigError, Settings


def test_defaults_and_environment() -> None:
    """Defaults hold, and CHAT_CONTROLLER_* variables override them."""
    assert Settings().controller_group_id == "chat-controller"
    assert Settings().controller_offset_reset == "earliest"
    settings = Settings.from_env(
        {
            "CHAT_CONTROLLER_GRPC_PORT": "50052",
            "CHAT_CONTROLLER_OFFSET_RESET": "latest",
            "CHAT_CONTROLLER_BATCH_MAX": "500",
            "CHAT_CONTROLLER_START_GRACE_S": "0",
        }
    )
    assert settings.controller_grpc_port == 50052
    assert settings.controller_offset_reset == "latest"
    assert settings.controller_batch_max == 500
    assert settings.controller_start_grace_s == 0.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAT_CONTROLLER_OFFSET_RESET", "none"),
        ("CHAT_CONTROLLER_GROUP_ID", " "),
        ("CHAT_CONTROLLER_BATCH_MAX", "0"),
        ("CHAT_CONTROLLER_STREAM_QUEUE", "0"),
        ("CHAT_CONTROLLER_DELIVERY_BATCH_BYTES", str(8 * 1024 * 1024)),
        ("CHAT_CONTROLLER_STREAM_QUEUE_BYTES", "1024"),
        ("CHAT_CONTROLLER_RETRY_MAX_S", "0"),
    ],
)
def test_unworkable_values_are_refused(name: str, value: str) -> None:
    """A value the controller cannot work with stops start-up, naming the variable."""
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
