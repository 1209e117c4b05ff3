"""Where the repository and the shared test data lie, for tests anywhere in the tree."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
