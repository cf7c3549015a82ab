"""Schemathesis checks of our own, loaded with SCHEMATHESIS_HOOKS (tests/api/test_contract.py)."""

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
