"""experiments.studies.slate_returns: the slate-mode figures of the README, from the public API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.studies import slate_returns


def test_popularity_slate_returns_and_the_hits_check(ml100k_dir: Path, tmp_path: Path) -> None:
    code = slate_returns.main([
        "--data-dir", str(ml100k_dir), "--models", "popularity", "--slate-sizes", "1", "3",
        "--out", str(tmp_path), "--num-envs", "50", "--max-users", "100",
    ])  # fmt: skip
    assert code == 0
    payload = json.loads((tmp_path / "slate_returns_ml-100k.json").read_text())
    check = payload["first_slate_check"]["popularity"]
    # The first slate's reward (every test item worth 1) is hits@10 for each of the 907 users.
    assert check["equal_per_user"] and check["n_users"] == 907
    assert check["first_slate_reward"] == pytest.approx(check["hits@10"]) == pytest.approx(10 * check["precision@10"])
    rows = {(r["slate_size"], r["response"]): r for r in payload["rows"]}
    assert set(rows) == {(1, "single item"), (3, "independent"), (3, "cascade")}
    assert all(r["n_episodes"] == 100 for r in rows.values())
    # Three items a step find more likes than one; the cascade stops at the first like.
    assert rows[(3, "independent")]["mean_liked_items"] > rows[(1, "single item")]["mean_liked_items"]
    assert rows[(3, "cascade")]["mean_liked_items"] < rows[(3, "independent")]["mean_liked_items"]
    text = (tmp_path / "slate_returns_ml-100k.md").read_text()
    assert "| k = 3, cascade |" in text and "yes (907 users) |" in text
    # Same seed, same figures (the cascade draws included).
    again = tmp_path / "again"
    slate_returns.main(["--data-dir", str(ml100k_dir), "--models", "popularity", "--slate-sizes", "3",
                        "--responses", "cascade", "--out", str(again), "--num-envs", "50", "--max-users", "100"])
    rows_again = json.loads((again / "slate_returns_ml-100k.json").read_text())["rows"]
    assert [r["mean_return"] for r in rows_again] == [rows[(3, "cascade")]["mean_return"]]


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        slate_returns.main(["--models", "--out", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        slate_returns.main(["--slate-sizes", "0", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # nothing written
