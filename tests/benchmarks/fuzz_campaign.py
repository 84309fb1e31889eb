"""A long fuzz campaign against the service loop: the properties of ``tests/unit/test_fuzz.py``, for minutes.

The unit test runs a couple of hundred hostile batches in a few seconds on
every ``make test``; this runs the same generators and the same checks for as
long as you give it, in rounds of fresh random examples, and reports how much
it threw at the service.

For a release check, on the commit to be tagged::

    .venv/bin/python -m tests.benchmarks.fuzz_campaign --minutes 10

It prints a progress line per round and a summary at the end (examples,
batches, messages and bytes generated, valid events, rejections by reason,
what kinds of message were generated), and exits 0 when every property held
for every example.  On a violation it prints hypothesis's shrunk falsifying
example and the seed to replay that round, and exits 1::

    .venv/bin/python -m tests.benchmarks.fuzz_campaign --seed 1234 --rounds 1

Properties, for every generated batch through ``MonitorService.step()`` with
the in-memory fakes: the step never raises; every message is either counted
as a valid event or rejected once, with a reason the event format allows, one
dead-letter record with its original bytes and offset, and one increment of
``decaywatch_invalid_events_total{reason}``; the per-model event, labeled and
correct counters equal the test's own count of the valid events it generated;
offsets are committed after each batch; the scrape, ``/models`` and the alert
events serialise.  Each round also runs the decoder alone on batches of 2,000
adversarial byte strings (mutated events, random bytes, token soup, deep
nesting, tombstones, messages above 1 MiB).

Not collected by pytest (no ``test_`` prefix, and ``tests/benchmarks`` is not
in the default test paths).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import traceback
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.unit.test_fuzz import CONFIGS, Case, adversarial_bytes, check_decoder, hostile_batches, run_through_service

DECODER_BATCH = 2000


@dataclass
class Campaign:
    """What the campaign has generated and checked so far."""

    examples: int = 0
    batches: int = 0
    messages: int = 0
    bytes: int = 0
    largest: int = 0
    valid: int = 0
    alerts: int = 0
    kinds: Tally[str] = field(default_factory=Tally)
    reasons: Tally[str] = field(default_factory=Tally)
    decoder_examples: int = 0
    decoder_messages: int = 0
    decoder_bytes: int = 0
    decoder_reasons: Tally[str] = field(default_factory=Tally)

    def count_case(self, case: Case) -> None:
        size = 0 if case.value is None else len(case.value)
        self.messages += 1
        self.bytes += size
        self.largest = max(self.largest, size)
        self.kinds[case.kind] += 1

    def summary(self, seconds: float) -> list[str]:
        lines = [
            f"service: {self.examples:,} examples, {self.batches:,} batches, {self.messages:,} messages, "
            f"{self.bytes / 1e6:,.1f} MB (largest {self.largest:,} bytes), {self.valid:,} valid events, "
            f"{sum(self.reasons.values()):,} rejected, {self.alerts:,} alert events",
            f"decoder: {self.decoder_examples:,} batches of {DECODER_BATCH:,}, {self.decoder_messages:,} messages, "
            f"{self.decoder_bytes / 1e6:,.1f} MB",
            f"in {seconds:,.0f} s",
            "rejections by reason (service):",
            *(f"  {reason:<20} {n:>10,}" for reason, n in self.reasons.most_common()),
            "rejections by reason (decoder, then schema):",
            *(f"  {reason:<20} {n:>10,}" for reason, n in self.decoder_reasons.most_common()),
            "messages generated, by kind:",
            *(f"  {kind:<20} {n:>10,}" for kind, n in sorted(self.kinds.items())),
        ]
        return lines


FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)


def service_round(campaign: Campaign, round_seed: int, examples: int) -> None:
    """``examples`` fresh hostile runs through the service (raises hypothesis's falsifying example on a violation)."""

    @seed(round_seed)
    @settings(FUZZ, max_examples=examples)
    @given(config=st.sampled_from(sorted(CONFIGS)), batches=hostile_batches)
    def one(config: str, batches: list[list[Case]]) -> None:
        harness = run_through_service(CONFIGS[config], batches)
        campaign.examples += 1
        campaign.batches += len(batches)
        for batch in batches:
            for case in batch:
                campaign.count_case(case)
        ledger = harness.ledger
        campaign.valid += sum(ledger.events.values()) + ledger.untracked
        campaign.reasons.update(ledger.rejections)
        campaign.alerts += ledger.alerts

    one()


def decoder_round(campaign: Campaign, round_seed: int, examples: int) -> None:
    """``examples`` batches of adversarial bytes through decode() and validate()."""

    @seed(round_seed)
    @settings(FUZZ, max_examples=examples)
    @given(rng_seed=st.integers(0, 2**64 - 1))
    def one(rng_seed: int) -> None:
        values = adversarial_bytes(random.Random(rng_seed), DECODER_BATCH)
        campaign.decoder_reasons.update(check_decoder(values))
        campaign.decoder_examples += 1
        campaign.decoder_messages += len(values)
        campaign.decoder_bytes += sum(len(v) for v in values if v is not None)

    one()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="stop starting new rounds after this long (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds (default: only the time limit)")
    parser.add_argument("--examples", type=int, default=200, help="service examples per round (default 200)")
    parser.add_argument(
        "--decoder-examples", type=int, default=10, help=f"decoder batches of {DECODER_BATCH:,} per round (default 10)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the first round (round i uses seed + i); default random")
    return parser


def run(args: argparse.Namespace) -> int:
    logging.disable(logging.WARNING)  # the service logs every rejection batch and the model cap: thousands of lines
    first_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(
        f"fuzz campaign: {args.minutes:g} min, {args.examples} service and {args.decoder_examples} decoder examples a round, "
        f"first seed {first_seed}",
        flush=True,
    )
    campaign = Campaign()
    started = time.monotonic()
    deadline = started + args.minutes * 60.0
    rounds = 0
    while time.monotonic() < deadline and (args.rounds is None or rounds < args.rounds):
        round_seed = first_seed + rounds
        try:
            service_round(campaign, round_seed, args.examples)
            decoder_round(campaign, round_seed, args.decoder_examples)
        except Exception:  # a violated property: hypothesis has shrunk it; report and stop
            traceback.print_exc()
            print(
                f"\nFAILED in round {rounds} (seed {round_seed}); replay: "
                f"python -m tests.benchmarks.fuzz_campaign --seed {round_seed} --rounds 1 --examples {args.examples}",
                flush=True,
            )
            print("\n".join(campaign.summary(time.monotonic() - started)))
            return 1
        rounds += 1
        print(
            f"round {rounds} (seed {round_seed}): {campaign.examples:,} examples, {campaign.messages:,} messages, "
            f"{campaign.bytes / 1e6:,.1f} MB, {campaign.decoder_messages:,} decoder messages, "
            f"{time.monotonic() - started:,.0f} s",
            flush=True,
        )
    print("\n".join(["", f"all properties held over {rounds} round(s)", *campaign.summary(time.monotonic() - started)]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
