"""``python -m earsight``: the ``earsight`` command (a venv whose scripts are not on PATH)."""

from earsight.commands import earsight

earsight()
