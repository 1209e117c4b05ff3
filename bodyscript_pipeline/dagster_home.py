"""The local Dagster instance's home: ``DAGSTER_HOME``, else ``$BODYSCRIPT_HOME/dagster`` with the repo's
``dagster.yaml`` (SQLite storage, queued runs) installed there on first use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bodyscript_pipeline.settings import Settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def ensure_dagster_home(settings: Settings) -> Path:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and REPO_DAGSTER_YAML.is_file():
        shutil.copyfile(REPO_DAGSTER_YAML, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
