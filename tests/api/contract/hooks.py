"""Schemathesis checks of our own, loaded with SCHEMATHESIS_HOOKS (tests/api/test_contract.py)."""

import atexit
import json
import os
import re
from collections import Counter

import schemathesis
from hypothesis import strategies as st


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


# -- requests that reach real objects (bench/fuzz.py's seed_objects) -----------------------------
# Random ids mostly answer 404 (schemathesis's "missing test data"); with MIXOPT_FUZZ_IDS set,
# hypothesis chooses, for each generated case, the generated path parameters or the seeded
# objects' ids in their place. The seeded objects stay: a DELETE of one (the coverage phase
# tries id 1, the minimum; stateful links follow ids from responses) goes to an id no object has.
_IDS = json.loads(os.environ.get("MIXOPT_FUZZ_IDS") or "{}")


def _valid(path_parameters: dict) -> bool:
    """Whether every generated value is one the document allows (ids: integers in 1..2**31-1;
    names and job ids: strings of at most 200 characters). A negative case (one that violates
    the document on purpose) keeps its values: schemathesis expects it refused."""
    for key, value in path_parameters.items():
        if isinstance(_IDS.get(key, 1), int):
            if type(value) is not int or not 1 <= value <= 2**31 - 1:
                return False
        elif not isinstance(value, str) or len(value) > 200:
            return False
    return True


if _IDS:

    @schemathesis.hook
    def flatmap_path_parameters(context, path_parameters):
        operation = context.operation
        if not isinstance(path_parameters, dict) or operation is None:
            return st.just(path_parameters)  # no path parameters (None), or a negative case
        known = {k: _IDS[k] for k in path_parameters if k in _IDS}
        if not known or operation.method.upper() == "DELETE" or not _valid(path_parameters):
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, **known}])

    @schemathesis.hook
    def before_call(context, case, kwargs):
        if case.method.upper() != "DELETE" or not isinstance(case.path_parameters, dict):
            return
        names = re.findall(r"{(\w+)}", case.operation.path)
        last = names[-1] if names else None  # the object the DELETE removes
        if last in _IDS and str(case.path_parameters.get(last)) == str(_IDS[last]):
            case.path_parameters[last] = 2**31 - 1
