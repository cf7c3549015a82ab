"""Bad input never produces a 500: every route gets malformed bodies, ids and query strings."""

from tests.conftest import make_project

BODIES = [
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"{}",
    b'{"a": NaN}',
    b"{",
    b'{"mixture": 1}',
    b'{"runs": "x"}',
    b'{"runs": [null]}',
    b'{"name": 1e999}',
    b'{"count": -1}',
    b'{"observations": [{"step": -5}]}',
    b'{"mixtures": [{"a": "b"}]}',
    b'{"estimator": "' + b"x" * 5000 + b'"}',
    b'{"constraints": {"bounds": {"a": {"min": 2}}}}',
    b'{"algorithm": "odm", "schedule": {"every_seconds": 0}}',
]
IDS = ["1", "0", "-1", "999999999999999999999", "abc", "%00"]


def test_no_route_answers_500(client, admin):
    p = make_project(client, admin)
    client.post(
        f"/v1/projects/{p['id']}/runs",
        json={"mixture": {"web": 1.0}, "metrics": {"l": 1.0}},
        headers=admin,
    )
    # /readyz answers 503 by design when no worker heartbeats (none runs here): not a server error
    paths = [
        (path, method)
        for path, item in client.get("/openapi.json").json()["paths"].items()
        for method in item
        if path != "/readyz"
    ]
    assert len(paths) > 25
    failures = []
    for path, method in paths:
        combos = [(str(p["id"]), o) for o in IDS] + [(bad, "1") for bad in IDS[1:]]
        for pid, other in combos:
            url = path.replace("{project_id}", pid)
            for name in ("run_id", "fit_id", "rec_id", "session_id", "job_id", "token_id"):
                url = url.replace("{" + name + "}", other)
            bodies = (
                (BODIES if pid == str(p["id"]) and other == "1" else BODIES[:5])
                if method in ("post", "patch", "put")
                else [None]
            )
            for body in bodies:
                kw = (
                    {"content": body, "headers": {**admin, "content-type": "application/json"}}
                    if body is not None
                    else {"headers": admin}
                )
                r = client.request(
                    method.upper(), url + "?limit=-1&cursor=%%&normalize=maybe", **kw
                )
                if r.status_code >= 500 and not (r.status_code == 503 and "queue" in r.text):
                    failures.append((method, url, body, r.status_code, r.text[:200]))
                r = client.request(method.upper(), url, **kw)
                if r.status_code >= 500 and not (r.status_code == 503 and "queue" in r.text):
                    failures.append((method, url, body, r.status_code, r.text[:200]))
    assert not failures, failures[:10]
