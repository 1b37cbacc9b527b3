"""ML-10M, ML-20M, ML-25M, ML-32M: their file formats (tiny fixtures written in the official
formats, since their licence forbids redistribution), the official-figure check, and the
download through a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import recsim_env.download as download
import recsim_env.movielens as movielens
from recsim_env import MovieLensRecEnv, load_movielens, split_ratings
from recsim_env.dataset import HALF_STAR_RATINGS
from recsim_env.download import ChecksumError, DatasetSource
from recsim_env.movielens import DataFormatError, DatasetMismatchError, OfficialFigures

#: (user, movie, rating, timestamp) rows, in file order: 3 users, 4 rated movies of 5 listed.
RATINGS = [
    (1, 10, 4.5, 1_100_000_000), (1, 20, 3.0, 1_100_000_100), (1, 30, 5.0, 1_100_000_200),
    (1, 40, 0.5, 1_100_000_300), (2, 10, 4.0, 1_200_000_000), (2, 40, 2.5, 1_200_000_050),
    (2, 30, 4.5, 1_200_000_060), (7, 20, 5.0, 1_300_000_000), (7, 10, 1.5, 1_300_000_001),
    (7, 30, 3.5, 1_300_000_002),
]  # fmt: skip
#: (movie id, title, genres) of the movies file; movie 50 is listed but never rated.
MOVIES = [
    (10, "Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    (20, "American President, The (1995)", "Comedy|Drama|Romance"),
    (30, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
    (40, "Pirates of the Great Salt Lake (2006)", "(no genres listed)"),
    (50, "Unrated (1999)", "IMAX"),
]
FOLDER = {"ml-10m": "ml-10M100K", "ml-20m": "ml-20m", "ml-25m": "ml-25m", "ml-32m": "ml-32m"}


def write_release(root: Path, name: str, ratings=RATINGS, movies=MOVIES) -> Path:
    """The release's files in its official format under ``root/<zip folder>/``."""
    folder = root / FOLDER[name]
    folder.mkdir(parents=True)
    if name == "ml-10m":  # UserID::MovieID::Rating::Timestamp, ratings like "5" and "3.5"
        (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r:g}::{t}\n" for u, m, r, t in ratings))
        (folder / "movies.dat").write_bytes(
            "".join(f"{m}::{title}::{genres}\n" for m, title, genres in movies).encode("latin-1"))
    else:  # CSV with a header, ratings like "5.0" and "3.5", quoted titles, UTF-8
        (folder / "ratings.csv").write_text(
            "userId,movieId,rating,timestamp\n" + "".join(f"{u},{m},{r:.1f},{t}\n" for u, m, r, t in ratings))
        quote = lambda text: f'"{text}"' if "," in text else text  # noqa: E731
        (folder / "movies.csv").write_text(
            "movieId,title,genres\n" + "".join(f"{m},{quote(title)},{genres}\n" for m, title, genres in movies),
            encoding="utf-8")
    return folder


@pytest.mark.parametrize("name", ["ml-10m", "ml-20m", "ml-25m", "ml-32m"])
def test_each_format_parses_into_half_star_data_without_user_features(tmp_path: Path, name: str) -> None:
    write_release(tmp_path, name)
    # A root holding the zip's folder (ml-10M100K/ for ML-10M) is found under the dataset's name.
    data = load_movielens(name, tmp_path, download=False, cache_dir=tmp_path / "cache", expect_official=False)
    assert (data.name, data.n_ratings, data.n_users, data.n_items) == (name, 10, 3, 4)
    assert data.user_raw_ids.tolist() == [1, 2, 7] and data.item_raw_ids.tolist() == [10, 20, 30, 40]
    assert data.rating.dtype == np.float32 and data.rating.tolist() == [r for _, _, r, _ in RATINGS]
    assert data.rating_scale == HALF_STAR_RATINGS and data.like_threshold == 4
    assert data.user_features.shape == (3, 0) and data.user_feature_names == ()
    assert data.timestamp.tolist() == [t for *_, t in RATINGS]
    assert data.item_titles.tolist() == [t for _, t, _ in MOVIES[:4]]
    assert data.item_years.tolist() == [1995, 1995, 2001, 2006]
    # The genre columns are those the movie file names ("(no genres listed)" is none of them).
    assert data.genre_names == ("Adventure", "Animation", "Children", "Comedy", "Drama", "Fantasy", "IMAX", "Romance")
    assert data.item_genres[3].sum() == 0 and data.item_genres[1].tolist() == [0, 0, 0, 1, 1, 0, 0, 1]
    # Cached: a second load reads the parsed arrays back, metadata included.
    again = load_movielens(name, tmp_path, download=False, cache_dir=tmp_path / "cache", expect_official=False)
    assert again.rating_scale == HALF_STAR_RATINGS and again.user_feature_names == ()
    np.testing.assert_array_equal(again.rating, data.rating)


def test_ids_too_large_for_a_lookup_table_map_the_same_way(tmp_path: Path) -> None:
    # Small non-negative ids are indexed through a lookup table, others by sorting: same result.
    big = 3_000_000_000
    ratings = [(u * big, m * big, r, t) for u, m, r, t in RATINGS]
    movies = [(m * big, title, genres) for m, title, genres in MOVIES]
    write_release(tmp_path / "small", "ml-32m")
    write_release(tmp_path / "big", "ml-32m", ratings=ratings, movies=movies)
    kwargs = dict(download=False, cache_dir=tmp_path / "cache", expect_official=False)
    small = load_movielens("ml-32m", tmp_path / "small", **kwargs)
    large = load_movielens("ml-32m", tmp_path / "big", **kwargs)
    assert large.user_raw_ids.tolist() == [big, 2 * big, 7 * big]
    assert large.item_raw_ids.tolist() == [10 * big, 20 * big, 30 * big, 40 * big]
    for field in ("user", "item", "rating", "timestamp", "item_years"):
        np.testing.assert_array_equal(getattr(large, field), getattr(small, field))
    assert large.item_titles.tolist() == small.item_titles.tolist()


def test_half_star_release_in_the_environment(tmp_path: Path) -> None:
    write_release(tmp_path, "ml-20m")
    data = load_movielens("ml-20m", tmp_path, download=False, cache_dir=tmp_path / "cache", expect_official=False)
    env = MovieLensRecEnv(split_data=split_ratings(data, train_ratio=0.75), render_mode="ansi")
    assert sorted(env.observation_space.spaces) == ["excluded", "history", "liked"]  # no user features
    env.reset(options={"user": 0, "prefix": 1})  # user 1: item 10 (4.5) seen; 20 (3.0), 30 (5.0) targets
    assert env.step(2)[1] == pytest.approx(1.0) and env.step(1)[1] == 0.0
    assert "LIKED (rating 5.0, reward 1)" not in env.render()  # the last step was the 3.0
    assert "watched, not liked (rating 3.0, reward 0)" in env.render()


def test_official_figures_are_checked_and_the_check_can_be_skipped(tmp_path: Path) -> None:
    write_release(tmp_path, "ml-25m")
    with pytest.raises(DatasetMismatchError) as error:
        load_movielens("ml-25m", tmp_path, download=False, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "ratings (rows): expected 25,000,095, found 10" in message
    assert "users with ratings: expected 162,541, found 3" in message
    assert "movies listed in the movies file: expected 62,423, found 5" in message
    assert "expect_official=False" in message
    assert set(error.value.differences) == {"n_ratings", "n_users", "n_movies"}


@pytest.mark.parametrize(
    "name, ratings_text, match",
    [
        ("ml-10m", "1::10::4.5::1\n1::20::3.7::2\n", r"ratings.dat, line 2: rating 3.7 is not a half star in 0.5..5.0"),
        ("ml-10m", "1::10::4.5::1\n1::20::x::2\n", r"ratings.dat, line 2: rating 'x' is not a number"),
        ("ml-20m", "userId,movieId,rating,timestamp\n1,10,4.5,1\n1,20,4.0\n", r"ratings.csv, line 3: expected 4 fields"),
        ("ml-20m", "userId,movieId,rating,timestamp\n1,10,4.5,1\n1,20,6.0,2\n", r"ratings.csv, line 3: rating 6.0 is not"),
        ("ml-20m", "user,movie,rating,time\n1,10,4.5,1\n", r"ratings.csv, line 1: expected the header userId,movieId"),
        ("ml-32m", "userId,movieId,rating,timestamp\n1,10,4.5,1\n1,99,4.0,2\n", r"line 3: movie id 99 is not listed"),
        ("ml-32m", "userId,movieId,rating,timestamp\n1,10,4.5,1\n2,20,4.0,2\n2,88,1.0,3\n1,77,1.0,4\n",
         r"line 4: movie id 88 is not listed"),  # the first unknown id in file order, not the smallest
        ("ml-32m", "userId,movieId,rating,timestamp\n1,10,4.5,1\n1,20,4.0,2\n2,10,1.0,3\n1,10,3.0,4\n",
         r"line 5: user 1 rated movie 10 again \(first at line 2\)"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, name: str, ratings_text: str, match: str) -> None:
    folder = write_release(tmp_path, name)
    (folder / ("ratings.dat" if name == "ml-10m" else "ratings.csv")).write_text(ratings_text)
    with pytest.raises(DataFormatError, match=match):
        load_movielens(name, folder, download=False, cache_dir=tmp_path / "cache", expect_official=False)


# Download through a local HTTP server -------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) of an HTTP server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _zip_release(tmp_path: Path, name: str, served: Path) -> str:
    """Zip the fixture as GroupLens does (one top folder, plus a README) and return its MD5."""
    source = write_release(tmp_path / "build", name)
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.iterdir()):
            archive.write(path, f"{FOLDER[name]}/{path.name}")
        archive.writestr(f"{FOLDER[name]}/README.html", "fixture")
    (served / f"{name}.zip").write_bytes(payload.getvalue())
    return hashlib.md5(payload.getvalue()).hexdigest()


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOVIELENS_DATA", raising=False)


def test_ml10m_downloads_into_the_cache_under_its_name(server, tmp_path: Path, monkeypatch) -> None:
    base, served = server
    md5 = _zip_release(tmp_path, "ml-10m", served)
    files = download.SOURCES["ml-10m"].files
    monkeypatch.setitem(download.SOURCES, "ml-10m", DatasetSource(f"{base}/ml-10m.zip", md5, files, "ml-10M100K"))
    cache = tmp_path / "cache"
    data = load_movielens("ml-10m", cache_dir=cache, expect_official=False)
    assert data.n_ratings == 10 and (cache / "ml-10m" / "ratings.dat").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["ml-10m", "parsed"]  # no zip, no temporary left
    # A corrupted download is refused and leaves nothing.
    monkeypatch.setitem(download.SOURCES, "ml-10m", DatasetSource(f"{base}/ml-10m.zip", "0" * 32, files, "ml-10M100K"))
    with pytest.raises(ChecksumError, match="Checksum mismatch"):
        load_movielens("ml-10m", cache_dir=tmp_path / "other", expect_official=False)
    assert not (tmp_path / "other" / "ml-10m").exists()


def test_ml32m_has_no_checksum_so_a_download_is_checked_by_its_figures(server, tmp_path, monkeypatch) -> None:
    assert download.SOURCES["ml-32m"].md5 is None
    base, served = server
    _zip_release(tmp_path, "ml-32m", served)
    files = download.SOURCES["ml-32m"].files
    monkeypatch.setitem(download.SOURCES, "ml-32m", DatasetSource(f"{base}/ml-32m.zip", None, files))
    # Even with expect_official=False: the figures are the only check of a download without MD5.
    with pytest.raises(DatasetMismatchError, match="ratings \\(rows\\): expected 32,000,204, found 10"):
        load_movielens("ml-32m", cache_dir=tmp_path / "cache", expect_official=False)
    monkeypatch.setitem(movielens.OFFICIAL_FIGURES, "ml-32m", OfficialFigures(n_ratings=10, n_users=3, n_movies=5))
    assert load_movielens("ml-32m", cache_dir=tmp_path / "cache").n_items == 4
