"""Bootstrap from a folder of application folders, for `serve` at start and `cronsource bootstrap`."""

from __future__ import annotations

import os
from pathlib import Path

from application.bootstrap import BootstrapSummary
from infrastructure.bootstrap_files import bootstrap_from_dir
from interfaces.composition import Core


def run_bootstrap(core: Core, root: Path) -> BootstrapSummary:
    """Sync the folder's jobs.json files into the store, as the configured bootstrap identity."""
    return bootstrap_from_dir(
        core.jobs,
        core.queries,
        core.projections.wait_for,
        root,
        tenant=os.environ.get("CRONSOURCE_BOOTSTRAP_TENANT", "default"),
        owner=os.environ.get("CRONSOURCE_BOOTSTRAP_OWNER", "bootstrap"),
    )
