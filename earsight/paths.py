"""Where EarSight keeps a user's files: one function per folder, one environment variable each.

=====================  ========================  ==============================================
folder                 environment variable      default (platformdirs, per user)
=====================  ========================  ==============================================
config file            ``EARSIGHT_CONFIG``       user config dir: ``earsight/config.toml``
datasets               ``EARSIGHT_DATA``         user cache dir: ``earsight/data``
caches (speech,        ``EARSIGHT_CACHE``        user cache dir: ``earsight/<kind>``
features, engines)
TensorRT engines       ``EARSIGHT_ENGINE_CACHE`` ``cache_dir("engines")`` (a read-only system
                                                 image points it at plans it ships)
taught words           ``EARSIGHT_TEACH``        user data dir: ``earsight/taught``
WAVs, no audio device  —                         user data dir: ``earsight/wavs``
=====================  ========================  ==============================================

Every variable names a path (``~`` expanded); an empty one counts as unset. Nothing here
creates a folder: whoever writes there does, and says so when it cannot.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "earsight"  # platformdirs' application name: the folder under each user dir
CONFIG_NAME = "config.toml"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def config_file() -> Path:
    """``$EARSIGHT_CONFIG``, else ``<user config dir>/earsight/config.toml``."""
    return _env_path("EARSIGHT_CONFIG") or Path(platformdirs.user_config_dir(APP)) / CONFIG_NAME


def data_root() -> Path:
    """Where datasets are downloaded and cached: ``$EARSIGHT_DATA``, else the user cache
    dir's ``earsight/data``."""
    return _env_path("EARSIGHT_DATA") or Path(platformdirs.user_cache_dir(APP)) / "data"


def cache_dir(kind: str) -> Path:
    """A regenerable cache (``"speech"``, ``"features"``, ``"engines"``):
    ``$EARSIGHT_CACHE/<kind>``, else the user cache dir's ``earsight/<kind>``."""
    root = _env_path("EARSIGHT_CACHE") or Path(platformdirs.user_cache_dir(APP))
    return root / kind


def engine_cache_dir() -> Path:
    """TensorRT plans: ``$EARSIGHT_ENGINE_CACHE``, else ``cache_dir("engines")``."""
    return _env_path("EARSIGHT_ENGINE_CACHE") or cache_dir("engines")


def taught_root() -> Path:
    """The user's taught words: ``$EARSIGHT_TEACH``, else the user data dir's
    ``earsight/taught``."""
    return _env_path("EARSIGHT_TEACH") or Path(platformdirs.user_data_dir(APP)) / "taught"


def wav_dir() -> Path:
    """Where sounds are written when there is no audio device and no --out-dir."""
    return Path(platformdirs.user_data_dir(APP)) / "wavs"


def probe_writable(folder: Path) -> None:
    """Write and delete a hidden probe file in ``folder``: OSError when this user cannot write
    there (read-only file system, no permission, a full disk). Mode bits alone do not say it:
    root ignores them, and a read-only mount does not show in them."""
    import tempfile

    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
        pass


def probe_creatable(folder: Path) -> None:
    """probe_writable on ``folder``, or where it does not exist yet on the nearest folder above
    it that does (where it will be made): OSError as probe_writable, NotADirectoryError when
    that nearest existing path is a file."""
    probe_writable(next(p for p in (folder, *folder.parents) if p.exists()))
