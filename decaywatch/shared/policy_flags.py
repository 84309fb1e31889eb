"""The monitoring policy from the command line: ``--config FILE`` and the policy flags, flags winning.

``decaywatch monitor`` and ``decaywatch replay`` take the same policy, so both
register these flags and build their ``MonitorConfig`` here.  Building the
parser imports nothing heavy; the core's config module is imported when the
policy is loaded.

>>> parser = argparse.ArgumentParser()
>>> add_policy_arguments(parser)
>>> config = load_config(parser.parse_args(["--threshold", "0.2", "--windows", "500,5000"]))
>>> config.defaults.threshold, config.defaults.windows
(0.2, (500, 5000))
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decaywatch.monitor.config import MonitorConfig


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("policy (flags override [defaults] in --config)")
    group.add_argument("--config", type=Path, help="TOML file with [defaults] and [models.NAME] tables")
    group.add_argument("--baseline", type=float, help="baseline accuracy for every model (default: learned)")
    group.add_argument("--baseline-date", help="when the baseline was measured, e.g. 2024-01-01")
    group.add_argument("--threshold", type=float, help="alert when baseline - accuracy exceeds this (default 0.1)")
    group.add_argument("--floor", type=float, help="also alert when accuracy is at or below this")
    group.add_argument("--windows", help="comma-separated count windows in labeled events (default 1000,10000)")
    group.add_argument("--min-samples", type=int, help="labeled events a window needs before it is judged (default 500)")
    group.add_argument("--max-models", type=int, help="most models tracked at once (default 10000; [limits] in --config)")
    group.add_argument("--idle-expiry", help="forget a model with no event for this long, e.g. 24h (default 24h; 'never')")


def read_document(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` TOML document (empty without one); ``ConfigError`` when it cannot be read or parsed."""
    from decaywatch.monitor.config import ConfigError

    if args.config is None:
        return {}
    try:
        return tomllib.loads(args.config.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {args.config}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{args.config} is not valid TOML: {error}") from None


def load_config(args: argparse.Namespace, document: dict[str, Any] | None = None) -> MonitorConfig:
    """The policy from ``--config`` and the policy flags (flags win); the file's ``[kafka]`` table is not policy."""
    from decaywatch.monitor.config import ConfigError, MonitorConfig

    document = {key: value for key, value in (read_document(args) if document is None else document).items() if key != "kafka"}
    overrides: dict[str, Any] = {}
    for name in ("baseline", "baseline_date", "threshold", "floor", "min_samples"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "windows", None):
        try:
            overrides["windows"] = tuple(int(w) for w in args.windows.split(","))
        except ValueError:
            raise ConfigError(f"--windows must be comma-separated whole numbers, not {args.windows!r}") from None
    limits = dict(document.get("limits", {}))
    if getattr(args, "max_models", None) is not None:
        limits["max_models"] = args.max_models
    if getattr(args, "idle_expiry", None):
        limits["idle_expiry"] = None if args.idle_expiry == "never" else args.idle_expiry
    return MonitorConfig.from_mapping({**document, "limits": limits}, overrides)
