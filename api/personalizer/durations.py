"""Durations as Personalizer's configuration writes them: ISO 8601 (`PT5M`, `P1DT12H`),
and the .NET TimeSpan form (`00:05:00`, `1.12:00:00`) that its portal and older SDKs used.
Answers are ISO 8601."""

from __future__ import annotations

import re

from engine.errors import InvalidInput

_ISO = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)
_TIMESPAN = re.compile(r"(?:(?P<d>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)")
_SECONDS = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse(text: str, field: str) -> float:
    """Seconds in `text`; refused (naming `field`) unless it is a positive duration."""
    iso = _ISO.fullmatch(text)
    span = None if iso else _TIMESPAN.fullmatch(text)
    match = iso or span
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise InvalidInput(
            f"{field} must be an ISO 8601 duration such as PT5M or P1D "
            f"(or a TimeSpan such as 00:05:00), got {text!r}",
            field=field,
        )
    return sum(float(v) * _SECONDS[k] for k, v in match.groupdict().items() if v)


def format_seconds(seconds: float) -> str:
    """`PT10M`, `P1DT2H`, `PT0.5S`: the shortest ISO 8601 form of `seconds`."""
    days, rest = divmod(seconds, 86_400.0)
    hours, rest = divmod(rest, 3_600.0)
    minutes, secs = divmod(rest, 60.0)
    out = f"P{int(days)}D" if days else "P"
    clock = ""
    if hours:
        clock += f"{int(hours)}H"
    if minutes:
        clock += f"{int(minutes)}M"
    if secs or (not days and not clock):
        clock += f"{f'{round(secs, 6):f}'.rstrip('0').rstrip('.') or '0'}S"
    return out + (f"T{clock}" if clock else "")
