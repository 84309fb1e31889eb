"""How long after its prediction a synthetic label becomes known: the ``label_delay=`` of every scenario.

In production the truth comes late (a churn label when the customer leaves, a
chargeback weeks after the payment), so a monitor that joins predictions with
labels arriving later must be tested against streams whose delays are known.
A delay is either fixed (``2d``: every label exactly two days after its
prediction, the simplest case to reason about) or log-normal
(``lognormal(median=3d,sigma=1)``: most labels within days, a long tail of
weeks, the shape real label delays tend to have).  Durations take the
monitor's units: ``s``, ``m``, ``h``, ``d``, ``w``.

A delay only samples and describes itself; :mod:`producer.stream` decides which
generator it draws from, so the same seed always gives the same delays.

>>> parse_delay("2d")
Fixed(seconds=172800.0)
>>> str(parse_delay("lognormal(median=3d, sigma=1)"))
'lognormal(median=3d,sigma=1)'
>>> parse_delay("lognormal(median=1h,sigma=0.5)").quantile(0.5)
3600.0
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar, Final

import numpy as np

__all__ = ["DelayError", "Fixed", "LabelDelay", "LogNormal", "format_duration", "parse_delay", "parse_duration"]

_UNITS: Final = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_CALL: Final = re.compile(r"\s*([a-z_]+)\s*\((.*)\)\s*", re.DOTALL)


class DelayError(ValueError):
    """A ``label_delay`` text is not a delay; the message says what was expected."""


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90s``, ``30m``, ``12h``, ``3d`` or ``2w`` (zero allowed: labels known at once)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise DelayError(f"{text.strip()!r} is not a duration like 90s, 30m, 12h, 3d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest duration text that parses back to ``seconds``, in the largest unit that divides it.

    >>> format_duration(259200.0), format_duration(5400.0), format_duration(0.5)
    ('3d', '90m', '0.5s')
    """
    for unit, size in _UNITS.items():
        count = seconds / size
        if count >= 1 and count.is_integer():
            return f"{int(count)}{unit}"
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds!r}s"


class LabelDelay(ABC):
    """A distribution of label delays in seconds (never negative: a label cannot be known before its prediction)."""

    kind: ClassVar[str]

    @abstractmethod
    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` delays in seconds, drawn in one call so that a shorter run is a prefix of a longer one."""

    @abstractmethod
    def quantile(self, q: float) -> float:
        """The distribution's own ``q``-quantile in seconds (what a sample's quantile converges to)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The distribution as plain JSON for the manifest: its kind, its parameters in seconds, its spec text."""


@dataclass(frozen=True)
class Fixed(LabelDelay):
    """Every label exactly ``seconds`` after its prediction."""

    kind: ClassVar[str] = "fixed"
    seconds: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise DelayError(f"a fixed label delay must be a non-negative duration, got {self.seconds!r} s")

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return np.full(count, self.seconds, dtype=np.float64)

    def quantile(self, q: float) -> float:
        return self.seconds

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": str(self), "seconds": self.seconds}

    def __str__(self) -> str:
        return format_duration(self.seconds)


@dataclass(frozen=True)
class LogNormal(LabelDelay):
    """``median * exp(sigma * Z)`` with ``Z`` standard normal: half the labels within ``median``, a long right tail.

    With ``sigma=1`` a tenth of the labels take over 3.6 times the median and a
    hundredth over 10 times: the churn label that comes weeks late.
    """

    kind: ClassVar[str] = "lognormal"
    median: float
    sigma: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median) and self.median > 0):
            raise DelayError(f"lognormal: median must be a positive duration, got {self.median!r} s")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise DelayError(f"lognormal: sigma must be a non-negative number, got {self.sigma!r}")

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return np.asarray(rng.lognormal(math.log(self.median), self.sigma, count), dtype=np.float64)

    def quantile(self, q: float) -> float:
        if self.sigma == 0 or q == 0.5:
            return self.median
        return self.median * math.exp(self.sigma * NormalDist().inv_cdf(q))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": str(self), "median_seconds": self.median, "sigma": self.sigma}

    def __str__(self) -> str:
        return f"lognormal(median={format_duration(self.median)},sigma={self.sigma:g})"


def parse_delay(text: str) -> LabelDelay:
    """A :class:`LabelDelay` from ``DURATION`` or ``lognormal(median=DURATION,sigma=NUMBER)``."""
    call = _CALL.fullmatch(text)
    if call is None:
        return Fixed(parse_duration(text))
    name, body = call.group(1), call.group(2)
    if name != LogNormal.kind:
        raise DelayError(f"unknown label delay {name!r} (expected a duration like 2d, or lognormal(median=3d,sigma=1))")
    params: dict[str, str] = {}
    for item in body.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in ("median", "sigma") or not value:
            raise DelayError(f"lognormal: expected median=DURATION and sigma=NUMBER, got {item.strip()!r}")
        if key in params:
            raise DelayError(f"lognormal: {key} given twice")
        params[key] = value
    if set(params) != {"median", "sigma"}:
        raise DelayError(f"lognormal: needs both median and sigma, got {', '.join(sorted(params)) or 'neither'}")
    try:
        sigma = float(params["sigma"])
    except ValueError:
        raise DelayError(f"lognormal: sigma must be a number, got {params['sigma']!r}") from None
    return LogNormal(parse_duration(params["median"]), sigma)
