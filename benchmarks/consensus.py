"""Consensus benchmark: clean labels, wrong-label detection and annotator ranking on Music Genres.

On the 700 training songs and their 2,945 AMT labels (44 workers), against
the gold classes of those songs:

- **consensus accuracy**: the consensus label of each song
  (``predict_consensus``) equals the gold class;
- **AUROC**: the area under the ROC curve of ``1 - quality``
  (``label_quality``) for telling the 1,295 wrong labels from the right ones;
- **Spearman**: rank correlation of the estimated annotator accuracy
  (``annotator_accuracy_``) with each worker's true accuracy on the gold
  classes, over the workers with at least 5 labels.

Every estimator of the family (``skannot._testing.ESTIMATORS``) runs with its
defaults, mean ± std over seeds, next to majority vote, crowd-kit's
aggregators (Dawid-Skene, GLAD, MACE, one-coin Dawid-Skene) and cleanlab's
CROWDLAB fed with annot-mix's out-of-fold probabilities
(:func:`skannot.model_selection.cross_val_predict`). crowd-kit and cleanlab
are benchmark-only (``pip install skannot[bench]``) and skipped with a
message when absent. For the aggregators without an annotator-accuracy
estimate of their own, annotators are ranked by their agreement with the
method's consensus labels.

``--ceiling`` asks instead how far annot-mix's consensus can go on these
songs: over ``--seeds`` fits with the defaults it scores the consensus
posterior next to what can be computed from the same fits (``p(y | x)``
alone, one Dawid-Skene M-step on top, mixtures of the posterior with
``p(y | x)``, and the average over all the seeds' fits, an ensemble), then
the consensus of fits with other settings (longer training, other mixup,
width, dropout and ``eta``, three seeds each).

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/consensus.py --seeds 3
    SKANNOT_DATA=../shared/data python benchmarks/consensus.py --ceiling --seeds 8

The table is printed and written into ``docs/user_guide/cleaning.md``
(between its ``consensus-table`` markers, or ``ceiling-table`` with
``--ceiling``; ``--out``), the figure into ``docs/images/consensus.png``
(``--figure``, not with ``--ceiling``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from skannot import AnnotMixClassifier
from skannot._testing import ESTIMATORS
from skannot.annotations import majority_vote, matrix_to_long
from skannot.datasets import fetch_music_genres
from skannot.model_selection import cross_val_predict

sys.path.insert(0, str(Path(__file__).parent))
from _report import write_block  # noqa: E402

#: Goals of the issue, met by annot-mix with its defaults or not.
GOALS = {"accuracy": 0.85, "auroc": 0.97, "spearman": 0.78}
#: Annotators with fewer gold-checked labels than this are left out of the Spearman correlation.
MIN_LABELS = 5


class Gold:
    """The observed labels of Music Genres' training songs and what gold says of them."""

    def __init__(self, Z, y):
        self.rows, self.annotators = np.nonzero(Z >= 0)
        self.labels = Z[self.rows, self.annotators]
        self.y = y
        self.wrong = self.labels != y[self.rows]
        n_annotators = Z.shape[1]
        counts = np.bincount(self.annotators, minlength=n_annotators)
        right = np.bincount(self.annotators, weights=~self.wrong, minlength=n_annotators)
        self.accuracy = right / np.maximum(counts, 1)
        self.ranked = counts >= MIN_LABELS

    def scores(self, consensus, quality, annotator_accuracy):
        """Consensus accuracy, AUROC of ``1 - quality`` for the wrong labels, annotator Spearman."""
        return {
            "accuracy": float(np.mean(consensus == self.y)),
            "auroc": float(roc_auc_score(self.wrong, -np.asarray(quality))),
            "spearman": float(
                spearmanr(self.accuracy[self.ranked], np.asarray(annotator_accuracy)[self.ranked]).statistic
            ),
        }

    def agreement(self, consensus):
        """Each annotator's fraction of labels equal to ``consensus`` of the song."""
        n_annotators = len(self.accuracy)
        same = self.labels == consensus[self.rows]
        counts = np.bincount(self.annotators, minlength=n_annotators)
        return np.bincount(self.annotators, weights=same, minlength=n_annotators) / np.maximum(counts, 1)


def load(data):
    d = fetch_music_genres(data, download_if_missing=False)
    X = StandardScaler().fit_transform(d.data).astype(np.float32)
    return X, d.annotations, d.target


def family(X, Z, gold, seeds):
    """Scores of every estimator of the family per seed, and annot-mix's out-of-fold probabilities."""
    results, oof = {}, []
    for cls in ESTIMATORS:
        rows = []
        for seed in range(seeds):
            start = time.perf_counter()
            model = cls(random_state=seed).fit(X, Z)
            table = model.label_quality(X, Z)
            scores = gold.scores(model.predict_consensus(X, Z), table["quality"], model.annotator_accuracy_)
            scores["p(y|x) accuracy"] = float(np.mean(model.predict(X) == gold.y))
            rows.append(scores)
            print(
                f"{cls.__name__:<22} seed {seed}: {fmt(scores)} ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
            if cls.__name__ == "AnnotMixClassifier":
                oof.append(cross_val_predict(cls(random_state=seed), X, Z, cv=5))
        results[cls.__name__ + " (skannot)"] = rows
    return results, oof


def majority(Z, gold, seeds):
    rows = []
    for seed in range(seeds):
        consensus = majority_vote(Z, random_state=seed)
        votes = np.stack([(Z == k).sum(1) for k in range(Z.max() + 1)], 1)
        share = votes[gold.rows, gold.labels] / votes[gold.rows].sum(1)
        rows.append(gold.scores(consensus, share, gold.agreement(consensus)))
    return {"majority vote": rows}


def crowd_kit(Z, gold):
    try:
        from crowdkit.aggregation import GLAD, MACE, DawidSkene, OneCoinDawidSkene
    except ImportError:
        print("crowd-kit is not installed (pip install skannot[bench]): its aggregators are skipped")
        return {}
    long = matrix_to_long(Z)
    results = {}
    for name, aggregator in (
        ("Dawid-Skene", DawidSkene(n_iter=100)),
        ("GLAD", GLAD()),
        ("MACE", MACE(random_state=0)),
        ("one-coin Dawid-Skene", OneCoinDawidSkene(n_iter=100)),
    ):
        proba = aggregator.fit_predict_proba(long)
        proba = proba.reindex(index=np.arange(len(Z)), columns=np.arange(Z.max() + 1)).fillna(0).to_numpy()
        consensus = proba.argmax(1)
        quality = proba[gold.rows, gold.labels]
        results[f"{name} (crowd-kit)"] = [gold.scores(consensus, quality, gold.agreement(consensus))]
        print(f"{name:<22}: {fmt(results[f'{name} (crowd-kit)'][0])}", flush=True)
    return results


def crowdlab(Z, gold, oof):
    try:
        from cleanlab.multiannotator import get_label_quality_multiannotator
    except ImportError:
        print("cleanlab is not installed (pip install skannot[bench]): CROWDLAB is skipped")
        return {}
    labels = pd.DataFrame(Z).where(Z >= 0)
    rows = []
    for pred_probs in oof:
        result = get_label_quality_multiannotator(labels, pred_probs, verbose=False)
        consensus = result["label_quality"]["consensus_label"].to_numpy()
        detailed = result["detailed_label_quality"].to_numpy()  # (n_samples, n_annotators), NaN where missing
        quality = detailed[gold.rows, gold.annotators]
        annotator_quality = result["annotator_stats"]["annotator_quality"].reindex(labels.columns).to_numpy()
        rows.append(gold.scores(consensus, quality, annotator_quality))
        print(f"CROWDLAB: {fmt(rows[-1])}", flush=True)
    return {"CROWDLAB on annot-mix's out-of-fold probabilities (cleanlab)": rows}


#: Other settings of annot-mix tried by ``--ceiling`` (three seeds each).
SETTINGS = {
    "max_epochs=100": {"max_epochs": 100},
    "alpha=0 (no mixup)": {"alpha": 0.0},
    "alpha=2": {"alpha": 2.0},
    "hidden_sizes=(512, 256)": {"hidden_sizes": (512, 256)},
    "dropout=0.2": {"dropout": 0.2},
    "eta=0.8": {"eta": 0.8},
}


def normalised(log_joint):
    proba = np.exp(log_joint - log_joint.max(1, keepdims=True))
    return proba / proba.sum(1, keepdims=True)


def dawid_skene_step(prior, posterior, gold, n_classes, smoothing=0.01):
    """One M-step (annotators' class-level confusion matrices from ``posterior``), then the E-step."""
    n_annotators = len(gold.accuracy)
    confusion = np.full((n_annotators, n_classes, n_classes), smoothing)
    np.add.at(confusion, (gold.annotators, slice(None), gold.labels), posterior[gold.rows])
    confusion /= confusion.sum(2, keepdims=True)
    log_joint = np.log(prior)
    np.add.at(log_joint, gold.rows, np.log(confusion[gold.annotators, :, gold.labels]))
    return normalised(log_joint)


def ceiling(X, Z, gold, seeds):
    """What annot-mix's fits allow: the consensus next to other combinations of the same outputs."""
    n_classes = int(Z.max()) + 1
    variants, posteriors, accuracies = {}, [], []

    def add(name, proba, annotator_accuracy):
        variants.setdefault(name, []).append(
            gold.scores(proba.argmax(1), proba[gold.rows, gold.labels], annotator_accuracy)
        )

    for seed in range(seeds):
        model = AnnotMixClassifier(random_state=seed).fit(X, Z)
        prior, posterior = model.predict_proba(X), model.predict_consensus_proba(X, Z)
        accuracy = model.annotator_accuracy_
        posteriors.append(posterior)
        accuracies.append(accuracy)
        add("consensus posterior p(y | x, z) (the default)", posterior, accuracy)
        add("p(y | x) alone", prior, accuracy)
        add(
            "one Dawid-Skene step on the posterior",
            dawid_skene_step(prior, posterior, gold, n_classes),
            accuracy,
        )
        add(
            "geometric mean of the posterior and p(y | x)",
            normalised(np.log(posterior) + np.log(prior)),
            accuracy,
        )
        add("arithmetic mean of the posterior and p(y | x)", (posterior + prior) / 2, accuracy)
        print(
            f"ceiling, seed {seed}: {fmt(variants['consensus posterior p(y | x, z) (the default)'][-1])}",
            flush=True,
        )
    add(
        f"average posterior of the {seeds} fits (an ensemble)", np.mean(posteriors, 0), np.mean(accuracies, 0)
    )
    for name, params in SETTINGS.items():
        for seed in range(3):
            model = AnnotMixClassifier(random_state=seed, **params).fit(X, Z)
            add(
                f"{name}, consensus posterior", model.predict_consensus_proba(X, Z), model.annotator_accuracy_
            )
        print(f"ceiling, {name}: {fmt(variants[f'{name}, consensus posterior'][-1])}", flush=True)
    return variants


def fmt(scores):
    return ", ".join(f"{key} {value:.3f}" for key, value in scores.items())


def table(results):
    keys = ("accuracy", "auroc", "spearman", "p(y|x) accuracy")
    headers = (
        "consensus accuracy",
        "AUROC of quality (wrong labels)",
        "annotator Spearman",
        "in-sample p(y\\|x) accuracy",
    )
    present = [
        i for i, key in enumerate(keys) if any(key in row for rows in results.values() for row in rows)
    ]
    lines = [
        "| method | " + " | ".join(headers[i] for i in present) + " |",
        "| --- " * (len(present) + 1) + "|",
    ]
    for name, rows in results.items():
        cells = []
        for key in (keys[i] for i in present):
            values = np.array([row[key] for row in rows if key in row])
            if not len(values):
                cells.append("")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
        lines.append(f"| {name.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    titles = {
        "accuracy": "consensus accuracy",
        "auroc": "AUROC: wrong labels",
        "spearman": "annotator Spearman",
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(names) + 1.5), sharey=True, layout="constrained")
    for ax, (key, title) in zip(axes, titles.items()):
        means = [np.mean([row[key] for row in results[name]]) for name in names]
        stds = [np.std([row[key] for row in results[name]]) for name in names]
        colours = ["tab:blue" if "skannot" in name else "tab:grey" for name in names]
        ax.barh(np.arange(len(names)), means, xerr=stds, color=colours)
        ax.axvline(GOALS[key], color="tab:red", linestyle="--", linewidth=1, label="goal")
        low = min(means) - 0.05
        ax.set(title=title, xlim=(max(0.0, low), 1.0))
    axes[0].set_yticks(np.arange(len(names)), labels=names)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right")
    fig.savefig(path, dpi=110)
    print(f"figure written to {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="folder with the Music Genres CSVs (default: $SKANNOT_DATA)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--out", default="docs/user_guide/cleaning.md", help="page to write the table into ('' to skip)"
    )
    parser.add_argument("--figure", default="docs/images/consensus.png", help="figure to write ('' to skip)")
    parser.add_argument(
        "--ceiling", action="store_true", help="how far annot-mix's consensus goes (see the module docs)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    X, Z, y = load(args.data)
    gold = Gold(Z, y)
    wrong, ranked = int(gold.wrong.sum()), int(gold.ranked.sum())
    print(f"{len(gold.labels)} labels, {wrong} of them wrong; {ranked} annotators ranked")
    if args.ceiling:
        results = ceiling(X, Z, gold, args.seeds)
        args.figure, marker, flags = "", "ceiling-table", f" --ceiling --seeds {args.seeds}"
    else:
        results, oof = family(X, Z, gold, args.seeds)
        results.update(majority(Z, gold, args.seeds))
        results.update(crowd_kit(Z, gold))
        results.update(crowdlab(Z, gold, oof))
        marker, flags = "consensus-table", f" --seeds {args.seeds}"
    text = table(results)
    minutes = (time.perf_counter() - start) / 60
    print()
    print(text)
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        figure(results, args.figure)
    if args.out:
        machine = (
            f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
        )
        block = (
            f"Command: `SKANNOT_DATA=../shared/data python benchmarks/consensus.py{flags}` "
            f"(machine: {machine}; {minutes:.1f} minutes). Mean ± std over seeds "
            "where a method depends on a seed.\n\n" + text
        )
        write_block(args.out, marker, block)


if __name__ == "__main__":
    main()
