"""Sources are read with the roots of the token that registered them (issue 24, item 4).

A write token may register sources only inside ``MIXOPT_DATA_ROOTS``; an admin token also inside
``MIXOPT_ADMIN_DATA_ROOTS``. The domain row remembers which (``Domain.source_admin``), and
ingestion re-checks the source on disk with those roots: a file, a glob's directory or a file a
glob or directory reads that became a symlink into an admin-only root after a write token
registered it fails ingestion with the registration's roots message; the same swap under an
admin's source ingests. The in-process cases call the function the ingestion task runs
(:func:`workers.tasks.training.ingest_project`); the last ones go through the API and a real
worker started with the admin-only roots.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import _HOME, make_project, start_worker_process, wait_job
from tests.factories import settings_env

SECRET = "ADMIN-ONLY-9b3e51"
ROOT = Path(_HOME) / "data"  # a data root of the tests (MIXOPT_DATA_ROOTS)
ADMIN_ROOT = Path(_HOME) / "admin-only"  # outside every data root
QUEUE = "srcroots"


def _jsonl(path: Path, text: str, n: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": f"{text} {i}"}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def tree():
    """Fresh public files under a data root and admin-only files under the admin root."""
    tag = uuid.uuid4().hex[:8]
    pub = ROOT / f"sr-{tag}"
    adm = ADMIN_ROOT / f"sr-{tag}"
    _jsonl(pub / "web.jsonl", "public web")
    _jsonl(pub / "globdir" / "a.jsonl", "public glob")
    _jsonl(pub / "dir" / "a.jsonl", "public dir")
    _jsonl(adm / "secret.jsonl", SECRET)
    _jsonl(adm / "secretdir" / "s.jsonl", SECRET)
    with settings_env(MIXOPT_ADMIN_DATA_ROOTS=str(ADMIN_ROOT)):
        yield {"pub": pub, "adm": adm}
    shutil.rmtree(pub, ignore_errors=True)
    shutil.rmtree(adm, ignore_errors=True)


def _write_token(client, admin, project_id: int) -> dict[str, str]:
    r = client.post(
        "/v1/tokens",
        json={"name": "writer", "role": "write", "project_ids": [project_id]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _register(client, headers, project_id: int, path, tokenizer=None) -> None:
    src = {"path": str(path), "format": "jsonl"}
    if tokenizer is not None:
        src["tokenizer"] = str(tokenizer)
    r = client.patch(
        f"/v1/projects/{project_id}",
        json={"domains": [{"name": "web", "source": src}]},
        headers=headers,
    )
    assert r.status_code == 200, r.text


def _roots_message(client, tok, project_id: int, adm: Path) -> str:
    """What registration answers a write token for a path in the admin-only root."""
    r = client.patch(
        f"/v1/projects/{project_id}",
        json={"domains": [{"name": "web", "source": {"path": str(adm / "secret.jsonl")}}]},
        headers=tok,
    )
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == "domains[0].source.path" and str(ADMIN_ROOT) not in err["message"]
    return err["message"]


def _swap_for_link(path: Path, target: Path) -> None:
    """Replace ``path`` (a file or a directory) by a symlink to ``target``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


def _source_admin(session, project_id: int) -> bool:
    from app.store.models import Domain

    session.expire_all()
    return session.query(Domain).filter_by(project_id=project_id, name="web").one().source_admin


def _swaps(tree) -> list[tuple[str, Path, Path, Path]]:
    """(what, registered source, path swapped, symlink target): a file, a glob's directory, a
    file a glob matches, a file inside a directory source."""
    pub, adm = tree["pub"], tree["adm"]
    return [
        ("file", pub / "web.jsonl", pub / "web.jsonl", adm / "secret.jsonl"),
        ("glob dir", pub / "globdir" / "*.jsonl", pub / "globdir", adm / "secretdir"),
        (
            "glob file",
            pub / "globdir" / "*.jsonl",
            pub / "globdir" / "z.jsonl",
            adm / "secret.jsonl",
        ),
        ("dir file", pub / "dir", pub / "dir" / "z.jsonl", adm / "secret.jsonl"),
    ]


@pytest.mark.parametrize("case", range(4), ids=["file", "glob-dir", "glob-file", "dir-file"])
def test_a_write_tokens_source_swapped_into_an_admin_root_is_refused(
    client, admin, session, tree, case
):
    from app.services.errors import Invalid
    from workers.tasks.training import ingest_project

    _, source, swapped, target = _swaps(tree)[case]
    p = make_project(client, admin, name="p", domains=())
    tok = _write_token(client, admin, p["id"])
    message = _roots_message(client, tok, p["id"], tree["adm"])
    _register(client, tok, p["id"], source)
    assert _source_admin(session, p["id"]) is False
    ingest_project(p["id"])  # registered normally, it ingests

    if swapped.exists() or swapped.is_symlink():
        _swap_for_link(swapped, target)
    else:
        swapped.symlink_to(target)
    with pytest.raises(Invalid) as exc:
        ingest_project(p["id"])
    assert exc.value.field == "domains[0].source.path"
    assert exc.value.message == message  # the registration's answer, word for word
    assert SECRET not in str(exc.value)


@pytest.mark.parametrize("case", range(4), ids=["file", "glob-dir", "glob-file", "dir-file"])
def test_the_same_swap_under_an_admins_source_ingests(client, admin, session, tree, case):
    from workers.tasks.training import ingest_project

    _, source, swapped, target = _swaps(tree)[case]
    p = make_project(client, admin, name="p", domains=())
    _register(client, admin, p["id"], source)
    assert _source_admin(session, p["id"]) is True
    if swapped.exists() or swapped.is_symlink():
        _swap_for_link(swapped, target)
    else:
        swapped.symlink_to(target)
    out = ingest_project(p["id"])
    assert out["web"].n_train_tokens > 0


def test_a_directory_source_with_a_symlink_inside_the_roots_ingests_one_outside_is_refused(
    client, admin, tree, tmp_path
):
    """A file of a directory source that is a symlink to another file of the data roots is read
    (named as listed in the directory: the cache key and listing are the same whatever the link
    resolves to); one that leads out of every root is refused, never read."""
    from app.services.errors import Invalid
    from workers.tasks.training import ingest_project

    pub = tree["pub"]
    (pub / "dir" / "linked.jsonl").symlink_to(pub / "web.jsonl")
    p = make_project(client, admin, name="p", domains=())
    tok = _write_token(client, admin, p["id"])
    _register(client, tok, p["id"], pub / "dir")
    out = ingest_project(p["id"])["web"]
    meta = json.loads((out.path / "meta.json").read_text())
    assert [f["path"] for f in meta["files"]] == ["a.jsonl", "linked.jsonl"]
    alone = ingest_project(p["id"])["web"]  # the same content again: the same shards
    assert alone.cache_hit and alone.path == out.path
    outside = _jsonl(tmp_path / "elsewhere.jsonl", "outside every root")
    (pub / "dir" / "z.jsonl").symlink_to(outside)
    with pytest.raises((Invalid, PermissionError)) as exc:
        ingest_project(p["id"])
    assert "outside every root" not in str(exc.value)


def test_a_tokenizer_swapped_into_an_admin_root_is_refused_for_a_write_token(client, admin, tree):
    from app.services.errors import Invalid
    from workers.tasks.training import ingest_project

    pub, adm = tree["pub"], tree["adm"]
    (pub / "tok.json").write_text("{}")
    (adm / "tok.json").write_text("{}")
    p = make_project(client, admin, name="p", domains=())
    tok = _write_token(client, admin, p["id"])
    message = _roots_message(client, tok, p["id"], adm)
    _register(client, tok, p["id"], pub / "web.jsonl", tokenizer=pub / "tok.json")
    _swap_for_link(pub / "tok.json", adm / "tok.json")
    with pytest.raises(Invalid) as exc:
        ingest_project(p["id"])
    assert exc.value.field == "domains[0].source.tokenizer" and exc.value.message == message


def test_the_flag_follows_the_token_that_last_registered_the_source(client, admin, session, tree):
    """Created by an admin: admin roots; re-sent by a write token: write roots (its source now);
    an admin registering it again restores them; domain changes record their token too."""
    from app.services.errors import Invalid
    from workers.tasks.training import ingest_project

    pub, adm = tree["pub"], tree["adm"]
    body = {"name": "p", "domains": [{"name": "web", "source": {"path": str(pub / "web.jsonl")}}]}
    r = client.post("/v1/projects", json=body, headers=admin)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert _source_admin(session, pid) is True
    tok = _write_token(client, admin, pid)
    _register(client, tok, pid, pub / "web.jsonl")
    assert _source_admin(session, pid) is False
    _swap_for_link(pub / "web.jsonl", adm / "secret.jsonl")
    with pytest.raises(Invalid):
        ingest_project(pid)
    _register(client, admin, pid, pub / "web.jsonl")  # an admin registers it again
    assert _source_admin(session, pid) is True
    assert ingest_project(pid)["web"].n_train_tokens > 0

    add = {"add": [{"name": "more", "source": {"path": str(pub / "dir")}}]}
    r = client.post(f"/v1/projects/{pid}/domain-changes", json=add, headers=tok)
    assert r.status_code in (200, 201), r.text
    from app.store.models import Domain

    session.expire_all()
    assert session.query(Domain).filter_by(project_id=pid, name="more").one().source_admin is False


def test_an_admin_root_nested_in_a_data_root_stays_admin_only(client, admin, tree):
    """The innermost root holding a path decides: a write token can neither register nor ingest
    a path under an admin-only root that lies inside one of its data roots."""
    from app.services.errors import Invalid
    from workers.tasks.training import ingest_project

    pub = tree["pub"]
    private = pub / "private"
    _jsonl(private / "secret.jsonl", SECRET)
    with settings_env(MIXOPT_ADMIN_DATA_ROOTS=os.pathsep.join([str(ADMIN_ROOT), str(private)])):
        p = make_project(client, admin, name="p", domains=())
        tok = _write_token(client, admin, p["id"])
        r = client.patch(
            f"/v1/projects/{p['id']}",
            json={"domains": [{"name": "web", "source": {"path": str(private / "secret.jsonl")}}]},
            headers=tok,
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "domains[0].source.path"
        _register(client, tok, p["id"], pub / "web.jsonl")
        _swap_for_link(pub / "web.jsonl", private / "secret.jsonl")
        with pytest.raises(Invalid) as exc:
            ingest_project(p["id"])
        assert exc.value.message == r.json()["errors"][0]["message"]
        _register(client, admin, p["id"], private / "secret.jsonl")


# -- end to end: the API and a real worker that has the admin-only roots ----------------------
@pytest.fixture(scope="module")
def roots_worker(engine):
    ADMIN_ROOT.mkdir(parents=True, exist_ok=True)
    proc = start_worker_process(
        QUEUE, extra_env={"MIXOPT_ADMIN_DATA_ROOTS": str(ADMIN_ROOT)}, queues=QUEUE
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:
        proc.kill()


def _ingest_job(client, headers, project_id: int) -> dict:
    with settings_env(MIXOPT_JOB_QUEUE=QUEUE):
        r = client.post(f"/v1/projects/{project_id}/domains/ingest", headers=headers)
    assert r.status_code == 202, r.text
    return wait_job(client, headers, r.json()["job"]["id"])


def test_ingestion_jobs_on_a_worker_use_the_registering_tokens_roots(
    client, admin, tree, roots_worker
):
    pub, adm = tree["pub"], tree["adm"]
    mine = make_project(client, admin, name="mine", domains=())
    tok = _write_token(client, admin, mine["id"])
    message = _roots_message(client, tok, mine["id"], adm)
    _register(client, tok, mine["id"], pub / "globdir" / "*.jsonl")
    job = _ingest_job(client, tok, mine["id"])  # a write token's source, registered normally
    assert job["state"] == "succeeded", job["error"]

    _swap_for_link(pub / "globdir", adm / "secretdir")
    job = _ingest_job(client, tok, mine["id"])
    assert job["state"] == "failed" and message in job["error"] and SECRET not in job["error"]

    theirs = make_project(client, admin, name="theirs", domains=())
    _register(client, admin, theirs["id"], pub / "globdir" / "*.jsonl")
    job = _ingest_job(client, admin, theirs["id"])  # an admin's source may lead there
    assert job["state"] == "succeeded", job["error"]
    done = client.get(f"/v1/projects/{theirs['id']}", headers=admin).json()
    assert done["domains"][0]["token_count_measured"] is True
