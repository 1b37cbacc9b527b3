"""``experiments.studies.ablation`` (``make ablation``) on a tiny ML-1M-format dataset: the variants'
configurations, the run files, resuming, ``--force`` and the rendered files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from experiments.studies import ablation
from experiments.studies.ablation import AblationOptions, VariantRun, ablation_key, config_changes, variant_config
from agents.config import PRESETS, make_config
from experiments.table1 import METRICS, Run
from recsim_env.movielens import load_movielens
from test_table1 import write_tiny_ml1m

#: Tiny networks and budgets: a run trains in about a second.
TINY = ("torch_threads=1", "n_envs=2", "max_steps=5", "total_timesteps=120", "learning_starts=20",
        "batch_size=8", "buffer_size=500", "embed_dim=8", "dnn_hidden=8", "net_arch=16")  # fmt: skip


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    sets = [part for item in TINY for part in ("--set", item)]
    return ["--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--edited-copy", "--seeds", "0",
            "--quick", "--out", str(out), *sets, *extra]  # fmt: skip


def _outputs(out: Path) -> dict[str, bytes]:
    names = ("ablation_ml-1m.md", "ablation_ml-1m.csv", "ablation_ml-1m_runs.json")
    return {name: (out / name).read_bytes() for name in names}


def _fake_train(calls: list, interrupt_at: int | None = None):
    """A stand-in for ``agents.training.train`` that records its configs (and can be interrupted)."""

    def fake(config, run_dir=None, progress=True):
        calls.append(config)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        metrics = {**{m: 0.5 for m in METRICS}, "n_users": 30, "greedy_mean_return": 7.0,
                   "greedy_mean_likes": 8.0, "greedy_mean_length": 5.0, "greedy_n_users": 22}  # fmt: skip
        per_user = {"user": np.arange(30), "precision@10": np.full(30, 0.5), "ndcg@10": np.full(30, 0.5)}
        return SimpleNamespace(metrics=metrics, training={"env_steps": config.total_timesteps},
                               run_dir=Path("fake-run"), model=None, per_user=per_user)  # fmt: skip

    return fake


def test_each_variant_is_the_base_plus_exactly_its_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # A base with supervised pre-training, to see which variants keep it.
    monkeypatch.setitem(PRESETS, "pretrained", {"preset": "pretrained", "pretrain_steps": 100})
    opts = AblationOptions(base_preset="pretrained", overrides={"gamma": 0.5}).check(["ml-100k"])
    out = Path("results")
    base = variant_config("ml-100k", "both", "test", 0, opts, out)
    assert base.pretrain_steps == 100 and base.gamma == 0.5 and not base.tune
    expected = {
        "both": {},
        "short-only": {"interests": "short"},
        "long-only": {"interests": "long"},
        "td-only": {"next_item_weight": 0.0, "pretrain_steps": 0},
        "next-item-only": {"td_weight": 0.0},  # pre-training stays
    }
    for variant, changes in expected.items():
        config = variant_config("ml-100k", variant, "test", 0, opts, out).validate()
        assert config_changes(config, base) == changes, variant
        val = variant_config("ml-100k", variant, "val", 0, opts, out)
        assert config_changes(val, config) == {"tune": True}, variant  # the two modes differ in tune only

    # paper: the paper preset (with the same --set overrides) at the base's step budget.
    paper = variant_config("ml-100k", "paper", "test", 0, opts, out).validate()
    assert paper.max_episodes is None and paper.total_timesteps == base.total_timesteps
    reference = make_config("paper", gamma=0.5, max_episodes=None, total_timesteps=base.total_timesteps)
    assert config_changes(paper, reference) == {}
    assert PRESETS["paper"]["max_episodes"] == 1000  # the preset itself is untouched
    assert ablation.ablation_plan(opts)[:3] == [(0, "both", "val"), (0, "both", "test"), (0, "short-only", "val")]


def test_quick_ablation_writes_run_files_and_outputs_and_a_rerun_trains_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import agents.training

    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    argv = _argv(root, out, "--variants", "short-only", "both")  # listed in table order whatever is given
    assert ablation.main(argv) == 0

    files = sorted(p.name for p in (out / "ablation_runs" / "ml-1m").glob("*.json"))
    prefixes = [name.rsplit("-", 1)[0] for name in files]
    assert prefixes == ["both-test-seed0", "both-val-seed0", "short-only-test-seed0", "short-only-val-seed0"]
    records = {name.rsplit("-", 2)[0]: json.loads((out / "ablation_runs" / "ml-1m" / name).read_text())
               for name in files}  # fmt: skip
    for prefix, record in records.items():
        config = record["key"]["config"]
        assert config["tune"] is prefix.endswith("-val") and config["total_timesteps"] == 120
        assert config["interests"] == ("short" if prefix.startswith("short") else "both")
        metrics = record["run"]["metrics"]
        assert 0.0 <= metrics["precision@10"] <= 1.0 and metrics["greedy_mean_return"] >= 0.0
        assert 0 < metrics["greedy_n_users"] <= metrics["n_users"] == 30  # users with a liked held-out item
        assert Path(record["run"]["params"]["run_dir"]).is_dir()
        assert record["run"]["tuned"]["tune"] is prefix.endswith("-val")

    with open(out / "ablation_ml-1m.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["variant"] for r in rows] == ["both", "short-only"]
    test_run = records["both-test"]["run"]["metrics"]
    assert float(rows[0]["test_precision@10_mean"]) == test_run["precision@10"]
    assert float(rows[0]["val_greedy_mean_return_mean"]) == records["both-val"]["run"]["metrics"]["greedy_mean_return"]
    md = (out / "ablation_ml-1m.md").read_text(encoding="utf-8")
    assert "| both | the base: long + short interest, TD + next-item loss (issue rows 3 and 6) | " in md
    assert f"{test_run['precision@10']:.4f}" in md and "| 1/1 |" in md
    assert "- short-only: `{\"interests\": \"short\"}`" in md
    assert "--variants both short-only" in md and "quick smoke-test budget: not a result" in md
    assert "reconstructed ML-1M" not in md  # an edited copy (--edited-copy) is not the reconstruction
    assert (out / "ablation_ml-1m_p10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((out / "ablation_ml-1m_runs.json").read_text(encoding="utf-8"))["runs"]
    assert [(r["variant"], r["mode"]) for r in runs] == [("both", "val"), ("both", "test"),
                                                         ("short-only", "val"), ("short-only", "test")]  # fmt: skip
    assert not list(out.rglob(".*.tmp"))
    first = _outputs(out)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(agents.training, "train", must_not_train)
    assert ablation.main(argv) == 0
    assert _outputs(out) == first  # byte for byte: rendered from the same run files, no date

    calls: list = []
    monkeypatch.setattr(agents.training, "train", _fake_train(calls))
    assert ablation.main([*argv, "--force"]) == 0
    assert len(calls) == 4
    assert sorted(p.name for p in (out / "ablation_runs" / "ml-1m").glob("*.json")) == files  # same keys
    assert "| 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 7.000 | 1/1 |" in (
        out / "ablation_ml-1m.md").read_text(encoding="utf-8")


def test_interrupted_ablation_loses_only_the_run_in_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.training

    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    argv = _argv(root, out, "--variants", "both", "td-only")
    calls: list = []
    monkeypatch.setattr(agents.training, "train", _fake_train(calls, interrupt_at=2))
    with pytest.raises(KeyboardInterrupt):
        ablation.main(argv)
    done = [p.name.rsplit("-", 1)[0] for p in (out / "ablation_runs" / "ml-1m").glob("*.json")]
    assert done == ["both-val-seed0"]
    assert "| both |" in (out / "ablation_ml-1m.md").read_text(encoding="utf-8")  # the table so far

    calls.clear()
    monkeypatch.setattr(agents.training, "train", _fake_train(calls))
    assert ablation.main(argv) == 0
    assert [(c.interests, c.next_item_weight, c.tune) for c in calls] == [
        ("both", 0.1, False), ("both", 0.0, True), ("both", 0.0, False)]  # both-val was not trained again


def test_render_only_shows_the_finished_runs_and_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes that share the variants each write their own subset; --render-only joins them."""
    import agents.training

    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    calls: list = []
    monkeypatch.setattr(agents.training, "train", _fake_train(calls))
    assert ablation.main(_argv(root, out, "--variants", "td-only", "--modes", "test")) == 0
    assert len(calls) == 1

    def must_not_train(*args, **kwargs):
        raise AssertionError("--render-only trained a run")

    monkeypatch.setattr(agents.training, "train", must_not_train)
    assert ablation.main([*_argv(root, out, "--variants", "both", "td-only"), "--render-only"]) == 0
    with open(out / "ablation_ml-1m.csv", newline="", encoding="utf-8") as fh:
        rows = {r["variant"]: r for r in csv.DictReader(fh)}
    assert (rows["both"]["status"], rows["td-only"]["status"]) == ("pending", "partial")
    assert (rows["td-only"]["test_seeds_ok"], rows["td-only"]["val_seeds_ok"]) == ("1/1", "0/1")
    assert float(rows["td-only"]["test_precision@10_mean"]) == 0.5  # the fake run's figure
    assert (out / "ablation_ml-1m_p10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_key_follows_every_setting_that_changes_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_movielens("ml-1m", write_tiny_ml1m(tmp_path / "data"), download=False, expect_official=False)
    opts = AblationOptions(seeds=[0, 1])
    key = ablation_key(data, "both", "test", 0, opts)
    assert key["config"]["seed"] == 0 and "runs_dir" not in key["config"] and "name" not in key["config"]
    assert key == ablation_key(data, "both", "test", 0, AblationOptions(seeds=[0, 1], data_dir="/elsewhere"))
    others = [
        ablation_key(data, "both", "test", 0, AblationOptions(overrides={"gamma": 0.5})),  # a changed override
        ablation_key(data, "both", "test", 0, AblationOptions(base_preset="searched")),  # another base
        ablation_key(data, "both", "val", 0, opts),
        ablation_key(data, "both", "test", 1, opts),
        ablation_key(data, "short-only", "test", 0, opts),
        ablation_key(data, "both", "test", 0, AblationOptions(quick=True)),
    ]
    hashes = {ablation._hash(k) for k in [key, *others]}
    assert len(hashes) == 1 + len(others)
    # A changed preset (as when its file is edited) changes the key of every run built on it.
    monkeypatch.setitem(PRESETS, "default", {"learning_rate": 5e-4})
    assert ablation_key(data, "both", "test", 0, opts) != key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--variants", "both", "nope"], "unknown variant(s) ['nope']; choose from both, short-only, long-only, "
                                         "td-only, next-item-only, paper"),
        (["--base-preset", "nope"], "unknown base preset 'nope'; choose from default, paper"),
        (["--modes", "train"], "unknown mode(s) ['train']; choose from val, test"),
        (["--set", "interests=long"], "--set interests: the variants set it; choose the base through --base-preset"),
        (["--base-preset", "paper"], "variant 'next-item-only' on base preset 'paper': invalid training config"),
    ],
)
def test_bad_options_are_a_one_line_error_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "results"
    assert ablation.main(["--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_rows_with_missing_seeds_show_what_is_there(tmp_path: Path) -> None:
    data = load_movielens("ml-1m", write_tiny_ml1m(tmp_path / "data"), download=False, expect_official=False)
    opts = AblationOptions(seeds=[0, 1, 2], variants=["both", "td-only"])

    def run(seed: int, p10: float | None) -> Run:
        if p10 is None:
            return Run("lsrwrl", seed, error="RuntimeError: diverged")
        metrics = {**{m: p10 for m in METRICS}, "greedy_mean_return": 10 * p10}
        return Run("lsrwrl", seed, metrics=metrics)

    runs = [VariantRun("both", "val", run(0, 0.1)), VariantRun("both", "test", run(0, 0.2)),
            VariantRun("both", "val", run(1, 0.3)), VariantRun("both", "test", run(1, 0.4)),
            VariantRun("both", "val", run(2, None)), VariantRun("both", "test", run(2, 0.6))]  # fmt: skip
    both, td_only = ablation.summarize(runs, data.name, opts)
    assert both["val_precision@10_mean"] == pytest.approx(0.2)
    assert both["val_precision@10_std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert both["test_greedy_mean_return_mean"] == pytest.approx(4.0)
    assert both["seeds_ok"] == "val 2/3, test 3/3" and both["status"] == "partial"
    assert both["error"] == "RuntimeError: diverged" and both["val_seeds"] == "0 1"
    assert td_only["status"] == "pending" and td_only["seeds_ok"] == "0/3"
    md = ablation.render_markdown([both, td_only], data, opts)
    assert "| both | the base" in md and "| 0.2000 ± 0.1414 |" in md and "| val 2/3, test 3/3 |" in md
    assert "| td-only | TD loss only, no supervised signal | – | – |" in md
    assert "- both (val 2/3, test 3/3 seeds ok): RuntimeError: diverged" in md
    assert "- Data: ml-1m (measured on the reconstructed ML-1M), 30 users" in md
    assert md == ablation.render_markdown([both, td_only], data, opts)
