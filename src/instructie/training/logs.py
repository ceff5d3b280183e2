"""What a training run tells its user: one-line log messages and the loss / dev-score plot."""
from __future__ import annotations

from pathlib import Path

from ..core.io import atomic_write


def log(msg: str) -> None:
    print(f"[instructie] {msg}", flush=True)


def plot_history(out: Path, state: dict) -> None:
    """loss and dev F1 over steps -> training.png (skipped quietly without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no training.png")
        return
    hist = state["history"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if hist:
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], label="train loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    keys = sorted({k for e in state["evals"] for k in e if k != "step"})
    for k in (k for k in keys if "loss" in k):  # held-out losses (pretraining) share the loss axis
        pts = [(e["step"], e[k]) for e in state["evals"] if k in e]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k, color="tab:orange")
    scores = [k for k in keys if "loss" not in k]
    if scores:
        ax2 = ax.twinx()
        for k in scores:
            pts = [(e["step"], e[k]) for e in state["evals"] if k in e]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
        ax2.set_ylabel("dev score")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right", fontsize=7)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_write(out / "training.png", "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
