"""Several processes starting at once on a fresh store: each one starts (no DDL collision)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = (
    "import sys; from pathlib import Path; from interfaces.composition import Core, Settings; "
    "Core(Settings(data_dir=Path(sys.argv[2]), database_url=sys.argv[1])).close(); print('started')"
)


def test_processes_starting_together_on_a_fresh_store_all_start(
    database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START, database_url, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]

    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "started", err
