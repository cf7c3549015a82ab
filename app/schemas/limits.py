"""Size limits read from the settings at validation time (each a ``MIXOPT_MAX_*`` setting), as
``Annotated`` metadata: ``Annotated[list[X], max_items("max_observations")]``. A value over its
limit is a 422 naming the field and the setting."""

from __future__ import annotations

import json
from typing import Any

from pydantic import AfterValidator

from app.core.config import get_settings


def _limit(setting: str) -> int:
    return int(getattr(get_settings(), setting))


def max_items(setting: str) -> AfterValidator:
    """At most ``settings.<setting>`` items in a list."""

    def check(value: Any) -> Any:
        n = _limit(setting)
        if value is not None and len(value) > n:
            raise ValueError(
                f"at most {n} items per request (MIXOPT_{setting.upper()}), got {len(value)}"
            )
        return value

    return AfterValidator(check)


def max_value(setting: str) -> AfterValidator:
    """A number at most ``settings.<setting>``."""

    def check(value: Any) -> Any:
        n = _limit(setting)
        if value is not None and value > n:
            raise ValueError(f"must be at most {n} (MIXOPT_{setting.upper()}), got {value}")
        return value

    return AfterValidator(check)


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _check_json(value: Any) -> Any:
    n = _limit("max_json_field_bytes")
    if value is not None:
        size = json_size(value)
        if size > n:
            raise ValueError(f"is {size} bytes of JSON; at most {n} (MIXOPT_MAX_JSON_FIELD_BYTES)")
    return value


#: a free-form JSON object (``details``, ``params``) no larger than MIXOPT_MAX_JSON_FIELD_BYTES
max_json = AfterValidator(_check_json)


def queue_name(value: str) -> str:
    queues = get_settings().queue_list
    if value not in queues:
        raise ValueError(f"unknown queue {value!r}; workers consume {queues} (MIXOPT_QUEUES)")
    return value
