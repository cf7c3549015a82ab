"""Imports of the files people have, unchanged: olmix's CSV layout as its own loader reads it
(``run_id``, extra columns, runs in one file only), RegMix's scales in one project, and CSV
round trips that are byte-identical."""

from __future__ import annotations

import io
import zipfile

from tests.conftest import REGMIX_DIR, count_rows, make_project

MIX = REGMIX_DIR / "train_mixture_1m.csv"
LOSS = REGMIX_DIR / "train_pile_loss_1m.csv"

# what olmix's load_from_csv reads (olmix/fit/loaders.py): run_id, name, domain columns; a
# pandas index column ("Unnamed: 0") and a notes column as people leave them in their files
OLMIX_RATIOS = """Unnamed: 0,run_id,name,dclm,code,math,notes
0,r1,first,0.5,0.3,0.2,baseline
1,r2,second,0.2,0.2,0.6,more math
2,r3,third,0.1,0.8,0.1,code heavy
3,r4,only-in-ratios,0.4,0.4,0.2,crashed
"""
OLMIX_METRICS = """Unnamed: 0,run_id,name,bpb/arc,bpb/gsm8k,wandb_url
0,r1,first,1.2,2.1,https://wandb.ai/x/1
1,r2,second,1.3,1.9,https://wandb.ai/x/2
2,r3,third,1.4,2.3,https://wandb.ai/x/3
3,r9,only-in-metrics,1.1,2.0,https://wandb.ai/x/9
"""


def _import(client, headers, pid, mix: bytes, met: bytes, params=None, **form):
    files = {"mixtures": ("m.csv", mix, "text/csv"), "metrics": ("l.csv", met, "text/csv")}
    return client.post(
        f"/v1/projects/{pid}/runs/import",
        files=files,
        data=form,
        params=params or {},
        headers=headers,
    )


def test_olmix_pair_with_run_id_extra_columns_and_unmatched_runs(client, admin):
    p = make_project(client, admin, domains=("dclm", "code", "math"))
    r = _import(client, admin, p["id"], OLMIX_RATIOS.encode(), OLMIX_METRICS.encode())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == "olmix" and body["created"] == 3
    assert body["metrics"] == ["bpb/arc", "bpb/gsm8k"]
    assert body["unmatched"] == {"mixtures": ["r4"], "metrics": ["r9"]}
    assert body["ignored_columns"] == {"mixtures": ["notes"], "metrics": ["wandb_url"]}
    runs = client.get(f"/v1/projects/{p['id']}/runs", headers=admin).json()["data"]
    assert [(x["external_id"], x["name"]) for x in runs] == [
        ("r1", "first"),
        ("r2", "second"),
        ("r3", "third"),
    ]
    assert runs[2]["mixture"] == {"dclm": 0.1, "code": 0.8, "math": 0.1}
    assert runs[1]["metrics"] == {"bpb/arc": 1.3, "bpb/gsm8k": 1.9}

    # refusing unmatched runs instead stores nothing and names one of them
    q = make_project(client, admin, name="strict", domains=("dclm", "code", "math"))
    strict = _import(
        client, admin, q["id"], OLMIX_RATIOS.encode(), OLMIX_METRICS.encode(), on_unmatched="error"
    )
    assert strict.status_code == 422 and "'r4'" in strict.json()["detail"]
    assert count_rows("run") == 3


def test_column_types_come_from_the_whole_file(client, admin):
    """A metric column whose 30th row is text is not numeric (ignored, reported), and a column
    empty in its first 25 rows but numeric after is a metric: a 20-row sample gets both wrong."""
    p = make_project(client, admin, domains=("a", "b"))
    n = 40
    mix = "run,a,b\n" + "".join(f"r{i},0.5,0.5\n" for i in range(n))
    met = "run,loss,status,late\n" + "".join(
        f"r{i},{2 + i / 100},{'ok' if i == 29 else i},{'' if i < 25 else 3.0 + i}\n"
        for i in range(n)
    )
    r = _import(client, admin, p["id"], mix.encode(), met.encode())
    assert r.status_code == 201, r.text
    assert r.json()["metrics"] == ["loss", "late"] and r.json()["ignored_columns"]["metrics"] == [
        "status"
    ]
    runs = client.get(f"/v1/projects/{p['id']}/runs?limit=100", headers=admin).json()["data"]
    assert "late" not in runs[0]["metrics"] and runs[30]["metrics"]["late"] == 33.0


def test_three_regmix_scales_live_in_one_project(client, admin):
    """RegMix's 1M, 60M and 1B files reuse the same indices (1..N); with the scale in the
    duplicate key they import side by side. Only the 1M pair ships with the repository, so the
    same files stand in for the three scales here (the indices collide exactly as they do)."""
    p = client.post("/v1/projects", json={"name": "pile"}, headers=admin).json()
    scales = [
        (1_000_000, 1_000_000_000),
        (60_000_000, 1_000_000_000),
        (1_000_000_000, 25_000_000_000),
    ]
    for params, tokens in scales:
        r = _import(
            client,
            admin,
            p["id"],
            MIX.read_bytes(),
            LOSS.read_bytes(),
            params={"model_params": params, "train_tokens": tokens},
        )
        assert r.status_code == 201, r.text
        assert r.json()["created"] == 512 and r.json()["skipped"] == 0
    assert count_rows("run") == 3 * 512
    for params, tokens in scales:
        page = client.get(
            f"/v1/projects/{p['id']}/runs?model_params={params}&limit=1", headers=admin
        ).json()
        assert page["count"] == 512 and page["data"][0]["train_tokens"] == tokens
    # the same scale again is a duplicate; skip imports nothing
    again = _import(
        client,
        admin,
        p["id"],
        MIX.read_bytes(),
        LOSS.read_bytes(),
        params={"model_params": 60_000_000, "train_tokens": 1_000_000_000},
    )
    assert again.status_code == 409 and "model_params=60000000" in again.json()["detail"]
    skip = _import(
        client,
        admin,
        p["id"],
        MIX.read_bytes(),
        LOSS.read_bytes(),
        on_duplicate="skip",
        params={"model_params": 60_000_000, "train_tokens": 1_000_000_000},
    )
    assert skip.status_code == 200 and skip.json()["skipped"] == 512
    # a scale given twice with different values is refused, naming it
    clash = _import(
        client,
        admin,
        p["id"],
        MIX.read_bytes(),
        LOSS.read_bytes(),
        model_params="5",
        params={"model_params": 6},
    )
    assert clash.status_code == 422 and "model_params" in clash.json()["detail"]
    assert count_rows("run") == 3 * 512


def _export_pair(client, headers, pid, layout, **params):
    z = client.get(
        f"/v1/projects/{pid}/runs/export",
        params={"format": "csv", "layout": layout, **params},
        headers=headers,
    )
    assert z.status_code == 200, z.text
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        return [zf.read(n) for n in zf.namelist()]


def test_csv_round_trips_are_byte_identical(client, admin):
    # RegMix: the shipped files -> export -> import into a fresh project -> export
    p = client.post("/v1/projects", json={"name": "pile"}, headers=admin).json()
    assert (
        _import(
            client,
            admin,
            p["id"],
            MIX.read_bytes(),
            LOSS.read_bytes(),
            params={"model_params": 1_000_000},
        ).status_code
        == 201
    )
    # a second scale in the same project: the export of one scale is a valid pair on its own
    assert (
        _import(
            client,
            admin,
            p["id"],
            MIX.read_bytes(),
            LOSS.read_bytes(),
            params={"model_params": 60_000_000},
        ).status_code
        == 201
    )
    first = _export_pair(client, admin, p["id"], "regmix", model_params=1_000_000)
    q = client.post("/v1/projects", json={"name": "copy"}, headers=admin).json()
    r = _import(
        client,
        admin,
        q["id"],
        first[0],
        first[1],
        normalize="false",
        params={"model_params": 1_000_000},
    )
    assert r.status_code == 201 and r.json()["created"] == 512, r.text
    assert _export_pair(client, admin, q["id"], "regmix") == first

    # olmix: names survive, ids and values unchanged
    o = make_project(client, admin, name="olmix", domains=("dclm", "code", "math"))
    assert (
        _import(client, admin, o["id"], OLMIX_RATIOS.encode(), OLMIX_METRICS.encode()).status_code
        == 201
    )
    one = _export_pair(client, admin, o["id"], "olmix")
    o2 = make_project(client, admin, name="olmix2", domains=("dclm", "code", "math"))
    assert _import(client, admin, o2["id"], one[0], one[1], normalize="false").status_code == 201
    assert _export_pair(client, admin, o2["id"], "olmix") == one
    assert one[0].decode().splitlines()[1] == "r1,first,0.5,0.3,0.2"
