"""Monitoring policy: per model baseline, threshold, floor and windows.

Read from a TOML document (``decaywatch monitor --config FILE``)::

    [defaults]
    threshold = 0.1          # the contract: alert when baseline - accuracy > 0.1
    decision = "sequential"  # how the contract is judged: "sequential" (default) or "window"
    margin = 0.05            # sequential: reference accuracies line +/- margin (default: threshold/2, at most 0.05)
    evidence = 12.0          # sequential: log-likelihood ratio needed to fire (and to resolve)
    confidence_z = 3.0       # sequential: and the evidence span's accuracy beyond the line at this z
    discount_bursts = true   # sequential: errors in runs count as the fewer independent events they are worth
    windows = [1000, 10000]  # count windows, in labeled events
    time_windows = ["1h", "1d", "7d"]  # event-time windows
    allowed_lateness = "1h"  # events older than the newest event time minus this are late
    label_ttl = "7d"         # a prediction with an event_id waits this long (event time) for its label event
    orphan_ttl = "1h"        # a label event that came first waits this long for its prediction
    max_pending = 1000000    # predictions waiting per model; the oldest leave first past it
    min_label_coverage = 0.0 # an event-time window reports accuracy once this share of its labels is in
    min_samples = 500        # no rule fires before the judged window holds this many
    learn_baseline_from = 1000

    [models.churn-model]
    baseline = 0.85
    baseline_date = 2024-01-01
    floor = 0.6

Any model not listed gets ``[defaults]``; without a ``baseline`` it learns one
from its first ``learn_baseline_from`` labeled events.  This module parses an
already-loaded mapping: reading the file is the caller's job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from decaywatch.monitor.metrics import REGISTRY
from decaywatch.monitor.metrics import SEQUENTIAL as SEQUENTIAL_METRICS
from decaywatch.monitor.timewindow import parse_duration

METRICS = tuple(REGISTRY)
"""Metrics a rule may watch (the registered ones)."""

DECISIONS = ("sequential", "window")
"""How a rule decides: a sequential test on the line (default), or the plain rule on the judged window."""


class ConfigError(ValueError):
    """The configuration is not valid; the message names the key and the problem."""


@dataclass(frozen=True, slots=True)
class MetricRule:
    """A rule on another metric than the contract's accuracy, e.g. the recall of a fraud model.

    ``metric`` is one of accuracy, precision, recall, f1, brier; it fires when
    the metric is more than ``threshold`` worse than ``baseline`` (for brier:
    higher).  ``decision`` defaults to the model's for accuracy, precision and
    recall, and is always ``window`` for f1 and brier.
    """

    metric: str
    baseline: float
    threshold: float
    decision: str | None = None
    min_samples: int | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"rule metric must be one of {list(METRICS)}, not {self.metric!r}")
        if not 0.0 <= self.baseline <= 1.0 or not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"rule on {self.metric}: baseline must be in [0, 1] and threshold in [0, 1)")
        if self.decision is not None and self.decision not in DECISIONS:
            raise ConfigError(f"rule on {self.metric}: decision must be one of {list(DECISIONS)}")
        if self.decision == "sequential" and self.metric not in SEQUENTIAL_METRICS:
            raise ConfigError(f"rule on {self.metric}: only {list(SEQUENTIAL_METRICS)} can use the sequential decision")

    @property
    def name(self) -> str:
        return f"{self.metric}_degradation"


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """How one model is judged."""

    baseline: float | None = None
    baseline_date: str | None = None
    learn_baseline_from: int = 1000
    threshold: float = 0.1
    floor: float | None = None
    windows: tuple[int, ...] = (1000, 10000)
    rule_window: int | None = None
    min_samples: int = 500
    recovery_margin: float = 0.05
    decision: str = "sequential"
    margin: float | None = None
    """Sequential: the reference accuracies sit this far either side of the line; default half the threshold, at
    most 0.05 (so a small threshold is judged between accuracies it can tell apart from the baseline)."""
    evidence: float = 12.0
    cooldown: int = 0
    floor_tolerance: float = 0.02
    confidence_z: float = 3.0
    discount_bursts: bool = True
    """Sequential rules divide the evidence of errors that come in runs by their variance inflation (``dependence.py``)."""
    time_windows: tuple[str, ...] = ("1h", "1d", "7d")
    allowed_lateness: str = "1h"
    positive_label: int | str | bool | None = 1
    """The positive class for precision, recall and F1 (``None``: not a binary model)."""
    rules: tuple[MetricRule, ...] = ()
    label_ttl: str = "7d"
    """How long (event time) a prediction with an ``event_id`` and no label waits for its label event."""
    orphan_ttl: str = "1h"
    """How long (event time) a label event that came before its prediction waits for it."""
    max_pending: int = 1_000_000
    """Predictions waiting for a label, per model; past it the oldest leave (counted) at the end of a batch."""
    min_label_coverage: float = 0.0
    """An event-time window reports an accuracy only once this share of its predictions has its label."""

    def __post_init__(self) -> None:
        if self.baseline is not None and not 0.0 <= self.baseline <= 1.0:
            raise ConfigError(f"baseline must be in [0, 1], not {self.baseline}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"threshold must be in [0, 1), not {self.threshold}")
        if self.floor is not None and not 0.0 <= self.floor < 1.0:
            raise ConfigError(f"floor must be in [0, 1), not {self.floor}")
        if not self.windows or any(type(w) is not int or w < 1 for w in self.windows):
            raise ConfigError(f"windows must be positive whole numbers of labeled events, not {list(self.windows)}")
        if self.rule_window is not None and self.rule_window not in self.windows:
            raise ConfigError(f"rule_window {self.rule_window} is not one of the windows {list(self.windows)}")
        if self.min_samples < 1 or self.min_samples > self.judged_window:
            raise ConfigError(
                f"min_samples must be between 1 and the judged window ({self.judged_window}), not {self.min_samples}"
            )
        if self.learn_baseline_from < 1:
            raise ConfigError(f"learn_baseline_from must be at least 1, not {self.learn_baseline_from}")
        if not 0.0 <= self.recovery_margin < 1.0:
            raise ConfigError(f"recovery_margin must be in [0, 1), not {self.recovery_margin}")
        if self.decision not in DECISIONS:
            raise ConfigError(f"decision must be one of {list(DECISIONS)}, not {self.decision!r}")
        if self.margin is not None and not 0.0 < self.margin < 0.5:
            raise ConfigError(f"margin must be in (0, 0.5), not {self.margin}")
        if not self.evidence > 0.0:
            raise ConfigError(f"evidence must be positive, not {self.evidence}")
        if type(self.discount_bursts) is not bool:
            raise ConfigError(f"discount_bursts must be true or false, not {self.discount_bursts!r}")
        if type(self.cooldown) is not int or self.cooldown < 0:
            raise ConfigError(f"cooldown must be a whole number of labeled events >= 0, not {self.cooldown}")
        if not 0.0 <= self.min_label_coverage <= 1.0:
            raise ConfigError(f"min_label_coverage must be in [0, 1], not {self.min_label_coverage}")
        if type(self.max_pending) is not int or self.max_pending < 1:
            raise ConfigError(f"max_pending must be a whole number >= 1, not {self.max_pending!r}")
        for text in (self.label_ttl, self.orphan_ttl):
            try:
                parse_duration(text)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"label_ttl and orphan_ttl take durations: {error}") from None
        for text in (*self.time_windows, self.allowed_lateness):
            try:
                parse_duration(text)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"time_windows and allowed_lateness take durations: {error}") from None
        if not self.confidence_z >= 0.0:
            raise ConfigError(f"confidence_z must be >= 0, not {self.confidence_z}")
        if not 0.0 <= self.floor_tolerance < 0.5:
            raise ConfigError(f"floor_tolerance must be in [0, 0.5), not {self.floor_tolerance}")

    @property
    def judged_window(self) -> int:
        """The window the rules watch: ``rule_window``, else the smallest."""
        return self.rule_window if self.rule_window is not None else min(self.windows)


_POLICY_FIELDS = {f.name: f for f in dataclasses.fields(ModelPolicy)}


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one monitor tracks, so a stream that invents model ids cannot exhaust memory or metrics.

    ``max_models``: models tracked at once; events of further models are
    counted as untracked (``decaywatch_untracked_events_total``), not kept.
    ``idle_expiry``: a model with no event for this long (wall clock, judged by
    the service) and no open alert is forgotten and its series removed
    (``None``: never).
    """

    max_models: int = 10_000
    idle_expiry: str | None = "24h"

    def __post_init__(self) -> None:
        if type(self.max_models) is not int or self.max_models < 1:
            raise ConfigError(f"max_models must be a whole number >= 1, not {self.max_models!r}")
        if self.idle_expiry is not None:
            try:
                parse_duration(self.idle_expiry)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"idle_expiry: {error}") from None

    @property
    def idle_expiry_seconds(self) -> float | None:
        return None if self.idle_expiry is None else parse_duration(self.idle_expiry)


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Policies for every model: per-model entries over shared defaults."""

    defaults: ModelPolicy = field(default_factory=ModelPolicy)
    models: Mapping[str, ModelPolicy] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    def policy_for(self, model: str) -> ModelPolicy:
        return self.models.get(model, self.defaults)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> MonitorConfig:
        """Build from a parsed TOML document; ``overrides`` (from command-line flags) replace ``[defaults]`` keys."""
        unknown = set(document) - {"defaults", "models", "limits"}
        if unknown:
            raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}: expected [defaults], [models.NAME] and [limits]")
        base = {**_section(document.get("defaults", {}), "defaults"), **dict(overrides or {})}
        defaults = _policy(base, "defaults")
        models_doc = document.get("models", {})
        if not isinstance(models_doc, Mapping):
            raise ConfigError("[models] must be a table of [models.NAME] tables")
        models = {
            name: _policy({**base, **_section(section, f"models.{name}")}, f"models.{name}")
            for name, section in models_doc.items()
        }
        limits_doc = document.get("limits", {})
        if not isinstance(limits_doc, Mapping) or set(limits_doc) - {"max_models", "idle_expiry"}:
            raise ConfigError("[limits] takes max_models (a whole number) and idle_expiry (a duration like 24h)")
        return cls(defaults, models, Limits(**limits_doc))


def _section(section: Any, where: str) -> dict[str, Any]:
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{where}] must be a table")
    unknown = set(section) - set(_POLICY_FIELDS)
    if unknown:
        raise ConfigError(f"[{where}] has unknown key(s) {sorted(unknown)}; known: {sorted(_POLICY_FIELDS)}")
    return dict(section)


def _policy(values: dict[str, Any], where: str) -> ModelPolicy:
    values = dict(values)
    if isinstance(values.get("baseline_date"), date):
        values["baseline_date"] = values["baseline_date"].isoformat()
    for name in ("windows", "time_windows"):
        if name in values:
            values[name] = tuple(values[name])
    if "rules" in values:
        rules = values["rules"]
        if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
            raise ConfigError(f"[{where}] rules must be an array of tables ([[{where}.rules]])")
        try:
            values["rules"] = tuple(MetricRule(**r) for r in rules)
        except TypeError as error:
            raise ConfigError(f"[{where}] rules: {error}") from None
    for name in (
        "baseline",
        "threshold",
        "floor",
        "recovery_margin",
        "margin",
        "evidence",
        "floor_tolerance",
        "confidence_z",
        "min_label_coverage",
    ):
        if name in values and values[name] is not None and type(values[name]) not in (int, float):
            raise ConfigError(f"[{where}] {name} must be a number, not {values[name]!r}")
    try:
        return ModelPolicy(**values)
    except ConfigError as error:
        if str(error).startswith("["):
            raise
        raise ConfigError(f"[{where}] {error}") from None
    except TypeError as error:
        raise ConfigError(f"[{where}] {error}") from None
