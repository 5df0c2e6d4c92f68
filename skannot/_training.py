"""Training machinery shared by the family: batches of observed pairs and the skorch net.

One training step (see :meth:`CrowdNet.train_step_single`):

1. a batch of instances ``x`` (B, F) and the observed pairs of those instances
   as ``(rows, annotators, labels)``, each of shape (P,);
2. for methods with mixup and ``alpha > 0``, a weight ``lambda ~ Beta(alpha,
   alpha)`` and a random partner pair for every pair (:meth:`CrowdNet.mixing_weights`);
3. with ``sample_weight`` or ``class_weight``, the pairs' weights (P,), mixed
   like their labels for mixup pairs (``lam * w + (1 - lam) * w[partner]``);
4. the method's module computes the batch's loss
   (:meth:`skannot._nn.CrowdModule.training_loss`), each pair's term scaled by
   its weight.

Everything is tensor operations on whole batches; no Python loop runs over
samples, annotators or pairs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch import nn
from torch.utils.data import Dataset

from ._fast import FlatRAdam, RowSparseAdam, flat_radam_applies
from .exceptions import TrainingDivergedError


class CrowdDataset(Dataset):
    """Instances with their observed annotations in CSR form.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        Instances.
    annotations : Annotations
        Observed labels of the rows of ``X`` (see ``skannot._validation``).
    weights : array-like of shape (n_labels,), optional
        Non-negative weight of each label's loss, in the CSR order of
        ``annotations``; rescaled to mean 1, so that only their ratios
        matter and the learning rate keeps its meaning. Batches then carry a
        fourth pair tensor, the weights.
    """

    def __init__(self, X, annotations, weights=None):
        self.X = X
        self.indptr = torch.as_tensor(annotations.indptr, dtype=torch.long)
        self.annotators = torch.as_tensor(annotations.annotators, dtype=torch.long)
        self.labels = torch.as_tensor(annotations.labels, dtype=torch.long)
        self.weights = None
        if weights is not None:
            weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            self.weights = (weights / weights.mean()).float()

    def __len__(self):
        return len(self.X)

    def batch(self, rows):
        """Instances ``rows`` and their observed pairs.

        Parameters
        ----------
        rows : LongTensor of shape (B,)
            Sample indices.

        Returns
        -------
        x : Tensor of shape (B, n_features)
        pairs : tuple of three LongTensors of shape (P,)
            ``(local_rows, annotators, labels)``: position of the pair's
            instance within ``x``, the annotator and the class index; with
            weights, a fourth float Tensor (P,) of the pairs' weights.
        """
        if len(rows) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            weights = () if self.weights is None else (torch.zeros(0),)
            return self.X[rows], (empty, empty, empty, *weights)
        return next(self._chunk_batches(rows, len(rows)))

    def batches(self, order, batch_size, batches_per_chunk=256):
        """``batch(rows)`` for consecutive chunks of ``order``, with the pair indexing done in bulk.

        The positions of the pairs are computed for ``batches_per_chunk``
        batches at a time, which costs fewer tensor operations than batch by
        batch and keeps the extra memory bounded (four int64 numbers per
        label of the chunk).

        Parameters
        ----------
        order : LongTensor of shape (n,)
            Sample indices in the order of the epoch.
        batch_size : int
        batches_per_chunk : int, default=256

        Yields
        ------
        x, pairs
            As :meth:`batch` returns them for ``order[i:i + batch_size]``,
            ``i = 0, batch_size, ...``.
        """
        for chunk in torch.split(order, batch_size * batches_per_chunk):
            yield from self._chunk_batches(chunk, batch_size)

    def _chunk_batches(self, order, batch_size):
        starts = self.indptr[order]
        counts = self.indptr[order + 1] - starts
        ends = torch.cumsum(counts, 0)
        # Each pair's instance within its batch, and its position in the CSR arrays.
        local_rows = torch.repeat_interleave(torch.arange(len(order)) % batch_size, counts)
        n_pairs = int(ends[-1]) if len(order) else 0
        positions = torch.arange(n_pairs) + torch.repeat_interleave(starts - (ends - counts), counts)
        annotators, labels = self.annotators[positions], self.labels[positions]
        weights = None if self.weights is None else self.weights[positions]
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), ends[batch_size - 1 :: batch_size]]).tolist()
        if len(order) % batch_size:
            bounds.append(n_pairs)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            rows = order[i * batch_size : (i + 1) * batch_size]
            pairs = (local_rows[lo:hi], annotators[lo:hi], labels[lo:hi])
            yield self.X[rows], pairs if weights is None else (*pairs, weights[lo:hi])


class PairBatchIterator:
    """Iterate over a :class:`CrowdDataset` in batches of instances.

    Batches are cut from one (optionally shuffled) index tensor and gathered
    with tensor indexing, instead of collating single items.

    Parameters
    ----------
    dataset : CrowdDataset
    batch_size : int
    shuffle : bool, default=False
        Draw a new order each epoch. A trailing batch of one instance is then
        dropped, since batch normalisation cannot train on a single row;
        reshuffling gives that instance its turn in other epochs.
    generator : torch.Generator, optional
        CPU generator of the orders; torch's global one by default.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def _n_rows(self):
        n = len(self.dataset)
        if self.shuffle and n > 1 and n % self.batch_size == 1:
            return n - 1
        return n

    def __len__(self):
        return -(-self._n_rows() // self.batch_size)

    def _order(self):
        """The epoch's order of instances: a fresh permutation when shuffling."""
        n = len(self.dataset)
        return torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)

    def __iter__(self):
        yield from self.dataset.batches(self._order()[: self._n_rows()], self.batch_size)


class _NoCriterion(nn.Module):
    """Stands in for skorch's criterion: each method's module computes its own loss."""

    def forward(self, *args, **kwargs):
        raise RuntimeError("The loss is computed by the module's training_loss.")


class CrowdNet(NeuralNet):
    """skorch net that trains a :class:`~skannot._nn.CrowdModule` on batches of observed pairs.

    It is built and owned by the estimators of the family; its ``module`` is
    an initialised ``CrowdModule`` and its data a :class:`CrowdDataset`.

    Parameters
    ----------
    alpha : float, default=0.0
        Beta(alpha, alpha) concentration of the mixing weights, for modules
        that support mixup; 0 disables mixup.
    sparse_annotators : bool, default=False
        Train the module's ``annotator_embedding`` table (whose ``sparse``
        flag must be set) with :class:`torch.optim.SparseAdam`, which
        updates only the rows of the annotators in the batch, at the
        learning rate the main optimizer has at that step. The main
        optimizer trains all the rest.
    fast_paths : frozenset of str, default=frozenset()
        The CPU fast paths to use (see :mod:`skannot._fast`): here
        ``flat_radam``, ``row_sparse_adam`` and ``mode_cache``.
    mixed_precision : bool, default=False
        Run the forward passes of training steps under bfloat16 autocast;
        the loss is computed in float32.
    compile_step : bool, default=False
        Run the forward part of each training step through ``torch.compile``
        (with dynamic shapes, as the number of pairs varies per batch).
    seed : int, default=0
        Seed of the net's own generators (see :mod:`skannot._random`): the
        order of the instances, the mixing weights and partners and the
        dropout masks come from them, never from torch's global generator.
    *args, **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    # skorch pickles the attributes starting with these prefixes with a device mapping, so that a
    # GPU-trained net unpickles without CUDA. It registers module_, criterion_ and optimizer_,
    # but the ``module`` argument is the very instance that became ``module_``, and the
    # learning-rate scheduler in ``callbacks``/``callbacks_`` holds the optimizer: without these
    # two prefixes, their GPU tensors would be pickled again without the mapping.
    cuda_dependent_attributes_ = ["module", "callbacks"]

    def __init__(
        self,
        *args,
        criterion=_NoCriterion,
        alpha=0.0,
        sparse_annotators=False,
        fast_paths=frozenset(),
        mixed_precision=False,
        compile_step=False,
        seed=0,
        **kwargs,
    ):
        super().__init__(*args, criterion=criterion, **kwargs)
        self.alpha = alpha
        self.sparse_annotators = sparse_annotators
        self.fast_paths = fast_paths
        self.mixed_precision = mixed_precision
        self.compile_step = compile_step
        self.seed = seed

    def initialize(self):
        super().initialize()
        return self._initialize_generators()

    def _initialize_generators(self):
        """The net's own generators, seeded with ``seed``, and the dropout layers drawing from them."""
        device = self._generator_device()
        self.cpu_generator_ = torch.Generator().manual_seed(self.seed)
        self.device_generator_ = (
            self.cpu_generator_ if device.type == "cpu" else torch.Generator(device).manual_seed(self.seed)
        )
        self.numpy_generator_ = np.random.default_rng(self.seed)
        for layer in self.module_.modules():
            if hasattr(layer, "use_generator"):
                layer.use_generator(self.device_generator_)
        return self

    def _generator_device(self):
        """The device the training steps draw their random numbers on."""
        return torch.device(self.device)

    def get_iterator(self, dataset, training=False):
        if not training:
            return super().get_iterator(dataset, training=training)
        kwargs = {"batch_size": self.batch_size, **self.get_params_for("iterator_train")}
        return self.iterator_train(dataset, **kwargs, generator=self.cpu_generator_)

    def initialize_optimizer(self, *args, **kwargs):
        table = "annotator_embedding.weight"
        named = [
            (n, p) for n, p in self.get_all_learnable_params() if not (self.sparse_annotators and n == table)
        ]
        opt_args, opt_kwargs = self.get_params_for_optimizer("optimizer", named)
        optimizer = self.optimizer
        params = [p for group in opt_args[0] for p in group["params"]]
        if "flat_radam" in self.fast_paths and flat_radam_applies(optimizer, opt_kwargs, params):
            # The same update on one buffer per parameter group: see skannot._fast.
            optimizer = FlatRAdam
        self.optimizer_ = optimizer(*opt_args, **opt_kwargs)
        if self.sparse_annotators:
            sparse = RowSparseAdam if "row_sparse_adam" in self.fast_paths else torch.optim.SparseAdam
            self.annotator_optimizer_ = sparse(
                [self.module_.annotator_embedding.weight], lr=self.optimizer_.param_groups[0]["lr"]
            )
        return self

    def _step_optimizer(self, step_fn):
        # skorch would call the closure once per optimizer; run it once, then step the table.
        self.optimizer_.step(step_fn)
        if self.sparse_annotators:
            self.annotator_optimizer_.param_groups[0]["lr"] = self.optimizer_.param_groups[0]["lr"]
            self.annotator_optimizer_.step()

    def mixing_weights(self, n_pairs, device):
        """``lambda ~ Beta(alpha, alpha)`` and a random partner for each of ``n_pairs``, drawn by the net."""
        generator = self.device_generator_
        if self.alpha == 1:
            # Beta(1, 1) is the uniform distribution; drawing it directly skips the
            # two gamma samples (a tenth of a CPU step on Music Genres).
            lam = torch.rand(n_pairs, device=device, generator=generator)
        else:
            # torch's Beta sampler takes no generator; numpy's does.
            lam = self.numpy_generator_.beta(self.alpha, self.alpha, n_pairs).astype(np.float32)
            lam = torch.from_numpy(lam).to(device)
        partner = torch.randperm(n_pairs, device=device, generator=generator)
        return lam, partner

    def uses_mixup(self):
        """Whether training steps draw mixing weights."""
        return self.alpha > 0 and self.module_.supports_mixup

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        x, pairs = batch
        device = self.device
        x = x.to(device, non_blocking=True)
        rows, annotators, labels, *weights = (t.to(device, non_blocking=True) for t in pairs)
        lam, partner = self.mixing_weights(len(rows), x.device) if self.uses_mixup() else (None, None)
        options = pair_weight_options(weights, lam, partner)
        forward = self.module_.training_loss
        if self.compile_step:
            forward = self.__dict__.get("_compiled_loss")
            if forward is None:
                forward = self.__dict__["_compiled_loss"] = torch.compile(
                    self.module_.training_loss, dynamic=True
                )
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            loss, logits = forward(x, rows, annotators, labels, lam, partner, **options)
        loss.backward()
        return {"loss": loss, "y_pred": logits}

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_compiled_loss", None)
        state.pop("_training_modules", None)
        # A GPU generator cannot be restored without CUDA; a later fit builds a new net anyway.
        for name in ("cpu_generator_", "device_generator_", "numpy_generator_"):
            state.pop(name, None)
        return state

    def _set_training(self, training=True):
        # skorch switches every module to training mode before each step, a recursive
        # call through the module tree that costs a few per cent of a small network's
        # CPU step. When every module is in training mode already and none overrides
        # ``train``, that call changes nothing, and checking a cached list is cheaper.
        if training and "mode_cache" in self.fast_paths:
            modules = self._plain_modules()
            if modules is not None and all(m.training for m in modules):
                return
        super()._set_training(training)

    def _plain_modules(self):
        """Every module under the net's modules and criteria, or None if one has its own ``train``.

        The roots are those skorch's ``_set_training`` switches (``module_``,
        ``criterion_`` and any other registered one, such as the Accelerate
        net's ``pair_step_``). Cached until the roots change or the next
        epoch begins.
        """
        roots = tuple(getattr(self, name + "_") for name in self._modules + self._criteria)
        key = tuple(map(id, roots))
        cached = self.__dict__.get("_training_modules")
        if cached is None or cached[0] != key:
            modules = [m for root in roots if isinstance(root, nn.Module) for m in root.modules()]
            plain = all(type(m).train is nn.Module.train for m in modules)
            cached = self.__dict__["_training_modules"] = (key, modules if plain else None)
        return cached[1]

    def on_epoch_begin(self, net, **kwargs):
        # A callback may have added or replaced modules between epochs: list them again.
        self.__dict__.pop("_training_modules", None)
        return super().on_epoch_begin(net, **kwargs)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        # skorch has just stored the batch loss as a Python float, so this check
        # costs no extra device synchronisation.
        batches = self.history[-1]["batches"]
        loss = batches[-1]["train_loss"]
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"The training loss became {loss} in epoch {len(self.history)}, batch "
                f"{len(batches)}: training diverged. Lower lr (now {self.lr}) "
                "or standardise the features of X (e.g. with StandardScaler)."
            )

    def validation_step(self, batch, **fit_params):
        raise NotImplementedError("CrowdNet trains without an internal validation split (train_split=None).")


def pair_weight_options(weights, lam, partner):
    """The ``weights=`` option of a training loss: each pair's weight, mixed as its label is.

    Parameters
    ----------
    weights : list of Tensor
        Empty for an unweighted fit (so that a module whose ``training_loss``
        predates weights still trains), else the batch's pair weights (P,).
    lam, partner : Tensor of shape (P,) or None
        The mixing weights and partners of the step (None without mixup).

    Returns
    -------
    options : dict
        ``{}`` or ``{"weights": lam * w + (1 - lam) * w[partner]}`` (``w``
        itself without mixup).
    """
    if not weights:
        return {}
    (weights,) = weights
    return {"weights": weights if lam is None else lam * weights + (1 - lam) * weights[partner]}


def held_out_rows(annotations, n_classes, fraction, seed):
    """Positions of ``round(fraction * n_samples)`` samples to hold out, stratified by majority vote.

    The samples are ordered by their majority-vote label (ties to the first
    class), randomly within each label, and every ``1 / fraction``-th of
    that order is held out, so each label's share of the held-out samples
    matches its share of all samples to within one sample.

    Parameters
    ----------
    annotations : Annotations
        Observed labels; every sample has at least one.
    n_classes : int
    fraction : float in (0, 1)
    seed : int

    Returns
    -------
    held_out : ndarray of shape (n_held_out,)
        Sorted sample indices.

    Raises
    ------
    ValueError
        If that leaves no held-out sample or fewer than 2 training samples.
    """
    n_samples = annotations.n_samples
    n_held_out = int(round(fraction * n_samples))
    if n_held_out < 1 or n_samples - n_held_out < 2:
        raise ValueError(
            f"validation_fraction={fraction} of the {n_samples} labelled samples leaves {n_held_out} to "
            f"validate on and {n_samples - n_held_out} to train on; early_stopping needs at least 1 and 2. "
            "Change validation_fraction, or set early_stopping=False."
        )
    group = annotations.votes(n_classes).argmax(1)
    permutation = np.random.default_rng(seed).permutation(n_samples)
    order = permutation[np.argsort(group[permutation], kind="stable")]
    # Systematic sampling along the order: position j is taken when floor((j + 1) f) steps up.
    steps = np.floor(np.arange(n_samples + 1) * (n_held_out / n_samples) + 0.5)
    return np.sort(order[np.diff(steps) > 0])


class AnnotationValidation(Callback):
    """Scores the held-out annotations after each epoch; stops early and keeps the best epoch's weights.

    It records ``valid_loss`` (mean negative log-likelihood of the held-out
    annotations), ``valid_acc`` (their agreement with the predicted class)
    and ``valid_loss_best`` in the net's history, so that skorch's own
    ``EarlyStopping`` and ``Checkpoint`` can monitor them. It must come
    before those callbacks in the net's list.

    Parameters
    ----------
    scores : callable
        ``scores()`` returns ``(valid_loss, valid_acc)`` of the net's module now.
    n_iter_no_change : int, default=10
        Stop after this many epochs without a lower ``valid_loss``; the
        weights of the best epoch are loaded at the end of training.
    """

    def __init__(self, scores, n_iter_no_change=10):
        self.scores = scores
        self.n_iter_no_change = n_iter_no_change

    def initialize(self):
        self.best_loss_ = math.inf
        self.best_epoch_ = None
        self.best_state_ = None
        self.epochs_without_improvement_ = 0
        return self

    def on_epoch_end(self, net, **kwargs):
        loss, accuracy = self.scores()
        is_best = loss < self.best_loss_
        net.history.record("valid_loss", loss)
        net.history.record("valid_acc", accuracy)
        net.history.record("valid_loss_best", bool(is_best))
        if is_best:
            self.best_loss_, self.best_epoch_ = loss, len(net.history)
            self.epochs_without_improvement_ = 0
            self.best_state_ = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
        else:
            self.epochs_without_improvement_ += 1
            if self.epochs_without_improvement_ >= self.n_iter_no_change:
                # skorch ends the epoch loop on KeyboardInterrupt and still runs on_train_end.
                raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        if self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)
        # The held-out data and the saved weights are not kept with the fitted net.
        self.scores = None
        self.best_state_ = None


def inference_chunks(n_rows, chunk_size):
    """Start and stop of consecutive chunks covering ``range(n_rows)``."""
    starts = np.arange(0, n_rows, chunk_size)
    return zip(starts, np.minimum(starts + chunk_size, n_rows))
