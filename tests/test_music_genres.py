import hashlib
import io
import tarfile

import numpy as np
import pytest

from skannot.datasets import _music_genres, fetch_music_genres, get_data_home

GOLD = "id,feature0,feature1,class\ns1,0.5,1.0,rock\ns2,1.5,2.0,jazz\ns3,2.5,3.0,blues\n"
TEST = "id,feature0,feature1,class\nt1,9.0,8.0,jazz\nt2,7.0,6.0,rock\n"
MTURK = (
    "id,annotator,feature0,feature1,class\n"
    "s1,b,0.5,1.0,rock\n"
    "s1,a,0.5,1.0,pop\n"
    "s3,a,2.5,3.0,blues\n"
    "s2,c,1.5,2.0,jazz\n"
)
FILES = {"music_genre_gold.csv": GOLD, "music_genre_test.csv": TEST, "music_genre_mturk.csv": MTURK}


@pytest.fixture
def tiny_checksums(monkeypatch):
    """Make the loader expect the tiny files above instead of the real ones."""
    checksums = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in FILES.items()}
    monkeypatch.setattr(_music_genres, "CHECKSUMS", checksums)
    return checksums


def write_csvs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)


def write_archive(path, files=FILES):
    """A tar.gz laid out like the original: ``mturk-datasets/music_genre_classification/*.csv``."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"mturk-datasets/music_genre_classification/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri()


def test_cached_csvs_are_loaded_into_a_bunch(tmp_path, tiny_checksums):
    write_csvs(tmp_path)
    d = fetch_music_genres(tmp_path, download_if_missing=False)
    np.testing.assert_array_equal(d.target_names, ["blues", "jazz", "pop", "rock"])
    np.testing.assert_array_equal(d.annotator_ids, ["a", "b", "c"])
    np.testing.assert_array_equal(d.feature_names, ["feature0", "feature1"])
    np.testing.assert_array_equal(d.data, [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]])
    np.testing.assert_array_equal(d.target, [3, 1, 0])
    # rows follow the gold file, columns the sorted annotator ids, -1 where missing
    np.testing.assert_array_equal(d.annotations, [[2, 3, -1], [-1, -1, 1], [0, -1, -1]])
    np.testing.assert_array_equal(d.data_test, [[9.0, 8.0], [7.0, 6.0]])
    np.testing.assert_array_equal(d.target_test, [1, 3])
    np.testing.assert_array_equal(d.song_ids, ["s1", "s2", "s3"])
    np.testing.assert_array_equal(d.song_ids_test, ["t1", "t2"])
    assert d.DESCR.startswith("Load the Music Genres")


def test_return_X_y(tmp_path, tiny_checksums):
    write_csvs(tmp_path)
    X, Z = fetch_music_genres(tmp_path, return_X_y=True)
    d = fetch_music_genres(tmp_path)
    np.testing.assert_array_equal(X, d.data)
    np.testing.assert_array_equal(Z, d.annotations)


def test_csvs_in_the_archive_folder_are_found(tmp_path, tiny_checksums):
    write_csvs(tmp_path / "music_genre_classification")
    assert fetch_music_genres(tmp_path, download_if_missing=False).data.shape == (3, 2)


def test_missing_files_without_download_raise(tmp_path):
    with pytest.raises(OSError, match="download_if_missing=False"):
        fetch_music_genres(tmp_path, download_if_missing=False)


def test_download_extracts_verifies_and_caches(tmp_path, tiny_checksums):
    url = write_archive(tmp_path / "mturk-datasets.tar.gz")
    home = tmp_path / "home"
    d = fetch_music_genres(home, url=url)
    assert d.annotations.shape == (3, 3)
    cached = home / "music_genre_classification"
    assert sorted(p.name for p in cached.iterdir()) == sorted(FILES)
    assert list(home.iterdir()) == [cached]  # the temporary download is gone
    # second call reads the cache: an unreachable URL is never opened
    again = fetch_music_genres(home, url=(tmp_path / "nowhere.tar.gz").as_uri())
    np.testing.assert_array_equal(again.annotations, d.annotations)


def test_checksum_mismatch_raises_and_caches_nothing(tmp_path, tiny_checksums, monkeypatch):
    monkeypatch.setitem(_music_genres.CHECKSUMS, "music_genre_mturk.csv", "0" * 64)
    url = write_archive(tmp_path / "mturk-datasets.tar.gz")
    home = tmp_path / "home"
    with pytest.raises(OSError, match="Checksum mismatch for music_genre_mturk.csv"):
        fetch_music_genres(home, url=url)
    assert list(home.iterdir()) == []


def test_archive_without_the_csvs_raises(tmp_path, tiny_checksums):
    url = write_archive(tmp_path / "other.tar.gz", files={"music_genre_gold.csv": GOLD})
    with pytest.raises(OSError, match="lacks"):
        fetch_music_genres(tmp_path / "home", url=url)


def test_crowd_labels_of_unknown_songs_are_refused(tmp_path, monkeypatch):
    write_csvs(tmp_path)
    (tmp_path / "music_genre_mturk.csv").write_text(MTURK + "s9,a,0,0,rock\n")
    with pytest.raises(ValueError, match="songs missing from the gold file"):
        fetch_music_genres(tmp_path, download_if_missing=False)


def test_data_home_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SKANNOT_DATA", str(tmp_path / "cache"))
    assert get_data_home() == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir()
    monkeypatch.delenv("SKANNOT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path / "skannot_data"


@pytest.fixture
def real_data():
    """The real files' folder in the data home ($SKANNOT_DATA; CI points it at ../shared/data)."""
    folder = _music_genres._find_csv_folder(get_data_home())
    if folder is None:
        pytest.skip(
            f"the real Music Genres files are not in the data home {get_data_home()}; set "
            "SKANNOT_DATA to a folder holding them (CI uses ../shared/data)"
        )
    return folder


def test_csvs_in_a_music_genres_folder_of_a_shared_data_home_are_found(tmp_path, tiny_checksums, monkeypatch):
    write_csvs(tmp_path / "music_genres")
    monkeypatch.setenv("SKANNOT_DATA", str(tmp_path))
    assert fetch_music_genres(download_if_missing=False).data.shape == (3, 2)


def test_real_files_match_the_published_description(real_data):
    d = fetch_music_genres(download_if_missing=False)
    assert d.data.shape == (700, 124) and d.data_test.shape == (300, 124)
    assert d.annotations.shape == (700, 44)
    observed = d.annotations >= 0
    assert observed.sum() == 2945
    assert observed.sum(1).min() == 1 and observed.sum(1).max() == 7
    assert len(d.target_names) == 10
    correct = d.annotations[observed] == np.broadcast_to(d.target[:, None], observed.shape)[observed]
    assert round(correct.mean(), 3) == 0.560
    for name, checksum in _music_genres.CHECKSUMS.items():
        assert _music_genres._sha256(real_data / name) == checksum
