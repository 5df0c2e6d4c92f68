"""Main job: annot-mix versus majority vote on scikit-learn's bundled digits data.

Run ``python -m skannot``. Ten simulated annotators of mixed quality label
every image three times; annot-mix is trained on those labels and compared
with the same MLP trained on majority-vote labels. No download is needed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from . import AggregateClassifier, AnnotMixClassifier
from .datasets import simulate_annotators


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skannot", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50, help="training epochs (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the annotators and the fits")
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=args.seed
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    Z, confusion = simulate_annotators(
        X_train, y_train, n_annotators=10, accuracy=(0.2, 0.9), labels_per_sample=3, random_state=args.seed
    )
    observed = Z >= 0
    true_accuracy = np.array(
        [(Z[observed[:, m], m] == y_train[observed[:, m]]).mean() for m in range(Z.shape[1])]
    )
    print(
        f"digits: {len(X_train)} training images, {observed.sum()} noisy labels from {Z.shape[1]} annotators"
    )
    correct = Z[observed] == np.broadcast_to(y_train[:, None], Z.shape)[observed]
    print(f"share of correct labels: {correct.mean():.3f}")

    start = time.perf_counter()
    clf = AnnotMixClassifier(max_epochs=args.epochs, device=args.device, random_state=args.seed).fit(
        X_train, Z
    )
    annot_mix_time = time.perf_counter() - start
    annot_mix_accuracy = clf.score(X_test, y_test)

    start = time.perf_counter()
    mlp = AggregateClassifier(max_epochs=args.epochs, device=args.device, random_state=args.seed).fit(
        X_train, Z
    )
    mlp_time = time.perf_counter() - start
    majority_accuracy = mlp.score(X_test, y_test)

    print()
    print(f"{'method':<32}{'test accuracy':>14}{'fit time [s]':>14}")
    print(f"{'annot-mix (AnnotMixClassifier)':<32}{annot_mix_accuracy:>14.3f}{annot_mix_time:>14.1f}")
    print(f"{'MLP on majority vote':<32}{majority_accuracy:>14.3f}{mlp_time:>14.1f}")
    print()
    print(
        "estimated: annotator_accuracy_, the mean support of an annotator's labels by each item's\n"
        "other labels; it ranks the annotators and reads low where items have few labels\n"
        "(docs/user_guide/cleaning.md)"
    )
    print(f"{'annotator':<12}{'true accuracy':>15}{'estimated':>12}")
    for m, (true, estimated) in enumerate(zip(true_accuracy, clf.annotator_accuracy_)):
        print(f"{m:<12}{true:>15.3f}{estimated:>12.3f}")
    rho = spearmanr(true_accuracy, clf.annotator_accuracy_).statistic
    print(f"Spearman correlation of estimated and true annotator accuracy: {rho:.3f}")
    return {"annot_mix": annot_mix_accuracy, "majority_vote": majority_accuracy, "spearman": rho}


if __name__ == "__main__":
    main()
