"""Downloading into the cache, through a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

import recsim_env.download as download
import recsim_env.movielens as movielens
from recsim_env.download import (
    ChecksumError,
    DatasetSource,
    cache_root,
    download_dataset,
)
from recsim_env.movielens import DatasetNotFoundError, load_movielens

ZIPPED = ("u.data", "u.user", "u.item", "u.occupation", "u.genre", "README")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass


@pytest.fixture
def served(tmp_path: Path, ml100k_dir: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) of a threaded HTTP server on 127.0.0.1, holding a
    ml-100k.zip built from the real files (same layout as the GroupLens zip)."""
    folder = tmp_path / "served"
    folder.mkdir()
    with zipfile.ZipFile(folder / "ml-100k.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-100k/", "")
        for name in ZIPPED:
            archive.write(ml100k_dir / "ml-100k" / name, f"ml-100k/{name}")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _use_source(monkeypatch: pytest.MonkeyPatch, url: str, md5: str) -> None:
    original = download.SOURCES["ml-100k"]
    monkeypatch.setitem(download.SOURCES, "ml-100k", DatasetSource(url, md5, original.files))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookup must reach the cache / download step, whatever the caller's environment."""
    monkeypatch.delenv("MOVIELENS_DATA", raising=False)


def test_download_into_cache(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ml100k_dir: Path
) -> None:
    base, folder = served
    _use_source(monkeypatch, f"{base}/ml-100k.zip", _md5(folder / "ml-100k.zip"))
    cache = tmp_path / "cache"
    data = load_movielens("ml-100k", cache_dir=cache)
    assert (data.n_users, data.n_items, data.n_ratings) == (943, 1682, 100_000)
    for name in ZIPPED:
        assert (cache / "ml-100k" / name).read_bytes() == (
            ml100k_dir / "ml-100k" / name
        ).read_bytes()
    files = _files_under(cache)
    # Only the unpacked folder and the parsed arrays remain: no zip, no partial download.
    assert [f for f in files if not f.startswith("parsed/")] == sorted(
        f"ml-100k/{name}" for name in ZIPPED
    )
    assert len([f for f in files if f.startswith("parsed/")]) == 1

    # The cached copy is found without any network (lookup step 3).
    _use_source(monkeypatch, "http://127.0.0.1:9/unreachable.zip", "0" * 32)
    again = load_movielens("ml-100k", cache_dir=cache, download=False)
    assert again.n_ratings == 100_000


def test_corrupted_download_leaves_nothing(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, folder = served
    zip_path = folder / "ml-100k.zip"
    good_md5 = _md5(zip_path)
    damaged = bytearray(zip_path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(damaged))
    _use_source(monkeypatch, f"{base}/ml-100k.zip", good_md5)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=f"Checksum mismatch for {base}/ml-100k.zip") as info:
        load_movielens("ml-100k", cache_dir=cache)
    assert good_md5 in str(info.value) and _md5(zip_path) in str(info.value)
    assert _files_under(cache) == []


def test_offline_error_lists_every_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-100k.zip"
    _use_source(monkeypatch, url, "0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens("ml-100k", cache_dir=cache)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for expected in (
        "data_dir argument: not given",
        "$MOVIELENS_DATA: not set",
        f"per-user cache: no folder {cache / 'ml-100k'}",
        f"download: Could not download {url}",
        "pass data_dir=ROOT or set MOVIELENS_DATA=ROOT",
    ):
        assert expected in message
    assert _files_under(cache) == []


def test_http_error_is_reported(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = served
    _use_source(monkeypatch, f"{base}/missing.zip", "0" * 32)
    with pytest.raises(DatasetNotFoundError, match="404"):
        load_movielens("ml-100k", cache_dir=tmp_path / "cache")
    assert _files_under(tmp_path / "cache") == []


def test_download_false_never_uses_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> Path:
        raise AssertionError("download attempted with download=False")

    monkeypatch.setattr(movielens, "download_dataset", forbidden)
    monkeypatch.setenv("MOVIELENS_DATA", str(tmp_path))  # a data root without ml-1m/
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens("ml-1m", download=False, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert f"$MOVIELENS_DATA: no folder {tmp_path / 'ml-1m'} (nor {tmp_path} itself)" in message
    assert "download: disabled (download=False)" in message
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert "ROOT/ml-1m/ratings.dat" in message


def test_injected_opener(ml100k_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ZIPPED:
            archive.write(ml100k_dir / "ml-100k" / name, f"ml-100k/{name}")
    payload = buffer.getvalue()
    _use_source(monkeypatch, "mirror://ml-100k.zip", hashlib.md5(payload).hexdigest())
    requested: list[str] = []

    def opener(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(payload)

    folder = download_dataset("ml-100k", tmp_path / "cache", opener=opener)
    assert requested == ["mirror://ml-100k.zip"]
    assert folder == tmp_path / "cache" / "ml-100k"
    assert download_dataset("ml-100k", tmp_path / "cache", opener=opener) == folder
    assert requested == ["mirror://ml-100k.zip"]  # a complete copy is not fetched again


def test_zip_without_required_file_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t1\t5\t0\n")
    payload = buffer.getvalue()
    _use_source(monkeypatch, "mirror://ml-100k.zip", hashlib.md5(payload).hexdigest())
    with pytest.raises(download.DownloadError, match="does not contain ml-100k/u.user"):
        download_dataset("ml-100k", tmp_path / "cache", opener=lambda url, t: io.BytesIO(payload))
    assert _files_under(tmp_path / "cache") == []


def test_cache_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSIM_ENV_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("RECSIM_ENV_CACHE")
    assert cache_root() == tmp_path / "xdg" / "recsim_env"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "recsim_env"
