"""Atomic writes and the signed ``.npz`` files of the caches (``recsim_env.files``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.training import atomic_write_json
from recsim_env.files import atomic_write, read_signed_npz, savez


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"a": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text('{"half":')
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_signed_npz_is_read_back_only_under_its_own_signature(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "model.npz"
    arrays = {"signature": np.array('{"l2": 500}'), "b": np.arange(3, dtype=np.float32)}
    atomic_write(path, lambda tmp: savez(tmp, arrays))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]  # no ".tmp.npz" left
    read = read_signed_npz(path, '{"l2": 500}')
    assert read is not None and read["b"].dtype == np.float32
    np.testing.assert_array_equal(read["b"], arrays["b"])
    assert read_signed_npz(path, '{"l2": 200}') is None  # built from other settings
    assert read_signed_npz(tmp_path / "missing.npz", '{"l2": 500}') is None
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(Exception):  # a damaged file is the caller's to rebuild, never data
        read_signed_npz(path, '{"l2": 500}')
