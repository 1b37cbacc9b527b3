"""Write ``examples/example_log.csv``: a small synthetic interaction log (not MovieLens data).

Implicit feedback with string ids, the shape of a streaming or shop log::

    user,item,time,plan
    user-001,item-17,2024-01-01T08:00:00,free
    ...

60 users, 40 items in 4 series of 10, 480 interactions, seeded. Each user follows one or two
series mostly in order (an episode after the previous one, sometimes one skipped), with a few
popular items in between, so that both "what comes next" and "what is popular" carry signal.
``plan`` (free / pro) is a user feature; pro users watch a little more. Run from the repository
root (the committed CSV is its output)::

    python examples/make_example_log.py [--out examples/example_log.csv] [--seed 0]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from recsim_env.files import atomic_write_text

N_USERS = 60
N_SERIES = 4
SERIES_LEN = 10
N_INTERACTIONS = 480
START = datetime(2024, 1, 1, 8, 0, 0)


def make_log(seed: int = 0) -> list[tuple[str, str, str, str]]:
    """The log's rows ``(user, item, time, plan)``, in time order per user, users one after another."""
    rng = np.random.default_rng(seed)
    n_items = N_SERIES * SERIES_LEN
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.1
    popularity = popularity[rng.permutation(n_items)]
    popularity /= popularity.sum()
    plans = np.where(rng.random(N_USERS) < 0.3, "pro", "free")
    # Interactions per user: at least 4, pro users a bit more, N_INTERACTIONS in all.
    weights = np.where(plans == "pro", 1.5, 1.0) * rng.uniform(0.5, 1.5, N_USERS)
    counts = 4 + np.floor(weights / weights.sum() * (N_INTERACTIONS - 4 * N_USERS)).astype(int)
    counts[np.argsort(-weights)[: N_INTERACTIONS - counts.sum()]] += 1
    rows = []
    for u in range(N_USERS):
        series = list(rng.choice(N_SERIES, 2, replace=False))
        episode = {s: int(rng.integers(0, 3)) for s in series}  # where the user starts each series
        seen: set[int] = set()
        clock = START + timedelta(hours=int(rng.integers(0, 24 * 30)))
        while len(seen) < counts[u]:
            if rng.random() < 0.75 and series:  # the next episode of a followed series
                s = series[0] if rng.random() < 0.7 or len(series) == 1 else series[1]
                item = s * SERIES_LEN + episode[s]
                episode[s] += 1 + int(rng.random() < 0.15)  # sometimes one is skipped
                if episode[s] >= SERIES_LEN:
                    series.remove(s)
            else:  # something popular
                item = int(rng.choice(n_items, p=popularity))
            if item in seen:
                continue
            seen.add(item)
            clock += timedelta(minutes=int(rng.integers(20, 60 * 48)))
            rows.append((f"user-{u + 1:03d}", f"item-{item + 1:02d}", clock.isoformat(), str(plans[u])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("example_log.csv")), help="CSV to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0: the committed file)")
    args = parser.parse_args(argv)
    rows = make_log(args.seed)
    text = "user,item,time,plan\n" + "".join(",".join(row) + "\n" for row in rows)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}: {len(rows)} interactions, {N_USERS} users")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
