"""A runtime-only Python environment for tests: what `pip install earsight` (no extras) gives.

A real venv whose site-packages holds this environment's installed packages except the
``train`` extra's distributions (torch, matplotlib, scikit-learn, …) and what only they
installed: importing them fails as on a wearable where they were never installed
(``importlib.util.find_spec`` says None), with no import hook to fool. Linking instead of
installing keeps it a second's work and needs no package index.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from earsight.app.config import tomllib  # tomli before Python 3.11

ROOT = Path(__file__).resolve().parents[1]


def project() -> dict:
    """pyproject.toml's [project] table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(specs: list[str]) -> list[str]:
    """``["torch>=2.1", "tomli; python_version < '3.11'"]`` → ``["torch", "tomli"]``."""
    return [re.split(r"[<>=!~;\[ ]", spec)[0] for spec in specs]


def train_extra() -> list[str]:
    """The distribution names of pyproject's ``train`` extra."""
    return names(project()["optional-dependencies"]["train"])


def _top_levels(dist_name: str) -> set[str]:
    """The site-packages entries (first path parts) a distribution installed."""
    try:
        files = metadata.distribution(dist_name).files or []
    except metadata.PackageNotFoundError:
        return set()
    return {Path(f).parts[0] for f in files if not Path(f).parts[0].startswith("..")}


def runtime_only_python(where: Path) -> Path:
    """A venv at ``where`` without the train extra; returns its python."""
    python = where / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    left_out: set[str] = set()
    for name in train_extra():
        left_out |= _top_levels(name)
    ours = Path(sysconfig.get_paths()["purelib"])
    (theirs,) = where.glob("lib/python*/site-packages")
    for entry in ours.iterdir():
        if entry.name not in left_out and entry.name != "__pycache__":
            os.symlink(entry, theirs / entry.name)
    return python
