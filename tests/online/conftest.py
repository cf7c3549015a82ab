"""Fixtures for the online-mixing tests: the synthetic environment of
``mixopt.online.synthetic`` (3 domains, known optimum)."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.online.synthetic import SyntheticEnv
from tests.online.helpers import STEPS


@pytest.fixture
def env() -> SyntheticEnv:
    return SyntheticEnv()


@pytest.fixture(scope="session")
def optimum() -> np.ndarray:
    return SyntheticEnv().optimal_mixture(STEPS)
