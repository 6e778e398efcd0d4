"""Settings from the environment: each variable read, each bad value refused by name."""

from __future__ import annotations

import pytest

from infrastructure.store import StoreConfigError
from interfaces.composition import Settings


def test_numbers_are_read_from_their_variables() -> None:
    settings = Settings.from_env(
        {
            "SCHEDULER_MAX_CONCURRENCY": "12",
            "CRONSOURCE_DECIDE_AHEAD_SECONDS": "0",
            "CRONSOURCE_SHUTDOWN_GRACE_SECONDS": "2.5",
            "CRONSOURCE_READY_MAX_LAG": "500",
        }
    )

    assert settings.max_concurrency == 12
    assert settings.decide_ahead_seconds == 0
    assert settings.shutdown_grace_seconds == 2.5
    assert settings.ready_max_lag == 500
    assert Settings.from_env({}).ready_max_lag == 10_000
    assert Settings.from_env({}).decide_ahead_seconds == 0.5


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CRONSOURCE_DECIDE_AHEAD_SECONDS": "soon"}, "CRONSOURCE_DECIDE_AHEAD_SECONDS"),
        ({"CRONSOURCE_DECIDE_AHEAD_SECONDS": "-1"}, "CRONSOURCE_DECIDE_AHEAD_SECONDS"),
        ({"CRONSOURCE_DECIDE_AHEAD_SECONDS": "11"}, "CRONSOURCE_DECIDE_AHEAD_SECONDS"),
        ({"SCHEDULER_MAX_CONCURRENCY": "0"}, "SCHEDULER_MAX_CONCURRENCY"),
        ({"CRONSOURCE_PROJECTIONS": "threads"}, "CRONSOURCE_PROJECTIONS"),
        ({"SCHEDULER_MAX_CONCURRENCY": "many"}, "SCHEDULER_MAX_CONCURRENCY"),
        ({"CRONSOURCE_READY_MAX_LAG": "a few"}, "CRONSOURCE_READY_MAX_LAG"),
        ({"CRONSOURCE_WEBHOOK_LEASE_SECONDS": "5"}, "CRONSOURCE_WEBHOOK_LEASE_SECONDS"),
        ({"CRONSOURCE_WEBHOOK_RETRY_SCHEDULE": "5,soon"}, "CRONSOURCE_WEBHOOK_RETRY_SCHEDULE"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(StoreConfigError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "no"])
def test_webhooks_are_switched_off_by_each_off_value(value: str) -> None:
    assert Settings.from_env({"CRONSOURCE_WEBHOOKS": value}).webhooks is False
    assert Settings.from_env({}).webhooks is True
