"""Hostile JSON bodies under the size limit: nesting, long strings, many keys or items, and
non-finite numbers are refused by one bounded pass before any model validation (413/422 naming
the path and the ``MIXOPT_MAX_JSON_*`` setting); a large body is checked off the event loop."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from app.api.json_limits import JsonLimits, check, nodes
from app.core.config import Settings
from tests.conftest import count_rows, make_project
from tests.factories import settings_env

RUN = {"mixture": {"web": 0.5, "code": 0.5}, "metrics": {"loss": 2.0}}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def url(client, admin) -> str:
    p = make_project(client, admin, name="hostile", domains=("web", "code"))
    return f"/v1/projects/{p['id']}/runs"


def _refused(r, status: int = 422) -> tuple[str, str]:
    assert r.status_code == status, r.text
    error = r.json()["errors"][0]
    assert r.json()["detail"] == f"{error['field']}: {error['message']}"
    return error["field"], error["message"]


def _post(client, url: str, raw: str | bytes, admin) -> httpx.Response:
    return client.post(url, content=raw, headers={**admin, **JSON})


def test_nesting_10000_deep_is_a_422_naming_the_setting_at_once(client, admin, url):
    deep = '{"mixture": {"web": 1}, "details": {"x": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    start = time.monotonic()
    field, message = _refused(_post(client, url, deep, admin))
    assert time.monotonic() - start < 2
    assert "MIXOPT_MAX_JSON_DEPTH" in message and "64" in message
    assert field.startswith("details.x[0][0]")
    # objects count too, and the same body unbalanced (never closed) is refused the same way
    nested = '{"a": ' * 10_000 + "1" + "}" * 10_000
    assert "MIXOPT_MAX_JSON_DEPTH" in _refused(_post(client, url, nested, admin))[1]
    assert "MIXOPT_MAX_JSON_DEPTH" in _refused(_post(client, url, "[" * 10_000, admin))[1]
    assert count_rows("run") == 0


def test_depth_limit_is_exact_and_a_setting(client, admin, url):
    def body(depth: int) -> str:  # the run, its details, and depth - 2 objects in them
        inner = '{"a": ' * (depth - 1) + "1" + "}" * (depth - 1)
        return json.dumps(RUN)[:-1] + f', "details": {inner}}}'

    assert _post(client, url, body(64), admin).status_code == 201
    assert "MIXOPT_MAX_JSON_DEPTH" in _refused(_post(client, url, body(65), admin))[1]
    with settings_env(MIXOPT_MAX_JSON_DEPTH="8"):
        field, message = _refused(_post(client, url, body(9), admin))
        assert field == "details" + ".a" * 7 and "deeper than 8 levels" in message
    assert count_rows("run") == 1


def test_nan_1000_deep_is_a_422_not_a_500(client, admin, url):
    raw = '{"mixture": {"web": 1}, "details": {"x": ' + "[" * 1000 + "NaN" + "]" * 1000 + "}}"
    _, message = _refused(_post(client, url, raw, admin))
    assert "MIXOPT_MAX_JSON_DEPTH" in message
    # under the depth limit the strict-JSON check names the field, however deep
    raw = '{"mixture": {"web": 1}, "details": {"x": ' + "[" * 60 + "NaN" + "]" * 60 + "}}"
    field, message = _refused(_post(client, url, raw, admin))
    assert field == "details.x" + "[0]" * 60 and message.startswith("NaN is not a finite")


@pytest.mark.parametrize(
    "details, field, text",
    [
        ('{"a\\"b": {"c": [1, 2, -Infinity]}}', 'details.a"b.c[2]', "-Infinity"),
        ('{"big": 1E+400}', "details.big", "1E+400"),
        ('{"m": ' + "1" * 320 + ".5}", "details.m", "11111111111111111111..."),
        ('{"i": ' + "7" * 4301 + "}", "details.i", "77777777777777777777..."),
        ('{"ok": 1e308, "x": [{"y": 2e308}]}', "details.x[0].y", "2e308"),
    ],
)
def test_non_finite_numbers_are_refused_as_before(client, admin, url, details, field, text):
    raw = '{"mixture": {"web": 1}, "details": ' + details + "}"
    got, message = _refused(_post(client, url, raw, admin))
    assert got == field and message.startswith(f"{text} ")
    # in strings, in keys, or finite but large, they are data
    note = 'NaN Infinity 1e999 [[[ {{ \\" ' + "9" * 400
    ok = (
        '{"mixture": {"web": 1}, "details": {"note": "' + note + '", '
        '"NaN": [1.7976931348623157e+308, 1e-999, 1E+99, 1' + "0" * 300 + "]}}"
    )
    r = _post(client, url, ok, admin)
    assert r.status_code == 201, r.text
    assert r.json()["details"]["note"] == json.loads(f'"{note}"')
    assert count_rows("run") == 1


def test_too_many_keys_in_details_is_a_422_naming_the_path(client, admin, url):
    details = {f"k{i}": i for i in range(100_001)}  # 1.5 MB: checked in a worker thread
    raw = json.dumps({"runs": [RUN, {**RUN, "details": details}]})
    field, message = _refused(_post(client, url, raw, admin))
    assert field == "runs[1].details"
    assert message == "an object with 100001 keys; at most 100000 (MIXOPT_MAX_JSON_KEYS)"
    with settings_env(MIXOPT_MAX_JSON_KEYS="3"):
        body = {**RUN, "details": {"a": 1, "b": {"c": 1, "d": 2, "e": 3, "f": 4}}}
        field, message = _refused(client.post(url, json=body, headers=admin))
        assert field == "details.b" and "MIXOPT_MAX_JSON_KEYS" in message
    assert count_rows("run") == 0


def test_a_too_long_string_is_a_413_naming_path_and_setting(client, admin, url):
    name = "x" * (4 * 2**20 + 1)
    field, message = _refused(
        client.post(url, json={"runs": [RUN, {**RUN, "name": name}]}, headers=admin), 413
    )
    assert field == "runs[1].name" and "MIXOPT_MAX_JSON_STRING_BYTES" in message
    assert "4194305 bytes" in message
    with settings_env(MIXOPT_MAX_JSON_STRING_BYTES="1024"):
        long_key = {**RUN, "details": {"k" * 2000: 1}}
        field, message = _refused(client.post(url, json=long_key, headers=admin), 413)
        assert field.startswith("details.kkk") and field.endswith("...")
        # escapes count as sent: 600 escaped quotes are 1,200 bytes
        escaped = {**RUN, "details": {"q": '"' * 600}}
        field, _ = _refused(client.post(url, json=escaped, headers=admin), 413)
        assert field == "details.q"
        assert client.post(url, json={**RUN, "name": "y" * 200}, headers=admin).status_code == 201
    assert count_rows("run") == 1


def test_too_many_items_is_a_422_and_a_full_batch_still_passes(client, admin, url):
    with settings_env(MIXOPT_MAX_JSON_ITEMS="20"):
        r = client.post(url, json={"runs": [RUN] * 20}, headers=admin)
        assert r.status_code == 201 and r.json()["count"] == 20
        field, message = _refused(client.post(url, json={"runs": [RUN] * 21}, headers=admin))
        assert field == "runs" and "21 items; at most 20 (MIXOPT_MAX_JSON_ITEMS)" in message
        tags = {"runs": [RUN, {**RUN, "tags": [f"t{i}" for i in range(21)]}]}
        assert _refused(client.post(url, json=tags, headers=admin))[0] == "runs[1].tags"
    assert count_rows("run") == 20


def test_nodes_are_counted_as_documented():
    # one per comma and per opening bracket outside strings, plus one
    assert [nodes(b) for b in (b"1", b"[]", b"[1]", b'{"a": [1, 2]}', b'["[,{", {}]')] == [
        1,
        2,
        2,
        4,
        4,
    ]


def test_too_many_values_is_a_413_naming_the_setting(client, admin, url):
    """50,000 runs x 200 tags (52 MB, every other bound kept) held 1.2 GB once parsed and
    validated: refused by count of values before anything parses it."""
    run = {**RUN, "tags": [f"{i:x}" for i in range(200)]}
    raw = json.dumps({"runs": [run] * 50_000}, separators=(",", ":"))
    field, message = _refused(_post(client, url, raw, admin), 413)
    assert field == "body" and "MIXOPT_MAX_JSON_NODES" in message
    assert message.startswith("10350002 JSON values in the body; at most 2500000")
    # exact at the bound: 20 runs of 7 values (run, mixture, 2 weights, metrics, loss, name)
    batch = {"runs": [{**RUN, "name": f"r{i}"} for i in range(20)]}
    assert nodes(json.dumps(batch).encode()) == 2 + 20 * 7
    with settings_env(MIXOPT_MAX_JSON_NODES="1142"):
        big = {"runs": [{**RUN, "name": f"r{i}"} for i in range(163)]}  # 1143 values
        field, message = _refused(client.post(url, json=big, headers=admin), 413)
        assert message.startswith("1143 JSON values in the body; at most 1142")
        r = client.post(url, json={"runs": big["runs"][:-1]}, headers=admin)  # 1136
        assert r.status_code == 201, r.text
    assert count_rows("run") == 162


@pytest.mark.parametrize(
    "body",
    [
        b'{"a\\"b": {"c": [1, 2, -Infinity]}}',
        b'{"x": "q\\\\", "y": ["]]}}", {"z": NaN}]}',
        b'{"runs": [{"k": "' + b"," * 50 + b'"}, {"t": [' + b'"a",' * 30 + b'"b"]}]}',
        b"[[[[[[[[[[[[1]]]]]]]]]]]]",
        b'{"s": "' + b"x" * 300 + b'", "n": 1e999}',
    ],
)
def test_the_pass_in_blocks_sees_what_it_sees_in_one(body, monkeypatch):
    """Strings, escapes and brackets cut by a block's edge: the same refusal (or none)."""
    from app.api import json_limits

    limits = JsonLimits(depth=10, string_bytes=256, keys=100, items=20, nodes=60)
    whole = check(body, limits)
    monkeypatch.setattr(json_limits, "BLOCK_BYTES", 5)
    assert check(body, limits) == whole and nodes(body) == json_limits._Scan(body).nodes
    assert whole is not None


def test_the_pass_itself_holds_little_memory_for_any_body():
    """64 MB of commas or brackets cost the bounded pass a few 4 MiB blocks, not arrays of the
    body's size (before: 1.1-1.7 GB for 60 MB), and are refused on the count of values."""
    import tracemalloc

    limits = JsonLimits.from_settings(Settings())
    for body in (b"[" + b"1," * 30_000_000 + b"1]", b"[" + b"[]," * 20_000_000 + b"[]]"):
        tracemalloc.start()
        try:
            refusal = check(body, limits)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert refusal is not None and "MIXOPT_MAX_JSON_NODES" in refusal.message
        assert peak < 160 * 2**20, peak / 2**20
    # commas and brackets inside strings are not values, and cost no more
    body = b'{"a": [' + b", ".join([b'"' + b"[,{" * 1_000_000 + b'"'] * 16) + b"]}"
    tracemalloc.start()
    try:
        assert check(body, limits) is None and nodes(body) == 18  # object, array, 16 strings
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 160 * 2**20, peak / 2**20


def _random_json(rnd, depth: int = 0):
    r = rnd.random()
    if depth > 5 or r < 0.3:
        return rnd.choice([1, -2.5e10, 'a"b\\c,[{', "é\u2028", None, True, False, "", "]}", 10**20])
    if r < 0.65:
        return [_random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 6))]
    keys = ["k", 'a"', "x,y", "[", "é"]
    return {
        rnd.choice(keys) + str(rnd.randint(0, 9)): _random_json(rnd, depth + 1)
        for _ in range(rnd.randint(0, 6))
    }


@pytest.mark.parametrize("piece", [4, 16, 64])
def test_a_body_parsed_in_pieces_is_what_json_loads_gives(piece, monkeypatch):
    import random

    from app.api import json_limits

    monkeypatch.setattr(json_limits, "PIECE_BYTES", piece)
    limits = JsonLimits.from_settings(Settings())
    rnd = random.Random(piece)
    for t in range(150):
        doc = {"runs": [_random_json(rnd) for _ in range(4)], "x": _random_json(rnd)}
        for indent in (None, 1, "\t"):
            body = json.dumps(doc if t % 2 else doc["runs"], indent=indent).encode()
            refusal, parsed = json_limits.check_and_parse(body, limits)
            assert refusal is None and parsed == json.loads(body), body
    # duplicate keys (the last wins), whitespace, empty containers
    for body in (
        b'{"a": 1, "a": [1,2,3,4,5,6,7,8,9], "a" : {"b":[ 1 , 2 ]} }',
        b" [ 1 , [ ] , { } ] ",
    ):
        assert json_limits.check_and_parse(body, limits) == (None, json.loads(body))
    # not JSON, even where a piece alone would be: left to the route's parser
    for body in (b'{"a":[1,2,]}', b"[1,,2]", b"[1 2]", b'{"a" 1, "b": 2}', b'{"a":[1,2],}'):
        with pytest.raises(ValueError):
            json.loads(body)
        assert json_limits.check_and_parse(body, limits) == (None, json_limits.NOT_PARSED)


def test_a_large_body_is_parsed_once_off_the_event_loop(client, admin, url, monkeypatch):
    """A 2 MB batch: parsed with its check in a worker thread and handed to the route, which
    stores exactly what was sent; Starlette's own parser is never called for it."""
    import starlette.requests

    calls: list[int] = []

    class CountingJson:
        @staticmethod
        def loads(body, **kw):
            calls.append(len(body))
            return json.loads(body, **kw)

    monkeypatch.setattr(starlette.requests, "json", CountingJson)
    runs = [
        {**RUN, "name": f"run {i}", "tags": ["a", "é"], "details": {"i": i, "s": 'q"' * 20}}
        for i in range(12_000)
    ]
    raw = json.dumps({"runs": runs}).encode()
    assert len(raw) > 2 * 2**20
    r = _post(client, url, raw, admin)
    assert r.status_code == 201 and r.json()["count"] == 12_000, r.text[:300]
    assert calls == []  # never parsed again by Starlette
    stored = client.get(f"{url}/{r.json()['ids'][-1]}", headers=admin).json()
    assert stored["name"] == "run 11999" and stored["details"] == runs[-1]["details"]
    assert stored["tags"] == ["a", "é"] and stored["mixture"] == RUN["mixture"]
    # a small body takes the usual way
    assert client.post(url, json=RUN, headers=admin).status_code == 201 and len(calls) == 1


def test_a_batch_validated_in_slices_answers_as_one_call(client, admin, url, monkeypatch):
    """Runs are validated 500 at a time (one call for 50,000 held the GIL for seconds): the
    same 422, errors and their fields in the same order, as validating the batch at once."""
    from app.api.routes import runs as runs_route

    batch = [{**RUN, "name": f"r{i}"} for i in range(1_200)]
    batch[0]["mixture"] = {"web": -1}
    batch[700]["tags"] = ["a"] * 51
    batch[1199]["metrics"] = {"loss": "x"}
    batch[1199]["bogus"] = 1
    bad = {"runs": batch, "extra": True}
    sliced = client.post(url, json=bad, headers=admin)
    monkeypatch.setattr(runs_route, "VALIDATE_SLICE", 10**9)
    whole = client.post(url, json=bad, headers=admin)
    assert sliced.status_code == whole.status_code == 422
    assert sliced.json() == whole.json()
    fields = [e["field"] for e in sliced.json()["errors"]]
    assert "runs[700].tags" in fields and "runs[1199].bogus" in fields and "extra" in fields
    monkeypatch.setattr(runs_route, "VALIDATE_SLICE", 500)
    good = [{**RUN, "name": f"r{i}", "tags": [str(i)]} for i in range(1_200)]
    r = client.post(url, json={"runs": good}, headers=admin)
    assert r.status_code == 201 and r.json()["count"] == 1_200
    listed = client.get(f"{url}?tag=1199", headers=admin).json()["data"]
    assert [x["name"] for x in listed] == ["r1199"]
    assert count_rows("run") == 1_200


def test_defaults_accept_the_largest_documented_requests():
    settings = Settings()
    assert settings.max_json_items >= max(settings.max_batch_runs, 100_000)  # curve points
    assert settings.max_json_keys >= settings.max_domains
    assert settings.max_json_string_bytes >= 3 * settings.max_json_field_bytes
    limits = JsonLimits.from_settings(settings)
    domains = [f"domain_{i:02d}" for i in range(15)]
    run = {
        "name": "run",
        "mixture": {d: 1 / 15 for d in domains},
        "metrics": {f"val/{d}": 2.5 for d in domains},
        "tags": ["a", "b"],
        "details": {"note": "x" * 40, "lr": 3e-4},
    }
    body = json.dumps({"runs": [run] * settings.max_batch_runs}).encode()
    assert len(body) > 40 * 2**20
    assert nodes(body) <= settings.max_json_nodes
    start = time.monotonic()
    assert check(body, limits) is None
    assert time.monotonic() - start < 20  # about 1 s on 2 shared cores


def test_healthz_answers_while_a_large_body_is_checked(live_server, admin_token, monkeypatch):
    """A 30 MB body is checked in a worker thread: the event loop keeps answering. The check is
    made 3 s slower (as on a busy machine), so a check on the event loop would fail this."""
    from app.api import json_limits

    checked: list[float] = []

    check_and_parse = json_limits.check_and_parse

    def slow_check(body: bytes, limits: JsonLimits):
        start = time.monotonic()
        answer = check_and_parse(body, limits)
        time.sleep(3)
        checked.append(time.monotonic() - start)
        return answer

    monkeypatch.setattr(json_limits, "check_and_parse", slow_check)
    mixture = {f"domain_with_a_longer_name_{i}": 0.04 for i in range(25)}
    run = {"mixture": mixture, "metrics": {"loss": 2.5}, "tags": ["a"]}
    runs = [run] * 60_000  # 1.9M values, under MIXOPT_MAX_JSON_NODES
    body = json.dumps({"runs": runs})[:-2] + ', {"mixture": {"d0": NaN}}]}'  # refused at the end
    assert len(body) > 30 * 2**20
    done: dict[str, object] = {}

    def post() -> None:
        with httpx.Client(base_url=live_server, timeout=60) as c:
            headers = {"Authorization": f"Bearer {admin_token}", **JSON}
            done["response"] = c.post("/v1/projects/1/runs", content=body, headers=headers)

    latencies = []
    with httpx.Client(base_url=live_server, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        sender = threading.Thread(target=post)
        sender.start()
        while sender.is_alive():
            start = time.monotonic()
            assert c.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.02)
        sender.join()
    r = done["response"]
    assert isinstance(r, httpx.Response)
    field, message = _refused(r)
    assert field == "runs[60000].mixture.d0" and message.startswith("NaN")
    assert len(checked) == 1 and max(latencies) < 2, (checked, latencies)
    assert len(latencies) > 10  # polled throughout the check


@pytest.mark.parametrize(
    "payload",
    [
        {"runs": []},
        {"runs": [{"mixture": {"z": 0.5, "a": 0.5}, "name": 'é\n"$(x)', "tags": ["b", "a"]}]},
        {"zz": [1, 2], "runs": [{"x": 1.5e300}, {"y": None}], "aa": {"k": True}},
        {"runs": "not a list"},
        {"name": "one run", "mixture": {"web": 1.0}},
    ],
)
@pytest.mark.parametrize("query", [None, {"normalize": True}])
def test_a_batch_fingerprint_streamed_run_by_run_is_the_whole_body_digest(payload, query):
    """A key stored before the fingerprint was streamed still matches its retried request:
    the digest is the one of a single ``json.dumps`` of the whole body (the first release's)."""
    import hashlib
    import json

    from app.services.idempotency import request_fingerprint

    whole = json.dumps({"body": payload, "query": query or {}}, sort_keys=True, default=str)
    assert request_fingerprint(payload, query) == hashlib.sha256(whole.encode()).hexdigest()
