"""``make validity``: how well each simulator of ``MovieLensRec-v0`` reproduces held-out behaviour.

For each dataset (default split: temporal 80/20) and each simulator (``user_model="replay"``
and ``"ease"``), three checks, written to ``<out>/validity_<dataset>.md`` with PNG figures:

1. **Held-out likes.** In the test start state (the whole train history), the simulator's like
   probability of every item the user has not rated in train, against what the user did next:
   AUC of the test likes against the unrated items and against the items rated below
   ``like_threshold``, log-loss against a constant base rate, and a reliability diagram
   (``_reliability.png``). The user model's candidates are compared on the validation slice
   (:func:`recsim_env.holdout_last`, never the test part), which is how the model was chosen.
2. **Agreement of policy rankings.** Kendall's tau between the ranking of the Table 1 models
   by offline P@10 and by their greedy simulated return in each simulator, read from
   ``<table-dir>/table1_<dataset>.csv`` (written by ``make table``).
3. **Sessions against real data.** Greedy sessions of two policies (popularity, EASE) in each
   simulator: like rate per step (``_sessions.png``), popularity concentration (Gini) and
   novelty of the liked items, next to the users' real next items (their test sequences).

Usage::

    python -m experiments.studies.validity                      # ml-100k and ml-1m -> results/validity/
    python -m experiments.studies.validity --datasets ml-100k --out /tmp/validity

The figures depend only on the data, the split and the seeds: rerunning writes the same numbers.
Every file is written atomically.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsim_env.dataset import DATASETS, Split

#: Seed of the simulated sessions (the learned user draws its likes from it).
SEED = 0
#: Recommendations per simulated session.
MAX_STEPS = 50
#: Quantiles of the predicted probability that bound the reliability bins (finer at the top,
#: where greedy policies pick their items).
BIN_QUANTILES: tuple[float, ...] = (0, .25, .5, .7, .8, .9, .95, .98, .99, .995, .999, 1)
#: EASE l2 of the session policy (Table 1's tuned value on ML-100K).
POLICY_L2 = 200.0


# ------------------------------------------------------------------------------ small statistics


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
    from scipy.stats import rankdata

    if positive.size == 0 or negative.size == 0:
        return math.nan
    ranks = rankdata(np.concatenate((positive, negative)))
    return float((ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2)
                 / (positive.size * negative.size))  # fmt: skip


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy (p clipped to [1e-12, 1 - 1e-12]; a sure miss is not infinite)."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, 1 = all on one item)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    if x.sum() == 0:
        return math.nan
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


# ------------------------------------------------------------------------------ 1. held-out likes


def _test_labels(split: Split, like_threshold: int, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool ``(B, n_items)``: the users' liked test items, and their test items rated low."""
    liked = np.zeros((users.size, split.n_items), dtype=bool)
    low = np.zeros_like(liked)
    for row, u in enumerate(users.tolist()):
        items, ratings = split.test_of(u)
        liked[row, items[ratings >= like_threshold]] = True
        low[row, items[ratings < like_threshold]] = True
    return liked, low


def heldout_likes(split: Split, like_model: Any, like_threshold: int = 4, batch: int = 512) -> dict[str, Any]:
    """Separation and calibration of a like model's probabilities on the test part.

    :param split: the split (states from its train part, labels from its test part)
    :param like_model: a :class:`recsim_env.user_model.LikeModel`
    :return: AUCs, log-loss, base-rate log-loss, and the reliability bins
    """
    from recsim_env.replay_user import ReplaySimulator

    sim = ReplaySimulator(split_data=split, mode="test", like_threshold=like_threshold)
    users = np.flatnonzero(np.diff(split.test_indptr) > 0)
    ps, ys, lows = [], [], []
    for lo in range(0, users.size, batch):
        chunk = users[lo : lo + batch]
        obs = sim.prefix_observations(chunk, sim.n_train[chunk])
        from recsim_env import unpack_bits

        consumed = unpack_bits(obs["excluded"], split.n_items)
        p = like_model.like_probabilities(consumed, unpack_bits(obs["liked"], split.n_items))
        liked, low = _test_labels(split, like_threshold, chunk)
        candidate = ~consumed
        ps.append(p[candidate])
        ys.append(liked[candidate])
        lows.append(low[candidate])
    p, y, low = np.concatenate(ps), np.concatenate(ys), np.concatenate(lows)
    unrated = ~y & ~low
    base = y.mean()
    order = np.argsort(p, kind="stable")
    edges = (np.asarray(BIN_QUANTILES) * p.size).round().astype(int)
    bins = [order[lo:hi] for lo, hi in zip(edges[:-1], edges[1:])]
    return {
        "n_pairs": int(p.size), "n_likes": int(y.sum()), "n_low": int(low.sum()),
        "auc_unrated": auc(p[y], p[unrated]), "auc_low": auc(p[y], p[low]),
        "auc_all": auc(p[y], p[~y]),
        "log_loss": log_loss(p, y.astype(float)),
        "log_loss_base": log_loss(np.full(p.size, base), y.astype(float)),
        # Replay from the train part alone: P(like) = 0 for every test item (clipped at 1e-12).
        "log_loss_replay_train": log_loss(np.zeros(p.size), y.astype(float)),
        "base_rate": float(base), "mean_p": float(p.mean()),
        "reliability": [(float(p[b].mean()), float(y[b].mean()), int(b.size)) for b in bins],
    }  # fmt: skip


def candidates_on_validation(split: Split, l2s: Sequence[float], like_threshold: int = 4) -> list[dict[str, Any]]:
    """The user model's candidate links on the validation slice, 2-fold by user (never the test part).

    Candidates: popularity (``log(1 + count)``, ``log(1 + |C|)``); EASE on every rating alone
    (``log(s+ + EPS)``, ``log(1 + |C|)``); EASE on every rating and on likes (the chosen link),
    for each ``l2``. Rows: validation AUC (likes vs the rest) and log-loss.
    """
    from recsim_env import user_model as um
    from recsim_env.splits import holdout_last

    val = holdout_last(split, um.VALIDATION_FRACTION)
    x, x_like = um._train_matrix(val, like_threshold)
    indptr = np.asarray(val.test_indptr, dtype=np.int64)
    rows = np.repeat(np.arange(val.n_users), np.diff(indptr))
    keep = np.asarray(val.test_ratings) >= like_threshold
    label = np.zeros_like(x, dtype=bool)
    label[rows[keep], np.asarray(val.test_items, dtype=np.int64)[keep]] = True
    candidate = x == 0
    user_of = np.broadcast_to(np.arange(val.n_users)[:, None], x.shape)[candidate]
    y = label[candidate].astype(float)
    log_n = np.broadcast_to(np.log1p(x.sum(axis=1, keepdims=True)), x.shape)[candidate]
    pop = np.broadcast_to(np.log1p(x.sum(axis=0, keepdims=True)), x.shape)[candidate]

    def evaluate(name: str, feats: list[np.ndarray]) -> dict[str, Any]:
        f = np.column_stack([np.ones_like(y), *feats])
        p = np.empty_like(y)
        for fold in (0, 1):
            train, test = user_of % 2 != fold, user_of % 2 == fold
            w = um.fit_logistic(f[train], y[train], np.ones(int(train.sum())))
            p[test] = 1 / (1 + np.exp(-(f[test] @ w)))
        return {"candidate": name, "auc": auc(p[y > 0], p[y == 0]), "log_loss": log_loss(p, y)}

    out = [evaluate("popularity", [pop, log_n])]
    for l2 in l2s:
        s = np.log(np.maximum((x @ um.ease_weights(x, l2))[candidate], 0) + um.EPS)
        sl = np.log(np.maximum((x_like @ um.ease_weights(x_like, l2))[candidate], 0) + um.EPS)
        out.append(evaluate(f"EASE, every rating, l2={l2:g}", [s, log_n]))
        out.append(evaluate(f"EASE, every rating + likes, l2={l2:g}", [s, sl, log_n]))
    base = y.mean()
    out.append({"candidate": "constant base rate", "auc": 0.5,
                "log_loss": log_loss(np.full(y.size, base), y)})  # fmt: skip
    return out


# ------------------------------------------------------------------------------ 2. policy rankings


def policy_agreement(table_csv: Path) -> dict[str, Any] | None:
    """Kendall's tau between Table 1's P@10 ranking and each simulator's return ranking.

    :param table_csv: ``table1_<dataset>.csv`` with the simulated-return columns
    :return: ``None`` when the file or its columns are missing, else models, values and taus
    """
    import csv

    from scipy.stats import kendalltau

    if not table_csv.is_file():
        return None
    with open(table_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys = ("precision@10_mean", "sim_return_replay_mean", "sim_return_ease_mean")
    rows = [r for r in rows if all(k in r and r[k] not in ("", "nan") for k in keys)]
    if len(rows) < 3:
        return None
    values = {k: np.array([float(r[k]) for r in rows]) for k in keys}
    tau = {}
    for name, (a, b) in {
        "P@10 vs return (replay)": (keys[0], keys[1]),
        "P@10 vs return (user model)": (keys[0], keys[2]),
        "return (replay) vs return (user model)": (keys[1], keys[2]),
    }.items():
        result = kendalltau(values[a], values[b])
        tau[name] = (float(result.statistic), float(result.pvalue))
    return {"models": [r["model"] for r in rows], "values": values, "tau": tau}


# ------------------------------------------------------------------------------ 3. sessions


def _policies(split: Split) -> dict[str, Any]:
    from agents.baselines import make_recommender

    return {
        "popularity": make_recommender("popularity").fit(split),
        "EASE": make_recommender("ease", l2=POLICY_L2).fit(split),
    }


def simulate_sessions(split: Split, user_model: str, policy: Any, num_envs: int = 64) -> dict[str, Any]:
    """Masked greedy sessions, one per user of the test-mode simulator; per-step likes recorded.

    :return: ``alive`` and ``likes`` per step ``(MAX_STEPS,)``, the liked items, mean return
    """
    import gymnasium as gym

    import recsim_env  # noqa: F401
    from recsim_env import unpack_bits

    vec = gym.make_vec("MovieLensRec-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                       mode="test", split_data=split, max_steps=MAX_STEPS, user_model=user_model)  # fmt: skip
    users = np.asarray(vec.unwrapped.users)
    alive = np.zeros(MAX_STEPS)
    likes = np.zeros(MAX_STEPS)
    liked_items: list[np.ndarray] = []
    total = 0.0
    for start in range(0, users.size, num_envs):
        batch = users[start : start + num_envs]
        real = batch.size
        obs, _ = vec.reset(seed=SEED if start == 0 else None, options={"user": np.resize(batch, num_envs)})
        running = np.arange(num_envs) < real
        for t in range(MAX_STEPS):
            if not running.any():
                break
            scores = np.where(unpack_bits(obs["excluded"], split.n_items), -np.inf,
                              policy.score_states(obs).astype(np.float64))  # fmt: skip
            actions = scores.argmax(axis=1)
            obs, reward, terminated, truncated, info = vec.step(actions)
            hit = running & info["liked"]
            alive[t] += running.sum()
            likes[t] += hit.sum()
            liked_items.append(actions[hit])
            total += float(reward[running].sum())
            running &= ~(terminated | truncated)
    vec.close()
    items = np.concatenate(liked_items) if liked_items else np.zeros(0, np.int64)
    return {"alive": alive, "likes": likes, "items": items, "mean_return": total / users.size,
            "n_users": int(users.size)}  # fmt: skip


def session_summary(items: np.ndarray, split: Split) -> dict[str, float]:
    """Gini of the liked items' counts over all items, novelty = mean -log2(train popularity share)."""
    n_rated = np.bincount(np.asarray(split.train_items), minlength=split.n_items)
    share = np.maximum(n_rated, 1) / split.n_users
    counts = np.bincount(items, minlength=split.n_items)
    return {
        "gini": gini(counts), "novelty": float(-np.log2(share[items]).mean()) if items.size else math.nan,
        "distinct": int((counts > 0).sum()), "n_likes": int(items.size),
    }  # fmt: skip


def real_sessions(split: Split, like_threshold: int = 4) -> dict[str, Any]:
    """The users' real next items: like rate by position in the test sequence; their likes."""
    lengths = np.diff(split.test_indptr)
    alive = np.zeros(MAX_STEPS)
    likes = np.zeros(MAX_STEPS)
    for u in np.flatnonzero(lengths > 0).tolist():
        _, ratings = split.test_of(u)
        r = ratings[:MAX_STEPS]
        alive[: r.size] += 1
        likes[: r.size] += r >= like_threshold
    items = np.asarray(split.test_items)[np.asarray(split.test_ratings) >= like_threshold]
    return {"alive": alive, "likes": likes, "items": items.astype(np.int64)}


# ------------------------------------------------------------------------------ figures and text


def reliability_png(held: dict[str, Any], dataset: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred, obs, _ = zip(*held["reliability"])
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    lo = max(min(min(pred), min(v for v in obs if v > 0)) / 2, 1e-5)
    ax.plot([lo, 1], [lo, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    ax.plot(pred, np.maximum(obs, lo), "o-", label="user model (ease)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted P(like) (bin mean)")
    ax.set_ylabel("held-out like rate in the bin")
    ax.set_title(f"{dataset}: test likes by predicted P(like)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    from agents.plots import figure_png

    return figure_png(fig, dpi=110)


def sessions_png(sessions: dict[tuple[str, str], dict[str, Any]], real: dict[str, Any], dataset: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, MAX_STEPS + 1)
    for (sim, policy), s in sessions.items():
        rate = np.divide(s["likes"], s["alive"], out=np.full(MAX_STEPS, np.nan), where=s["alive"] > 0)
        style = "-" if sim == "replay" else "--"
        ax.plot(steps, rate, style, label=f"{policy}, {sim}")
        ax2.plot(steps, s["alive"] / s["n_users"], style, label=f"{policy}, {sim}")
    real_rate = np.divide(real["likes"], real["alive"], out=np.full(MAX_STEPS, np.nan), where=real["alive"] > 0)
    ax.plot(steps, real_rate, "k:", lw=2, label="real next items (liked share)")
    ax.set_xlabel("step (recommendation / real next item)")
    ax.set_ylabel("like rate")
    ax.set_title(f"{dataset}: like rate per step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax2.set_xlabel("step")
    ax2.set_ylabel("share of sessions still running")
    ax2.set_title("session survival")
    ax2.grid(alpha=0.3)
    from agents.plots import figure_png

    return figure_png(fig, dpi=110)


def render_markdown(dataset: str, split: Split, held: dict[str, Any], cands: list[dict[str, Any]],
                    agreement: dict[str, Any] | None, sessions: dict[tuple[str, str], dict[str, Any]],
                    real: dict[str, Any], model: Any, seconds: dict[str, float]) -> str:  # fmt: skip
    """The ``validity_<dataset>.md`` text."""
    measured = " (measured on the reconstructed ML-1M)" if dataset == "ml-1m" else ""
    lines = [
        f"# Simulator validity on {dataset}{measured}",
        "",
        f"Split: temporal 80/20 per user ({split.n_users} users, {split.n_items} items). Simulators: "
        f"`user_model=\"replay\"` (the logs) and `user_model=\"ease\"` (learned on the train part, "
        f"l2={model.l2:g}). Command: `python -m experiments.studies.validity --datasets {dataset}`.",
        "",
        "## 1. Held-out likes",
        "",
        "Test start state of every user with test items (the whole train history); every item not "
        "rated in train is a candidate. Positives: the user's test likes (rating >= 4).",
        "",
        "| simulator | AUC likes vs unrated | AUC likes vs rated low | AUC likes vs rest | log-loss | "
        "log-loss of the base rate |",
        "|---|---|---|---|---|---|",
        f"| user model (ease) | {held['auc_unrated']:.3f} | {held['auc_low']:.3f} | {held['auc_all']:.3f} | "
        f"{held['log_loss']:.5f} | {held['log_loss_base']:.5f} |",
        "| replay, test mode | 1 by construction | 1 by construction | 1 by construction | 0 | – |",
        f"| replay built from the train part | 0.5 | 0.5 | 0.5 | {held['log_loss_replay_train']:.5f} "
        "(P = 0 for every test like, clipped at 1e-12) | – |",
        "",
        f"{held['n_pairs']:,} (user, item) pairs, {held['n_likes']:,} test likes, {held['n_low']:,} test "
        f"items rated low; base rate {held['base_rate']:.5f}, mean predicted {held['mean_p']:.5f}. "
        "Replay in test mode reads the test ratings themselves, so it cannot be wrong about a rated "
        "item and says P(like) = 0 for every unrated one, which is the assumption these figures "
        "cannot check; built from the train part only (what it knows before the test period) it "
        "gives every test item probability 0.",
        "",
        f"![reliability](validity_{dataset}_reliability.png)",
        "",
        "Reliability (bins between the quantiles "
        f"{', '.join(f'{q:g}' for q in BIN_QUANTILES)} of the predicted probability):",
        "",
        "| bin | mean predicted | held-out like rate | pairs |",
        "|---|---|---|---|",
        *[f"| {i + 1} | {p:.5f} | {o:.5f} | {n:,} |" for i, (p, o, n) in enumerate(held["reliability"])],
        "",
        "Candidates of the user model on the validation slice (`holdout_last(train, 0.2)`; the link "
        "fitted on half the users, scored on the other half, and the other way round):",
        "",
        "| candidate | validation AUC | validation log-loss |",
        "|---|---|---|",
        *[f"| {c['candidate']} | {c['auc']:.4f} | {c['log_loss']:.5f} |" for c in cands],
        "",
        "## 2. Agreement of policy rankings",
        "",
    ]
    if agreement is None:
        lines += ["Table 1 has no simulated-return columns for this dataset yet: run `make table` "
                  "first (it adds them), then `make validity`.", ""]  # fmt: skip
    else:
        lines += ["| model | P@10 | return, replay | return, user model |", "|---|---|---|---|"]
        v = agreement["values"]
        for i, name in enumerate(agreement["models"]):
            lines.append(f"| {name} | {v['precision@10_mean'][i]:.4f} | {v['sim_return_replay_mean'][i]:.3f} | "
                         f"{v['sim_return_ease_mean'][i]:.3f} |")  # fmt: skip
        lines += ["", "| rankings compared | Kendall's tau | p-value |", "|---|---|---|"]
        lines += [f"| {k} | {t:.3f} | {p:.3f} |" for k, (t, p) in agreement["tau"].items()]
        lines += ["", f"({len(agreement['models'])} models of `table1_{dataset}.csv`, means over its seeds.)", ""]
    lines += [
        "## 3. Sessions against real data",
        "",
        f"Masked greedy sessions, one per user (test mode, at most {MAX_STEPS} steps, seed {SEED}), of "
        f"two policies; the real row is the users' test sequences (their real next items, first "
        f"{MAX_STEPS}).",
        "",
        "| simulator | policy | users | mean return | mean length | like rate (all steps) | likes | "
        "distinct liked items | Gini of liked items | novelty (bits) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (sim, policy), s in sessions.items():
        summ = session_summary(s["items"], split)
        lines.append(
            f"| {sim} | {policy} | {s['n_users']} | {s['mean_return']:.3f} | {s['alive'].sum() / s['n_users']:.1f} "
            f"| {s['likes'].sum() / max(s['alive'].sum(), 1):.3f} | {summ['n_likes']:,} | {summ['distinct']} | "
            f"{summ['gini']:.3f} | {summ['novelty']:.2f} |"
        )  # fmt: skip
    summ = session_summary(real["items"], split)
    n_real = int((real["alive"] > 0).any() and real["alive"][0])
    lines += [
        f"| real next items | – | {n_real} | – | {real['alive'].sum() / max(n_real, 1):.1f} | "
        f"{real['likes'].sum() / real['alive'].sum():.3f} | {summ['n_likes']:,} | {summ['distinct']} | "
        f"{summ['gini']:.3f} | {summ['novelty']:.2f} |",
        "",
        "Like rate: liked steps over steps taken (real: the liked share of the real next items). "
        "Gini: concentration of the likes over all items (0 = spread evenly, 1 = one item). "
        "Novelty: mean -log2 of the share of users who rated the liked item in train.",
        "",
        f"![sessions](validity_{dataset}_sessions.png)",
        "",
        f"Time on this machine (2 cores shared with other jobs, so loaded): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ driver


def run_dataset(dataset: str, out: Path, table_dir: Path, data_dir: str | None, l2s: Sequence[float] | None,
                log: Any = print) -> dict[str, Any]:  # fmt: skip
    """All three checks on one dataset; writes its markdown and figures, returns the figures."""
    from recsim_env.files import atomic_write_bytes, atomic_write_text
    from recsim_env import load_movielens, split_ratings
    from recsim_env.user_model import DEFAULT_L2, load_like_model

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    split = split_ratings(load_movielens(dataset, data_dir), "temporal", 0.8)
    model = load_like_model(split)
    seconds["user-model fit or cache load"] = time.perf_counter() - t0
    log(f"{dataset}: user model ready ({seconds['user-model fit or cache load']:.0f} s)")

    t0 = time.perf_counter()
    held = heldout_likes(split, model)
    if l2s is None:
        l2s = [DEFAULT_L2[dataset] / 3, DEFAULT_L2[dataset], DEFAULT_L2[dataset] * 3] if dataset == "ml-100k" \
            else [DEFAULT_L2[dataset]]  # fmt: skip
    cands = candidates_on_validation(split, l2s)
    seconds["held-out likes"] = time.perf_counter() - t0
    log(f"{dataset}: held-out likes AUC {held['auc_unrated']:.3f} / {held['auc_low']:.3f}")

    agreement = policy_agreement(table_dir / f"table1_{dataset}.csv")

    t0 = time.perf_counter()
    sessions = {}
    for name, policy in _policies(split).items():
        for sim in ("replay", "ease"):
            sessions[(sim, name)] = simulate_sessions(split, sim, policy)
            log(f"{dataset}: sessions {name} in {sim}: return {sessions[(sim, name)]['mean_return']:.3f}")
    real = real_sessions(split)
    seconds["sessions"] = time.perf_counter() - t0

    stem = f"validity_{dataset}"
    atomic_write_bytes(out / f"{stem}_reliability.png", reliability_png(held, dataset))
    atomic_write_bytes(out / f"{stem}_sessions.png", sessions_png(sessions, real, dataset))
    text = render_markdown(dataset, split, held, cands, agreement, sessions, real, model, seconds)
    atomic_write_text(out / f"{stem}.md", text)
    return {"held": held, "candidates": cands, "agreement": agreement, "sessions": sessions}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.validity", description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS,
                        help="datasets (default: all)")
    parser.add_argument("--out", default="results/validity", help="output folder (default: %(default)s)")
    parser.add_argument("--table-dir", default="results",
                        help="folder of table1_<dataset>.csv for the policy rankings (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="root holding ml-100k/ and ml-1m/")
    parser.add_argument("--l2", nargs="+", type=float, default=None,
                        help="EASE l2 values of the candidate comparison (default: the dataset's "
                             "default, and a third and three times it on ml-100k)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for dataset in args.datasets:
        t0 = time.perf_counter()
        run_dataset(dataset, out, Path(args.table_dir), args.data_dir, args.l2)
        print(f"{dataset}: wrote {out}/validity_{dataset}.md and figures ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
