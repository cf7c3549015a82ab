from __future__ import annotations

from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixopt.api_types import ErrorBody, ErrorItem

#: a float that must be finite (NaN and +-inf are refused with a 422 naming the field)
#: (strict: a JSON number only; true/false and numeric strings are refused, as the document says)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
NonNegFloat = Annotated[float, Field(allow_inf_nan=False, ge=0, strict=True)]
PositiveFloat = Annotated[float, Field(allow_inf_nan=False, gt=0, strict=True)]
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
        metas = get_args(annotation)[1:]
        if any(
            getattr(m, "strict", None)
            or any(getattr(x, "strict", None) for x in getattr(m, "metadata", ()))
            for m in metas
        ):
            return False  # strict types refuse booleans themselves
        return _numeric(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        args = get_args(annotation)
        return bool not in args and any(_numeric(a) for a in args)
    return annotation in (int, float)


def _element(annotation: object) -> tuple[str, object] | None:
    """How a field's values are checked for booleans: ``scalar``, ``list`` or ``dict`` of
    numbers."""
    if get_origin(annotation) is Annotated:
        return _element(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        for a in get_args(annotation):
            found = _element(a) if a is not type(None) else None
            if found:
                return found
        return None
    if _numeric(annotation):
        return ("scalar", annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args and _numeric(args[0]):
        return ("list", args[0])
    if origin is dict and len(args) == 2 and _numeric(args[1]):
        return ("dict", args[1])
    return None


_PLANS: dict[type, list[tuple[str, str]]] = {}
_INT_FIELDS: dict[type, list[str]] = {}


def _has_int(annotation: object) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _has_int(get_args(annotation)[0])
    if origin in (Union, UnionType, list):
        return any(_has_int(a) for a in get_args(annotation))
    return annotation is int


def _bool_plan(cls: type[BaseModel]) -> list[tuple[str, str]]:
    """The fields of ``cls`` that take numbers in lax mode (computed once per class)."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = [
            (name, kind[0])
            for name, info in cls.model_fields.items()
            if (kind := _element(info.annotation))
        ]
        _PLANS[cls] = plan
    return plan


def _is_bool(v: object) -> bool:
    return v is True or v is False


class Schema(BaseModel):
    """Base of every API schema. Integer fields without an explicit ``le``/``ge`` are limited to
    the 64-bit range (in the document and when validated), so no number reaches the database
    out of range; fields stored in 32-bit columns (steps, seeds, ids) declare ``Int32``."""

    model_config = ConfigDict(
        extra="forbid", from_attributes=True, json_schema_extra=_bound_integers
    )

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: object) -> object:
        """JSON ``true``/``false`` where the document says integer or number is refused (lax mode
        would read them as 1 and 0); strict float types (``FiniteFloat``...) refuse them already."""
        if isinstance(data, dict):
            for name, kind in _bool_plan(cls):
                value = data.get(name)
                bad = (
                    _is_bool(value)
                    if kind == "scalar"
                    else isinstance(value, list) and any(map(_is_bool, value))
                    if kind == "list"
                    else isinstance(value, dict) and any(map(_is_bool, value.values()))
                )
                if bad:
                    raise ValueError(f"{name}: expected a number, got a boolean")
        return data

    @model_validator(mode="after")
    def _integer_ranges(self) -> Schema:
        cls = type(self)
        names = _INT_FIELDS.get(cls)
        if names is None:
            names = _INT_FIELDS[cls] = [
                n for n, info in cls.model_fields.items() if _has_int(info.annotation)
            ]
        for name in names:
            value = getattr(self, name, None)
            if value is not None:
                _check_integers(value, name, -INT64, INT64)
        return self


__all__ = ["ErrorBody", "ErrorItem"]


class Message(BaseModel):
    detail: str
