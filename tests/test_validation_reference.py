"""``experiments.studies.validation_reference``: baselines refitted on the validation slice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.baselines.tuning import tune
from experiments import table1
from experiments.studies import validation_reference


def test_reference_reproduces_the_stored_tuning_value(ml100k_dir: Path, tmp_path: Path) -> None:
    """The refit with the stored tuned settings scores exactly the tuning's best validation NDCG."""
    opts = table1.TableOptions(data_dir=str(ml100k_dir))
    data = table1.load_dataset("ml-100k", opts)
    split = table1.table_split(data, 0, opts)
    store = table1.RunStore(tmp_path, "ml-100k")
    for name in ("popularity", "itemcf"):
        key = table1.tuning_key(name, data, 0, opts)
        store.save_tuning(name, key, tune(name, split, grid=table1._grid(name, opts),
                                          fixed=table1._fixed_params(name, 0, opts)))
    status = validation_reference.main(["--dataset", "ml-100k", "--out", str(tmp_path), "--data-dir",
                                        str(ml100k_dir), "--models", "popularity", "itemcf"])
    assert status == 0
    result = json.loads((tmp_path / "validation_reference_ml-100k.json").read_text())
    for name in ("popularity", "itemcf"):
        stored = store.load_tuning(name, table1.tuning_key(name, data, 0, opts))
        assert result["models"][name]["ndcg@10"] == pytest.approx(stored.value, rel=1e-12)
    assert result["models"]["itemcf"]["precision@10"] > result["models"]["popularity"]["precision@10"]


def test_missing_tuning_is_an_error_naming_the_command(ml100k_dir: Path, tmp_path: Path, capsys) -> None:
    status = validation_reference.main(["--dataset", "ml-100k", "--out", str(tmp_path), "--data-dir",
                                        str(ml100k_dir), "--models", "ease"])
    assert status == 2
    assert "python -m experiments.table1 --datasets ml-100k --models ease" in capsys.readouterr().err
    assert not (tmp_path / "validation_reference_ml-100k.json").exists()
