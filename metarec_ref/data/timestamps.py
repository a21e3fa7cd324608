"""Reading the ``timestamp`` column: dates, ISO text and epoch numbers, held to the plausible years.

:func:`parse_timestamps` is what :func:`~metarec_ref.data.schema.validate_events` calls. Epoch
numbers need a unit (``timestamp_unit``); a unit that puts every date outside :data:`PLAUSIBLE_YEARS`
while another fits is refused and the likely unit named (:func:`likely_timestamp_unit`). ISO text
outside those years is refused with the same message: a date in 1700 or 1900 is a typo or a
placeholder, not an event.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

TIMESTAMP_UNITS = ("s", "ms", "us", "ns", "D")
# Dates outside these years are taken as read with the wrong unit, typos or placeholders.
PLAUSIBLE_YEARS = (1980, 2100)
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def likely_timestamp_unit(values: pd.Series) -> str | None:
    """The epoch unit ('s', 'ms', 'us' or 'ns') putting the median of ``values`` in plausible years."""
    finite = pd.to_numeric(values, errors="coerce")
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return None
    median = float(np.median(np.abs(finite.to_numpy(dtype=np.float64))))
    lo, hi = (pd.Timestamp(f"{y}-01-01").timestamp() for y in PLAUSIBLE_YEARS)
    for unit, scale in (("s", 1.0), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)):
        if lo * scale <= median < hi * scale:
            return unit
    return None


def _plain(value):
    # np.int64(5) -> 5, so messages show the number as it is in the file.
    return value.item() if isinstance(value, np.generic) else value


def _unit_advice(values: pd.Series, given: str | None) -> str:
    unit = likely_timestamp_unit(values)
    if unit is None or unit == given:
        return "check the column: epoch numbers are usually seconds ('s') or milliseconds ('ms')"
    return f"the numbers look like epoch {_UNIT_NAMES[unit]}: pass timestamp_unit={unit!r}"


def _epoch_timestamps(col: pd.Series, timestamp_unit: str | None) -> pd.Series:
    example = _plain(col.iloc[0])
    if timestamp_unit is None:
        unit = likely_timestamp_unit(col)
        hint = (f"pass timestamp_unit={unit!r} (they look like epoch {_UNIT_NAMES[unit]})" if unit
                else "pass timestamp_unit='s' (or 'ms') to read epoch numbers")
        raise ValueError(
            f"column 'timestamp' is numeric (e.g. {example!r}); {hint}, or convert it with pd.to_datetime"
        )
    if timestamp_unit not in TIMESTAMP_UNITS:
        raise ValueError(f"timestamp_unit must be one of {list(TIMESTAMP_UNITS)}; got {timestamp_unit!r}")
    if col.isna().any():
        raise ValueError(f"column 'timestamp' has {int(col.isna().sum())} missing values")
    n_inf = int(col.isin([np.inf, -np.inf]).sum())
    if n_inf:
        raise ValueError(f"column 'timestamp' has {n_inf} infinite values (inf); drop or fix those rows")
    try:
        parsed = pd.to_datetime(col, unit=timestamp_unit).astype("datetime64[ns]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError) as err:
        raise ValueError(
            f"column 'timestamp' read with timestamp_unit={timestamp_unit!r} gives dates out of range "
            f"(e.g. {example!r} -> {str(err).split(': ')[-1]}); {_unit_advice(col, timestamp_unit)}"
        ) from None
    outside = _outside_years(parsed)
    if not outside.any():
        return parsed
    likely = likely_timestamp_unit(col)
    span = f"timestamp_unit={timestamp_unit!r} gives {_date_span(parsed)}"
    if outside.all() and likely not in (None, timestamp_unit):
        raise ValueError(_implausible(f"read with {span}", _unit_advice(col, timestamp_unit)))
    # No other unit does better: relative times (seconds from 0) or a few placeholders.
    warnings.warn(
        f"{int(outside.sum())} of {len(col)} timestamps fall outside {PLAUSIBLE_YEARS[0]}-"
        f"{PLAUSIBLE_YEARS[1]} (e.g. {_plain(col[outside].iloc[0])!r} -> {parsed[outside].iloc[0]:%Y-%m-%d}; "
        f"{span}); fine for relative times, otherwise fix timestamp_unit or drop placeholder rows such as 0",
        UserWarning,
        stacklevel=4,
    )
    return parsed


def _outside_years(parsed: pd.Series) -> pd.Series:
    lo, hi = (pd.Timestamp(f"{y}-01-01") for y in PLAUSIBLE_YEARS)
    return (parsed < lo) | (parsed >= hi)


def _date_span(parsed: pd.Series) -> str:
    return f"dates from {parsed.min():%Y-%m-%d} to {parsed.max():%Y-%m-%d}"


def _implausible(how: str, fix: str) -> str:
    """The one message for dates outside the plausible years, however the column was written."""
    return f"column 'timestamp' {how}, outside {PLAUSIBLE_YEARS[0]}-{PLAUSIBLE_YEARS[1]}; {fix}"


def parse_timestamps(col: pd.Series, timestamp_unit: str | None) -> pd.Series:
    """The column ``timestamp`` as ``datetime64[ns]`` (naive UTC), from dates, ISO text or epoch numbers.

    Every way of writing a date meets the same checks: missing and unparseable values, and dates
    outside :data:`PLAUSIBLE_YEARS` (a ValueError with one message for text and numbers; only
    epoch numbers that no other unit explains better are kept, with a warning: relative times).
    """
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.astype("datetime64[ns]")
    if pd.api.types.is_bool_dtype(col):
        raise ValueError("column 'timestamp' is boolean; it must hold dates or epoch numbers")
    if pd.api.types.is_numeric_dtype(col):
        return _epoch_timestamps(col, timestamp_unit)
    n_missing = int(col.isna().sum())
    if n_missing:
        raise ValueError(
            f"column 'timestamp' has {n_missing} missing values; drop those rows before validating"
        )
    if timestamp_unit is not None:
        # Epoch numbers stored as text (JSON strings, ids kept as str) are still epoch numbers.
        numbers = pd.to_numeric(col, errors="coerce")
        if numbers.notna().all():
            return _epoch_timestamps(numbers, timestamp_unit)
    parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna()
    if bad.any():
        example = col[bad].iloc[0]
        raise ValueError(
            f"column 'timestamp' has {int(bad.sum())} unparseable values, e.g. {example!r}; "
            f"use ISO dates like '2011-12-01 08:26' or pass timestamp_unit for epoch numbers"
        )
    parsed = parsed.dt.tz_localize(None)
    outside = _outside_years(parsed)  # before nanoseconds, which end in 1677 and 2262
    if outside.any():
        example = col[outside.to_numpy()].iloc[0]
        raise ValueError(_implausible(
            f"gives {_date_span(parsed)}",
            f"{int(outside.sum())} of {len(col)} dates lie outside (e.g. {example!r}); fix or drop those rows "
            "(a placeholder date such as 1900-01-01?)"))
    return parsed.astype("datetime64[ns]")


__all__ = ["PLAUSIBLE_YEARS", "TIMESTAMP_UNITS", "likely_timestamp_unit", "parse_timestamps"]
