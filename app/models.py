"""The models shipped in ``assets/models``: find one by name (``cifar10-ad``) or take a path.

Assets are the package data of ``earsight.assets`` (importlib.resources), never looked up from
the working directory, so ``earsight`` works from any folder, from the checkout's editable
install (``assets/``) and from an installed wheel alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from earsight import paths
from earsight.engine.source import INT8_SUFFIX
from earsight.errors import EarSightError

# A folder on disk: setuptools installs package data as files (no zipped installs here).
ASSETS_DIR = Path(str(resources.files("earsight.assets")))
MODELS_DIR = ASSETS_DIR / "models"
MODEL_SUFFIX = ".onnx"  # every shipped model is an ONNX export with its .onnx.json sidecar

# Everyday objects (CIFAR-10's ten classes) are what a camera actually sees; `--model mnist-ad`
# for handwritten digits.
DEFAULT_MODEL = "cifar10-ad-lite0"
# What live and describe run unless told otherwise: the model ``earsight teach`` learned (the
# default model plus the user's own words) once there is one, else DEFAULT_MODEL.
AUTO_MODEL = "auto"
TAUGHT_MODEL = "taught"  # the learned model by name; an error until something was taught


class UnknownModel(EarSightError):
    """``--model`` is neither a shipped model's name nor an existing file."""


def available_models() -> tuple[str, ...]:
    """Names (file stems) of the shipped models, sorted; empty if the assets are missing.

    A model's int8 CPU variant (``cifar10-ad.int8.onnx``) is not another model: the runtime
    picks it for ONNX Runtime CPU, and ``--model cifar10-ad.int8`` still names it.
    """
    files = (p for p in MODELS_DIR.glob(f"*{MODEL_SUFFIX}") if p.is_file())
    return tuple(sorted(p.stem for p in files if not p.name.endswith(INT8_SUFFIX)))


def teach_base_path() -> Path:
    """What teach mode starts from: the default model's weights and replay features."""
    return MODELS_DIR / f"{DEFAULT_MODEL}.teach.pt"


def resolve_model(name_or_path: str | Path) -> Path:
    """``mnist-ad`` → ``assets/models/mnist-ad.onnx``; an existing file → itself; ``auto`` →
    the taught model if there is one, else the default; ``taught`` → the taught model.

    A name wins over a file of the same name in the working directory only when that file does
    not exist, so ``--model ./mnist-ad.onnx`` always means the local file.
    """
    text = str(name_or_path)
    if text in (AUTO_MODEL, TAUGHT_MODEL):
        return _taught_or_default(text)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    stem = text[: -len(MODEL_SUFFIX)] if text.endswith(MODEL_SUFFIX) else text
    if "/" not in stem and "\\" not in stem:  # a bare name, not a path to a missing file
        shipped = MODELS_DIR / f"{stem}{MODEL_SUFFIX}"
        if shipped.is_file():  # not logged: live's model watch resolves the name every 2 s
            return shipped
    names = available_models()
    fix = (
        f"use one of the shipped models ({', '.join(names)}), {AUTO_MODEL!r} (your taught "
        f"words, else the default), {TAUGHT_MODEL!r}, or a path to a .onnx/.pt file"
        if names
        else f"no models found in {MODELS_DIR}: pass a path to a .onnx/.pt file"
    )
    if "/" in stem or "\\" in stem or path.suffix in (MODEL_SUFFIX, ".pt"):  # meant as a file
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UnknownModel(f"model file {text} {what}", f"check the path, or {fix}")
    raise UnknownModel(f"unknown model {text!r}", fix)


def _taught_or_default(name: str) -> Path:
    from earsight.trainer.teach.store import taught_model_path

    taught = taught_model_path()
    if taught.is_file():  # not logged: live's model watch resolves the name every 2 s
        return taught
    if name == AUTO_MODEL:
        return resolve_model(DEFAULT_MODEL)
    note = unlearned_note()
    if note is not None:  # words are stored: teaching again is not what is missing
        raise UnknownModel(f"no taught model: {note}", "or use --model auto")
    raise UnknownModel(
        f"no taught model yet ({taught} is missing)",
        "teach a word first: earsight teach WORD (it learns at the end)",
    )


def unlearned_note() -> str | None:
    """``"2 taught words are not learned yet — earsight teach --learn"`` when words are stored
    but no taught model says them (stored on an install without the trainer, or a learn that
    did not finish); None otherwise. ``auto`` then answers with the shipped words."""
    from earsight.app.modes.teach import learning_unavailable
    from earsight.trainer.teach.store import TeachStore, taught_model_path

    if taught_model_path().is_file():
        return None
    n = len(TeachStore(paths.taught_root()).words())
    if n == 0:
        return None
    unavailable = learning_unavailable()
    fix = "earsight teach --learn" if unavailable is None else unavailable.fix
    return f"{n} taught word{'s are' if n != 1 else ' is'} not learned yet — {fix}"


def pinned_model_note(model: str | None, config: Path | None = None) -> str | None:
    """``"your taught words are not used: CONFIG sets model = 'cifar10-ad' — …"`` when words
    are learned (the taught model exists) but the config file names another model, which live
    and describe then run (a config written before teach mode, from the README's example, did).
    ``model`` is the model option in use (None: the config file's own setting); a model chosen
    by a flag is the user's choice and gets no note. None when there is nothing to say."""
    from earsight.app.config import read_config
    from earsight.trainer.teach.store import taught_model_path

    if model in (AUTO_MODEL, TAUGHT_MODEL) or not taught_model_path().is_file():
        return None
    path = config or paths.config_file()
    try:
        setting = read_config(path).get("model")
    except EarSightError:  # a bad file is said where it is read
        return None
    if setting is None or setting in (AUTO_MODEL, TAUGHT_MODEL) or model not in (None, setting):
        return None
    return (
        f"your taught words are not used: {path} sets model = {setting!r} — set "
        f'model = "{AUTO_MODEL}" there, or remove the line, to use them'
    )
