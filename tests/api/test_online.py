"""Online sessions through the API, with the scheduled path run by a real Celery worker + beat."""

import time

from tests.conftest import make_project

DOMAINS = ("web", "code", "math")


def _wait_version(client, headers, url, above: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w = client.get(url, headers=headers).json()
        if w["version"] > above:
            return w
        time.sleep(0.3)
    raise AssertionError(f"weights version did not pass {above}: {w}")


def _obs(step, losses):
    return {
        "step": step,
        "tokens": step * 1000,
        "train_losses": dict(zip(DOMAINS, losses, strict=True)),
    }


def test_session_validation(client, admin):
    p = make_project(client, admin, domains=DOMAINS)
    url = f"/v1/projects/{p['id']}/online-sessions"
    r = client.post(url, json={"algorithm": "nope"}, headers=admin)
    assert r.status_code == 422 and "algorithm" in r.json()["detail"]
    r = client.post(
        url, json={"algorithm": "odm", "initial_weights": {"books": 1.0}}, headers=admin
    )
    assert r.status_code == 422 and "books" in r.json()["detail"]
    r = client.post(url, json={"algorithm": "odm", "params": {"bogus": 1}}, headers=admin)
    assert r.status_code == 422 and "bogus" in r.json()["detail"]
    s = client.post(url, json={"algorithm": "odm"}, headers=admin).json()
    r = client.post(
        f"{url}/{s['id']}/observations",
        json={"observations": [{"step": 1, "train_losses": {"books": 2.0}}]},
        headers=admin,
    )
    assert r.status_code == 422 and "observations[0].train_losses.books" in r.json()["detail"]
    r = client.post(
        f"{url}/{s['id']}/observations",
        content=b'{"observations": [{"step": 1, "train_losses": {"web": NaN}}]}',
        headers={**admin, "content-type": "application/json"},
    )
    assert r.status_code == 422
    r = client.post(
        f"{url}/{s['id']}/observations", json={"observations": [{"step": 1}]}, headers=admin
    )
    assert r.status_code == 422 and "train_losses or eval_losses" in r.json()["detail"]
    assert client.get(f"{url}/999/weights", headers=admin).status_code == 404


def test_scheduled_remix_with_real_worker_and_beat(client, admin, worker):
    p = make_project(client, admin, domains=DOMAINS)
    url = f"/v1/projects/{p['id']}/online-sessions"
    s = client.post(
        url, json={"algorithm": "odm", "schedule": {"every_seconds": 1}, "seed": 1}, headers=admin
    ).json()
    assert s["version"] == 1 and abs(sum(s["weights"].values()) - 1) < 1e-9
    wurl = f"{url}/{s['id']}/weights"
    first = client.get(wurl, headers=admin)
    etag = first.headers["ETag"]
    assert client.get(wurl, headers={**admin, "If-None-Match": etag}).status_code == 304

    # code's loss stays high: ODM (loss as reward) should move weight toward it
    batch = [_obs(t, (2.0, 5.0, 2.0)) for t in range(1, 21)]
    r = client.post(f"{url}/{s['id']}/observations", json={"observations": batch}, headers=admin)
    assert r.json() == {"accepted": 20, "duplicates": 0, "pending": 20}
    w2 = _wait_version(client, admin, wurl, 1)
    assert w2["version"] == 2 and w2["step"] == 20
    assert client.get(wurl, headers={**admin, "If-None-Match": etag}).status_code == 200
    assert w2["weights"]["code"] > s["weights"]["code"]

    # duplicates change nothing twice: same steps again are ignored, no new version
    r = client.post(
        f"{url}/{s['id']}/observations", json={"observations": batch[:5]}, headers=admin
    )
    assert r.json()["accepted"] == 0 and r.json()["duplicates"] == 5
    time.sleep(2.5)
    assert client.get(wurl, headers=admin).json()["version"] == 2
    # a step re-sent with different values is a conflict
    r = client.post(
        f"{url}/{s['id']}/observations",
        json={"observations": [_obs(3, (1.0, 1.0, 1.0))]},
        headers=admin,
    )
    assert r.status_code == 409

    # out of order: later steps first, then an earlier missing one; one re-mix applies all in order
    late = [_obs(t, (2.0, 5.0, 2.0)) for t in (30, 25, 22)]
    client.post(f"{url}/{s['id']}/observations", json={"observations": late}, headers=admin)
    w3 = _wait_version(client, admin, wurl, 2)
    assert w3["step"] == 30
    hist = client.get(f"{url}/{s['id']}/history", headers=admin).json()
    assert [h["version"] for h in hist["weights"]] == list(range(1, w3["version"] + 1))
    assert sum(h["n_observations"] for h in hist["weights"]) == 23
    assert all(o["processed"] for o in hist["observations"]) and len(hist["observations"]) == 23

    # pausing stops re-mixing
    client.patch(f"{url}/{s['id']}", json={"status": "paused"}, headers=admin)
    client.post(
        f"{url}/{s['id']}/observations",
        json={"observations": [_obs(40, (2.0, 5.0, 2.0))]},
        headers=admin,
    )
    time.sleep(2.5)
    assert client.get(wurl, headers=admin).json()["version"] == w3["version"]
