"""Loading MovieLens: real ML-100K, ML-1M format, lookup order, bad input, the parsed cache."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import recsim_env.movielens as movielens
from recsim_env.dataset import USER_FEATURE_CARDINALITIES, MovieLensData
from recsim_env.movielens import (
    DataFormatError,
    DatasetMismatchError,
    DatasetNotFoundError,
    MissingFileError,
    load_movielens,
)
from recsim_env.splits import split_ratings

ML100K_FILES = ("u.data", "u.user", "u.item", "u.occupation")

# Hand-made ratings in the exact ML-1M format (UserID::MovieID::Rating::Timestamp), over real
# users.dat / movies.dat ids; movie 73 has a latin-1 title, movie 3952 is the largest id.
ML1M_RATINGS = [
    (10, 3952, 4, 978300760),
    (1, 1, 5, 978300760),
    (1, 73, 3, 978302109),
    (2, 570, 4, 978298413),
    (6040, 1, 1, 956703932),
    (1, 3952, 2, 978300760),
    (2, 1, 5, 978299026),
]


def _ratings_dat(rows: list[tuple[int, int, int, int]]) -> bytes:
    return "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows).encode("ascii")


def load_handmade(root: Path, **kwargs: Any) -> MovieLensData:
    """Load hand-made files in the ML-1M format from ``root/ml-1m/``: not the official release,
    so the comparison with its figures is turned off explicitly, as for any edited copy."""
    return load_movielens("ml-1m", root, download=False, expect_official=False, **kwargs)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="session")
def ml1m_meta_dir(ml100k_dir: Path) -> Path:
    """The real ML-1M folder (users.dat, movies.dat and the reconstructed ratings.dat)."""
    folder = ml100k_dir / "ml-1m"
    if not (folder / "users.dat").is_file() or not (folder / "movies.dat").is_file():
        pytest.skip(f"real ML-1M metadata not found in {folder}")
    return folder


@pytest.fixture
def ml1m_root(ml1m_meta_dir: Path, tmp_path: Path) -> Path:
    """A data root whose ``ml-1m/`` holds a small ratings.dat beside the real metadata."""
    folder = tmp_path / "data" / "ml-1m"
    folder.mkdir(parents=True)
    for name in ("users.dat", "movies.dat"):
        shutil.copy(ml1m_meta_dir / name, folder / name)
    (folder / "ratings.dat").write_bytes(_ratings_dat(ML1M_RATINGS))
    return tmp_path / "data"


@pytest.fixture
def ml100k_copy(ml100k_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the real ML-100K folder."""
    folder = tmp_path / "copy" / "ml-100k"
    folder.mkdir(parents=True)
    for name in ML100K_FILES:
        shutil.copy(ml100k_dir / "ml-100k" / name, folder / name)
    return folder


# ------------------------------------------------------------------------------ real ML-100K


def test_ml100k_sizes_and_ids(ml100k: MovieLensData) -> None:
    assert ml100k.name == "ml-100k"
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_ratings) == (943, 1682, 100_000)
    np.testing.assert_array_equal(ml100k.user_raw_ids, np.arange(1, 944))
    np.testing.assert_array_equal(ml100k.item_raw_ids, np.arange(1, 1683))
    assert ml100k.user.dtype == np.int32 and ml100k.item.dtype == np.int32
    assert ml100k.rating.dtype == np.int8 and ml100k.timestamp.dtype == np.int64
    assert ml100k.user.min() == 0 and ml100k.user.max() == 942
    assert ml100k.item.min() == 0 and ml100k.item.max() == 1681
    # Rating histogram of the GroupLens release (see shared/data/SOURCES.md).
    np.testing.assert_array_equal(
        np.bincount(ml100k.rating, minlength=6)[1:], [6110, 11370, 27145, 34174, 21201]
    )


def test_ml100k_ratings_keep_file_order(ml100k: MovieLensData, ml100k_dir: Path) -> None:
    first = (ml100k_dir / "ml-100k" / "u.data").read_text().splitlines()[:3]
    for row, line in enumerate(first):
        user, item, rating, timestamp = map(int, line.split("\t"))
        assert ml100k.user_raw_ids[ml100k.user[row]] == user
        assert ml100k.item_raw_ids[ml100k.item[row]] == item
        assert (ml100k.rating[row], ml100k.timestamp[row]) == (rating, timestamp)


def test_ml100k_user_features(ml100k: MovieLensData, ml100k_dir: Path) -> None:
    features = ml100k.user_features
    assert features.shape == (943, 3) and features.dtype == np.int32
    assert (features >= 0).all() and (features < np.array(USER_FEATURE_CARDINALITIES)).all()
    occupations = (ml100k_dir / "ml-100k" / "u.occupation").read_text().split()
    # 1|24|M|technician, 2|53|F|other, 5|33|F|other: age groups 18-24 -> 1, 50-55 -> 5, 25-34 -> 2
    assert features[0].tolist() == [1, 1, occupations.index("technician")]
    assert features[1].tolist() == [0, 5, occupations.index("other")]
    assert features[4].tolist() == [0, 2, occupations.index("other")]

    def age_group(age: int) -> int:  # ML-1M's groups: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
        for group, (lo, hi) in enumerate([(0, 17), (18, 24), (25, 34), (35, 44), (45, 49),
                                          (50, 55), (56, 200)]):  # fmt: skip
            if lo <= age <= hi:
                return group
        raise AssertionError(age)

    for line in (ml100k_dir / "ml-100k" / "u.user").read_text().splitlines():
        user, age, gender, occupation, _ = line.split("|")
        row = features[np.searchsorted(ml100k.user_raw_ids, int(user))]
        expected = ["F", "M"].index(gender), age_group(int(age)), occupations.index(occupation)
        assert tuple(row.tolist()) == expected, line


def test_ml100k_items(ml100k: MovieLensData, ml100k_dir: Path) -> None:
    genre_file = (ml100k_dir / "ml-100k" / "u.genre").read_text().split()
    assert list(ml100k.genre_names) == [line.split("|")[0] for line in genre_file]
    assert ml100k.item_genres.shape == (1682, 19) and ml100k.item_genres.dtype == bool
    assert ml100k.item_titles[0] == "Toy Story (1995)" and ml100k.item_years[0] == 1995
    toy_story = {g for g, on in zip(ml100k.genre_names, ml100k.item_genres[0]) if on}
    assert toy_story == {"Animation", "Children's", "Comedy"}
    assert ml100k.item_titles[1632] == "Á köldum klaka (Cold Fever) (1994)"  # latin-1 decoded
    assert ml100k.item_titles[266] == "unknown" and ml100k.item_years[266] == -1
    known = ml100k.item_years[ml100k.item_years != -1]
    assert known.min() >= 1900 and known.max() <= 1998


def test_data_dir_may_be_the_dataset_folder(ml100k: MovieLensData, ml100k_dir: Path) -> None:
    direct = load_movielens("ml-100k", ml100k_dir / "ml-100k", download=False)
    for field in ("user", "item", "rating", "timestamp", "user_features", "item_genres"):
        np.testing.assert_array_equal(getattr(direct, field), getattr(ml100k, field))


def test_env_var_is_used_without_data_dir(
    ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOVIELENS_DATA", str(ml100k_dir))
    data = load_movielens("ml-100k", download=False, cache_dir=tmp_path)
    assert data.n_ratings == 100_000


def test_data_dir_is_never_modified(ml100k_dir: Path, tmp_path: Path) -> None:
    before = _snapshot(ml100k_dir)
    load_movielens("ml-100k", ml100k_dir, download=False, cache_dir=tmp_path / "fresh")
    load_movielens("ml-100k", ml100k_dir, download=False, cache_dir=tmp_path / "fresh")
    assert _snapshot(ml100k_dir) == before
    assert list((tmp_path / "fresh" / "parsed").glob("ml-100k-*.npz"))  # the cache went here


def test_unknown_dataset_name() -> None:
    with pytest.raises(ValueError, match="ml-100k"):
        load_movielens("ml-7m", download=False)


def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> Path:
        raise AssertionError("must not download: the caller named a place")

    monkeypatch.setattr(movielens, "download_dataset", forbidden)


def test_explicit_data_dir_is_never_a_fallback(
    ml100k_dir: Path, ml100k_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data_dir that does not exist, or holds no dataset, is an error naming it, even though
    $MOVIELENS_DATA and the cache (here: a complete copy) would have had the files."""
    monkeypatch.setenv("MOVIELENS_DATA", str(ml100k_dir))
    _no_download(monkeypatch)
    cache = ml100k_copy.parent  # holds a complete ml-100k/
    typo = tmp_path / "dta"
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens("ml-100k", typo, cache_dir=cache)
    assert str(info.value).startswith(f"data_dir points to {typo}, which does not exist.")
    assert "data_dir=None" in str(info.value)  # how to use the other places instead

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"holds no ml-100k/ folder") as info:
        load_movielens("ml-100k", empty, cache_dir=cache)
    assert str(empty) in str(info.value) and "u.data" in str(info.value)

    with pytest.raises(DatasetNotFoundError, match="data_dir is an empty string"):
        load_movielens("ml-100k", "", cache_dir=cache)


def test_env_var_naming_a_missing_folder_is_an_error(
    ml100k_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set $MOVIELENS_DATA that does not exist is the same mistake as a bad data_dir."""
    gone = tmp_path / "moved-away"
    monkeypatch.setenv("MOVIELENS_DATA", str(gone))
    _no_download(monkeypatch)
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens("ml-100k", cache_dir=ml100k_copy.parent)  # the cache has a copy
    message = str(info.value)
    assert message.startswith(f"$MOVIELENS_DATA points to {gone}, which does not exist.")
    assert "unset it" in message

    monkeypatch.setenv("MOVIELENS_DATA", "")  # empty = unset (the Makefile exports it so)
    assert load_movielens("ml-100k", cache_dir=ml100k_copy.parent).n_ratings == 100_000


def test_env_var_root_without_the_dataset_passes_to_the_cache(
    ml100k_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data root may hold only one dataset: an existing one without ml-100k/ is passed over
    (documented), and the official copy in the cache is used."""
    only_ml1m = tmp_path / "root"
    (only_ml1m / "ml-1m").mkdir(parents=True)
    monkeypatch.setenv("MOVIELENS_DATA", str(only_ml1m))
    _no_download(monkeypatch)
    assert load_movielens("ml-100k", cache_dir=ml100k_copy.parent).n_ratings == 100_000


# ------------------------------------------------------------------------------ real ML-1M
# ../shared/data/ml-1m/ratings.dat is a reconstruction (exact ratings and per-user order; see
# shared/data/SOURCES.md); the counts below are the official GroupLens figures.


def test_ml1m_sizes_and_histogram(ml1m: MovieLensData) -> None:
    assert ml1m.name == "ml-1m"
    assert (ml1m.n_users, ml1m.n_items, ml1m.n_ratings) == (6040, 3706, 1_000_209)
    np.testing.assert_array_equal(ml1m.user_raw_ids, np.arange(1, 6041))
    assert ml1m.item_raw_ids[0] == 1 and ml1m.item_raw_ids[-1] == 3952
    np.testing.assert_array_equal(
        np.bincount(ml1m.rating, minlength=6)[1:], [56_174, 107_557, 261_197, 348_971, 226_310]
    )
    assert (np.bincount(ml1m.user, minlength=6040) >= 20).all()  # every ML-1M user rated >= 20


def test_ml1m_user_features_and_titles(ml1m: MovieLensData) -> None:
    # users.dat: 1::F::1::10, 2::M::56::16, 3::M::25::15, 10::F::35::1, 6040::M::25::6
    features = ml1m.user_features
    assert features.shape == (6040, 3)
    assert features[[0, 1, 2, 9, 6039]].tolist() == [
        [0, 0, 10], [1, 6, 16], [1, 2, 15], [0, 3, 1], [1, 2, 6]
    ]
    assert ml1m.item_titles[0] == "Toy Story (1995)"
    assert len(ml1m.genre_names) == 18 and ml1m.item_genres.shape == (3706, 18)


def test_ml1m_first_rows_keep_file_order(ml1m: MovieLensData, ml100k_dir: Path) -> None:
    with open(ml100k_dir / "ml-1m" / "ratings.dat", encoding="ascii") as f:
        first = [next(f).strip() for _ in range(3)]
    for row, line in enumerate(first):
        user, item, rating, timestamp = map(int, line.split("::"))
        assert ml1m.user_raw_ids[ml1m.user[row]] == user
        assert ml1m.item_raw_ids[ml1m.item[row]] == item
        assert (ml1m.rating[row], ml1m.timestamp[row]) == (rating, timestamp)


def test_ml1m_temporal_split_sizes(ml1m: MovieLensData) -> None:
    split = split_ratings(ml1m, "temporal", train_ratio=0.8)
    counts = np.bincount(ml1m.user, minlength=ml1m.n_users)
    n_train = np.clip(np.floor(0.8 * counts + 0.5), 1, counts - 1).astype(int)  # round half up
    np.testing.assert_array_equal(np.diff(split.train_indptr), n_train)
    np.testing.assert_array_equal(np.diff(split.test_indptr), counts - n_train)
    assert len(split.train_items) == 800_193 and len(split.test_items) == 200_016


# ------------------------------------------------------------------------------ ML-1M format


def test_ml1m_format(ml1m_root: Path, ml1m_meta_dir: Path) -> None:
    data = load_handmade(ml1m_root)
    assert data.name == "ml-1m"
    assert data.n_ratings == len(ML1M_RATINGS)
    np.testing.assert_array_equal(data.user_raw_ids, [1, 2, 10, 6040])  # only users with ratings
    np.testing.assert_array_equal(data.item_raw_ids, [1, 73, 570, 3952])  # rated items, sorted
    for row, (user, item, rating, timestamp) in enumerate(ML1M_RATINGS):  # file order
        assert data.user_raw_ids[data.user[row]] == user
        assert data.item_raw_ids[data.item[row]] == item
        assert (data.rating[row], data.timestamp[row]) == (rating, timestamp)
    # users.dat: 1::F::1::10, 2::M::56::16, 10::F::35::1, 6040::M::25::6
    assert data.user_features.tolist() == [[0, 0, 10], [1, 6, 16], [0, 3, 1], [1, 2, 6]]
    assert len(data.genre_names) == 18 and data.item_genres.shape == (4, 18)
    assert data.item_titles[1] == "Misérables, Les (1995)"  # latin-1 decoded
    assert data.item_years.tolist() == [1995, 1995, 1993, 2000]
    assert {g for g, on in zip(data.genre_names, data.item_genres[0]) if on} == {
        "Animation", "Children's", "Comedy"
    }


def test_ml1m_folder_without_ratings_reports_missing_file(
    ml1m_meta_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the real ML-1M folder without ratings.dat: an error naming it, no download."""
    def no_download(*args: object, **kwargs: object) -> Path:
        raise AssertionError("must not download when a folder exists")

    root = tmp_path / "root"
    (root / "ml-1m").mkdir(parents=True)
    for name in ("users.dat", "movies.dat", "README"):
        shutil.copy(ml1m_meta_dir / name, root / "ml-1m" / name)
    monkeypatch.setattr(movielens, "download_dataset", no_download)
    for data_dir in (root, root / "ml-1m"):
        with pytest.raises(MissingFileError, match=r"ratings\.dat missing in .*ml-1m") as info:
            load_movielens("ml-1m", data_dir)
        assert isinstance(info.value, FileNotFoundError)
        assert info.value.missing == ["ratings.dat"]
    monkeypatch.setenv("MOVIELENS_DATA", str(root))
    with pytest.raises(MissingFileError, match=r"ratings\.dat missing"):
        load_movielens("ml-1m")


def test_missing_file_in_copy(ml100k_copy: Path) -> None:
    (ml100k_copy / "u.item").unlink()
    with pytest.raises(MissingFileError, match=r"u\.item missing in"):
        load_movielens("ml-100k", ml100k_copy.parent, download=False)


# ------------------------------------------------------------------------------ bad input

ok = ML1M_RATINGS  # short name for the table below


@pytest.mark.parametrize(
    ("ratings", "line", "message"),
    [
        (_ratings_dat(ok[:2]) + b"1::73::3\n", 3, "expected 4 fields"),
        (_ratings_dat(ok[:3]) + b"2::570:4::978298413\n", 4, "expected 4 fields"),
        (_ratings_dat(ok[:1]) + b"1::1::4.5::978300760\n", 2, "rating '4.5' is not an integer"),
        (_ratings_dat(ok[:4]) + b"2::1::6::978299026\n", 5, "rating 6 is outside 1..5"),
        (_ratings_dat(ok[:4]) + b"2::1::0::978299026\n", 5, "rating 0 is outside 1..5"),
        (_ratings_dat(ok[:2]) + b"6041::1::3::978299026\n", 3, "user id 6041 is not listed"),
        (_ratings_dat(ok[:2]) + b"1::3953::3::978299026\n", 3, "movie id 3953 is not listed"),
        (_ratings_dat(ok) + b"1::73::4::978302200\n", 8, r"again \(first at line 3\)"),
        (_ratings_dat(ok[:3]) + b"2::5\xe970::4::978298413\n", 4, "wrong encoding"),
        (b"\n" + _ratings_dat(ok[:2]) + b"\n2::1::9::978299026\n", 5, "outside 1..5"),
    ],
    ids=["too-few", "single-colon", "non-integer", "rating-6", "rating-0", "unknown-user",
         "unknown-item", "duplicate", "encoding", "blank-lines"],  # fmt: skip
)
def test_bad_ratings_name_file_and_line(
    ml1m_root: Path, ratings: bytes, line: int, message: str
) -> None:
    path = ml1m_root / "ml-1m" / "ratings.dat"
    path.write_bytes(ratings)
    with pytest.raises(DataFormatError, match=message) as info:
        load_handmade(ml1m_root)
    assert info.value.path == path and info.value.line == line
    assert str(info.value).startswith(f"{path}, line {line}: ")


def test_bad_metadata_name_file_and_line(ml1m_root: Path) -> None:
    users = ml1m_root / "ml-1m" / "users.dat"
    users.write_bytes(users.read_text("ascii").encode("utf-16"))
    with pytest.raises(DataFormatError, match="wrong encoding") as info:
        load_handmade(ml1m_root)
    assert (info.value.path, info.value.line) == (users, 1)

    users.write_text("1::F::1::10::48067\n2::M::57::16::70072\n", encoding="ascii")
    with pytest.raises(DataFormatError, match=r"line 2: age 57 is not an ML-1M age code"):
        load_handmade(ml1m_root)

    movies = ml1m_root / "ml-1m" / "movies.dat"
    movies.write_bytes(movies.read_bytes().replace(b"Comedy|Romance", b"Comedy|Romcom", 1))
    users.write_text("1::F::1::10::48067\n", encoding="ascii")
    with pytest.raises(DataFormatError, match=r"movies\.dat, line 3: unknown genre 'Romcom'"):
        load_handmade(ml1m_root)


def test_bad_ml100k_files(ml100k_copy: Path) -> None:
    data = ml100k_copy / "u.data"
    lines = data.read_bytes().split(b"\n")
    lines[41] = b"196\t242\tthree\t881250949"
    data.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=r"u\.data, line 42: rating 'three' is not"):
        load_movielens("ml-100k", ml100k_copy, download=False)

    users = ml100k_copy / "u.user"
    users.write_bytes(users.read_bytes().replace(b"|writer|", b"|astronaut|", 1))
    with pytest.raises(DataFormatError, match=r"u\.user, line 3: occupation 'astronaut'"):
        load_movielens("ml-100k", ml100k_copy, download=False)


def test_utf8_reencoded_item_file_is_read(ml100k_copy: Path) -> None:
    items = ml100k_copy / "u.item"
    items.write_bytes(items.read_bytes().decode("latin-1").encode("utf-8"))
    data = load_movielens("ml-100k", ml100k_copy, download=False)
    assert data.item_titles[1632] == "Á köldum klaka (Cold Fever) (1994)"


# ------------------------------------------------------------------------------ official figures


def _cut(raw: bytes, n_lines: int, drop: int = 0) -> bytes:
    """The first ``n_lines`` lines of ``raw``, then ``drop`` more bytes removed from the end."""
    end = 0
    for _ in range(n_lines):
        end = raw.index(b"\n", end) + 1
    return raw[: end - drop]


@pytest.mark.parametrize(
    ("cut", "differences"),
    [
        ((50_000, 0), {"n_ratings": (100_000, 50_000), "n_users": (943, 762)}),
        # 50,000 lines, the last one cut inside its timestamp (882397503 -> 882397)
        ((50_000, 4), {"n_ratings": (100_000, 50_000), "first_timestamp": (874_724_710, 882_397)}),
        # every line, the last timestamp cut (879959583 -> 8799595): only the time range tells
        ((100_000, 3), {"first_timestamp": (874_724_710, 8_799_595)}),
    ],
    ids=["50000-lines", "50000-lines-mid-timestamp", "last-timestamp"],
)
def test_truncated_ml100k_is_an_error(
    ml100k_dir: Path, ml100k_copy: Path, cut: tuple[int, int], differences: dict
) -> None:
    ratings = ml100k_copy / "u.data"
    ratings.write_bytes(_cut((ml100k_dir / "ml-100k" / "u.data").read_bytes(), *cut))
    with pytest.raises(DatasetMismatchError) as info:
        load_movielens("ml-100k", ml100k_copy, download=False)
    assert isinstance(info.value, DataFormatError) and info.value.path == ratings
    assert differences.items() <= info.value.differences.items()
    message = str(info.value)
    assert message.startswith(f"{ratings}: this ml-100k copy does not match the official")
    assert "looks truncated or edited" in message and "expect_official=False" in message
    for field, (want, got) in differences.items():
        assert f"expected {want:,}, found {got:,}" in message, field

    # The documented opt-out loads the copy as it is.
    edited = load_movielens("ml-100k", ml100k_copy, download=False, expect_official=False)
    assert edited.n_ratings == cut[0]


def test_edit_that_keeps_the_counts_is_an_error(ml100k_dir: Path, ml100k_copy: Path) -> None:
    """One rating changed from 3 to 4 stars: same rows, users and items; the histogram differs."""
    raw = (ml100k_dir / "ml-100k" / "u.data").read_bytes()
    assert raw.startswith(b"196\t242\t3\t881250949\n")
    (ml100k_copy / "u.data").write_bytes(b"196\t242\t4" + raw[len(b"196\t242\t3") :])
    with pytest.raises(DatasetMismatchError, match=r"ratings of 1 / 2 / 3 / 4 / 5 stars") as info:
        load_movielens("ml-100k", ml100k_copy, download=False)
    assert info.value.differences == {
        "rating_counts": ((6110, 11370, 27145, 34174, 21201), (6110, 11370, 27144, 34175, 21201))
    }


@pytest.mark.parametrize("drop", [0, 5], ids=["50000-lines", "50000-lines-mid-timestamp"])
def test_truncated_ml1m_is_an_error(ml1m_meta_dir: Path, tmp_path: Path, drop: int) -> None:
    """Copies of the real (reconstructed) ML-1M, ratings.dat cut at 50,000 lines."""
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for name in ("users.dat", "movies.dat"):
        shutil.copy(ml1m_meta_dir / name, folder / name)
    with open(ml1m_meta_dir / "ratings.dat", "rb") as source:
        head = b"".join(itertools.islice(source, 50_000))
    (folder / "ratings.dat").write_bytes(_cut(head, 50_000, drop))
    with pytest.raises(DatasetMismatchError) as info:
        load_movielens("ml-1m", folder, download=False)
    message = str(info.value)
    assert "ratings (rows): expected 1,000,209, found 50,000" in message
    assert "users with ratings: expected 6,040, found " in message
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    if drop:  # a timestamp of 5 digits instead of 9 is decades before the first rating
        assert info.value.differences["first_timestamp"][1] < 10**5
    data = load_movielens("ml-1m", folder, download=False, expect_official=False)
    assert data.n_ratings == 50_000


# ------------------------------------------------------------------------------ parsed cache


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = movielens.parse_movielens

    def spy(name: str, folder: Path) -> MovieLensData:
        calls.append(name)
        return real(name, folder)

    monkeypatch.setattr(movielens, "parse_movielens", spy)
    return calls


def test_second_load_uses_the_cache(
    ml1m_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_parses(monkeypatch)
    cache = tmp_path / "cache"
    first = load_handmade(ml1m_root, cache_dir=cache)
    second = load_handmade(ml1m_root, cache_dir=cache)
    assert calls == ["ml-1m"]
    for field in ("user", "item", "rating", "timestamp", "user_features", "user_raw_ids",
                  "item_raw_ids", "item_titles", "item_years", "item_genres"):  # fmt: skip
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
        assert getattr(second, field).dtype == getattr(first, field).dtype
    assert second.genre_names == first.genre_names and second.name == "ml-1m"
    assert not list((ml1m_root / "ml-1m").glob("*.npz"))

    # Editing a source file (new size and mtime) invalidates the cache.
    ratings = ml1m_root / "ml-1m" / "ratings.dat"
    ratings.write_bytes(_ratings_dat(ML1M_RATINGS[:-1]))
    third = load_handmade(ml1m_root, cache_dir=cache)
    assert calls == ["ml-1m", "ml-1m"] and third.n_ratings == len(ML1M_RATINGS) - 1


def test_cache_notices_an_edit_that_keeps_size_and_mtime(
    ml1m_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_parses(monkeypatch)
    cache = tmp_path / "cache"
    ratings = ml1m_root / "ml-1m" / "ratings.dat"
    assert load_handmade(ml1m_root, cache_dir=cache).rating[0] == 4  # 10::3952::4::978300760
    stat = ratings.stat()
    edited = ratings.read_bytes().replace(b"10::3952::4::", b"10::3952::1::", 1)
    ratings.write_bytes(edited)
    os.utime(ratings, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `touch -r` or a restore
    assert (ratings.stat().st_size, ratings.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    again = load_handmade(ml1m_root, cache_dir=cache)
    assert calls == ["ml-1m", "ml-1m"] and again.rating[0] == 1
    load_handmade(ml1m_root, cache_dir=cache)
    assert calls == ["ml-1m", "ml-1m"]  # and the new contents are cached again


def test_corrupt_cache_is_rebuilt(
    ml1m_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    load_handmade(ml1m_root, cache_dir=cache)
    (cache_file,) = (cache / "parsed").glob("ml-1m-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    calls = _count_parses(monkeypatch)
    data = load_handmade(ml1m_root, cache_dir=cache)
    assert calls == ["ml-1m"] and data.n_ratings == len(ML1M_RATINGS)
    load_handmade(ml1m_root, cache_dir=cache)
    assert calls == ["ml-1m"]  # the rebuilt cache file is valid again
    assert sorted(p.name for p in (cache / "parsed").iterdir()) == [cache_file.name]
