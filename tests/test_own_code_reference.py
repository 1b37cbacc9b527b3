"""experiments.studies.own_code_reference: the README's reference returns, on a few real test users."""

from __future__ import annotations

import json

import pytest

from experiments.studies.own_code_reference import main


def test_reference_script_writes_the_figures_it_prints(tmp_path, capsys):
    out = tmp_path / "ref.json"
    assert main(["--dqn-steps", "200", "--eval-at", "100", "--n-users", "64", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["command"].endswith(f"--out {out}") and result["mode"] == "test" and result["max_steps"] == 50
    policies = result["policies"]
    for name in ("random_allowed", "popularity_unseen", "popularity_unmasked"):
        assert policies[name]["n_episodes"] == 64
    # On real users: popularity over unseen items beats random, and without the mask it repeats itself.
    assert policies["popularity_unseen"]["mean_return"] > 3 * policies["random_allowed"]["mean_return"]
    assert policies["popularity_unmasked"]["mean_return"] < policies["popularity_unseen"]["mean_return"] / 3
    assert policies["popularity_unmasked"]["mean_length"] == 50.0
    budgets = policies["sb3_dqn"]["budgets"]
    assert sorted(budgets, key=int) == ["100", "200"]
    assert set(budgets["200"]) == {"masked", "unmasked", "train_seconds"}
    printed = capsys.readouterr().out
    assert f"mean return {policies['popularity_unseen']['mean_return']:.3f}" in printed
    with pytest.raises(SystemExit):
        main(["--n-users", "0", "--out", str(out)])
