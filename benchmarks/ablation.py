"""What each CPU fast path of ``AnnotMixClassifier.fit`` saves on Music Genres.

Fits of a few epochs with the paper's settings, one torch thread, the
variants alternating within each round so that slow phases of a shared
machine hit all of them; the table gives the median CPU seconds per variant
and the median of the paired differences to the default (positive: the
variant is slower than the default).

Variants:

``default``
    skannot as it ships: every CPU fast path on (``skannot.FAST_PATHS``:
    ``FlatRAdam``, ``keep_mask`` dropout masks with one random bit per unit
    for the default p = 0.5, the probability-space loss, the row-sparse Adam
    for a sparse table, the cached training-mode check), the projected
    annotator table and pair indexing once per epoch.
``fast paths off``
    ``skannot.config_context(fast_paths=False)``: the plain PyTorch path of
    every fast path.
``without NAME``
    every fast path but ``NAME`` (one variant per fast path).
``23-bit masks``
    ``keep_mask`` with 23 random bits per unit for every p, instead of one
    bit per unit for p = 0.5.
``optimizer steps in torch's profiler range``
    ``FlatRAdam``'s (and ``RowSparseAdam``'s) step through torch's wrapper
    (a ``record_function`` range around the hooks and the update) at every
    step, as when a profiler records or a step hook is registered, instead of
    directly.
``FlatRAdam without the fused kernel``
    ``FlatRAdam``'s rectified steps in five in-place passes over the
    buffers, as on torch builds without ``torch._fused_adam_``, instead of
    one pass of that kernel.
``unprojected annotator table``
    the mixed annotator embeddings go through the AP head's first layer
    (``project_table=False``) instead of mixing rows of the projected table.
``pairs batch by batch``
    ``CrowdDataset.batch`` per batch instead of ``CrowdDataset.batches``
    (pair indexing once per epoch).

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/ablation.py --rounds 16 --epochs 8
    python benchmarks/ablation.py --annotators 5000 --rounds 8 --epochs 2

``--method crowd_layer`` times ``CrowdLayerClassifier`` instead of
``AnnotMixClassifier`` (the variants specific to annot-mix then change
nothing). The table is printed and written into ``docs/performance.md``
between the ``ablation-METHOD`` markers (``ablation-METHOD-synthetic`` with
``--annotators``) when every variant ran, or those that ``--block NAME``
names for a chosen set (``--out ''`` skips it).

``--annotators M`` replaces Music Genres with ``speed.synthetic`` data (20,000
samples, 3 labels each from M annotators): with many annotators the
annotator table outweighs the networks, the table trains with sparse updates
and ``row_sparse_adam`` applies.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import skannot
import skannot._fast._dropout as dropout_module
import skannot._fast._optim as optim_module
from skannot._training import PairBatchIterator
from skannot.classifiers._annot_mix import AnnotMixModule

sys.path.insert(0, str(Path(__file__).parent))
from _report import run_block, write_block  # noqa: E402
from speed import fit_skannot, fit_skannot_crowd_layer, machine, music_genres, synthetic, table  # noqa: E402

METHODS = {"annot_mix": fit_skannot, "crowd_layer": fit_skannot_crowd_layer}


@contextmanager
def patched(owner, name, value):
    """``owner.name = value`` while the block runs."""
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def per_batch(self):
    for rows in torch.split(self._order()[: self._n_rows()], self.batch_size):
        yield self.dataset.batch(rows)


def unprojected(self, *args, **kwargs):
    return AnnotMixModule_pair_confusion_logits(self, *args, **{**kwargs, "project_table": False})


AnnotMixModule_pair_confusion_logits = AnnotMixModule.pair_confusion_logits


def without(name):
    return lambda: skannot.config_context(fast_paths=set(skannot.FAST_PATHS) - {name})


VARIANTS = {
    "default": contextlib.nullcontext,
    "fast paths off": lambda: skannot.config_context(fast_paths=False),
    **{f"without {name}": without(name) for name in skannot.FAST_PATHS},
    "23-bit masks": lambda: patched(dropout_module, "_field_bits", lambda p: None),
    "FlatRAdam without the fused kernel": lambda: patched(optim_module, "_FUSED_ADAM", None),
    "optimizer steps in torch's profiler range": lambda: patched(
        optim_module, "_hooks_pending", lambda opt: True
    ),
    "unprojected annotator table": lambda: patched(AnnotMixModule, "pair_confusion_logits", unprojected),
    "pairs batch by batch": lambda: patched(PairBatchIterator, "__iter__", per_batch),
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
    parser.add_argument("--annotators", type=int, default=None, help="synthetic data with M annotators")
    parser.add_argument("--samples", type=int, default=20_000, help="samples of the synthetic data")
    parser.add_argument("--method", choices=list(METHODS), default="annot_mix")
    parser.add_argument(
        "--out", default="docs/performance.md", help="page to write the table into ('' to skip)"
    )
    parser.add_argument(
        "--block", default=None, help="markers to write into (default: see the module docstring)"
    )
    args = parser.parse_args()
    fit = METHODS[args.method]
    torch.set_num_threads(1)
    if args.annotators is None:
        X, Z = music_genres(args.data)
        title = f"Music Genres, {args.method}"
    else:
        X, Z = synthetic(args.samples, args.annotators)
        title = (
            f"{args.method}, synthetic, {args.samples:,} samples, {args.annotators:,} annotators, "
            "3 labels per sample"
        )
    fit(X, Z, 0, epochs=1)  # the first fit of a process pays one-off imports
    names = ["default", *(name for name in args.variants if name != "default")]
    seconds = {name: [] for name in names}
    for run in range(args.rounds):
        for name in names:
            with VARIANTS[name]():
                start = time.process_time()
                fit(X, Z, run, epochs=args.epochs)
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
    command, where = f"python {' '.join(sys.argv)}", machine("cpu")
    heading = f"{title}, {args.epochs} epochs per fit, medians over {args.rounds} alternating rounds"
    text = table(heading, ["variant", "fit CPU s", "paired difference s", "relative"], rows)
    print(f"Command: {command}")
    print(f"Machine: {where}")
    print()
    print(text)
    block = args.block
    if block is None and set(names) == set(VARIANTS):
        block = f"ablation-{args.method}" + ("" if args.annotators is None else "-synthetic")
    if args.out and block:
        write_block(args.out, block, run_block(text, command, where))


if __name__ == "__main__":
    main()
