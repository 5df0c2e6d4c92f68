"""Large-data benchmark: one epoch of annot-mix on a memory-mapped file.

Writes ``--rows`` x ``--features`` float32 features (2M x 124 = 0.99 GB by
default) and an int8 annotation matrix (``--annotators`` columns, about
``--labels-per-row`` observed labels per row, -1 elsewhere) as ``.npy`` files
under ``--dir``, in chunks, then fits ``AnnotMixClassifier`` for one epoch on
``skorch.dataset.Dataset(X_memmap, Z_memmap)``, so features are read from the
file batch by batch. Reports rows per second and peak memory of this process,
split into anonymous memory (what must fit in RAM) and file-backed pages of
the memory map (page cache the kernel can drop at any time).

Usage::

    python benchmarks/large_data.py --dir /tmp/skannot-large --threads 1

The table is printed and, with ``--out``, written into a Markdown file
between the markers ``<!-- large-data:begin -->`` and ``<!-- large-data:end -->``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from skorch.dataset import Dataset

from skannot import AnnotMixClassifier

sys.path.insert(0, str(Path(__file__).parent))
from _report import write_block  # noqa: E402


def write_data(directory, rows, features, annotators, labels_per_row, chunk=1 << 17):
    """Write X.npy and Z.npy in chunks (memory does not grow with ``rows``)."""
    directory.mkdir(parents=True, exist_ok=True)
    X = np.lib.format.open_memmap(directory / "X.npy", mode="w+", dtype=np.float32, shape=(rows, features))
    Z = np.lib.format.open_memmap(directory / "Z.npy", mode="w+", dtype=np.int8, shape=(rows, annotators))
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, features)).astype(np.float32)
    accuracy = np.linspace(0.4, 0.9, annotators)
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        y = rng.integers(0, 10, stop - start)
        X[start:stop] = centers[y] + 2 * rng.normal(size=(stop - start, features)).astype(np.float32)
        correct = rng.random((stop - start, annotators)) < accuracy
        labels = np.where(correct, y[:, None], rng.integers(0, 10, (stop - start, annotators)))
        observed = rng.random((stop - start, annotators)) < labels_per_row / annotators
        Z[start:stop] = np.where(observed, labels, -1)
    X.flush()
    Z.flush()


class MemoryPeak:
    """Peak resident memory of this process, sampled from /proc/self/status."""

    def __init__(self, every=0.05):
        self.every, self.peak, self._stop = every, {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}, False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(line.split()[1]) * 1024)

    def _run(self):
        while not self._stop:
            self._sample()
            time.sleep(self.every)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self._sample()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/skannot-large"))
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=124)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--labels-per-row", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    if not (args.dir / "X.npy").exists() or np.load(args.dir / "X.npy", mmap_mode="r").shape != (
        args.rows,
        args.features,
    ):
        write_data(args.dir, args.rows, args.features, args.annotators, args.labels_per_row)
    written = time.perf_counter() - start
    X = np.load(args.dir / "X.npy", mmap_mode="r")
    Z = np.load(args.dir / "Z.npy", mmap_mode="r")

    clf = AnnotMixClassifier(max_epochs=1, batch_size=args.batch_size, random_state=0)
    with MemoryPeak() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        clf.fit(Dataset(X, Z))
        fit_time, cpu_time = time.perf_counter() - start, time.process_time() - cpu_start
    epoch_time = float(clf.history_[-1, "dur"])
    n_labels = int(clf.n_labels_per_annotator_.sum())
    mib = 1 << 20
    rows = [
        ("rows x features", f"{args.rows:,} x {args.features} float32 ({X.nbytes / mib:,.0f} MiB on disk)"),
        ("annotators, observed labels", f"{args.annotators}, {n_labels:,}"),
        ("batch size, torch threads", f"{args.batch_size}, {args.threads}"),
        ("epoch (training loop)", f"{epoch_time:,.1f} s = {args.rows / epoch_time:,.0f} rows/s"),
        (
            "whole fit (scan labels + epoch + summaries)",
            f"{fit_time:,.1f} s = {args.rows / fit_time:,.0f} rows/s",
        ),
        ("CPU time of the whole fit (all threads)", f"{cpu_time:,.1f} s"),
        ("peak anonymous memory (RssAnon)", f"{memory.peak['RssAnon'] / mib:,.0f} MiB"),
        ("peak file-backed pages (RssFile)", f"{memory.peak['RssFile'] / mib:,.0f} MiB"),
        ("peak resident set (VmRSS)", f"{memory.peak['VmRSS'] / mib:,.0f} MiB"),
        ("machine", f"{platform.processor() or platform.machine()}, torch {torch.__version__}"),
    ]
    table = "| quantity | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(f"data written in {written:.1f} s")
    print(table)
    if args.out is not None:
        write_block(args.out, "large-data", table)


if __name__ == "__main__":
    main()
