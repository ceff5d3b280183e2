"""Steady training rate of a run from its trainer_state.json (the loss history `instructie train` logs every
``train.log_every`` steps, each with its training time): steps per second over the last half of the logged
steps, so start-up and a compile's first steps are left out; and the time to the first logged step. A history
without times (as older versions of the trainer wrote) gives the rate over the whole run instead (steps / training
time), start-up included.

    python eval/experiments/steps_per_second.py runs/X/checkpoints/step-N/trainer_state.json [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def steady_rate(history: list[dict]) -> dict:
    """{"steps_per_s", "from_step", "to_step", "first_logged_step", "first_logged_s"} over the last half of
    ``history`` (at least two entries needed)."""
    if len(history) < 2:
        raise ValueError(f"{len(history)} logged step(s): a rate needs two")
    a, b = history[min(len(history) // 2, len(history) - 2)], history[-1]
    if b["time_s"] <= a["time_s"]:
        raise ValueError(f"no time passed between steps {a['step']} and {b['step']}")
    return {"steps_per_s": round((b["step"] - a["step"]) / (b["time_s"] - a["time_s"]), 3),
            "from_step": a["step"], "to_step": b["step"],
            "first_logged_step": history[0]["step"], "first_logged_s": history[0]["time_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state", help="a checkpoint's trainer_state.json")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    try:
        state = json.loads(Path(a.state).read_text(encoding="utf-8"))
        if state["history"] and "time_s" not in state["history"][-1]:
            print(f"{state['step'] / state['train_time_s']:.3f} steps/s over the whole run ({state['step']} steps "
                  f"in {state['train_time_s']:.1f} s of training; no times in its history)")
            return 0
        r = steady_rate(state["history"])
    except (OSError, ValueError, KeyError, ZeroDivisionError) as e:
        print(f"steps_per_second: {a.state}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r) if a.json else
          f"{r['steps_per_s']} steps/s over steps {r['from_step']}-{r['to_step']}; first logged step "
          f"{r['first_logged_step']} at {r['first_logged_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
