"""Human durations in configuration: ``5s``, ``250ms``, ``1m30s`` or a bare number of seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated

from sidecar.core.settings_model import BeforeValidator

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds as a float; raises ``ValueError`` naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s, 250ms or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"{value!r} is not a duration: use a number of seconds or e.g. 5s, 250ms, 1m30s"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("expected a duration such as 5s, 250ms or 1m")
    if not math.isfinite(seconds):  # "inf", "nan" and "1e999" are floats too
        raise ValueError(f"{value!r} is not a finite duration: use e.g. 5s, 250ms or 1m")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
