"""MixoptReporter's own rules: its arguments, and a service that cannot be reached (the real
client against a closed port): logged, training goes on, or raised when asked."""

from __future__ import annotations

import logging

import pytest

from mixopt.client import MixoptClient, MixoptError
from mixopt.integrations import MixoptReporter, MixtureSampler

pytestmark = pytest.mark.science


def _closed() -> MixoptClient:
    c = MixoptClient("http://127.0.0.1:9", "x")
    c.backoff = 0.01
    return c


def test_arguments_are_checked():
    c = _closed()
    with pytest.raises(ValueError, match="sampler"):
        MixoptReporter(c, 1, mixture={"a": 1.0}, session_id=3)
    with pytest.raises(ValueError, match="interval"):
        MixoptReporter(c, 1, sampler=MixtureSampler({"a": 1}), interval=0)
    with pytest.raises(ValueError, match="mixture"):
        MixoptReporter(c, 1)
    with pytest.raises(ValueError, match="on_error"):
        MixoptReporter(c, 1, mixture={"a": 1.0}, on_error="ignore")


def test_an_unreachable_service_is_logged_and_training_goes_on(caplog):
    sampler = MixtureSampler({"a": 4, "b": 4}, {"a": 0.5, "b": 0.5})
    r = MixoptReporter(_closed(), 1, sampler=sampler, session_id=2, interval=1)
    with caplog.at_level(logging.WARNING, logger="mixopt.integrations"):
        assert r.start() is None
        r.record_batch([0, 1, "b"], [2.0, 3.0, float("nan")])
        r.evaluated(1, {"a": 2.5, "b": float("inf")})
        r.step_end(0)
        r.finish("succeeded")
    messages = [rec.getMessage() for rec in caplog.records]
    assert any(m.startswith("mixopt: creating the run failed") for m in messages), messages
    assert any(m.startswith("mixopt: reporting to the online session failed") for m in messages)
    assert any(m.startswith("mixopt: polling the session's weights failed") for m in messages)
    assert sampler.weights == {"a": 0.5, "b": 0.5}  # unchanged without an answer
    assert r.metrics == {"val_loss/a": 2.5}  # the non-finite loss is dropped
    assert r.reports == 0 and r.finished


def test_raise_mode_raises():
    r = MixoptReporter(_closed(), 1, mixture={"a": 1.0}, on_error="raise")
    with pytest.raises(MixoptError, match="cannot reach"):
        r.start()
