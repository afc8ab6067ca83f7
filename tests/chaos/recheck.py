"""Re-check a saved history offline: the linearizability checker on a run's history.jsonl.

    python -m tests.chaos.recheck /tmp/chaos7/history.jsonl [--deadline-s 300]

Useful after a run answered `unknown` (give the search more time) or to re-run a failure under
a debugger without the cluster.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.chaos.history import load
from tests.chaos.linearizability import STEPS_MAX_DEFAULT, Verdict, check


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos.recheck", description=__doc__.split("\n")[0])
    ap.add_argument("history", type=Path)
    ap.add_argument("--deadline-s", type=float, default=300.0)
    ap.add_argument("--steps-max", type=int, default=STEPS_MAX_DEFAULT)
    args = ap.parse_args(argv)
    records = load(args.history)
    t0 = time.monotonic()
    result = check([r.to_op() for r in records], steps_max=args.steps_max, deadline_s=args.deadline_s)
    print(f"{len(records)} ops, {time.monotonic() - t0:.2f}s: {result.verdict}")
    for comp in result.components:
        print(f"  {','.join(comp.keys)}: {comp.verdict} ({comp.ops} ops, {comp.steps} steps)")
        if comp.detail:
            print("    " + comp.detail.replace("\n", "\n    "))
    return 0 if result.verdict is Verdict.OK else 1


if __name__ == "__main__":
    sys.exit(main())
