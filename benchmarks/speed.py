"""Speed and memory of ``AnnotMixClassifier.fit`` and ``predict_proba``.

Parts (``--parts``, all by default):

``music``
    Music Genres with the paper's settings (700 songs, 44 annotators, MLP
    [256, 128] with batch norm, ReLU and dropout 0.5, RAdam, lr 1e-2, cosine
    schedule, 50 epochs, batch 64): median ``fit`` time of skannot, of a bare
    PyTorch loop of the same network and step (the "floor", written below
    without skorch) and of scikit-activeml 1.0.1's ``AnnotMixClassifier``
    configured the same way, the three run alternately in this process.
``crowd_layer``
    Music Genres with the same settings: median ``fit`` time of skannot's
    ``CrowdLayerClassifier`` and of scikit-activeml 1.0.1's
    ``CrowdLayerClassifier`` with the same GT network, alternating.
``fused_mlp``
    The GT network's training step alone (forward and backward of skannot's
    MLP with its dropout masks, on 64 and 270 rows: a crowd-layer batch and
    an annot-mix batch of Music Genres' mixed pairs): torch's layers and
    autograd against the same network written as one autograd function with
    a hand-written backward (:class:`FusedMLP`, bit-identical gradients,
    checked here), alternating, medians. It asks whether fewer autograd
    nodes (the Python-level fusion a library can do without compiling
    kernels) would speed up the step.
``annotators``
    Synthetic data (20,000 samples, 124 features, 10 classes, 3 labels per
    sample) from M = 10 ... 5,000 annotators: seconds per epoch (median over
    the epochs of one fit) and the whole ``fit``.
``samples``
    The same with M = 100 and n = 20k, 100k, 500k: seconds per epoch and per
    million labels.
``memory``
    Peak resident memory added by ``fit`` (one epoch) on the 500k-sample case,
    measured in a fresh subprocess, against the size of ``X`` plus ``Z``.
``predict``
    ``predict_proba`` on 1,000,000 rows: rows per second and peak memory added,
    in a fresh subprocess.

scikit-activeml is optional (``pip install "skannot[bench]"``); without it
its rows are skipped with a message.

Each part's table is printed and written into ``docs/performance.md``
between its ``speed-PART`` markers where the page has them (``--out``; not
with ``--quick``).

Usage::

    SKANNOT_DATA=../shared/data python benchmarks/speed.py
    python benchmarks/speed.py --quick            # small sizes, for development
    python benchmarks/speed.py --device cuda      # the GPU path
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from skannot import AnnotMixClassifier
from skannot._fast import FlatRAdam
from skannot._nn import MLP
from skannot.classifiers._annot_mix import AnnotMixModule
from skannot.datasets import fetch_music_genres

sys.path.insert(0, str(Path(__file__).parent))
from _report import run_block, write_block  # noqa: E402

try:
    from skactiveml.classifier.multiannotator import AnnotMixClassifier as SkActiveMLAnnotMix
    from skactiveml.classifier.multiannotator import CrowdLayerClassifier as SkActiveMLCrowdLayer
except ImportError:
    SkActiveMLAnnotMix = SkActiveMLCrowdLayer = None

HIDDEN = (256, 128)
EPOCHS = 50
BATCH = 64
LR = 1e-2


# -- data ------------------------------------------------------------------


def music_genres(data):
    """Training songs (standardised) and their annotation matrix."""
    d = fetch_music_genres(data, download_if_missing=False)
    X = d.data.astype(np.float32)
    X = (X - X.mean(0)) / X.std(0)
    return X, np.asarray(d.annotations)


def synthetic(n_samples, n_annotators, n_features=124, n_classes=10, labels_per_sample=3, seed=0):
    """Linearly separable classes; each sample labelled by 3 distinct random annotators.

    Annotator ``m`` is right with probability ``accuracy[m] ~ U(0.4, 0.9)`` and
    otherwise names a uniformly drawn wrong class. ``Z`` is a dense int64
    matrix with -1 for missing labels, as a user would pass it.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    y = (X @ rng.standard_normal((n_features, n_classes), dtype=np.float32)).argmax(1)
    k = min(labels_per_sample, n_annotators)
    chosen = np.empty((n_samples, k), dtype=np.int64)
    for j in range(k):
        draw = rng.integers(0, n_annotators, n_samples)
        clash = (chosen[:, :j] == draw[:, None]).any(1)
        while clash.any():
            draw[clash] = rng.integers(0, n_annotators, clash.sum())
            clash = (chosen[:, :j] == draw[:, None]).any(1)
        chosen[:, j] = draw
    accuracy = rng.uniform(0.4, 0.9, n_annotators)
    right = rng.random((n_samples, k)) < accuracy[chosen]
    wrong = (y[:, None] + rng.integers(1, n_classes, (n_samples, k))) % n_classes
    Z = np.full((n_samples, n_annotators), -1, dtype=np.int64)
    np.put_along_axis(Z, chosen, np.where(right, y[:, None], wrong), axis=1)
    return X, Z


# -- the three contenders --------------------------------------------------


def fit_skannot(X, Z, seed, device="cpu", epochs=EPOCHS, **params):
    """skannot with its defaults (the paper's settings)."""
    return AnnotMixClassifier(max_epochs=epochs, random_state=seed, device=device, **params).fit(X, Z)


class FloorPairs:
    """The bare loops' batches: the observed pairs of ``Z`` in CSR order, cut by instance batches.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    Z : ndarray of shape (n_samples, n_annotators), -1 for missing labels
    device : torch.device
    """

    def __init__(self, X, Z, device):
        observed = Z >= 0
        counts = torch.from_numpy(observed.sum(1))
        self.indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        rows, cols = np.nonzero(observed)
        self.annotators = torch.from_numpy(cols).to(device)
        self.labels = torch.from_numpy(Z[rows, cols]).to(device)
        self.X = torch.from_numpy(X)
        self.device = device

    def epoch(self):
        """One shuffled epoch of ``(x, local, annotators, labels)`` per batch of ``BATCH`` instances.

        ``local`` is each pair's row in ``x``; a trailing batch of one
        instance is dropped (batch norm cannot train on it), as skannot does.
        """
        n = len(self.X)
        order = torch.randperm(n)
        if n % BATCH == 1:
            order = order[:-1]
        for rows in order.split(BATCH):
            starts, stops = self.indptr[rows], self.indptr[rows + 1]
            counts = stops - starts
            local = torch.repeat_interleave(torch.arange(len(rows)), counts)
            positions = torch.arange(int(counts.sum())) - (counts.cumsum(0) - counts)[local] + starts[local]
            x = self.X[rows].to(self.device, non_blocking=True)
            local, positions = local.to(self.device), positions.to(self.device)
            yield x, local, self.annotators[positions], self.labels[positions]


def fit_floor(X, Z, seed, device="cpu", epochs=EPOCHS):
    """A bare PyTorch loop of the same network and step: no skorch, no validation, no summaries.

    Pairs come from the observed entries of ``Z`` in CSR order; each batch of
    instances is mixed pair-wise with ``lambda ~ Beta(1, 1)`` and a random
    partner, and the loss is the negative marginal log-likelihood of the
    mixed labels, as in skannot.
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    n_classes = int(Z.max()) + 1
    pairs = FloorPairs(X, Z, device)
    gt = MLP(X.shape[1], n_classes, HIDDEN, 0.5, True)
    module = AnnotMixModule(gt, Z.shape[1], HIDDEN[-1], n_classes).to(device)
    for part in module.modules():  # skannot's dropout masks, as in skannot's default fit
        if hasattr(part, "use_fast_paths"):
            part.use_fast_paths({"byte_masks"})
    optimizer = torch.optim.RAdam(module.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    beta = torch.distributions.Beta(torch.tensor(1.0, device=device), torch.tensor(1.0, device=device))
    module.train()
    for _ in range(epochs):
        for x, local, a, z in pairs.epoch():
            lam = beta.sample((len(local),))
            partner = torch.randperm(len(local), device=device)
            lam_col = lam[:, None]
            x_mix = lam_col * x[local] + (1 - lam_col) * x[local][partner]
            e = module.annotator_embedding(a)
            e_mix = lam_col * e + (1 - lam_col) * e[partner]
            logits, embedding = module.gt_model(x_mix)
            log_conf = module.annotator_head(embedding.detach(), e_mix)
            log_annot = torch.logsumexp(F.log_softmax(logits, 1)[:, :, None] + log_conf, 1)
            own = log_annot.gather(1, z[:, None])[:, 0]
            other = log_annot.gather(1, z[partner][:, None])[:, 0]
            loss = -(lam * own + (1 - lam) * other).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return module


def fit_floor_crowd_layer(X, Z, seed, device="cpu", epochs=EPOCHS, optimizer_class=torch.optim.RAdam):
    """A bare PyTorch loop of the crowd layer: the same network, step and loss, nothing else.

    skannot's MLP with its dropout masks, a (M, C, C) crowd-layer tensor
    initialised to the identity, ``softmax(p @ W[m])`` for every instance and
    annotator in one product, the cross-entropy of the observed labels,
    ``optimizer_class`` (``torch.optim.RAdam``) and the cosine schedule.
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    n_classes, n_annotators = int(Z.max()) + 1, Z.shape[1]
    pairs = FloorPairs(X, Z, device)
    gt = MLP(X.shape[1], n_classes, HIDDEN, 0.5, True).to(device)
    for part in gt.modules():
        if hasattr(part, "use_fast_paths"):
            part.use_fast_paths({"byte_masks"})
    weight = nn.Parameter(torch.eye(n_classes, device=device).repeat(n_annotators, 1, 1))
    optimizer = optimizer_class([*gt.parameters(), weight], lr=LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    gt.train()
    for _ in range(epochs):
        for x, local, a, z in pairs.epoch():
            class_proba = F.softmax(gt(x)[0], dim=1)
            table = weight.permute(1, 0, 2).reshape(n_classes, n_annotators * n_classes)
            annotation_logits = (class_proba @ table).view(len(x), n_annotators, n_classes)[local, a]
            loss = F.cross_entropy(annotation_logits, z)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return gt


class TorchMLP(nn.Module):
    """The GT network as a scikit-activeml user writes it: stock torch layers, ``nn.Dropout``."""

    def __init__(self, n_features, n_classes, hidden_sizes=HIDDEN, dropout=0.5):
        super().__init__()
        layers, width = [], n_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        embedding = self.body(x)
        return self.head(embedding), embedding


def skactiveml_net_params(X, n_classes, epochs, device):
    """scikit-activeml's skorch settings for the paper's GT network and training recipe."""
    from skorch.callbacks import LRScheduler

    return {
        "module__n_features": X.shape[1],
        "module__n_classes": n_classes,
        "module__hidden_sizes": HIDDEN,
        "max_epochs": epochs,
        "batch_size": BATCH,
        "optimizer": torch.optim.RAdam,
        "lr": LR,
        "device": device,
        "verbose": 0,
        "callbacks": [
            ("lr_scheduler", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs))
        ],
    }


def fit_skactiveml(X, Z, seed, device="cpu", epochs=EPOCHS, gt_module=TorchMLP):
    """scikit-activeml 1.0.1 configured like skannot's defaults.

    The same GT architecture (``TorchMLP``, or skannot's ``MLP`` with
    ``gt_module=MLP``), instance-dependent annotator model with
    sample and annotator embeddings of 128, one hidden layer of 128 (its own
    head: batch norm and SiLU; dropout set to 0 as skannot's head has none),
    eta 0.9, alpha 1, RAdam with lr 1e-2, cosine schedule, 50 epochs, batch 64.
    It does not seed torch itself, so this does.
    """
    torch.manual_seed(seed)
    n_classes = int(Z.max()) + 1
    clf = SkActiveMLAnnotMix(
        clf_module=gt_module,
        alpha=1.0,
        sample_embed_dim=128,
        annotator_embed_dim=128,
        hidden_dim=128,
        n_hidden_layers=1,
        hidden_dropout=0.0,
        eta=0.9,
        classes=np.arange(n_classes),
        missing_label=-1,
        random_state=seed,
        neural_net_param_dict=skactiveml_net_params(X, n_classes, epochs, device),
    )
    clf.fit(X, Z)
    return clf


def fit_skannot_crowd_layer(X, Z, seed, device="cpu", epochs=EPOCHS):
    """skannot's crowd layer with its defaults (the paper's settings)."""
    from skannot import CrowdLayerClassifier

    return CrowdLayerClassifier(max_epochs=epochs, random_state=seed, device=device).fit(X, Z)


def fit_skactiveml_crowd_layer(X, Z, seed, device="cpu", epochs=EPOCHS):
    """scikit-activeml 1.0.1's crowd layer with the same GT network and training settings."""
    torch.manual_seed(seed)
    n_classes = int(Z.max()) + 1
    clf = SkActiveMLCrowdLayer(
        clf_module=TorchMLP,
        classes=np.arange(n_classes),
        missing_label=-1,
        random_state=seed,
        neural_net_param_dict=skactiveml_net_params(X, n_classes, epochs, device),
    )
    clf.fit(X, Z)
    return clf


# -- parts -----------------------------------------------------------------


class FusedMLP(torch.autograd.Function):
    """skannot's MLP in training mode as one autograd node, with its backward written by hand.

    ``apply(x, masks, momentum, eps, *params)`` with one dropout mask per
    hidden block and ``params`` per block ``(weight, bias, bn_weight,
    bn_bias, running_mean, running_var)``, then the head's weight and bias;
    returns ``(logits, embedding)``, as :class:`skannot._nn.MLP` does, and
    updates the running statistics as batch normalisation does.
    """

    @staticmethod
    def forward(ctx, x, masks, momentum, eps, *params):
        saved, h = [x], x
        for k, mask in enumerate(masks):
            weight, bias, gamma, beta, running_mean, running_var = params[6 * k : 6 * k + 6]
            pre = torch.addmm(bias, h, weight.t())
            y, mean, invstd = torch.native_batch_norm(
                pre, gamma, beta, running_mean, running_var, True, momentum, eps
            )
            r = torch.relu(y)
            h = r * mask
            saved += [pre, mean, invstd, mask, h, r]
        logits = torch.addmm(params[-1], h, params[-2].t())
        ctx.save_for_backward(*saved, *params)
        ctx.n_blocks, ctx.eps = len(masks), eps
        ctx.set_materialize_grads(False)
        return logits, h

    @staticmethod
    def backward(ctx, g_logits, g_embedding):
        n, saved = ctx.n_blocks, ctx.saved_tensors
        blocks = [saved[1 + 6 * k : 7 + 6 * k] for k in range(n)]
        params = saved[1 + 6 * n :]
        grads = [None] * len(params)
        grads[-2], grads[-1] = g_logits.t().mm(blocks[-1][4]), g_logits.sum(0)
        g_h = g_logits.mm(params[-2])
        if g_embedding is not None:
            g_h = g_h + g_embedding
        for k in reversed(range(n)):
            pre, mean, invstd, mask, _, r = blocks[k]
            weight, _, gamma, _, running_mean, running_var = params[6 * k : 6 * k + 6]
            g_y = torch.ops.aten.threshold_backward(g_h * mask, r, 0)
            g_pre, grads[6 * k + 2], grads[6 * k + 3] = torch.ops.aten.native_batch_norm_backward(
                g_y, pre, gamma, running_mean, running_var, mean, invstd, True, ctx.eps, [True, True, True]
            )
            grads[6 * k] = g_pre.t().mm(saved[0] if k == 0 else blocks[k - 1][4])
            grads[6 * k + 1] = g_pre.sum(0)
            if k > 0:
                g_h = g_pre.mm(weight)
        return (None, None, None, None, *grads)


def fused_mlp_forward(mlp, x):
    """:class:`FusedMLP` on ``mlp`` (skannot's MLP with batch norm and dropout), in training mode."""
    layers, masks, params = list(mlp.body), [], []
    for linear, norm, _, dropout in zip(*[iter(layers)] * 4):
        masks.append(dropout.mask((len(x), linear.out_features), x.device))
        params += [linear.weight, linear.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var]
        norm.num_batches_tracked += 1
    norm = layers[1]
    return FusedMLP.apply(x, masks, norm.momentum, norm.eps, *params, mlp.head.weight, mlp.head.bias)


def part_fused_mlp(args):
    n_features, n_classes = 124, 10
    steps = 50 if args.quick else 400
    rows = []
    for n_rows in (64, 270):
        torch.manual_seed(0)
        nets = {"torch layers and autograd": MLP(n_features, n_classes, HIDDEN)}
        nets["one autograd function, hand-written backward"] = MLP(n_features, n_classes, HIDDEN)
        nets["one autograd function, hand-written backward"].load_state_dict(
            nets["torch layers and autograd"].state_dict()
        )
        forward = {"torch layers and autograd": lambda net, x: net(x)}
        forward["one autograd function, hand-written backward"] = fused_mlp_forward
        x, w = torch.randn(n_rows, n_features), torch.randn(n_rows, n_classes)
        grads = {}
        for name, net in nets.items():
            net.train()
            for part in net.modules():
                if hasattr(part, "use_fast_paths"):
                    part.use_fast_paths({"byte_masks"})
                    part.use_generator(torch.Generator().manual_seed(1))
            logits, _ = forward[name](net, x)
            (logits * w).sum().backward()
            grads[name] = [p.grad.clone() for p in net.parameters()]
        same = all(torch.equal(a, b) for a, b in zip(*grads.values()))
        times = {name: [] for name in nets}
        for run in range(2 * args.runs):
            for name in list(nets)[run % 2 :] + list(nets)[: run % 2]:
                net = nets[name]
                start = time.process_time()
                for _ in range(steps):
                    logits, _ = forward[name](net, x)
                    (logits * w).sum().backward()
                times[name].append((time.process_time() - start) / steps * 1e6)
        unit = np.median(times["torch layers and autograd"])
        for name, t in times.items():
            rows.append(
                (
                    str(n_rows),
                    name,
                    f"{np.median(t):.0f}",
                    f"{np.median(t) / unit:.2f}",
                    "yes" if same else "NO",
                )
            )
    return table(
        f"GT network's training step alone (forward and backward), "
        f"medians over {2 * args.runs} alternating runs",
        ["rows", "implementation", "CPU us per step", "/ torch", "same gradients"],
        rows,
    )


def timed(fn, *args, **kwargs):
    """Wall-clock and CPU seconds of one call, and its result.

    CPU time of this process is reported next to wall time because on a
    shared machine the wall time also counts the waits for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - wall, time.process_time() - cpu), out


class EpochTimer(Callback):
    """Record each epoch's CPU seconds in the history as ``cpu``."""

    def on_epoch_begin(self, net, **kwargs):
        self.start = time.process_time()

    def on_epoch_end(self, net, **kwargs):
        net.history.record("cpu", time.process_time() - self.start)


def part_music(args):
    contenders = {"skannot": fit_skannot, "bare PyTorch loop (floor)": fit_floor}
    if SkActiveMLAnnotMix is None:
        print("scikit-activeml is not installed: its rows are skipped (pip install 'skannot[bench]').")
    else:
        contenders["scikit-activeml 1.0.1"] = fit_skactiveml
        contenders["scikit-activeml 1.0.1 with skannot's MLP"] = partial(fit_skactiveml, gt_module=MLP)
    return alternating(args, contenders, "Music Genres (annot-mix)")


def part_crowd_layer(args):
    contenders = {
        "skannot": fit_skannot_crowd_layer,
        "bare PyTorch loop (floor)": fit_floor_crowd_layer,
        "bare loop, skannot's FlatRAdam": partial(fit_floor_crowd_layer, optimizer_class=FlatRAdam),
    }
    if SkActiveMLCrowdLayer is None:
        print("scikit-activeml is not installed: its rows are skipped (pip install 'skannot[bench]').")
    else:
        contenders["scikit-activeml 1.0.1"] = fit_skactiveml_crowd_layer
    return alternating(args, contenders, "Music Genres (crowd layer)")


def alternating(args, contenders, title):
    """Median fit times of ``contenders`` on Music Genres, run in rotating order; the first is the unit."""
    X, Z = music_genres(args.data)
    epochs = 5 if args.quick else EPOCHS
    times = {name: [] for name in contenders}
    names = list(contenders)
    for name in names:  # the first fit of each kind pays one-off imports and warm-ups: not timed
        contenders[name](X, Z, 0, args.device, 1)
    for run in range(args.runs):
        # Rotate the order so no contender always runs first (warm caches, a quiet machine).
        for name in names[run % len(names) :] + names[: run % len(names)]:
            seconds, _ = timed(contenders[name], X, Z, run, args.device, epochs)
            times[name].append(seconds)
            print(f"  {title} run {run} {name}: wall {seconds[0]:.2f} s, cpu {seconds[1]:.2f} s", flush=True)
    wall, cpu = (np.median([t[i] for t in times[names[0]]]) for i in (0, 1))
    rows = []
    for name, t in times.items():
        w, c = np.median([x[0] for x in t]), np.median([x[1] for x in t])
        rows.append((name, f"{w:.2f}", f"{w / wall:.2f}", f"{c:.2f}", f"{c / cpu:.2f}"))
    return table(
        f"{title}, {epochs} epochs, medians over {args.runs} alternating runs",
        ["method", "fit wall s", "wall / skannot", "fit CPU s", "CPU / skannot"],
        rows,
    )


def epoch_seconds(X, Z, device, epochs):
    """Median wall and CPU seconds of the epochs of one fit, and the whole fit's wall and CPU seconds."""
    whole, clf = timed(fit_skannot, X, Z, 0, device, epochs, callbacks=[EpochTimer()])
    return float(np.median(clf.history_[:, "dur"])), float(np.median(clf.history_[:, "cpu"])), whole, clf


def part_annotators(args):
    n = 5_000 if args.quick else 20_000
    counts = (10, 100, 1_000, 5_000)
    data = {m: synthetic(n, m) for m in counts}
    results = {m: [] for m in counts}
    sk = {m: [] for m in counts}
    sparse = {}
    for run in range(args.scaling_runs):
        for m in counts[run % len(counts) :] + counts[: run % len(counts)]:
            *seconds, clf = epoch_seconds(*data[m], args.device, args.epochs)
            results[m].append(seconds)
            sparse[m] = "yes" if clf.sparse_annotator_updates_ else "no"
            print(f"  run {run} M={m}: epoch wall/cpu {seconds[0]:.2f}/{seconds[1]:.2f} s", flush=True)
            if SkActiveMLAnnotMix is not None and args.skactiveml_scaling:
                (wall, cpu), _ = timed(fit_skactiveml, *data[m], 0, args.device, 1)
                sk[m].append(cpu)
                print(f"  run {run} M={m}: scikit-activeml 1 epoch cpu {cpu:.2f} s", flush=True)
    rows = []
    base = np.median([r[1] for r in results[counts[0]]])
    sk_base = np.median(sk[counts[0]]) if sk[counts[0]] else None
    for m in counts:
        wall, cpu = (np.median([r[i] for r in results[m]]) for i in (0, 1))
        whole = np.median([r[2][1] for r in results[m]])
        row = [f"{m:,}", sparse[m], f"{wall:.2f}", f"{cpu:.2f}", f"{cpu / base:.2f}", f"{whole:.1f}"]
        if sk_base:
            row += [f"{np.median(sk[m]):.2f}", f"{np.median(sk[m]) / sk_base:.2f}"]
        rows.append(row)
    header = ["annotators M", "sparse table updates", "epoch wall s", "epoch CPU s", "CPU vs M=10"]
    header.append(f"whole fit CPU s ({args.epochs} epochs)")
    if sk_base:
        header += ["scikit-activeml 1-epoch fit CPU s", "vs M=10"]
    return table(
        f"{n:,} samples x 124 features, 10 classes, 3 labels per sample, medians of {args.scaling_runs}",
        header,
        rows,
    )


def part_samples(args):
    sizes = (5_000, 20_000, 50_000) if args.quick else (20_000, 100_000, 500_000)
    rows = []
    for n in sizes:
        if n == sizes[-1]:
            # The largest fit runs once, in the subprocess that also measures its memory.
            big = big_fit(args)
            n_labels, wall, cpu = big["labels"], big["epoch wall"], big["epoch cpu"]
        else:
            X, Z = synthetic(n, 100)
            n_labels = int((Z >= 0).sum())
            wall, cpu, _, _ = epoch_seconds(X, Z, args.device, args.epochs)
            del X, Z
        rows.append([f"{n:,}", f"{n_labels:,}", f"{wall:.2f}", f"{cpu:.2f}", f"{1e6 * cpu / n_labels:.1f}"])
        print(f"  n={n}: {rows[-1]}", flush=True)
    return table(
        f"100 annotators, 3 labels per sample ({args.epochs} epochs; 1 for the largest)",
        ["samples n", "labels", "epoch wall s", "epoch CPU s", "CPU s per 1M labels"],
        rows,
    )


_BIG_FIT = {}


def big_fit(args):
    """One epoch on the largest synthetic case in a fresh subprocess (cached for the two parts)."""
    if not _BIG_FIT:
        n = 50_000 if args.quick else 500_000
        with tempfile.TemporaryDirectory() as folder:
            X, Z = synthetic(n, 100)
            np.save(Path(folder) / "X.npy", X)
            np.save(Path(folder) / "Z.npy", Z)
            _BIG_FIT.update(n=n, labels=int((Z >= 0).sum()), data=X.nbytes + Z.nbytes)
            _BIG_FIT["compact"] = X.nbytes + _BIG_FIT["labels"] * 2 * 8
            del X, Z
            before, peak, wall, cpu, epoch_wall, epoch_cpu = run_child("fit", folder, args.device)
        _BIG_FIT.update(
            before=before, peak=peak, wall=wall, cpu=cpu, **{"epoch wall": epoch_wall, "epoch cpu": epoch_cpu}
        )
    return _BIG_FIT


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(kind, folder, device):
    """Run in a fresh interpreter: load arrays without temporaries, then measure one call."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    # A tiny fit first: the first optimizer of a process imports torch._dynamo (about 100 MiB
    # of code), a one-off cost that is not the memory a fit needs for its data.
    X_small, Z_small = synthetic(2_000, 10)
    clf = fit_skannot(X_small, Z_small, 0, device, 1)
    X = np.load(Path(folder) / "X.npy")
    if kind == "fit":
        Z = np.load(Path(folder) / "Z.npy")
        before = _rss_bytes()
        (wall, cpu), clf = timed(fit_skannot, X, Z, 0, device, 1, callbacks=[EpochTimer()])
        print(before, _peak_rss_bytes(), wall, cpu, clf.history_[-1, "dur"], clf.history_[-1, "cpu"])
    else:
        clf.predict_proba(X[:10])
        before = _rss_bytes()
        (seconds, _), proba = timed(clf.predict_proba, X)
        print(before, _peak_rss_bytes(), seconds, proba.nbytes)


def run_child(kind, folder, device):
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, folder, "--device", device],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_THREADS": str(torch.get_num_threads())},
    )
    return [float(v) for v in out.stdout.split()]


def part_memory(args):
    big = big_fit(args)
    added = (big["peak"] - big["before"]) / 2**20
    data_mb, compact_mb = big["data"] / 2**20, big["compact"] / 2**20
    rows = [
        [
            f"{big['n']:,}",
            f"{data_mb:.0f}",
            f"{compact_mb:.0f}",
            f"{added:.0f}",
            f"{added / data_mb:.2f}",
            f"{big['wall']:.0f} / {big['cpu']:.0f}",
        ]
    ]
    return table(
        "Peak memory of fit (1 epoch), 100 annotators, 3 labels per sample",
        [
            "samples",
            "X + Z MiB",
            "X + labels as CSR MiB",
            "peak RSS added MiB",
            "added / (X + Z)",
            "fit wall / CPU s",
        ],
        rows,
    )


def part_predict(args):
    n = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        X = np.random.default_rng(1).standard_normal((n, 124), dtype=np.float32)
        np.save(Path(folder) / "X.npy", X)
        x_mb = X.nbytes / 2**20
        del X
        before, peak, seconds, out_bytes = run_child("predict", folder, args.device)
    rows = [
        [
            f"{n:,}",
            f"{n / seconds:,.0f}",
            f"{x_mb:.0f}",
            f"{out_bytes / 2**20:.0f}",
            f"{(peak - before) / 2**20:.0f}",
        ]
    ]
    return table(
        "predict_proba (10 classes, 124 features)",
        ["rows", "rows / s", "X MiB", "output MiB", "peak RSS added MiB"],
        rows,
    )


def table(title, header, rows):
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(device):
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    text = f"{os.cpu_count()} CPUs ({model}), {torch.get_num_threads()} torch threads"
    text += f", torch {torch.__version__}"
    if device.startswith("cuda"):
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


PARTS = {
    "music": part_music,
    "crowd_layer": part_crowd_layer,
    "fused_mlp": part_fused_mlp,
    "annotators": part_annotators,
    "samples": part_samples,
    "memory": part_memory,
    "predict": part_predict,
}


def main():
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        _child(sys.argv[i + 1], sys.argv[i + 2], sys.argv[sys.argv.index("--device") + 1])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=None,
        help="folder with the three Music Genres CSVs (default: the data home, $SKANNOT_DATA)",
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of " + ",".join(PARTS))
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of the music part")
    parser.add_argument("--scaling-runs", type=int, default=3, help="alternating runs of the annotators part")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per synthetic fit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument(
        "--skactiveml-scaling", action="store_true", help="also time scikit-activeml in the annotators part"
    )
    parser.add_argument(
        "--out",
        default="docs/performance.md",
        help="page whose speed-PART markers receive each part's table ('' to skip; never with --quick)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command, where = f"python {' '.join(sys.argv)}", machine(args.device)
    print(f"Command: {command}")
    print(f"Machine: {where}", flush=True)
    for name in args.parts.split(","):
        print()
        text = PARTS[name](args)
        print(text, flush=True)
        if args.out and not args.quick:
            write_block(args.out, f"speed-{name}", run_block(text, command, where), required=False)


if __name__ == "__main__":
    main()
