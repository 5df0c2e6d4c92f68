"""Model selection without gold labels: which scorer picks the model that is best on the gold labels.

For each setting (Music Genres with the annot-mix paper's protocol, and
simulated crowds from :func:`skannot.datasets.make_crowd_classification`),
each grid (annot-mix's ``alpha``; the GT network's size; the methods of the
family) and each seed, every configuration is fitted on 80 % of the training
instances (a shuffled :class:`~skannot.model_selection.AnnotationStratifiedKFold`
fold, seeded by the seed) and scored on the held-out 20 % of the instances'
annotations by

- ``accuracy``: ``score``, the agreement of the predictions with the held-out
  annotations (:func:`skannot.metrics.annotation_accuracy_scorer`);
- ``log_likelihood``: the mean log-likelihood of the held-out annotations
  (:func:`skannot.metrics.annotation_log_likelihood_scorer`).

The regret of a scorer is the gold test accuracy of the best configuration of
the grid minus that of the configuration the scorer picks (both fitted on the
same 80 %), in accuracy points; the table reports its mean over the seeds.

``--goal`` measures instead the documented no-gold recipe on Music Genres:
choose annot-mix's ``alpha`` in {0, 0.5, 1, 2} by each scorer on the
held-out annotations as above, refit on all training songs with it and
report the test accuracy, mean over the seeds. ``--early-stopping`` compares
``early_stopping=True`` with the default, for annot-mix and majority vote, in
every setting.

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/selection.py --seeds 5
    SKANNOT_DATA=../shared/data python benchmarks/selection.py --goal --seeds 10
    SKANNOT_DATA=../shared/data python benchmarks/selection.py --goal --folds 5 --seeds 10
    SKANNOT_DATA=../shared/data python benchmarks/selection.py --early-stopping --seeds 10

Prints its tables; the study's numbers are in ``docs/user_guide/model_selection.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

import skannot
from skannot.datasets import make_crowd_classification
from skannot.metrics import annotation_accuracy_scorer, annotation_log_likelihood_scorer
from skannot.model_selection import AnnotationStratifiedKFold

sys.path.insert(0, str(Path(__file__).parent))
from music_genres import load as load_music_genres  # noqa: E402

SCORERS = {"accuracy": annotation_accuracy_scorer, "log_likelihood": annotation_log_likelihood_scorer}

#: grid name: list of (configuration name, estimator class name, parameters)
GRIDS = {
    "alpha": [(f"alpha={a}", "AnnotMixClassifier", {"alpha": a}) for a in (0.0, 0.5, 1.0, 2.0)],
    "network size": [
        (f"hidden_sizes={s}", "AnnotMixClassifier", {"hidden_sizes": s}) for s in ((16,), (64,), (256, 128))
    ],
    "method": [
        ("majority vote", "AggregateClassifier", {}),
        ("majority vote + mixup", "AggregateClassifier", {"alpha": 1.0}),
        ("Dawid-Skene", "AggregateClassifier", {"aggregation": "dawid_skene"}),
        ("crowd layer", "CrowdLayerClassifier", {}),
        ("trace-reg", "TraceRegClassifier", {}),
        ("GeoCrowdNet (F)", "GeoCrowdNetClassifier", {"regularization": "F"}),
        ("UnionNet", "UnionNetClassifier", {}),
        ("annot-mix", "AnnotMixClassifier", {}),
    ],
}

#: simulated setting name: make_crowd_classification parameters
SIMULATED = {
    "simulated: class-dependent annotators": {"kinds": "class", "accuracy": (0.3, 0.9)},
    "simulated: instance-dependent annotators": {"kinds": "instance", "accuracy": (0.3, 0.9)},
    "simulated: with adversarial and random annotators": {
        "kinds": ["class"] * 6 + ["adversarial"] * 2 + ["random"] * 2,
        "accuracy": (0.4, 0.9),
    },
}


def load_simulated(params, seed):
    """1,000 training instances with crowd labels and 1,000 test instances with their true classes."""
    data = make_crowd_classification(
        2000, 20, n_classes=5, n_annotators=10, class_sep=1.5, random_state=seed, **params
    )
    train, test = train_test_split(np.arange(2000), test_size=0.5, random_state=seed, stratify=data.target)
    return data.data[train], data.annotations[train], data.data[test], data.target[test]


def settings(data_home, seed):
    """(name, X, Z, X_test, y_test) of every setting for one seed."""
    X, Z, _, X_test, y_test = load_music_genres(data_home)
    yield "Music Genres", X.astype(np.float32), Z, X_test.astype(np.float32), y_test
    for name, params in SIMULATED.items():
        yield (name, *load_simulated(params, seed))


def held_out_split(Z, seed):
    """80 % / 20 % of the instances, stratified by majority vote (fold 1 of a shuffled 5-fold split)."""
    splitter = AnnotationStratifiedKFold(5, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros((len(Z), 1)), Z))


def evaluate(grid, X, Z, X_test, y_test, seed):
    """Held-out scores (configs, scorers) and gold test accuracy (configs,) of every configuration."""
    train, valid = held_out_split(Z, seed)
    scores, gold = [], []
    for _, class_name, params in grid:
        model = getattr(skannot, class_name)(random_state=seed, **params).fit(X[train], Z[train])
        scores.append([scorer(model, X[valid], Z[valid]) for scorer in SCORERS.values()])
        gold.append(100 * np.mean(model.predict(X_test) == y_test))
    return np.array(scores), np.array(gold)


def study(data_home, seeds):
    """Regret (accuracy points) of each scorer, per setting and grid, over ``seeds`` seeds."""
    regret = {}
    for seed in range(seeds):
        for name, X, Z, X_test, y_test in settings(data_home, seed):
            for grid_name, grid in GRIDS.items():
                start = time.perf_counter()
                scores, gold = evaluate(grid, X, Z, X_test, y_test, seed)
                picks = scores.argmax(0)
                values = gold.max() - gold[picks]
                regret.setdefault((name, grid_name), []).append(values)
                chosen = ", ".join(f"{s}: {grid[p][0]}" for s, p in zip(SCORERS, picks))
                print(
                    f"seed {seed} | {name} | {grid_name}: gold best {grid[gold.argmax()][0]} "
                    f"({gold.max():.1f}), {chosen}, regret {np.round(values, 1).tolist()} "
                    f"[{time.perf_counter() - start:.0f}s]",
                    flush=True,
                )
    lines = [
        f"| setting | grid | regret of `accuracy` | regret of `log_likelihood` (mean over {seeds} seeds) |",
        "| --- | --- | --- | --- |",
    ]
    for (name, grid_name), values in regret.items():
        mean = np.mean(values, axis=0)
        lines.append(f"| {name} | {grid_name} | {mean[0]:.2f} | {mean[1]:.2f} |")
    every = np.array([v for values in regret.values() for v in values])  # (problems, scorers)
    overall, worst = every.mean(0), every.max(0)
    lines.append(f"| **all** | mean | **{overall[0]:.2f}** | **{overall[1]:.2f}** |")
    lines.append(f"| **all** | median | {np.median(every[:, 0]):.2f} | {np.median(every[:, 1]):.2f} |")
    lines.append(f"| **all** | largest | {worst[0]:.1f} | {worst[1]:.1f} |")
    lines.append(
        f"| **all** | problems where it picks the gold-best configuration, of {len(every)} "
        f"| {(every[:, 0] == 0).sum()} | {(every[:, 1] == 0).sum()} |"
    )
    lines.append(
        f"| **all** | problems where its regret is the lower one | {(every[:, 0] < every[:, 1]).sum()} "
        f"| {(every[:, 1] < every[:, 0]).sum()} |"
    )
    return "\n".join(lines)


def cross_validated_scores(grid, X, Z, seed, folds):
    """Mean held-out scores (configs, scorers) over a shuffled ``folds``-fold AnnotationStratifiedKFold."""
    splitter = AnnotationStratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = np.zeros((len(grid), len(SCORERS)))
    for train, valid in splitter.split(X, Z):
        for k, (_, class_name, params) in enumerate(grid):
            model = getattr(skannot, class_name)(random_state=seed, **params).fit(X[train], Z[train])
            scores[k] += [scorer(model, X[valid], Z[valid]) for scorer in SCORERS.values()]
    return scores / folds


def goal(data_home, seeds, folds=1):
    """Music Genres test accuracy (%) of annot-mix with alpha chosen by each scorer, refitted on all songs.

    With ``folds=1`` the scores come from one 80 % / 20 % split, otherwise from ``folds``-fold
    cross-validation (what ``GridSearchCV`` with an AnnotationStratifiedKFold computes).
    """
    X, Z, _, X_test, y_test = load_music_genres(data_home)
    X, X_test = X.astype(np.float32), X_test.astype(np.float32)
    grid = GRIDS["alpha"]
    accuracies = {name: [] for name in SCORERS}
    for seed in range(seeds):
        if folds == 1:
            scores, _ = evaluate(grid, X, Z, X_test, y_test, seed)
        else:
            scores = cross_validated_scores(grid, X, Z, seed, folds)
        refitted = {}
        for k, name in enumerate(SCORERS):
            alpha = grid[scores[:, k].argmax()][2]["alpha"]
            if alpha not in refitted:
                model = skannot.AnnotMixClassifier(alpha=alpha, random_state=seed).fit(X, Z)
                refitted[alpha] = 100 * np.mean(model.predict(X_test) == y_test)
            accuracies[name].append(refitted[alpha])
            print(
                f"seed {seed}: {name} chooses alpha={alpha}, test accuracy {refitted[alpha]:.1f}%", flush=True
            )
    return {name: np.array(values) for name, values in accuracies.items()}


def early_stopping(data_home, seeds):
    """Test accuracy (%) of annot-mix and majority vote with and without early stopping, in every setting."""
    methods = (("annot-mix", "AnnotMixClassifier"), ("majority vote", "AggregateClassifier"))
    results = {}
    for seed in range(seeds):
        for setting, X, Z, X_test, y_test in settings(data_home, seed):
            for name, class_name in methods:
                row = results.setdefault((setting, name), {False: [], True: [], "epochs": []})
                for stop in (False, True):
                    model = getattr(skannot, class_name)(random_state=seed, early_stopping=stop).fit(X, Z)
                    row[stop].append(100 * np.mean(model.predict(X_test) == y_test))
                    if stop:
                        row["epochs"].append(model.best_epoch_)
                print(
                    f"seed {seed} | {setting} | {name}: {row[False][-1]:.1f} / {row[True][-1]:.1f}",
                    flush=True,
                )
    lines = [
        f"| setting | method | default (%) | `early_stopping=True` (%) "
        f"| best epoch (mean over {seeds} seeds) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (setting, name), row in results.items():
        off, on = np.array(row[False]), np.array(row[True])
        lines.append(
            f"| {setting} | {name} | {off.mean():.1f} ± {off.std():.1f} | {on.mean():.1f} ± {on.std():.1f} "
            f"| {np.mean(row['epochs']):.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="folder with the Music Genres CSVs (default $SKANNOT_DATA)"
    )
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--goal", action="store_true", help="the no-gold recipe's Music Genres accuracy")
    parser.add_argument("--folds", type=int, default=1, help="--goal: cross-validation folds (1: one split)")
    parser.add_argument("--early-stopping", action="store_true", help="early stopping in every setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.goal:
        for name, accuracies in goal(args.data, args.seeds, args.folds).items():
            print(
                f"annot-mix, alpha chosen by {name}: {accuracies.mean():.1f} ± {accuracies.std():.1f}% "
                f"over {args.seeds} seeds"
            )
    elif args.early_stopping:
        print("\n" + early_stopping(args.data, args.seeds))
    else:
        print("\n" + study(args.data, args.seeds))
    print(f"\n{time.perf_counter() - start:.0f}s in all")


if __name__ == "__main__":
    main()
