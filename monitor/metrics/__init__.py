"""The registered metrics: every rule, window and export reads this one table.

To add a metric, write its module beside these and add one line below.
"""

from __future__ import annotations

from typing import Final

from decaywatch.monitor.metric import Metric
from decaywatch.monitor.metrics.accuracy import Accuracy
from decaywatch.monitor.metrics.brier import Brier
from decaywatch.monitor.metrics.f1 import F1
from decaywatch.monitor.metrics.precision import Precision
from decaywatch.monitor.metrics.recall import Recall

REGISTRY: Final[dict[str, Metric]] = {m.name: m for m in (Accuracy(), Precision(), Recall(), F1(), Brier())}

SEQUENTIAL: Final = tuple(name for name, metric in REGISTRY.items() if metric.success_rate)
"""Metrics that are success rates over a subsequence of events, so the sequential test can judge them."""
