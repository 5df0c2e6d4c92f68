"""Peak memory of fitting on a wide, sparsely labelled annotation matrix.

Z has 100,000 samples x 10,000 annotators with 3 labels per row (300,000
labels). As a dense float64 matrix it would take 8 GB; this benchmark fits
``AnnotMixClassifier`` with Z given as a scipy sparse matrix and as a
long-format table (one row per ``task, worker, label``, turned into a sparse
matrix with pandas and scipy) and reports the peak memory of each.

Every case runs in a fresh subprocess so that peaks do not mix:

- ``peak RSS``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that process
  (everything: Python, numpy, torch, the interpreter itself);
- ``RSS growth``: peak RSS minus the RSS after the imports, before the data is
  built (what building the data and fitting added);
- ``traced peak``: ``tracemalloc`` peak during conversion and ``fit``
  (Python and numpy allocations; torch's own allocator is not traced).

Run ``python benchmarks/memory.py`` (about a minute on one CPU core per case).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

N_SAMPLES, N_ANNOTATORS, LABELS_PER_ROW, N_CLASSES, N_FEATURES = 100_000, 10_000, 3, 5, 16
MODEL = {
    "max_epochs": 1,
    "batch_size": 256,
    "hidden_sizes": (32,),
    "annotator_embed_dim": 16,
    "annotator_hidden_size": 16,
    "random_state": 0,
}


def _rss_mib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _data():
    """Features and 3 distinct annotators per sample, each right 70% of the time."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES, N_SAMPLES)
    X = (rng.normal(size=(N_SAMPLES, N_FEATURES)) + y[:, None]).astype(np.float32)
    # Distinct annotators per row: a random start and two distinct positive offsets.
    start = rng.integers(0, N_ANNOTATORS, N_SAMPLES)
    first = rng.integers(1, N_ANNOTATORS - 1, N_SAMPLES)
    second = first + rng.integers(1, N_ANNOTATORS - first, N_SAMPLES)
    annotators = (start[:, None] + np.stack([np.zeros_like(first), first, second], 1)) % N_ANNOTATORS
    correct = rng.random((N_SAMPLES, LABELS_PER_ROW)) < 0.7
    noise = rng.integers(0, N_CLASSES, (N_SAMPLES, LABELS_PER_ROW))
    labels = np.where(correct, y[:, None], noise)
    return X, np.repeat(np.arange(N_SAMPLES), LABELS_PER_ROW), annotators.ravel(), labels.ravel()


def run_case(case):
    from scipy import sparse

    from skannot import AnnotMixClassifier

    import_rss = _current_rss_mib()
    X, rows, annotators, labels = _data()
    shape = (N_SAMPLES, N_ANNOTATORS)
    if case == "long":
        import pandas as pd

        table = pd.DataFrame(
            {"task": rows, "worker": np.char.add("w", annotators.astype(str)), "label": labels}
        )
        del rows, annotators, labels
    tracemalloc.start()
    start = time.perf_counter()
    if case == "sparse":
        Z = sparse.csr_matrix((labels, (rows, annotators)), shape=shape)
    else:
        workers, names = pd.factorize(table["worker"], sort=True)
        Z = sparse.csr_matrix((table["label"].to_numpy(), (table["task"].to_numpy(), workers)), shape=shape)
    convert_s = time.perf_counter() - start
    clf = AnnotMixClassifier(**MODEL).fit(X, Z)
    fit_s = time.perf_counter() - start - convert_s
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert clf.n_annotators_ == N_ANNOTATORS and np.isfinite(clf.history_[-1, "train_loss"])
    return {
        "case": case,
        "peak_rss_mib": _rss_mib(),
        "rss_growth_mib": _rss_mib() - import_rss,
        "traced_peak_mib": traced_peak,
        "convert_s": convert_s,
        "fit_s": fit_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["sparse", "long"], help="run one case in this process")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    dense_gib = N_SAMPLES * N_ANNOTATORS * 8 / 2**30
    print(
        f"Z: {N_SAMPLES:,} x {N_ANNOTATORS:,}, {LABELS_PER_ROW} labels per row, {N_CLASSES} classes; "
        f"X: {N_FEATURES} float32 features; model {MODEL}"
    )
    print(f"a dense float64 Z alone would take {dense_gib:.1f} GiB\n")
    print("| Z given as | peak RSS (MiB) | RSS growth (MiB) | traced peak (MiB) | convert (s) | fit (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for case in ("sparse", "long"):
        out = subprocess.run(
            [sys.executable, __file__, "--case", case], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        label = "scipy CSR matrix" if case == "sparse" else "long-format DataFrame -> CSR"
        print(
            f"| {label} | {r['peak_rss_mib']:.0f} | {r['rss_growth_mib']:.0f} | "
            f"{r['traced_peak_mib']:.0f} | {r['convert_s']:.2f} | {r['fit_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
