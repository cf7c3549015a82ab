"""CSV imports of the files spreadsheets write and of the files attackers send, through the API:
every line end, a byte-order mark, comma/semicolon/tab delimiters, quoted line breaks; a stray
carriage return, huge fields, huge headers and bytes that are not UTF-8 are 422s that name the
file, the line and the column, and store nothing."""

import time

import pytest

from tests.conftest import count_rows, make_project

#: a text column ("note", ignored and reported) holds a quoted line break
MIXTURES = [
    ["run", "name", "note", "web", "code", "math"],
    ["r1", "first", "plain", "0.2", "0.3", "0.5"],
    ["r2", '"two, quoted"', '"line\nbreak, ""quoted"""', "0.6", "0.2", "0.2"],
    ["r3", "", "", "1", "0", "0"],
]
METRICS = [["run", "loss", "acc"], ["r1", "2.5", "0.1"], ["r2", "2.25", ""], ["r3", "3", "0.3"]]


def _csv(rows: list[list[str]], end: str = "\n", delimiter: str = ",") -> bytes:
    return "".join(delimiter.join(row) + end for row in rows).encode()


def _import(client, headers, pid, mix: bytes, met: bytes, **form):
    files = {"mixtures": ("m.csv", mix, "text/csv"), "metrics": ("l.csv", met, "text/csv")}
    return client.post(f"/v1/projects/{pid}/runs/import", files=files, data=form, headers=headers)


def _runs(client, headers, pid) -> list[tuple]:
    data = client.get(f"/v1/projects/{pid}/runs", headers=headers).json()["data"]
    return sorted(
        (r["external_id"], r["name"], sorted(r["mixture"].items()), sorted(r["metrics"].items()))
        for r in data
    )


def _imported(client, headers, mix: bytes, met: bytes) -> list[tuple]:
    p = make_project(client, headers)
    r = _import(client, headers, p["id"], mix, met)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] == 3 and body["metrics"] == ["loss", "acc"]
    assert body["ignored_columns"] == {"mixtures": ["note"], "metrics": []}
    return _runs(client, headers, p["id"])


def _refused(client, headers, mix: bytes, met: bytes, *words: str) -> str:
    """The import is a 422 whose message holds every word, and stores nothing."""
    p = make_project(client, headers)
    before = count_rows("run")
    r = _import(client, headers, p["id"], mix, met)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    for word in words:
        assert word in detail, detail
    assert count_rows("run") == before
    return detail


def test_lf_import_is_the_reference(client, admin):
    runs = _imported(client, admin, _csv(MIXTURES), _csv(METRICS))
    assert runs[1][1] == "two, quoted"  # a quoted delimiter kept
    assert runs[1][3] == [("loss", 2.25)]  # an empty cell: no metric


@pytest.mark.parametrize("end", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_crlf_and_classic_mac_line_ends_import_the_same_runs(client, admin, end):
    reference = _imported(client, admin, _csv(MIXTURES), _csv(METRICS))
    assert _imported(client, admin, _csv(MIXTURES, end), _csv(METRICS, end)) == reference


def test_mixed_line_ends_import_the_same_runs(client, admin):
    reference = _imported(client, admin, _csv(MIXTURES), _csv(METRICS))
    mix = b"run,name,note,web,code,math\r\nr1,first,plain,0.2,0.3,0.5\r"
    mix += b'r2,"two, quoted","line\r\nbreak",0.6,0.2,0.2\n'
    mix += b"r3,,,1,0,0"  # no line end at the end of the file
    assert _imported(client, admin, mix, _csv(METRICS, "\r")) == reference


def test_byte_order_mark_is_dropped(client, admin):
    reference = _imported(client, admin, _csv(MIXTURES), _csv(METRICS))
    bom = b"\xef\xbb\xbf"
    assert _imported(client, admin, bom + _csv(MIXTURES), bom + _csv(METRICS, "\r\n")) == (
        reference
    )


@pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolon", "tab"])
def test_semicolon_and_tab_delimiters_are_sniffed(client, admin, delimiter):
    reference = _imported(client, admin, _csv(MIXTURES), _csv(METRICS))
    mix, met = _csv(MIXTURES, "\r\n", delimiter), _csv(METRICS, "\n", delimiter)
    assert _imported(client, admin, mix, met) == reference


def test_blank_rows_and_columns_that_spreadsheets_leave_are_skipped(client, admin):
    reference = _imported(client, admin, _csv(MIXTURES), _csv(METRICS))
    assert _imported(client, admin, _csv([[*r, "", ""] for r in MIXTURES]), _csv(METRICS)) == (
        reference
    )
    mix = _csv(MIXTURES, "\r\n") + b",,,,,\r\n\r\n"
    assert _imported(client, admin, mix, _csv(METRICS) + b"\n,,\n") == reference


def test_stray_carriage_return_ends_the_row_and_is_a_422(client, admin):
    """Decision: a CR alone ends a line, as the csv module reads a file opened with
    newline=''; the row it cuts is shorter than the header, a 422 naming the line and the
    column where it ends."""
    mix = b"run,name,web,code,math\nr1,first,0.2,0.3,0.5\nr2,sec\rond,0.6,0.2,0.2\nr3,,1,0,0\n"
    detail = _refused(client, admin, mix, _csv(METRICS), "mixtures line 3", "column 2 ('name')")
    assert "carriage return" in detail and "header has 5" in detail
    # quoted, the same carriage return is data (of a text column, ignored)
    mix = b'run,note,web,code,math\nr1,,0.2,0.3,0.5\nr2,"sec\rond",0.6,0.2,0.2\nr3,,1,0,0\n'
    p = make_project(client, admin)
    r = _import(client, admin, p["id"], mix, _csv(METRICS))
    assert r.status_code == 201 and r.json()["created"] == 3, r.text


@pytest.mark.parametrize("size", [100_000, 200_000, 5_000_000], ids=["100kB", "200kB", "5MB"])
def test_a_field_over_the_limit_is_a_422_naming_file_line_column_and_setting(client, admin, size):
    met = _csv([["run", "loss", "acc"], ["r1", "2.5", "0.1"], ["r2", "9" * size, "1"]])
    _refused(
        client,
        admin,
        _csv(MIXTURES),
        met,
        "metrics line 3, column 2",
        "MIXOPT_MAX_CSV_FIELD_BYTES",
        "at most 65536",
    )


def test_a_long_quoted_field_spanning_lines_is_located(client, admin):
    name = '"' + "x\n" * 100_000 + '"'
    mix = _csv([*MIXTURES[:2], ["r2", "", name, "0.6", "0.2", "0.2"]], "\r\n")
    _refused(client, admin, mix, _csv(METRICS), "mixtures line 3, column 3", "FIELD_BYTES")


def test_200000_columns_are_refused_on_the_header_within_a_second(client, admin):
    names = [f"metric{i}" for i in range(200_000)]
    met = _csv([["run", *names], *(["r" + str(i), *(["1"] * len(names))] for i in (1, 2, 3))])
    assert len(met) > 2_000_000
    p = make_project(client, admin)
    start = time.perf_counter()
    r = _import(client, admin, p["id"], _csv(MIXTURES), met)
    elapsed = time.perf_counter() - start
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "metrics line 1: 200001 columns" in detail and "MIXOPT_MAX_CSV_COLUMNS" in detail
    assert elapsed < 5, elapsed
    assert count_rows("run") == 0


def test_non_utf8_file_is_a_422_naming_file_and_line(client, admin):
    met = "run,loss,acc\nr1,2.5,0.1\nr2,2.25,\nr3,3,0.3 caf\xe9\n".encode("latin-1")
    _refused(client, admin, _csv(MIXTURES), met, "metrics is not UTF-8", "line 4", "0xe9")


@pytest.mark.parametrize(
    "mix,words",
    [
        (b'run,name,web,code,math\nr1,"first,0.2,0.3,0.5\n', ("mixtures line 2", "never closed")),
        (b'run,name,web,code,math\nr1,"a"b,0.2,0.3,0.5\n', ("mixtures line 2",)),
        (b"run,name,web,code,math\nr1,a,0.2,0.3,0.5,9\n", ("column 6 is beyond",)),
        (b"run,web,web\nr1,0.5,0.5\n", ("mixtures line 1, column 3", "duplicate")),
        (b"run;web;code;math\nr1;0,2;0,3;0,5\n", ("mixtures",)),
    ],
    ids=["unclosed-quote", "text-after-quote", "long-row", "duplicate-column", "decimal-comma"],
)
def test_malformed_csv_is_a_422_never_a_500(client, admin, mix, words):
    _refused(client, admin, mix, _csv(METRICS), *words)
