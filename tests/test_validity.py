"""``experiments.studies.validity``: its statistics and checks on a small hand-made split."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from test_user_model import N_USERS, synthetic_split

from experiments.studies import validity
from recsim_env.user_model import fit_like_model


def test_statistics() -> None:
    assert validity.auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert validity.auc(np.array([1.0]), np.array([1.0])) == 0.5  # a tie counts one half
    assert validity.auc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5
    assert validity.gini(np.array([5, 5, 5, 5])) == 0.0
    assert validity.gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)  # (n - 1) / n for one item
    assert validity.log_loss(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(np.log(2))


def test_heldout_likes_and_sessions_on_a_small_split() -> None:
    split = synthetic_split()
    model = fit_like_model(split)
    held = validity.heldout_likes(split, model)
    assert held["n_likes"] > 0 and 0.0 <= held["auc_unrated"] <= 1.0
    assert sum(n for *_, n in held["reliability"]) == held["n_pairs"]
    assert held["log_loss_replay_train"] > held["log_loss_base"]  # P = 0 for a like is costly
    policy = validity._policies(split)["popularity"]
    for user_model in ("replay", "ease"):
        s = validity.simulate_sessions(split, user_model, policy, num_envs=8)
        assert s["alive"][0] == s["n_users"] and s["likes"].sum() == s["items"].size
        assert np.all(np.diff(s["alive"]) <= 0)  # sessions only end
    assert s["n_users"] == N_USERS  # every user can start under the user model
    real = validity.real_sessions(split)
    assert real["alive"][0] == N_USERS and real["likes"].sum() == real["items"].size


def test_policy_agreement_reads_the_table(tmp_path: Path) -> None:
    path = tmp_path / "table1_x.csv"
    assert validity.policy_agreement(path) is None
    rows = [("A", 0.1, 1.0, 0.5), ("B", 0.2, 2.0, 0.4), ("C", 0.3, 3.0, 0.3)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "precision@10_mean", "sim_return_replay_mean", "sim_return_ease_mean"])
        writer.writerows(rows)
    got = validity.policy_agreement(path)
    assert got["models"] == ["A", "B", "C"]
    assert got["tau"]["P@10 vs return (replay)"][0] == pytest.approx(1.0)
    assert got["tau"]["P@10 vs return (user model)"][0] == pytest.approx(-1.0)
