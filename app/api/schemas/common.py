from __future__ import annotations

from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixopt.api_types import ErrorBody, ErrorItem

#: a float that must be finite (NaN and +-inf are refused with a 422 naming the field)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(allow_inf_nan=False, ge=0)]
PositiveFloat = Annotated[float, Field(allow_inf_nan=False, gt=0)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]


INT32 = 2**31 - 1
INT64 = 2**63 - 1
#: 32-bit integer columns (steps, seeds) and 64-bit ones (token and parameter counts)
Int32 = Annotated[int, Field(ge=-INT32, le=INT32)]
Count64 = Annotated[int, Field(ge=0, le=INT64)]


def _bound_integers(schema: dict) -> None:
    """JSON Schema of a model: every integer without a declared range gets the 64-bit range (the
    widest integer column), so the document says what is accepted."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "integer":
                node.setdefault("maximum", INT64)
                node.setdefault("minimum", -INT64)
            stack.extend(v for k, v in node.items() if k not in ("default", "example", "examples"))
        elif isinstance(node, list):
            stack.extend(node)


def _check_integers(value: object, field: str, low: int, high: int) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not low <= value <= high:
            raise ValueError(f"{field}: {value} is out of range [{low}, {high}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_integers(v, f"{field}[{i}]", low, high)


def _numeric(annotation: object) -> bool:
    """Whether a field of this type takes numbers but not booleans."""
    if get_origin(annotation) is Annotated:
        return _numeric(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        args = get_args(annotation)
        return bool not in args and any(_numeric(a) for a in args)
    return annotation in (int, float)


def _reject_bools(annotation: object, value: object, field: str) -> None:
    """JSON ``true``/``false`` where the document says integer or number is refused (pydantic's
    lax mode would read them as 1 and 0)."""
    if isinstance(value, bool):
        if _numeric(annotation):
            raise ValueError(f"{field}: expected a number, got a boolean")
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        _reject_bools(args[0], value, field)
    elif origin in (Union, UnionType):
        for a in args:
            if get_origin(a) in (dict, list) or get_origin(a) is Annotated:
                _reject_bools(a, value, field)
    elif origin is dict and isinstance(value, dict) and len(args) == 2:
        for k, v in value.items():
            _reject_bools(args[1], v, f"{field}.{k}")
    elif origin is list and isinstance(value, list) and args:
        for i, v in enumerate(value):
            _reject_bools(args[0], v, f"{field}[{i}]")


class Schema(BaseModel):
    """Base of every API schema. Integer fields without an explicit ``le``/``ge`` are limited to
    the 64-bit range (in the document and when validated), so no number reaches the database
    out of range; fields stored in 32-bit columns (steps, seeds, ids) declare ``Int32``."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, json_schema_extra=_bound_integers)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: object) -> object:
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                if name in data:
                    _reject_bools(info.annotation, data[name], name)
        return data

    @model_validator(mode="after")
    def _integer_ranges(self) -> Schema:
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if value is None or isinstance(value, dict | str | float):
                continue
            _check_integers(value, name, -INT64, INT64)
        return self


__all__ = ["ErrorBody", "ErrorItem"]


class Message(BaseModel):
    detail: str
