"""Options of `earsight live` (and those `describe` shares with it): defaults < the user's
TOML config file < command-line flags.

The config file lives in the user config dir (platformdirs), e.g. ~/.config/earsight/config.toml:

    model = "auto"          # the default: your taught words once learned, else cifar10-ad-lite0
    source = "/dev/video0"
    hotkey = "f9"
    threshold = 0.5
    verbosity = 1

Every key is also a flag of `earsight live` (``--source``, ``--hotkey`` …).
"""

from __future__ import annotations

import dataclasses
import difflib
import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earsight import paths
from earsight.app.models import AUTO_MODEL
from earsight.errors import EarSightError

try:
    import tomllib
except ImportError:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

MODES = ("word", "soundscape")
KEY_KINDS = ("auto", "hotkey", "terminal", "evdev")


class ConfigError(EarSightError):
    """The config file or an option value is wrong."""


MAX_CONFIG_CHARS = 100_000  # a config file longer than this is not one (a dozen lines)


@dataclass(frozen=True)
class LiveOptions:
    model: str = AUTO_MODEL  # "auto" (taught if any, else the default), a name, or a path
    backend: str = "auto"  # auto | tensorrt | onnx-cuda | onnx-cpu | torch
    source: str = "0"  # camera index, /dev/videoN, csi://N, rtsp://…, a video file, a folder
    loop: bool = False  # loop a video file source
    keys: str = "auto"  # auto (hotkey with a display, else terminal) | hotkey | terminal | evdev
    hotkey: str = "f9"  # the describe key of the desktop hotkey controller
    evdev_device: str | None = None  # e.g. /dev/input/event3 for a wearable button
    audio_device: str | int | None = None  # sounddevice name or index; None = system default
    out_dir: str | None = None  # where WAVs go when there is no audio device
    threshold: float = 0.5  # confidence gate: below this top probability, say "not sure"
    gate: str = "not-sure"  # not-sure | top-two
    mode: str = "word"  # word | soundscape (a key toggles)
    verbosity: int = 1  # 0 errors only, 1 normal, 2 chatty
    speak_status: bool = True  # speak status messages (they are always printed)
    threads: int | None = None  # CPU inference threads (default: all cores)
    int8: bool = True  # ONNX Runtime CPU runs the model's int8 variant (name.int8.onnx) if shipped

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in 0..1, got {self.threshold}", "e.g. 0.5")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.keys not in KEY_KINDS:
            raise ConfigError(f"keys must be one of {', '.join(KEY_KINDS)}, got {self.keys!r}")
        if self.verbosity not in (0, 1, 2):
            raise ConfigError(f"verbosity must be 0, 1 or 2, got {self.verbosity}")
        cores = os.cpu_count() or 1
        if self.threads is not None and not 1 <= self.threads <= cores:
            # more threads than cores only slows inference; 100000 took 16 GB and hung
            raise ConfigError(
                f"threads must be 1..{cores} here (this machine has {cores} CPU cores), "
                f"got {self.threads}",
                f"e.g. {min(2, cores)}, or leave it out for all cores",
            )


def read_config(path: Path, required: bool = False) -> dict[str, Any]:
    """The file's options; one-line errors for bad files.

    A missing file means no options, unless ``required`` (a file the user named with --config:
    ignoring it would run with settings the user did not choose).
    """
    try:
        # utf-8-sig: a file saved by Notepad starts with a byte-order mark, which TOML refuses
        text = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        if required:
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ConfigError(
                f"config file {path} {what}", "fix the --config path, or leave --config out"
            ) from None
        return {}
    except OSError as err:  # no permission (a root-only /etc file for the service's user)
        raise ConfigError(
            f"cannot read the config file {path} ({err.strerror or err})",
            f"let the user running earsight ({getpass.getuser()}) read it, or move it",
        ) from None
    except UnicodeDecodeError:  # UTF-16 (Notepad's "Unicode"), Latin-1: TOML is UTF-8
        raise ConfigError(
            f"config file {path} is not UTF-8 text",
            "save it again as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8; in Notepad: Save as, "
            "Encoding UTF-8)",
        ) from None
    if len(text) > MAX_CONFIG_CHARS:  # read whole above; a config is a dozen lines
        raise ConfigError(
            f"{path} is {len(text):,} characters long: not a config file",
            "a config holds one `key = value` line per option; fix or delete that file",
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        fix = _unquoted_text_fix(text, str(err)) or "fix or delete that file"
        raise ConfigError(f"{path} is not valid TOML ({err})", fix) from err
    except RecursionError:  # arrays nested thousands deep: tomllib recurses once per level
        raise ConfigError(f"{path} nests values too deep", "fix or delete that file") from None
    known = {f.name: f for f in dataclasses.fields(LiveOptions)}
    data = {key.replace("-", "_"): value for key, value in data.items()}  # out-dir as the flag
    for key, value in data.items():
        if key not in known:
            near = difflib.get_close_matches(key, known, n=2, cutoff=0.75)  # modle: mode or model
            hint = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
            raise ConfigError(
                f"{path}: unknown option {key!r}",
                f"{hint}known options: {', '.join(sorted(known))}",
            )
        if isinstance(value, dict | list):
            raise ConfigError(f"{path}: {key} must be a single value, not {type(value).__name__}")
        _check_type(path, key, value, str(known[key].type))
    return data


# TOML value types each LiveOptions annotation accepts (an int is a fine float; a bool, which
# Python counts as an int, is only a bool: `loop = "no"` or `verbosity = true` are mistakes).
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
}


def _unquoted_text_fix(text: str, error: str) -> str | None:
    """``model = cifar10-ad`` (TOML text needs quotes): 'write model = "cifar10-ad"', read from
    the line tomllib's message names ("… (at line 1, column 9)"); None for other mistakes."""
    where = re.search(r"at line (\d+)", error)
    lines = text.splitlines()
    if where is None or not 0 < int(where[1]) <= len(lines):
        return None
    line = re.match(r"\s*([A-Za-z0-9_-]+)\s*=\s*([^#\"'\[{]*?)\s*(#.*)?$", lines[int(where[1]) - 1])
    if line is None or not line[2]:
        return None
    try:
        tomllib.loads(f"x = {line[2]}")
        return None  # a valid value there (a number, true): the mistake is elsewhere
    except tomllib.TOMLDecodeError:
        return f'text needs quotes: write {line[1]} = "{line[2]}"'


def _check_type(path: Path, key: str, value: Any, annotation: str) -> None:
    names = [n.strip() for n in annotation.split("|") if n.strip() != "None"]
    allowed = tuple(t for name in names for t in _TOML_TYPES[name])
    if isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)):
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    quoted = f'"{value}"' if number else '"text"'  # source = 0 → source = "0"
    example = {"str": quoted, "bool": "true", "int": "2"}
    kinds = {"str": "text in quotes", "bool": "true or false", "int": "a whole number"}
    wanted = " or ".join(kinds.get(name, "a number") for name in names)
    raise ConfigError(
        f"{path}: {key} must be {wanted}, got {value!r}",
        f"write e.g. {key} = {example.get(names[0], '0.5')}",
    )


def resolve_options(flags: dict[str, Any], path: Path | None = None) -> LiveOptions:
    """Defaults, then the config file, then every flag the user actually gave (not None).

    ``path`` is the user's --config, which must exist; the default file is optional.
    """
    source = path or paths.config_file()
    from_file = read_config(path, required=True) if path else read_config(source)
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return LiveOptions(**{**from_file, **given})
    except TypeError as err:  # a wrong type in the file, e.g. threshold = "high"
        raise ConfigError(f"bad option value ({err})", "check the config file") from err
    except ConfigError as err:  # a value out of range: say where it came from
        try:
            LiveOptions(**given)
        except ConfigError:
            raise err from None  # the flags alone are wrong
        raise ConfigError(f"{source}: {err.what}", err.fix) from None
