"""Annotator features against one-hot annotators, on two simulations of feature-driven skill.

For each simulation (``skannot.datasets.simulate_feature_annotators`` with
``skill="specialty"`` and ``skill="bias"``), regime and seed, the annotators
are split into training annotators and held-out ones (20 %), and the items
into training and test items. Three annot-mix models are fitted on the
training annotators' labels of the training items: one-hot annotators
(``annotator_representation="embedding"``, the paper's model), features
(``"features"``) and features plus a per-annotator correction
(``"features+embedding"``). Measured:

1. ``heldout_ll``: mean log-likelihood of the held-out annotators' labels on
   the test items. The one-hot model predicts them as its average annotator
   (they are columns without labels), the feature models from their features
   (``predict_annotator_proba(X, annotator_features=...)``).
2. ``test_acc``: ground-truth accuracy on the test items.
3. ``confusion_mae``: mean absolute error of the held-out annotators'
   estimated confusion matrices (``predict_annotator_confusion`` over the test
   items: for the one-hot model, that of its average annotator) against the
   true ones.

Regimes: ``few`` (about 2 labels per training annotator), ``many`` (about 75)
and ``few, noisy features`` (the numeric trait observed with noise of standard
deviation 0.5, plus 4 uninformative columns) and ``few, shuffled features``
(each annotator gets another annotator's features, so they carry no
information about it). Run: ``python
benchmarks/annotator_features.py [--seeds N] [--write]``; ``--write`` puts the
table into ``docs/user_guide/annotator_features.md``. ``--method madl`` runs
the same with ``MaDLClassifier`` (its own defaults for the annotator model;
``--regimes`` picks regimes) and writes into that page's MaDL table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_classification

from skannot import AnnotMixClassifier, MaDLClassifier
from skannot.datasets import simulate_feature_annotators

sys.path.insert(0, str(Path(__file__).parent))
from _report import write_block  # noqa: E402

N_CLASSES = 6
N_TRAIN, N_TEST = 1000, 1000
#: name -> (annotators, labels per sample, feature noise, noise columns, shuffled feature rows)
REGIMES = {
    "few": (1000, 2, 0.0, 0, False),
    "many": (40, 3, 0.0, 0, False),
    "few, noisy features": (1000, 2, 0.5, 4, False),
    "few, shuffled features": (1000, 2, 0.0, 0, True),
}
MODELS = {"one-hot": "embedding", "features": "features", "features+correction": "features+embedding"}
SETTINGS = {"max_epochs": 30, "hidden_sizes": (64,), "annotator_embed_dim": 32, "annotator_hidden_size": 32}
#: method -> (estimator, settings, marker of its table in the docs page)
METHODS = {
    "annot_mix": (AnnotMixClassifier, SETTINGS, "benchmark"),
    "madl": (MaDLClassifier, {"max_epochs": 30, "hidden_sizes": (64,), "hidden_size": 32}, "madl-benchmark"),
}
METRICS = (("heldout_ll", "{:.3f}"), ("test_acc", "{:.3f}"), ("confusion_mae", "{:.4f}"))
DOC = Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "annotator_features.md"


def run_one(skill, regime, seed, method="annot_mix"):
    n_annotators, per_sample, noise, noise_columns, shuffled = REGIMES[regime]
    X, y = make_classification(
        n_samples=N_TRAIN + N_TEST, n_features=10, n_informative=6, n_redundant=0,
        n_classes=N_CLASSES, n_clusters_per_class=1, class_sep=1.5, random_state=seed,
    )  # fmt: skip
    X = X.astype(np.float32)
    crowd = simulate_feature_annotators(
        y, n_annotators=n_annotators, skill=skill, n_groups=2, labels_per_sample=per_sample,
        feature_noise=noise, n_noise_features=noise_columns, random_state=seed,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    held_out = np.zeros(n_annotators, dtype=bool)
    held_out[rng.permutation(n_annotators)[: n_annotators // 5]] = True
    Z = crowd.annotations
    Z_train = Z[:N_TRAIN].copy()
    Z_train[:, held_out] = -1  # held-out annotators: columns without labels
    X_train, X_test, y_test = X[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]
    features = crowd.annotator_features
    if shuffled:  # features of other annotators: they say nothing about this one
        features = features.iloc[rng.permutation(n_annotators)].set_axis(features.index)
    new = features[held_out]
    test_rows, test_cols = np.nonzero(Z[N_TRAIN:][:, held_out] >= 0)
    test_labels = Z[N_TRAIN:][:, held_out][test_rows, test_cols]
    results = {}
    estimator, settings, _ = METHODS[method]
    for name, representation in MODELS.items():
        start = time.perf_counter()
        clf = estimator(
            **settings,
            annotator_representation=representation,
            annotator_features=None if representation == "embedding" else features,
            random_state=seed,
        ).fit(X_train, Z_train)
        if representation == "embedding":
            proba = clf.predict_annotator_proba(X_test, annotators=np.flatnonzero(held_out))
            confusion = clf.predict_annotator_confusion(X_test)[held_out]
        else:
            proba = clf.predict_annotator_proba(X_test, annotator_features=new)
            confusion = clf.predict_annotator_confusion(X_test, annotator_features=new)
        ll = np.log(np.maximum(proba[test_rows, test_cols, test_labels], 1e-12)).mean()
        results[name] = {
            "heldout_ll": float(ll),
            "test_acc": float(clf.score(X_test, y_test)),
            "confusion_mae": float(np.abs(confusion - crowd.confusion[held_out]).mean()),
            "seconds": time.perf_counter() - start,
        }
    labels_per_annotator = (Z_train >= 0).sum(0)[~held_out].mean()
    return results, labels_per_annotator


def table(all_results):
    lines = [
        "| simulation | regime | labels / annotator | model "
        "| held-out log-lik. | test accuracy | confusion MAE |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (skill, regime), (runs, per_annotator) in all_results.items():
        for name in MODELS:
            cells = []
            for metric, fmt in METRICS:
                values = np.array([run[name][metric] for run in runs])
                cells.append(f"{fmt.format(values.mean())} ± {fmt.format(values.std())}")
            lines.append(f"| {skill} | {regime} | {per_annotator:.1f} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the table into the docs page")
    parser.add_argument("--method", choices=list(METHODS), default="annot_mix")
    parser.add_argument("--regimes", nargs="+", choices=list(REGIMES), default=list(REGIMES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    all_results = {}
    start = time.perf_counter()
    for skill in ("specialty", "bias"):
        for regime in args.regimes:
            runs, counts = [], []
            for seed in range(args.seeds):
                results, per_annotator = run_one(skill, regime, seed, args.method)
                runs.append(results)
                counts.append(per_annotator)
            all_results[skill, regime] = (runs, float(np.mean(counts)))
            print(f"{skill} / {regime}: done after {time.perf_counter() - start:.0f} s", flush=True)
    text = table(all_results)
    print(text)
    if args.write:
        write_block(DOC, METHODS[args.method][2], text)


if __name__ == "__main__":
    main()
