"""Inference backends behind one interface (``Backend``); ``engine.runtime`` picks one."""

from engine.backends.base import Backend, RuntimeOptions

__all__ = ["Backend", "RuntimeOptions"]
