"""A wired core per test, on each store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from interfaces.composition import Core, Settings


@pytest.fixture
def make_core(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Core]]:
    """Build cores on this test's store (several act as several processes' views of one log)."""
    cores: list[Core] = []

    def make(**overrides: object) -> Core:
        settings = Settings(data_dir=tmp_path, database_url=database_url, **overrides)  # type: ignore[arg-type]
        core = Core(settings)
        cores.append(core)
        return core

    yield make
    for core in cores:
        core.close()


@pytest.fixture
def core(make_core: Callable[..., Core]) -> Core:
    """One core on this test's store; projections applied on demand (no threads)."""
    return make_core()
