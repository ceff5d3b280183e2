"""Two training runs' loss curves side by side: does one follow the other within the noise?

Each run is a ``trainer_state.json`` (its ``history``: step and loss) or a training log (the progress bar's
``N/TOTAL [...loss=X]``, one value per ``train.log_every`` steps). The curves are compared at the steps both
logged, up to ``--steps``; the noise is the reference curve's own jitter, the median change between its
consecutive logged values once its trend is taken out (a 5-point running median). A point is within noise
when the two curves differ by at most ``--k`` times that jitter.

    python eval/loss_curves.py eval/runs/multitask-small-s10b/train_1.log runs/packed/trainer_state.json \\
        --steps 1500 --names unpacked packed
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

PROGRESS = re.compile(r"(\d+)/\d+ \[[^\]]*?loss=([0-9.eE+-]+)\]")


def read_curve(path: Path) -> dict[int, float]:
    """step -> logged loss."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        return {int(h["step"]): float(h["loss"]) for h in json.loads(text)["history"]}
    curve: dict[int, float] = {}
    last = None
    for step, loss in PROGRESS.findall(text):  # the bar redraws between logs: keep each value's first step
        if loss != last:
            curve.setdefault(int(step), float(loss))
            last = loss
    return curve


def jitter(values: list[float]) -> float:
    """The median step-to-step change of ``values`` around their 5-point running median."""
    trend = [statistics.median(values[max(0, i - 2): i + 3]) for i in range(len(values))]
    resid = [v - t for v, t in zip(values, trend)]
    return statistics.median(abs(b - a) for a, b in zip(resid, resid[1:])) if len(resid) > 1 else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("other", type=Path)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--skip", type=int, default=200, help="steps left out of the verdict (the warm-up's steep start)")
    ap.add_argument("--k", type=float, default=3.0)
    ap.add_argument("--names", nargs=2, default=["reference", "other"])
    a = ap.parse_args(argv)
    ref, other = read_curve(a.reference), read_curve(a.other)
    steps = sorted(s for s in set(ref) & set(other) if s <= a.steps)
    if len(steps) < 3:
        print(f"loss_curves: fewer than 3 steps logged by both runs up to {a.steps}", file=sys.stderr)
        return 2
    noise = jitter([ref[s] for s in sorted(ref) if s <= a.steps])
    print(f"| step | {a.names[0]} | {a.names[1]} | difference |\n|---|---|---|---|")
    outside = []
    for s in steps:
        d = other[s] - ref[s]
        if s > a.skip and abs(d) > a.k * noise:
            outside.append(s)
        print(f"| {s} | {ref[s]:.4f} | {other[s]:.4f} | {d:+.4f}{' *' if s in outside else ''} |")
    judged = [s for s in steps if s > a.skip]
    print(f"\nnoise (the {a.names[0]} curve's jitter): {noise:.4f}; {len(judged) - len(outside)} of {len(judged)} "
          f"points after step {a.skip} within {a.k:g}x of it" + (f"; outside: {outside}" if outside else ""))
    return 0 if not outside else 1


if __name__ == "__main__":
    sys.exit(main())
