"""Inference backends behind one interface (``Backend``); ``earsight.engine.runtime`` picks one."""

from earsight.engine.backends.base import Backend, RuntimeOptions

__all__ = ["Backend", "RuntimeOptions"]
