import csv
import io
import zipfile

import pytest

from tests.conftest import REGMIX_DIR, count_rows, make_project

MIX = REGMIX_DIR / "train_mixture_1m.csv"
LOSS = REGMIX_DIR / "train_pile_loss_1m.csv"


def _import(client, headers, pid, mix: bytes, met: bytes, **form):
    files = {"mixtures": ("m.csv", mix, "text/csv"), "metrics": ("l.csv", met, "text/csv")}
    return client.post(f"/v1/projects/{pid}/runs/import", files=files, data=form, headers=headers)


def test_import_regmix_runs(client, admin):
    p = client.post("/v1/projects", json={"name": "pile"}, headers=admin).json()
    r = _import(
        client,
        admin,
        p["id"],
        MIX.read_bytes(),
        LOSS.read_bytes(),
        tags="regmix,1m",
        model_params="1000000",
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == "regmix" and body["created"] == 512
    assert len(body["domains_created"]) == 17 and body["domains_created"][0] == "the_pile_arxiv"
    assert len(body["metrics"]) == 13 and "metric/the_pile_pile_cc_val_loss" in body["metrics"]
    project = client.get(f"/v1/projects/{p['id']}", headers=admin).json()
    assert len(project["domains"]) == 17 and project["run_count"] == 512
    # spot-check one run against the CSV (index 2)
    rows = {r["index"]: r for r in csv.DictReader(io.StringIO(MIX.read_text()))}
    losses = {r["index"]: r for r in csv.DictReader(io.StringIO(LOSS.read_text()))}
    page = client.get(f"/v1/projects/{p['id']}/runs?limit=2", headers=admin).json()
    run = page["data"][1]
    assert (
        run["external_id"] == "2"
        and run["tags"] == ["regmix", "1m"]
        and run["model_params"] == 1_000_000
    )
    raw = {k.removeprefix("train_"): float(v) for k, v in rows["2"].items() if k != "index"}
    total = sum(raw.values())
    for d, w in raw.items():
        assert run["mixture"][d] == pytest.approx(w / total, abs=1e-12)
    assert sum(run["mixture"].values()) == pytest.approx(1.0, abs=1e-9)
    assert run["metrics"]["metric/the_pile_pile_cc_val_loss"] == pytest.approx(
        float(losses["2"]["metric/the_pile_pile_cc_val_loss"])
    )

    # importing the same files at the same scale again is refused, or skips everything
    again = _import(
        client, admin, p["id"], MIX.read_bytes(), LOSS.read_bytes(), model_params="1000000"
    )
    assert again.status_code == 409 and "on_duplicate=skip" in again.json()["detail"]
    assert "--on-duplicate skip" in again.json()["detail"]  # the CLI's spelling too
    skip = _import(
        client,
        admin,
        p["id"],
        MIX.read_bytes(),
        LOSS.read_bytes(),
        on_duplicate="skip",
        model_params="1000000",
    )
    assert skip.status_code == 200 and skip.json()["created"] == 0 and skip.json()["skipped"] == 512
    assert count_rows("run") == 512


def test_export_regmix_round_trip(client, admin):
    p = client.post("/v1/projects", json={"name": "pile"}, headers=admin).json()
    _import(client, admin, p["id"], MIX.read_bytes(), LOSS.read_bytes())
    z = client.get(f"/v1/projects/{p['id']}/runs/export?format=csv&layout=regmix", headers=admin)
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        mix, met = zf.read("train_mixture.csv"), zf.read("train_loss.csv")
    q = client.post("/v1/projects", json={"name": "copy"}, headers=admin).json()
    r = _import(client, admin, q["id"], mix, met, normalize="false")  # exported sums are exact
    assert r.status_code == 201 and r.json()["created"] == 512
    a = client.get(f"/v1/projects/{p['id']}/runs/export?format=json", headers=admin).json()["runs"]
    b = client.get(f"/v1/projects/{q['id']}/runs/export?format=json", headers=admin).json()["runs"]
    assert [x["mixture"] for x in a] == [x["mixture"] for x in b]
    assert [x["metrics"] for x in a] == [x["metrics"] for x in b]


def test_olmix_import_and_export(client, admin):
    p = make_project(client, admin, domains=("dclm", "code", "math"))
    ratios = "run,name,dclm,code,math\nr1,first,0.5,0.3,0.2\nr2,second,0.2,0.2,0.6\n"
    metrics = "run,name,bpb/arc,bpb/gsm8k\nr1,first,1.2,2.1\nr2,second,1.3,1.9\n"
    r = _import(client, admin, p["id"], ratios.encode(), metrics.encode())
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "olmix" and r.json()["metrics"] == ["bpb/arc", "bpb/gsm8k"]
    runs = client.get(f"/v1/projects/{p['id']}/runs", headers=admin).json()["data"]
    assert runs[0]["name"] == "first" and runs[1]["mixture"] == {
        "dclm": 0.2,
        "code": 0.2,
        "math": 0.6,
    }
    out = client.get(
        f"/v1/projects/{p['id']}/runs/export?format=csv&layout=olmix&part=metrics", headers=admin
    )
    assert out.status_code == 200 and out.text.splitlines()[0] == "run,name,bpb/arc,bpb/gsm8k"
    assert out.text.splitlines()[1].startswith("r1,first,1.2,2.1")


BAD_IMPORTS = [
    ("index,train_a,train_b\n1,0.5,0.5\n", "idx,loss\n1,2.0\n", "metrics has no 'index'"),
    (
        "index,train_a,train_b\n1,0.5,0.5\n2,0.5,0.5\n",
        "index,loss\n1,2.0\n",
        "has no row in metrics",
    ),
    ("index,train_a,train_b\n1,0.5,0.5\n", "index,loss\n1,2.0\n3,1.0\n", "no mixture"),
    ("index,train_a,train_b\n1,0.5,abc\n", "index,loss\n1,2.0\n", "'abc' is not a number"),
    ("index,train_a,train_b\n1,0.5,0.3\n", "index,loss\n1,2.0\n", "sum to 0.8"),
    ("index,train_a,train_b\n1,0.5,0.5\n1,0.5,0.5\n", "index,loss\n1,2.0\n", "appears twice"),
    ("index,train_a,train_b\n1,0.5,0.5\n", "index,loss\n1,nan\n", "not finite"),
    ("foo,bar\n1,2\n", "index,loss\n1,2.0\n", "cannot tell the format"),
    ("", "index,loss\n1,2.0\n", "mixtures is empty"),
    ("index,train_a,train_zz\n1,0.5,0.5\n", "index,loss\n1,2.0\n", "train_zz"),
]


@pytest.mark.parametrize("mix,met,message", BAD_IMPORTS)
def test_bad_imports_are_422_and_store_nothing(client, admin, mix, met, message):
    p = make_project(client, admin, domains=("a", "b"))
    r = _import(client, admin, p["id"], mix.encode(), met.encode(), on_unmatched="error")
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert message in detail or message.removeprefix("train_") in detail, detail
    assert count_rows("run") == 0
    assert len(client.get(f"/v1/projects/{p['id']}", headers=admin).json()["domains"]) == 2


def test_failed_import_into_empty_project_creates_no_domains(client, admin):
    p = client.post("/v1/projects", json={"name": "empty"}, headers=admin).json()
    r = _import(
        client, admin, p["id"], b"index,train_a,train_b\n1,0.5,0.1\n", b"index,loss\n1,2.0\n"
    )
    assert r.status_code == 422
    assert client.get(f"/v1/projects/{p['id']}", headers=admin).json()["domains"] == []


def test_non_utf8_upload(client, admin):
    p = make_project(client, admin, domains=("a", "b"))
    r = _import(client, admin, p["id"], b"\xff\xfe\x00bad", b"index,loss\n1,2.0\n")
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]
