"""Run the fuzzing properties of tests/test_fuzz.py, and the differential
test of tests/oracle, for much longer.

The properties, generators and the RFC 6455 model live in ``tests/fuzz/``;
this script drives them with Hypothesis in random (not derandomized) batches
until it has run ``--examples`` examples per property or ``--seconds`` have
passed, then prints a summary: examples run, outcomes seen, time per example
and, for a failure, the shrunk failing example and its error.

Run it from the repository root, so that ``tests.fuzz`` is importable::

    PYTHONPATH=. python benchmarks/fuzz_long.py --examples 5000 --seconds 600
    PYTHONPATH=. python benchmarks/fuzz_long.py --property server_frames --seconds 60
    PYTHONPATH=. python benchmarks/fuzz_long.py --property oracle_server_deflate --seconds 60

``--seed`` makes a run reproducible. The exit status is 1 if any property
failed, else 2 if a property ran no example at all (the time bound was
used up before its turn: it was not tested, so it is not reported "ok").
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
import traceback
from functools import partial
from typing import Any

from hypothesis import given, seed, settings

from tests.fuzz.properties import PROPERTIES, settings_kwargs
from tests.oracle.streams import streams
from tests.oracle.test_differential import compare
from tests.oracle.test_sending import check, conversations


def sending(client: bool, compress: bool, conversation: Any) -> str:
    check(*conversation, client=client, compress=compress)
    return "read back"


#: The fuzzing properties, and the differential tests of tests/oracle (trio_ws's
#: protocol core against bare wsproto, receiving and sending, no sockets:
#: thousands of examples a minute).
ALL = {
    **PROPERTIES,
    "oracle_server": (partial(streams, masked=True, deflate=False), compare),
    "oracle_client": (partial(streams, masked=False, deflate=False), compare),
    "oracle_server_deflate": (partial(streams, masked=True, deflate=True), compare),
    "oracle_client_deflate": (partial(streams, masked=False, deflate=True), compare),
    "oracle_send": (conversations, partial(sending, False, False)),
    "oracle_send_client": (conversations, partial(sending, True, False)),
    "oracle_send_deflate": (conversations, partial(sending, False, True)),
    "oracle_send_client_deflate": (conversations, partial(sending, True, True)),
}


def run_property(
    name: str, examples: int, deadline: float, batch: int, rng: random.Random, verbose: bool
) -> dict[str, Any]:
    """Run *name* in batches until *examples* or *deadline*; return its summary."""
    strategy, check = ALL[name]
    outcomes: collections.Counter[str] = collections.Counter()
    failure: str | None = None
    started = time.monotonic()
    ran = 0

    def body(case: Any) -> None:
        nonlocal ran
        ran += 1
        outcomes[check(case)] += 1

    while ran < examples and time.monotonic() < deadline:
        size = min(batch, examples - ran)
        test = settings(**settings_kwargs(size, derandomize=False))(given(strategy())(body))
        batch_seed = rng.getrandbits(64)
        try:
            # A seed per batch makes a failing batch reproducible on its own.
            seed(batch_seed)(test)()
        except Exception as exc:
            failure = f"batch seed {batch_seed}:\n" + "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
            )
            break
        if verbose:
            print(f"  {name}: {ran} examples, {dict(outcomes)}", flush=True)
    elapsed = time.monotonic() - started
    return {"name": name, "ran": ran, "elapsed": elapsed, "outcomes": outcomes, "failure": failure}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per property")
    parser.add_argument("--seconds", type=float, default=600.0, help="time bound for the run")
    parser.add_argument(
        "--property",
        action="append",
        choices=sorted(ALL),
        help="run only this property (repeatable); default: all",
    )
    parser.add_argument("--batch", type=int, default=500, help="examples per Hypothesis run")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    names = args.property or list(ALL)
    run_seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(run_seed)
    print(
        f"fuzz_long: seed {run_seed}, {args.examples} examples per property, {args.seconds:.0f} s"
    )
    start = time.monotonic()
    results = []
    for i, name in enumerate(names):
        # Share the remaining time fairly between the properties still to run.
        remaining = args.seconds - (time.monotonic() - start)
        deadline = time.monotonic() + remaining / (len(names) - i)
        results.append(run_property(name, args.examples, deadline, args.batch, rng, args.verbose))

    print()
    print(f"{'property':<15} {'examples':>9} {'seconds':>8} {'ms/ex':>7}  result")
    failed = untested = False
    for r in results:
        per = 1000 * r["elapsed"] / max(r["ran"], 1)
        status = outcome(r, args.examples)
        failed |= bool(r["failure"])
        untested |= not r["ran"]
        print(f"{r['name']:<15} {r['ran']:>9} {r['elapsed']:>8.1f} {per:>7.1f}  {status}")
        top = ", ".join(f"{k} {v}" for k, v in r["outcomes"].most_common())
        print(f"{'':<15} outcomes: {top}")
    for r in results:
        if r["failure"]:
            print(f"\n==== {r['name']} failed ({r['failure'].splitlines()[0]})")
            for line in r["failure"].splitlines()[1:]:
                print(line if len(line) < 2000 else line[:2000] + f"... ({len(line)} chars)")
    return 1 if failed else 2 if untested else 0


def outcome(result: dict[str, Any], wanted: int) -> str:
    """One word for a property's run: only examples that ran count as tested."""
    if result["failure"]:
        return "FAILED"
    if not result["ran"]:
        return "NOT RUN (no time left)"
    if result["ran"] < wanted:
        return "ok (stopped by the time bound)"
    return "ok"


if __name__ == "__main__":
    sys.exit(main())
