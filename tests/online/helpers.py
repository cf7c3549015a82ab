"""Helpers for the online-mixing tests: run length, a stratified baseline, L1 distance."""

from __future__ import annotations

import numpy as np

#: steps of every synthetic run (a few ms per run)
STEPS = 600


class Stratified:
    """A do-nothing 'mixer' that always samples uniformly (the stratified baseline)."""

    params: dict = {}

    def __init__(self, k: int) -> None:
        self.w = np.full(k, 1.0 / k)

    def needs_eval_at(self, step):
        return False

    def mixture_for_step(self, step):
        return self.w

    def weights(self):
        return self.w

    def update(self, observations):
        return self.w


def l1(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).sum())
