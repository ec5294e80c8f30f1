"""Where the project's own files and its data are, independent of the working directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "assets"


def data_dir() -> Path:
    """Where data sets live: $CNN_LENS_DATA, else the project's `data/` folder."""
    return Path(os.environ.get("CNN_LENS_DATA", REPO / "data"))
