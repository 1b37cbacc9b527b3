"""Learning-curve figure of a training run (matplotlib, Agg backend: no display needed).

Usage::

    python -m experiments.plots runs/lsrwrl-20250101-120000    # rewrites learning_curve.png
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from recsim_env.files import atomic_write  # noqa: E402


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start).

    :param values: 1-D array
    :param window: window length (>= 1)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    csum = np.concatenate(([0.0], np.cumsum(values)))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def figure_png(fig, dpi: int = 120) -> bytes:
    """A finished figure as PNG bytes (laid out tightly), the figure then closed.

    :param fig: a matplotlib figure
    :param dpi: resolution of the PNG
    """
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def plot_learning_curve(curve: dict, path: str | os.PathLike, k: int = 10, window: int = 100) -> Path:
    """Two panels over environment steps: episode return (rolling mean) and validation
    precision@k / recall@k, with the popularity ranking's validation figures as dashed lines.

    Written atomically (temporary file, then ``os.replace``).

    :param curve: a run's ``curve.json`` content: ``"episodes"`` rows ``[step, return, length]``,
        ``"validation"`` rows ``{"step", "precision@k", "recall@k", ...}``, optional
        ``"validation_popularity"`` metrics
    :param path: output PNG path
    :param k: metric cut-off used in the validation rows
    :param window: episodes in the rolling mean of the return
    :return: the PNG path
    """
    path = Path(path)
    fig, (ax_ret, ax_val) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    episodes = np.asarray(curve.get("episodes") or [], dtype=np.float64).reshape(-1, 3)
    if episodes.size:
        shown = episodes[:: max(1, len(episodes) // 4000)]  # thin the scatter of long runs
        ax_ret.plot(shown[:, 0], shown[:, 1], ".", ms=1.5, alpha=0.2, color="tab:blue", label="episode")
        ax_ret.plot(episodes[:, 0], rolling_mean(episodes[:, 1], window), color="tab:blue",
                    label=f"mean of last {window}")
        ax_ret.legend(loc="lower right")
    ax_ret.set(xlabel="environment steps", ylabel="episode return", title="Training episodes")

    rows = curve.get("validation") or []
    pop = curve.get("validation_popularity") or {}
    for key, color in ((f"precision@{k}", "tab:green"), (f"recall@{k}", "tab:orange")):
        if rows:
            ax_val.plot([r["step"] for r in rows], [r[key] for r in rows], "o-", color=color, label=key)
        if key in pop:
            ax_val.axhline(pop[key], ls="--", color=color, alpha=0.7, label=f"popularity {key}")
    if rows or pop:
        ax_val.legend(loc="lower right")
    ax_val.set(xlabel="environment steps", ylabel="metric", title="Validation slice (end of train sequences)")
    for ax in (ax_ret, ax_val):
        ax.grid(alpha=0.3)

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.plots", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory holding curve.json")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/learning_curve.png)")
    args = parser.parse_args(argv)
    curve_path = Path(args.run_dir) / "curve.json"
    if not curve_path.exists():
        parser.error(f"{curve_path} not found: pass a finished run directory")
    curve = json.loads(curve_path.read_text(encoding="utf-8"))
    out = plot_learning_curve(curve, args.out or Path(args.run_dir) / "learning_curve.png")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
