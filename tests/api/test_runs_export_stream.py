"""``GET .../runs/export`` streams from the database a page at a time (issue 24: 138k runs were
read whole into memory): with pages of 7 runs, every format is complete and byte-identical to the
whole-list writers (app.services.imports), filters included; memory is measured in
bench/hostile.py, not here."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from sqlalchemy import select, update

from app.services import imports, run_export
from app.store.models import Project, Run
from tests.conftest import make_project

N_RUNS = 60


@pytest.fixture
def exported(client, admin, session, monkeypatch):
    """A project of runs in several states and two scales, metrics that first appear late, a
    retired domain in one run's mixture, and loss curves; pages of 7 runs."""
    monkeypatch.setattr(run_export, "PAGE_ROWS", 7)
    p = make_project(client, admin)
    runs = []
    for i in range(N_RUNS):
        w = (i % 10) / 10
        run = {
            "mixture": {"web": w, "code": round(1 - w, 10)},
            "name": f'run,{i} "quoted"' if i % 13 == 0 else f"r{i}",
            "external_id": f"ext-{i}" if i % 2 else None,
            "model_params": 1_000_000 if i % 3 else 2_000_000,
            "metrics": {"loss": 3.0 - i / 100, **({"late/acc": i / 100} if i > 50 else {})},
        }
        if i % 11 == 0:
            run = {k: v for k, v in run.items() if k != "metrics"}  # planned: no metrics
        runs.append(run)
    r = client.post(f"/v1/projects/{p['id']}/runs", json={"runs": runs}, headers=admin)
    assert r.status_code == 201, r.text
    ids = r.json()["ids"]
    for rid in ids[:3]:
        points = [{"step": s, "tokens": 1000 * s, "metrics": {"loss": 4.0 - s}} for s in (1, 2)]
        c = client.post(
            f"/v1/projects/{p['id']}/runs/{rid}/curve", json={"points": points}, headers=admin
        )
        assert c.status_code == 200, c.text
    session.execute(
        update(Run).where(Run.id == ids[5]).values(mixture={"web": 0.4, "code": 0.5, "old": 0.1})
    )
    session.commit()
    return p["id"]


def _reference(session, pid: int, status: str | None, **scale):
    """What the whole-list writers produce for the same runs."""
    session.expire_all()
    project = session.get(Project, pid)
    q = select(Run).where(Run.project_id == pid).order_by(Run.id)
    if status:
        q = q.where(Run.status == status)
    rows = [r for r in session.scalars(q) if all(getattr(r, k) == v for k, v in scale.items())]
    return project, rows


@pytest.mark.parametrize(
    ("params", "status", "scale"),
    [
        ({}, "succeeded", {}),
        ({"status": "all"}, None, {}),
        ({"status": "all", "model_params": 2_000_000}, None, {"model_params": 2_000_000}),
    ],
)
def test_streamed_csv_and_zip_are_the_whole_export(
    client, admin, session, exported, params, status, scale
):
    project, rows = _reference(session, exported, status, **scale)
    assert len(rows) > 2 * run_export.PAGE_ROWS
    base = f"/v1/projects/{exported}/runs/export"
    for layout in ("regmix", "olmix"):
        want_mix, want_met = imports.export_csv(project, rows, layout)
        for part, want in (("mixtures", want_mix), ("metrics", want_met)):
            r = client.get(base, params={**params, "layout": layout, "part": part}, headers=admin)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/csv")
            assert r.text == want
            assert len(list(csv.reader(io.StringIO(r.text)))) == len(rows) + 1
        r = client.get(base, params={**params, "layout": layout}, headers=admin)
        assert r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            assert zf.testzip() is None
            names = run_export.zip_names(layout)
            assert zf.namelist() == list(names)
            assert zf.read(names[0]).decode() == want_mix
            assert zf.read(names[1]).decode() == want_met
    if not scale:  # the retired domain of one run's mixture has its column, after the others
        r = client.get(
            base, params={**params, "layout": "olmix", "part": "mixtures"}, headers=admin
        )
        assert r.text.splitlines()[0] == "run,name,web,code,math,old"


def test_streamed_json_is_the_whole_document_and_imports_back(client, admin, session, exported):
    project, rows = _reference(session, exported, None)
    r = client.get(
        f"/v1/projects/{exported}/runs/export",
        params={"format": "json", "status": "all"},
        headers=admin,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    want = json.loads(json.dumps(imports.runs_document(session, project, rows)))
    assert doc == want
    assert len(doc["runs"]) == N_RUNS
    assert [len(x["curve"]) for x in doc["runs"][:4]] == [2, 2, 2, 0]


def test_an_empty_export_is_a_header_or_an_empty_document(client, admin):
    p = make_project(client, admin)
    base = f"/v1/projects/{p['id']}/runs/export"
    r = client.get(base, params={"part": "metrics"}, headers=admin)
    assert r.status_code == 200 and r.text == "index\n"
    doc = client.get(base, params={"format": "json"}, headers=admin).json()
    assert doc["runs"] == [] and doc["domains"] == ["web", "code", "math"]
    with zipfile.ZipFile(io.BytesIO(client.get(base, headers=admin).content)) as zf:
        assert zf.read("train_mixture.csv").decode() == "index,train_web,train_code,train_math\n"
