"""Deprecated alias of :mod:`mixopt.mixing.pipeline`; removed when callers move."""
from mixopt.mixing.pipeline import *  # noqa: F403
from mixopt.mixing.pipeline import __all__  # noqa: F401
