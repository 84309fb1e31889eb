"""``decaywatch policy``: what a policy costs in false alarms and buys in delay, before anyone is paged.

The on-call engineer's two numbers for the contract's sequential rule
(``monitor/rates.py``): how many labeled events pass between false alarms on
a model at its baseline, and how many until a fall to a given accuracy is
caught; in time at a label rate, and for a fleet of such models.  Raising
``--evidence`` by one multiplies the first several times over (8.6 times at
the default contract) and adds a few events to the second: that is how a
fleet is held to a false-page budget.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DAY_SECONDS = 86_400.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "policy",
        help="print a policy's expected false-alarm interval and its delay to catch a fall",
        description="For the contract's sequential rule: the expected labeled events between false alarms on a model "
        "at its baseline, and until a fall to --fall-to is caught; in time at --labels-per-day, and for --models such "
        "models. Exact for the CUSUM on a fine lattice; the confidence gate and min_samples only lengthen both.",
        epilog="exit codes: 0 printed, 2 usage error.",
    )
    parser.add_argument("--baseline", type=float, required=True, help="the model's baseline accuracy")
    parser.add_argument("--threshold", type=float, default=0.1, help="the contract's threshold (default 0.1)")
    parser.add_argument("--margin", type=float, help="reference accuracies line +/- margin (default: threshold/2, at most 0.05)")
    parser.add_argument("--evidence", type=float, default=12.0, help="log-likelihood ratio to fire (default 12)")
    parser.add_argument("--fall-to", type=float, metavar="ACCURACY", help="the fall to time (default baseline - 2 x threshold)")
    parser.add_argument("--labels-per-day", type=float, metavar="N", help="labeled events per model per day, to give times")
    parser.add_argument("--models", type=int, default=1, help="models watched with this policy (default 1)")
    parser.add_argument(
        "--error-runs",
        type=float,
        metavar="P",
        help="chance that a wrong prediction is followed by another at the baseline (default: errors independent)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from decaywatch.monitor.config import ConfigError, ModelPolicy  # here, so --help imports nothing heavy
    from decaywatch.monitor.rates import expected_events, markov_phi
    from decaywatch.monitor.rule import reference_margin

    try:
        policy = ModelPolicy(baseline=args.baseline, threshold=args.threshold, margin=args.margin, evidence=args.evidence)
        if args.models < 1 or (args.labels_per_day is not None and args.labels_per_day <= 0):
            raise ConfigError("--models and --labels-per-day must be positive")
        assert policy.baseline is not None
        line = policy.baseline - policy.threshold
        fall = args.fall_to if args.fall_to is not None else policy.baseline - 2 * policy.threshold
        margin = reference_margin(policy, policy.threshold)
        phi = 1.0 if args.error_runs is None else markov_phi(policy.baseline, args.error_runs)
        quiet = expected_events(policy.baseline, line, margin, policy.evidence, phi)
        delay = expected_events(fall, line, margin, policy.evidence, phi)
    except (ConfigError, ValueError) as error:
        print(f"decaywatch policy: {error}", file=sys.stderr)
        return 2
    runs = "independent errors" if phi == 1.0 else f"errors in runs (P(wrong after wrong) {args.error_runs}: phi {phi:.2f})"
    print(
        f"policy: baseline {policy.baseline:g}, threshold {policy.threshold:g} (line {line:g}), margin {margin:g}, "
        f"evidence {policy.evidence:g}; {runs}"
    )
    print(f"at the baseline: a false alarm every {_events(quiet)} labeled events on average{_when(quiet, args)}")
    if args.models > 1:
        print(f"  for {args.models:,} such models: {_fleet(quiet, args)}")
    print(f"fall to {fall:g}: caught after {_events(delay)} labeled events on average{_when(delay, args)}")
    return 0


def _events(n: float) -> str:
    return f"{n:,.0f}" if n < 1e9 else f"{n:.1e}"


def _when(events: float, args: argparse.Namespace) -> str:
    if args.labels_per_day is None:
        return ""
    return f" ({_duration(events / args.labels_per_day * DAY_SECONDS)} at {args.labels_per_day:,.0f} labels a day)"


def _fleet(events: float, args: argparse.Namespace) -> str:
    if args.labels_per_day is None:
        return f"one false alarm every {_events(events / args.models)} labeled events of the fleet's"
    per_day = args.models * args.labels_per_day / events
    return f"{per_day:.2g} false alarms a day, one every {_duration(DAY_SECONDS / per_day)}"


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * DAY_SECONDS), ("days", DAY_SECONDS), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} seconds"
