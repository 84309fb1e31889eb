from __future__ import annotations

import tomllib

import pytest

from decaywatch.monitor.config import ConfigError, ModelPolicy, MonitorConfig

DOC = """
[defaults]
threshold = 0.1
windows = [1000, 10000]

[models.churn-model]
baseline = 0.85
baseline_date = 2024-01-01
floor = 0.6
"""


def test_models_inherit_defaults_and_flags_override() -> None:
    config = MonitorConfig.from_mapping(tomllib.loads(DOC), {"threshold": 0.05})
    churn = config.policy_for("churn-model")
    assert (churn.baseline, churn.baseline_date, churn.floor, churn.threshold) == (0.85, "2024-01-01", 0.6, 0.05)
    assert churn.windows == (1000, 10000) and churn.judged_window == 1000
    other = config.policy_for("anything-else")
    assert other.baseline is None and other.threshold == 0.05


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[defaults]\nthreshhold = 0.1", "unknown key"),
        ("[defaults]\nbaseline = 1.5", "baseline must be in [0, 1]"),
        ("[defaults]\nwindows = [0]", "windows must be positive"),
        ("[defaults]\nwindows = [100]\nmin_samples = 500", "min_samples"),
        ("[defaults]\nthreshold = 'high'", "threshold must be a number"),
        ("[model.x]\nbaseline = 0.9", "unknown top-level key"),
        ("[models.x]\nrule_window = 5", "rule_window 5 is not one of the windows"),
    ],
)
def test_bad_config_names_the_problem(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MonitorConfig.from_mapping(tomllib.loads(doc))


def test_default_policy_is_valid() -> None:
    assert ModelPolicy().judged_window == 1000
