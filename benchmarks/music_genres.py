"""Music Genres benchmark: the annot-mix paper's protocol on real crowd labels.

Trains on the 700 songs with their 2,945 AMT labels only, splits the 300 test
songs into 100 validation and 200 test songs as the paper does, standardises
with training statistics and reports test accuracy after the last epoch,
mean +- std over seeds, for annot-mix with default settings, an MLP on
majority-vote labels and an MLP on the gold labels (upper bound).

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/music_genres.py --seeds 10

The table is printed and written to ``docs/benchmarks.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skannot import AnnotMixClassifier
from skannot._baseline import fit_mlp
from skannot.annotations import majority_vote
from skannot.datasets import fetch_music_genres


def load(data):
    d = fetch_music_genres(data, download_if_missing=False)
    _, test_idx = train_test_split(np.arange(300), train_size=100, random_state=0, stratify=d.target_test)
    scaler = StandardScaler().fit(d.data)
    return (
        scaler.transform(d.data),
        d.annotations,
        d.target,
        scaler.transform(d.data_test[test_idx]),
        d.target_test[test_idx],
    )


NOTES = """## Design choices checked on this data

Seeds differ by about ±1.3 points here, so differences below one point over 5
seeds are noise. Measured with 5 seeds each (seeds 0-4, one torch thread) by
one-off scripts (not kept in the repository) on commit a3a8a22, before the
speed work changed the random streams:

| variant | test accuracy (%) | validation accuracy (%) |
| --- | --- | --- |
| defaults (`alpha=1.0`) | 73.9 ± 0.9 | 74.4 ± 1.2 |
| `alpha=0.25` | | 75.0 ± 1.9 |
| `alpha=0.5` | 75.7 ± 1.3 | 74.0 ± 1.3 |
| `alpha=2.0` | 74.3 ± 0.5 | 74.2 ± 2.0 |
| `dropout=0.3` | 72.5 ± 1.5 | |
| `optimizer__weight_decay=1e-4` | 74.3 ± 1.2 | |
| AP head of the paper's code (instance projection, dropout 0.5, batch norm) | 73.9 ± 1.2 | |
| AP head with default-initialised output weights | 73.3 ± 0.7 | |

`alpha=0.5` looked better on the test songs but not on the validation songs,
so the default stays at the paper's `alpha=1.0` rather than being tuned on the
test set; choose `alpha` per data set without ground truth as shown in
[Model selection](user_guide/model_selection.md). The simpler AP head
(concatenation, one ReLU layer, zero-initialised output weights so every
confusion matrix starts exactly at `eta`) matches the paper code's head.
"""


def run(data, seeds, epochs, methods):
    X, Z, y, X_test, y_test = load(data)
    results = {}
    for name in methods:
        accuracies, times = [], []
        for seed in range(seeds):
            start = time.perf_counter()
            if name == "annot-mix (defaults)":
                model = AnnotMixClassifier(max_epochs=epochs, random_state=seed).fit(X, Z)
                y_pred = model.predict(X_test)
            else:
                labels = y if name == "MLP on gold labels" else majority_vote(Z, random_state=seed)
                model = fit_mlp(X, labels, n_classes=10, max_epochs=epochs, random_state=seed)
                y_pred = model.predict(X_test.astype(np.float32))
            times.append(time.perf_counter() - start)
            accuracies.append(100 * np.mean(y_pred == y_test))
            print(f"{name:<24} seed {seed}: {accuracies[-1]:.1f}% in {times[-1]:.1f}s", flush=True)
        results[name] = (np.mean(accuracies), np.std(accuracies), np.median(times))
    return results


def table(results, seeds):
    lines = [
        f"| method | test accuracy (%), mean ± std over {seeds} seeds | median fit time (s) |",
        "| --- | --- | --- |",
    ]
    for name, (mean, std, fit_time) in results.items():
        lines.append(f"| {name} | {mean:.1f} ± {std:.1f} | {fit_time:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=None,
        help="folder with the three Music Genres CSVs (default: the data home, $SKANNOT_DATA)",
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", default="docs/benchmarks.md", help="Markdown file to write ('' to skip)")
    args = parser.parse_args()
    methods = ["annot-mix (defaults)", "MLP on majority vote", "MLP on gold labels"]
    results = run(args.data, args.seeds, args.epochs, methods)
    text = table(results, args.seeds)
    print()
    print(text)
    if args.out:
        machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
        Path(args.out).write_text(
            "# Benchmarks\n\n## Music Genres (real AMT labels, paper protocol)\n\n"
            "700 training songs with 2,945 labels from 44 Mechanical Turk workers (56 % of them "
            "correct); the 300 test songs are split into 100 validation and 200 test songs as in "
            "the annot-mix paper; test accuracy after the last epoch. All three methods use the "
            "same MLP (256, 128; batch norm, ReLU, dropout 0.5), RAdam, lr 0.01, cosine annealing, "
            "50 epochs, batch size 64; `AnnotMixClassifier` runs with its defaults.\n\n"
            "Command: `SKANNOT_DATA=../shared/data python benchmarks/music_genres.py "
            f"--seeds {args.seeds} --epochs {args.epochs}`\n\nMachine: {machine}.\n\n{text}\n\n"
            "Reference: the annot-mix paper reports 73.8 % (10 seeds); scikit-activeml 1.0.1 "
            "reached 73.0 ± 1.6 with its defaults and 74.3 ± 0.7 with paper-like settings "
            "(measured by the project on the same protocol, 5 seeds). Fit times of annot-mix "
            "against scikit-activeml and a bare PyTorch loop are in [Performance](performance.md).\n\n"
            f"{NOTES}"
        )
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
