"""Soak: jobs firing every second at real HTTP targets for minutes while a node is SIGKILLed
and restarted on a schedule; afterwards every (job, slot) is accounted for once, no event is
lost, memory stayed flat, and lateness is reported per minute.

Not part of the default run (marker `soak`): `pytest -m soak` (README, "Soak test"). Sizes
from `CRONSOURCE_SOAK_*`; `CRONSOURCE_SOAK_SMOKE=1` runs a short one (50 jobs, 40 s, a kill
at 20 s) that proves the harness. The summary is written to `bench/results/` and printed.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.soak.accounting import account, write_summary
from tests.soak.harness import Scenario, SoakConfig, run_soak

SCENARIOS = [
    pytest.param(Scenario("sqlite-1-node", "sqlite", ("solo",), victim="solo"), id="sqlite"),
    pytest.param(
        Scenario("postgres-3-nodes", "postgresql", ("n1", "n2", "n3"), victim="n3"),
        id="postgres",
        marks=pytest.mark.postgres,
    ),
]


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_slot_is_accounted_for_once_under_load_and_kills(
    scenario: Scenario, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = SoakConfig.from_env()
    if scenario.store == "sqlite":
        database_url = f"sqlite:///{(tmp_path / 'cronsource.db').as_posix()}"
    else:
        base = request.getfixturevalue("postgres_database")
        database_url = f"{base}?schema=soak_{uuid.uuid4().hex[:10]}"

    run = run_soak(config, scenario, database_url, tmp_path)
    summary = account(run)
    write_summary(summary, config.out_dir)

    assert summary["passed"], "\n".join(summary["problems"])
