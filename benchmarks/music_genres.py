"""Music Genres benchmark: the annot-mix paper's protocol on real crowd labels, for the whole family.

Trains on the 700 songs with their 2,945 AMT labels only, splits the 300 test
songs into 100 validation and 200 test songs as the paper does, standardises
with training statistics and reports test accuracy after the last epoch,
mean +- std over seeds, for every listed method with its defaults (the
shared GT model and training settings), next to the annot-mix paper's
figure, plus the same MLP on the gold labels (upper bound).

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/music_genres.py --seeds 10
    SKANNOT_DATA=../shared/data python benchmarks/music_genres.py --methods annot_mix --seeds 3 \
        --out '' --plot ''

The table is printed and written to ``docs/benchmarks.md`` (``--out``), the
figure to ``docs/images/music_genres.png`` (``--plot``); a partial run should
skip both, as the second line does.
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

import skannot
from skannot.datasets import fetch_music_genres

#: key: (row name, estimator class name, parameters, the paper's figure (10 seeds, last epoch) or None)
METHODS = {
    "majority_vote": ("majority vote + MLP", "AggregateClassifier", {}, 66.1),
    "majority_vote_mixup": ("majority vote + MLP with mixup", "AggregateClassifier", {"alpha": 1.0}, 68.2),
    "dawid_skene": ("Dawid-Skene + MLP", "AggregateClassifier", {"aggregation": "dawid_skene"}, None),
    "crowd_layer": ("crowd layer", "CrowdLayerClassifier", {}, 69.8),
    "trace_reg": ("trace-reg", "TraceRegClassifier", {}, 66.4),
    "geo_crowd_net_f": ("GeoCrowdNet (F)", "GeoCrowdNetClassifier", {"regularization": "F"}, 70.2),
    "geo_crowd_net_w": ("GeoCrowdNet (W)", "GeoCrowdNetClassifier", {"regularization": "W"}, 70.1),
    "union_net": ("UnionNet", "UnionNetClassifier", {}, 68.6),
    "conal": ("CoNAL", "CoNALClassifier", {}, 69.0),
    "madl": ("MaDL", "MaDLClassifier", {}, 72.0),
    "crowd_ar": ("CrowdAR", "CrowdARClassifier", {}, 69.0),
    "annot_mix": ("annot-mix", "AnnotMixClassifier", {}, 73.8),
    "gold": ("MLP on the gold labels (upper bound)", "AggregateClassifier", {}, None),
}
#: How far below the paper's figure a method may land.
TOLERANCE = 1.5


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
    """Test accuracy (%) per method and seed, and the median fit time; methods not in skannot are skipped."""
    X, Z, y, X_test, y_test = load(data)
    results = {}
    for key in methods:
        name, class_name, params, _ = METHODS[key]
        cls = getattr(skannot, class_name, None)
        if cls is None:
            print(f"{name}: skannot has no {class_name} yet; skipped", flush=True)
            continue
        accuracies, times = [], []
        for seed in range(seeds):
            start = time.perf_counter()
            model = cls(max_epochs=epochs, random_state=seed, **params).fit(X, y if key == "gold" else Z)
            times.append(time.perf_counter() - start)
            accuracies.append(100 * np.mean(model.predict(X_test) == y_test))
            print(f"{name:<40} seed {seed}: {accuracies[-1]:.1f}% in {times[-1]:.1f}s", flush=True)
        results[key] = (np.array(accuracies), float(np.median(times)))
    return results


def table(results, seeds):
    """Markdown table: accuracy, the paper's figure, whether ours reaches it minus TOLERANCE, rank, time."""
    keys = [key for key in results if key != "gold"]
    accuracies = np.stack([results[key][0] for key in keys])  # (methods, seeds)
    # rank 1 = best on that seed; ties share the mean rank
    order = (-accuracies).argsort(0).argsort(0).astype(float) + 1
    ranks = np.stack(
        [
            [order[accuracies[:, s] == accuracies[m, s], s].mean() for s in range(seeds)]
            for m in range(len(keys))
        ]
    )
    lines = [
        f"| method | test accuracy (%), mean ± std over {seeds} seeds | paper "
        f"| reached (paper - {TOLERANCE}) | mean rank | median fit time (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in results:
        name, _, _, paper = METHODS[key]
        values, fit_time = results[key]
        rank = f"{ranks[keys.index(key)].mean():.1f}" if key in keys else ""
        reached = "" if paper is None else ("yes" if values.mean() >= paper - TOLERANCE else "**no**")
        paper_text = "" if paper is None else f"{paper:.1f}"
        lines.append(
            f"| {name} | {values.mean():.1f} ± {values.std():.1f} | {paper_text} | {reached} | {rank} "
            f"| {fit_time:.1f} |"
        )
    return "\n".join(lines)


def plot(results, path):
    """Mean test accuracy with one standard deviation per method, the paper's figure as a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    means = [results[key][0].mean() for key in keys]
    stds = [results[key][0].std() for key in keys]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(keys) + 1))
    rows = np.arange(len(keys))
    ax.errorbar(means, rows, xerr=stds, fmt="o", capsize=3, label="skannot (mean ± std over seeds)")
    papers = [(row, METHODS[key][3]) for row, key in zip(rows, keys) if METHODS[key][3] is not None]
    if papers:
        ax.plot([p for _, p in papers], [r for r, _ in papers], "x", color="black", label="annot-mix paper")
    ax.set_yticks(rows, [METHODS[key][0] for key in keys])
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy on Music Genres (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(keys)), ncol=2, fontsize="small")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


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
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        "--plot", default="docs/images/music_genres.png", help="figure of the accuracies ('' to skip)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = run(args.data, args.seeds, args.epochs, args.methods)
    total = time.perf_counter() - start
    text = table(results, args.seeds)
    print()
    print(text)
    if args.plot:
        plot(results, args.plot)
        print(f"figure written to {args.plot}")
    if args.out:
        machine = (
            f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
        )
        methods_option = "" if args.methods == list(METHODS) else " --methods " + " ".join(args.methods)
        Path(args.out).write_text(
            "# Benchmarks\n\n## Music Genres (real AMT labels, paper protocol)\n\n"
            "700 training songs with 2,945 labels from 44 Mechanical Turk workers (56 % of them "
            "correct); the 300 test songs are split into 100 validation and 200 test songs as in "
            "the annot-mix paper; test accuracy after the last epoch. Every method uses the "
            "same MLP (256, 128; batch norm, ReLU, dropout 0.5), RAdam, lr 0.01, cosine annealing, "
            '50 epochs, batch size 64, and its own defaults otherwise. "paper" is the figure of '
            'the annot-mix paper\'s table (last epoch, 10 seeds); "reached" says whether ours is at '
            f"least that minus {TOLERANCE} points; the mean rank is over seeds, among the methods "
            "trained on crowd labels.\n\n"
            "Command: `SKANNOT_DATA=../shared/data python benchmarks/music_genres.py "
            f"--seeds {args.seeds} --epochs {args.epochs}{methods_option}`\n\nMachine: {machine}; "
            f"the whole run took {total / 60:.1f} minutes.\n\n{text}\n\n"
            + (f"![Test accuracy per method](images/{Path(args.plot).name})\n\n" if args.plot else "")
            + "Reference: scikit-activeml 1.0.1 "
            "reached 73.0 ± 1.6 with its defaults and 74.3 ± 0.7 with paper-like settings "
            "(measured by the project on the same protocol, 5 seeds). Fit times of annot-mix "
            "against scikit-activeml and a bare PyTorch loop are in [Performance](performance.md).\n\n"
            f"{NOTES}"
        )
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
