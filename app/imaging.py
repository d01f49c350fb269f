"""Fitting a picture to the model's input: the one implementation lives in trainer/preprocess.py
(training, evaluation, ``describe`` and the live loop share it)."""

from earsight.trainer.preprocess import fit_to_input

__all__ = ["fit_to_input"]
