"""A fit with enough runs but too few distinct mixtures is refused at the request (422 naming
the run filter), not accepted and then failed by the job (issue 24): estimators need distinct
mixtures (``required_runs``), repeated runs of one mixture do not count twice."""

from __future__ import annotations

import numpy as np
import pytest

from mixopt.mixing.base import InsufficientDataError
from mixopt.mixing.mixing_law import MixingLaw
from tests.conftest import count_rows, make_project

#: four distinct mixtures over three domains (the mixing law needs K + 2 = 5)
MIXTURES = [
    {"web": 0.2, "code": 0.5, "math": 0.3},
    {"web": 0.6, "code": 0.2, "math": 0.2},
    {"web": 1.0},
    {"web": 0.1, "code": 0.1, "math": 0.8},
]


def _post_runs(client, admin, pid: int, mixtures: list[dict]) -> None:
    runs = [
        {"mixture": m, "metrics": {"loss": 3.0 - 0.01 * i - sum(m.values()) / 10}}
        for i, m in enumerate(mixtures)
    ]
    r = client.post(f"/v1/projects/{pid}/runs", json={"runs": runs}, headers=admin)
    assert r.status_code == 201, r.text


def test_the_job_would_fail_on_four_distinct_mixtures():
    X = np.array([[m.get(d, 0.0) for d in ("web", "code", "math")] for m in MIXTURES * 8])
    y = 3.0 - X @ [0.3, 0.2, 0.1]
    with pytest.raises(InsufficientDataError):
        MixingLaw().fit(X, y)


def test_thirty_runs_of_four_mixtures_are_refused_then_a_fifth_mixture_is_accepted(client, admin):
    p = make_project(client, admin)
    # 32 runs, 4 mixtures; a zero weight is the same mixture as a missing domain
    repeated = [*MIXTURES * 7, {"web": 1.0, "code": 0.0}, *MIXTURES[:3]]
    _post_runs(client, admin, p["id"], repeated)
    url = f"/v1/projects/{p['id']}/fits"
    r = client.post(url, json={"estimator": "mixing_law"}, headers=admin)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "run_filter"
    assert "at least 5 distinct mixtures for 3 domains" in error["message"]
    assert "32 runs the run filter leaves try 4" in error["message"]
    assert count_rows("fit") == 0 and count_rows("job") == 0
    # an estimator that needs fewer is accepted on the same runs
    assert client.post(url, json={"estimator": "gp"}, headers=admin).status_code == 202
    _post_runs(client, admin, p["id"], [{"web": 0.3, "code": 0.3, "math": 0.4}])
    r = client.post(url, json={"estimator": "mixing_law"}, headers=admin)
    assert r.status_code == 202, r.text
