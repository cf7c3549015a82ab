"""``auto`` through the pipeline (issue 23, items 4-5): the fit's fidelity is the nested CV
``auto`` computed from its shared fits, its notes name the rule, progress comes per stage."""

import numpy as np
import pytest

from mixopt.mixing.pipeline import fit_estimator

pytestmark = pytest.mark.science

LAW = {"mixing_law": {"n_restarts": 300}}


def test_pipeline_reports_the_rule_the_nested_cv_and_progress_per_stage():
    rng = np.random.default_rng(4)
    X = rng.dirichlet(np.ones(3), 30)
    y = 2 + X @ np.array([0.3, -0.2, 0.1]) + rng.normal(0, 0.01, 30)
    seen = []
    out = fit_estimator(
        "auto",
        {"candidates": ["regmix_linear", "mixing_law"], "candidate_params": LAW},
        X,
        y[:, None],
        domains=["a", "b", "c"],
        cv_folds=3,
        progress=lambda f, msg: seen.append(msg),
    )
    fid = out["fidelity"]
    assert fid["nested"] is True and len(fid["chosen_per_fold"]) == 3
    assert len(fid["predictions"]) == 30
    assert any("rule law_first" in n for n in out["notes"])
    for stage in ("CV", "nested CV", "refitting"):
        assert any(stage in m for m in seen), stage
    assert out["state"]["fitted"]["rule"] == "law_first"
