"""EarSight's core: what the app, the engine and the trainer all share, with one home each.

``earsight.errors`` (the root error class, the usage error, one line of a foreign exception),
``earsight.paths`` (the user's folders and their environment variables), ``earsight.wav`` (the
WAV writer), ``earsight.console`` (ASCII stand-ins for a terminal without Unicode). It imports
nothing of app/, engine/ or trainer/, and no heavy library.
"""

from pathlib import Path as _Path

# In a checkout this folder holds only the core; earsight.app, .engine, .trainer and .assets are
# the folders beside it (pyproject.toml's package-dir). The wheel nests them inside, and the
# editable install maps them, but Python run from the checkout's root (`python -m
# earsight.app.cli`, pytest's pythonpath) finds this folder first and, without the line below,
# no earsight.app: with a non-editable install every such command and the whole test suite failed.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "app" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))
