from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Message(BaseModel):
    detail: str
