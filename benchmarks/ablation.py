"""What each CPU fast path of ``AnnotMixClassifier.fit`` saves on Music Genres.

Fits of a few epochs with the paper's settings, one torch thread, the
variants alternating within each round so that slow phases of a shared
machine hit all of them; the table gives the median CPU seconds per variant
and the median of the paired differences to the default (positive: the
variant is slower than the default).

Variants:

``default``
    skannot as it ships: ``FlatRAdam``, ``keep_mask`` dropout masks (one
    random bit per unit for the default p = 0.5), the probability-space loss
    and the projected annotator table.
``torch RAdam``
    ``torch.optim.RAdam`` with ``foreach=True`` instead of ``FlatRAdam``
    (``optimizer__differentiable=False`` is an option ``FlatRAdam`` does not
    take, so the estimator falls back to torch's class).
``rand >= p masks``
    dropout masks drawn as ``torch.rand(shape) >= p`` instead of
    ``keep_mask``.
``23-bit masks``
    ``keep_mask`` with 23 random bits per unit for every p (as before the
    table masks), instead of one bit per unit for p = 0.5.
``log-space loss``
    ``AnnotMixLoss.log_space`` (three ``logsumexp`` and autograd) instead of
    the probability-space loss with its hand-written backward pass.
``unprojected annotator table``
    the mixed annotator embeddings go through the AP head's first layer
    (``project_table=False``) instead of mixing rows of the projected table.
``third round off``
    the last three variants together: what the third round of changes saves.
``skorch's mode switch``
    skorch's ``_set_training``, which walks the module tree before every
    step, instead of the cached check.
``pairs batch by batch``
    ``CrowdDataset.batch`` per batch instead of ``CrowdDataset.batches``
    (pair indexing once per epoch).

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/ablation.py --rounds 16 --epochs 8
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNet

import skannot._nn as nn_module
from skannot._nn import AnnotMixModule
from skannot._training import AnnotMixLoss, AnnotMixNet, PairBatchIterator

sys.path.insert(0, str(Path(__file__).parent))
from speed import fit_skannot, machine, music_genres, table  # noqa: E402


@contextmanager
def rand_masks():
    """Dropout masks from ``torch.rand`` while the block runs."""
    original = nn_module.keep_mask

    def mask(shape, p, device=None, scale=1.0):
        return (torch.rand(shape, device=device) >= p).float() * scale

    nn_module.keep_mask = mask
    try:
        yield
    finally:
        nn_module.keep_mask = original


@contextmanager
def skorch_mode_switch():
    """skorch's own ``_set_training`` while the block runs."""
    original = AnnotMixNet._set_training
    AnnotMixNet._set_training = NeuralNet._set_training
    try:
        yield
    finally:
        AnnotMixNet._set_training = original


@contextmanager
def batch_by_batch():
    """Pairs indexed per batch while the block runs."""
    original = PairBatchIterator.__iter__

    def per_batch(self):
        for rows in torch.split(self._order()[: self._n_rows()], self.batch_size):
            yield self.dataset.batch(rows)

    PairBatchIterator.__iter__ = per_batch
    try:
        yield
    finally:
        PairBatchIterator.__iter__ = original


@contextmanager
def patched(owner, name, value):
    """``owner.name = value`` while the block runs."""
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def bits_23():
    return patched(nn_module, "_field_bits", lambda p: None)


def log_space_loss():
    return patched(AnnotMixLoss, "forward", lambda self, *args, **kwargs: self.log_space(*args, **kwargs))


def unprojected_table():
    original = AnnotMixModule.pair_confusion_logits

    def unprojected(self, *args, **kwargs):
        return original(self, *args, **{**kwargs, "project_table": False})

    return patched(AnnotMixModule, "pair_confusion_logits", unprojected)


@contextmanager
def third_round_off():
    with bits_23(), log_space_loss(), unprojected_table():
        yield


@contextmanager
def nothing():
    yield


VARIANTS = {
    "default": ({}, nothing),
    "torch RAdam (foreach)": ({"optimizer__differentiable": False}, nothing),
    "rand >= p masks": ({}, rand_masks),
    "skorch's mode switch": ({}, skorch_mode_switch),
    "pairs batch by batch": ({}, batch_by_batch),
    "23-bit masks": ({}, bits_23),
    "log-space loss": ({}, log_space_loss),
    "unprojected annotator table": ({}, unprojected_table),
    "third round off": ({}, third_round_off),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=None,
        help="folder with the three Music Genres CSVs (default: the data home, $SKANNOT_DATA)",
    )
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, Z = music_genres(args.data)
    fit_skannot(X, Z, 0, epochs=1)  # the first fit of a process pays one-off imports
    names = ["default", *(name for name in args.variants if name != "default")]
    seconds = {name: [] for name in names}
    for run in range(args.rounds):
        for name in names:
            params, context = VARIANTS[name]
            with context():
                start = time.process_time()
                fit_skannot(X, Z, run, epochs=args.epochs, **params)
                seconds[name].append(time.process_time() - start)
    base = np.array(seconds["default"])
    rows = []
    for name, values in seconds.items():
        difference = np.array(values) - base
        rows.append(
            (
                name,
                f"{np.median(values):.3f}",
                f"{np.median(difference):+.3f}",
                f"{np.median(difference / base):+.1%}",
            )
        )
    print(f"Command: python {' '.join(sys.argv)}")
    print(f"Machine: {machine('cpu')}")
    print()
    print(
        table(
            f"Music Genres, {args.epochs} epochs per fit, medians over {args.rounds} alternating rounds",
            ["variant", "fit CPU s", "paired difference s", "relative"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
