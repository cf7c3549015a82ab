"""Schemathesis checks of our own, loaded with SCHEMATHESIS_HOOKS (tests/api/test_contract.py)."""

import atexit
import json
import os
from collections import Counter

import schemathesis


@schemathesis.check
def no_database_range_error(ctx, response, case):
    """A number the document allows must never reach the database out of its column's range:
    the handlers for database range errors answer 422 with an empty ``errors`` list."""
    if response.status_code == 422:
        body = response.json()
        if not body.get("errors") and "out of range" in body.get("detail", ""):
            raise AssertionError(f"a value reached the database out of range: {body['detail']}")


@schemathesis.check
def error_names_the_field(ctx, response, case):
    """Every 422 says which field is wrong, in ``detail`` and in ``errors``."""
    if response.status_code == 422:
        body = response.json()
        errors = body.get("errors") or []
        if not errors or not all(
            isinstance(e.get("field"), str) and e.get("message") for e in errors
        ):
            raise AssertionError(f"a 422 without a field: {body}")


# -- the status tally (bench/fuzz.py, tests/api/test_contract.py) --------------------------------
# Every response schemathesis receives, by status; the requests answered >= 500 by method, path
# and the start of the body. Written as JSON to the file named by MIXOPT_FUZZ_TALLY (when set) on
# exit and every 200 responses; failing checks are schemathesis's report, this counts every 5xx.
_TALLY = os.environ.get("MIXOPT_FUZZ_TALLY")
_statuses: Counter[str] = Counter()
_server_errors: list[str] = []


def _write_tally() -> None:
    if _TALLY:
        with open(_TALLY, "w") as f:
            json.dump({"statuses": _statuses, "server_errors": _server_errors}, f)


if _TALLY:
    atexit.register(_write_tally)

    @schemathesis.hook
    def after_call(context, case, response):
        _statuses[str(response.status_code)] += 1
        if response.status_code >= 500 and len(_server_errors) < 200:
            _server_errors.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]!r}"
            )
        if sum(_statuses.values()) % 200 == 0:
            _write_tally()
