"""Fixtures for the online-mixing tests: the synthetic environment of
``workers.online.synthetic`` (3 domains, known optimum)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.online.helpers import STEPS
from workers.online.synthetic import SyntheticEnv


@pytest.fixture
def env() -> SyntheticEnv:
    return SyntheticEnv()


@pytest.fixture(scope="session")
def optimum() -> np.ndarray:
    return SyntheticEnv().optimal_mixture(STEPS)
