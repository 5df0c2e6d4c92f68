"""The Music Genres crowd data set of Rodrigues et al. (2013)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

ARCHIVE_URL = "http://fprodrigues.com/mturk-datasets.tar.gz"
ARCHIVE_FOLDER = "music_genre_classification"
#: The data set's own folder in a data home shared by several data sets.
DATASET_FOLDER = "music_genres"
#: SHA-256 of the three CSV files of the archive's ``music_genre_classification/`` folder.
CHECKSUMS = {
    "music_genre_gold.csv": "28cd73e9bf555e5847de0b0fc4c4998264d4a272d657c452edf2c93c206bda64",
    "music_genre_mturk.csv": "20abf70b06d77653742125d8ae57a6b46d3e6d5e0291de4fc9c76d433cd9b834",
    "music_genre_test.csv": "952b423483bef4e0aa38b628815232b600a745d028fc8dfe8addd49e616931b8",
}
DATA_HOME_ENV = "SKANNOT_DATA"


def get_data_home(data_home=None):
    """Folder of skannot's data cache, created if missing.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder. By default the environment variable ``SKANNOT_DATA``, or
        ``~/skannot_data`` when it is unset.

    Returns
    -------
    data_home : Path
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV, Path("~") / "skannot_data")
    data_home = Path(data_home).expanduser()
    data_home.mkdir(parents=True, exist_ok=True)
    return data_home


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_csv_folder(data_home):
    """The folder holding the three CSVs: ``data_home``, its ``music_genres`` or its archive folder."""
    for folder in (data_home, data_home / DATASET_FOLDER, data_home / ARCHIVE_FOLDER):
        if all((folder / name).is_file() for name in CHECKSUMS):
            return folder
    return None


def _download(data_home, url):
    """Download the archive; extract and verify the CSVs into ``data_home/music_genre_classification``."""
    target = data_home / ARCHIVE_FOLDER
    with tempfile.TemporaryDirectory(dir=data_home) as tmp:
        archive = Path(tmp) / "mturk-datasets.tar.gz"
        request = urllib.request.Request(url, headers={"User-Agent": "skannot"})
        with urllib.request.urlopen(request, timeout=60) as response, open(archive, "wb") as f:
            shutil.copyfileobj(response, f)
        with tarfile.open(archive) as tar:
            members = {
                Path(m.name).name: m for m in tar.getmembers() if Path(m.name).parent.name == ARCHIVE_FOLDER
            }
            missing = sorted(set(CHECKSUMS) - set(members))
            if missing:
                raise OSError(f"The archive at {url} lacks {missing}; it may have changed.")
            for name in CHECKSUMS:
                with tar.extractfile(members[name]) as src, open(Path(tmp) / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        for name, expected in CHECKSUMS.items():
            if _sha256(Path(tmp) / name) != expected:
                raise OSError(
                    f"Checksum mismatch for {name} from {url}: the download is corrupt or the "
                    "archive changed. Nothing was cached; try again, or put the three verified "
                    "CSV files into data_home yourself."
                )
        target.mkdir(exist_ok=True)
        for name in CHECKSUMS:
            shutil.move(str(Path(tmp) / name), target / name)
    return target


def fetch_music_genres(data_home=None, *, download_if_missing=True, return_X_y=False, url=ARCHIVE_URL):
    """Load the Music Genres data set with real Amazon Mechanical Turk labels.

    700 training songs labelled by 44 crowd workers (2,945 labels, 1 to 7
    per song) and 300 test songs with gold labels; 124 Marsyas audio
    features; 10 genres [1]_. The original archive is downloaded on first use
    and its three CSV files verified against SHA-256 checksums. A
    ``data_home`` that already holds the three CSVs (directly, or in a
    ``music_genres`` or ``music_genre_classification`` folder) is used
    without any download.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Cache folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download when the files are not cached; if False, raise ``OSError``.
    return_X_y : bool, default=False
        Return ``(X, Z)`` (training features and annotation matrix) only.
    url : str, default=ARCHIVE_URL
        Where the archive is downloaded from.

    Returns
    -------
    data : Bunch
        - ``data``: ndarray of shape (700, 124), training features;
        - ``annotations``: ndarray of shape (700, 44), annotator labels as
          class indices, -1 where missing;
        - ``target``: ndarray of shape (700,), gold class indices;
        - ``data_test``, ``target_test``: the 300 test songs;
        - ``annotator_ids``, ``target_names``, ``feature_names``, ``song_ids``,
          ``song_ids_test``; ``DESCR``.
    (X, Z) : tuple of ndarrays
        If ``return_X_y`` is True.

    References
    ----------
    .. [1] F. Rodrigues, F. Pereira and B. Ribeiro, "Learning from multiple
       annotators: distinguishing good from random labelers", Pattern
       Recognition Letters 34(12), 2013.
    """
    data_home = get_data_home(data_home)
    folder = _find_csv_folder(data_home)
    if folder is None:
        if not download_if_missing:
            raise OSError(
                f"Music Genres files not found in {data_home} (nor in its {DATASET_FOLDER} or "
                f"{ARCHIVE_FOLDER} folder) and download_if_missing=False; put {sorted(CHECKSUMS)} "
                "there, point SKANNOT_DATA at a folder that holds them, or allow the download."
            )
        folder = _download(data_home, url)
    gold = pd.read_csv(folder / "music_genre_gold.csv")
    test = pd.read_csv(folder / "music_genre_test.csv")
    crowd = pd.read_csv(folder / "music_genre_mturk.csv")
    feature_names = np.array([c for c in gold.columns if c.startswith("feature")])
    target_names = np.array(sorted(set(gold["class"]) | set(test["class"]) | set(crowd["class"])))
    annotator_ids = np.array(sorted(crowd["annotator"].unique()))
    song_position = pd.Series(np.arange(len(gold)), index=gold["id"])
    unknown = set(crowd["id"]) - set(gold["id"])
    if unknown:
        raise ValueError(
            f"music_genre_mturk.csv names songs missing from the gold file: {sorted(unknown)[:3]}"
        )
    Z = np.full((len(gold), len(annotator_ids)), -1, dtype=np.int64)
    Z[song_position[crowd["id"]].to_numpy(), np.searchsorted(annotator_ids, crowd["annotator"])] = (
        np.searchsorted(target_names, crowd["class"])
    )
    X = gold[feature_names].to_numpy(dtype=np.float64)
    if return_X_y:
        return X, Z
    return Bunch(
        data=X,
        annotations=Z,
        target=np.searchsorted(target_names, gold["class"]),
        data_test=test[feature_names].to_numpy(dtype=np.float64),
        target_test=np.searchsorted(target_names, test["class"]),
        annotator_ids=annotator_ids,
        target_names=target_names,
        feature_names=feature_names,
        song_ids=gold["id"].to_numpy(),
        song_ids_test=test["id"].to_numpy(),
        DESCR=fetch_music_genres.__doc__.split("Parameters")[0].strip(),
    )
