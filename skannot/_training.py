"""Training machinery: batches of observed pairs, triple mixup, the loss, the skorch net.

One training step (see :meth:`AnnotMixNet.train_step_single`):

1. a batch of instances ``x`` (B, F) and the observed pairs of those instances
   as ``(rows, annotators, labels)``, each of shape (P,);
2. with ``alpha > 0``, every pair is mixed with a random partner pair of the
   same batch: instance features, annotator embeddings and one-hot labels
   with one ``lambda ~ Beta(alpha, alpha)`` per pair (:func:`mix_pairs`);
3. the GT model gives the logits of ``p(y | x~)`` and the detached embedding,
   the AP head the logits of ``P(z | x~, a~, y)``;
4. :class:`AnnotMixLoss` is the negative marginal log-likelihood of the mixed
   labels, averaged over pairs.

Everything is tensor operations on whole batches; no Python loop runs over
samples, annotators or pairs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn
from torch.utils.data import Dataset

from ._nn import mix
from ._optim import FlatRAdam, RowSparseAdam, flat_radam_applies
from .exceptions import TrainingDivergedError


class CrowdDataset(Dataset):
    """Instances with their observed annotations in CSR form.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        Instances.
    annotations : Annotations
        Observed labels of the rows of ``X`` (see ``skannot._validation``).
    """

    def __init__(self, X, annotations):
        self.X = X
        self.indptr = torch.as_tensor(annotations.indptr, dtype=torch.long)
        self.annotators = torch.as_tensor(annotations.annotators, dtype=torch.long)
        self.labels = torch.as_tensor(annotations.labels, dtype=torch.long)

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
            instance within ``x``, the annotator and the class index.
        """
        if len(rows) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return self.X[rows], (empty, empty, empty)
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
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), ends[batch_size - 1 :: batch_size]]).tolist()
        if len(order) % batch_size:
            bounds.append(n_pairs)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            rows = order[i * batch_size : (i + 1) * batch_size]
            yield self.X[rows], (local_rows[lo:hi], annotators[lo:hi], labels[lo:hi])


class PairBatchIterator:
    """Iterate over a :class:`CrowdDataset` in batches of instances.

    Batches are cut from one (optionally shuffled) index tensor and gathered
    with tensor indexing, instead of collating single items.

    Parameters
    ----------
    dataset : CrowdDataset
    batch_size : int
    shuffle : bool, default=False
        Draw a new order each epoch from torch's global generator. A trailing
        batch of one instance is then dropped, since batch normalisation cannot
        train on a single row; reshuffling gives that instance its turn in
        other epochs.
    """

    def __init__(self, dataset, batch_size, shuffle=False):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

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
        return torch.randperm(n) if self.shuffle else torch.arange(n)

    def __iter__(self):
        yield from self.dataset.batches(self._order()[: self._n_rows()], self.batch_size)


def mix_pairs(tensor, lam, partner):
    """Convex combination of each row with its partner row.

    Parameters
    ----------
    tensor : Tensor of shape (P, ...)
    lam : Tensor of shape (P,)
        Weight of the row itself.
    partner : LongTensor of shape (P,)
        Index of each row's partner.

    Returns
    -------
    mixed : Tensor of shape (P, ...)
        ``lam * tensor + (1 - lam) * tensor[partner]``.
    """
    return mix(tensor, tensor[partner], lam)


# The probability-space loss is accepted when its smallest row sum of shifted exponentials and its
# smallest annotation probability clear these bounds. A shifted exponential that underflows
# (below 1.2e-38 in float32) then stands for a confusion probability below 1.2e-23, so for up to
# 80,000 classes the terms lost change no annotation probability by more than 1e-7 of itself.
_MIN_ROW_SUM = 1e-15
_MIN_PROBA = 1e-11


def _label_columns(labels, partner_labels, n_classes):
    """Gather index (P, C, 2) of each pair's own and partner label in every row of its confusion matrix."""
    return torch.stack([labels, partner_labels], 1)[:, None, :].expand(-1, n_classes, 2)


class _ProbabilitySpaceLoss(torch.autograd.Function):
    """The annot-mix loss in probability space with a hand-written backward pass (CPU path).

    ``P(z | x, a) = p(. | x) @ P(. , z | x, a)`` for the two columns needed, from
    the softmax of the class logits (shifted by their row maxima) and the
    exponentials of the confusion logits shifted by their overall maximum.
    This takes a handful of kernels where the log-space form takes three
    ``logsumexp`` over short rows, which the CPU reduces slowly, and their
    autograd graph. Rows shifted by the overall maximum can underflow, so the
    function also returns whether the result is accurate: every row sum is
    at least ``_MIN_ROW_SUM`` (1e-15) and every annotation probability at
    least ``_MIN_PROBA`` (1e-11), so terms that underflowed change no
    probability by more than 1e-7 of itself. Otherwise :class:`AnnotMixLoss` uses the log-space form.
    """

    @staticmethod
    def forward(ctx, class_logits, confusion_logits, labels, partner_labels, lam, scale):
        n_classes = class_logits.shape[1]
        class_proba = (class_logits - class_logits.amax(1, keepdim=True)).exp_()
        class_proba.div_(class_proba.sum(1, keepdim=True))  # p(y | x), (P, C)
        shifted = (confusion_logits - confusion_logits.amax()).exp_()  # (P, C, C)
        row_sums = shifted.sum(2)
        inverse = row_sums.reciprocal()
        columns = _label_columns(labels, partner_labels, n_classes)
        column_proba = shifted.gather(2, columns).mul_(inverse[:, :, None])  # P(z_k | x, a, y), (P, C, 2)
        annotation_proba = torch.bmm(class_proba[:, None, :], column_proba)[:, 0]  # P(z_k | x, a), (P, 2)
        lam = lam.to(annotation_proba.dtype)
        weights = torch.stack([lam, 1 - lam], 1)
        loss = (weights * annotation_proba.log()).sum().mul_(-scale)
        accurate = (row_sums.amin() >= _MIN_ROW_SUM) & (annotation_proba.amin() >= _MIN_PROBA)
        ctx.mark_non_differentiable(accurate)
        ctx.save_for_backward(class_proba, shifted, inverse, column_proba, annotation_proba, weights, columns)
        ctx.scale = scale
        return loss, accurate

    @staticmethod
    def backward(ctx, grad, _):
        class_proba, shifted, inverse, column_proba, annotation_proba, weights, columns = ctx.saved_tensors
        grad_annotation = weights.div(annotation_proba).mul_(-ctx.scale * grad)  # (P, 2)
        grad_class_proba = torch.bmm(column_proba, grad_annotation[:, :, None])[:, :, 0]  # (P, C)
        grad_class = grad_class_proba.sub_((class_proba * grad_class_proba).sum(1, keepdim=True))
        grad_class.mul_(class_proba)
        # Softmax backward of each confusion row, whose upstream gradient is non-zero in two columns.
        column_term = (class_proba[:, :, None] * grad_annotation[:, None, :]).mul_(column_proba)
        grad_confusion = (shifted * inverse[:, :, None]).mul_(-column_term.sum(2, keepdim=True))
        grad_confusion.scatter_add_(2, columns, column_term)
        return grad_class, grad_confusion, None, None, None, None


class AnnotMixLoss(nn.Module):
    """Negative marginal log-likelihood of (mixed) annotations.

    For pair ``p`` with mixed one-hot label ``lam * e(z) + (1 - lam) * e(z')``::

        log P(z | x, a) = logsumexp_y [log p(y | x) + log P(z | x, a, y)]
        loss = -mean_p [lam_p log P(z_p | ...) + (1 - lam_p) log P(z'_p | ...)]

    Only the two columns ``z`` and ``z'`` of each confusion matrix are needed
    after its rows are normalised, so the (P, C, C) normalised matrices are
    never formed. On the CPU the loss is computed in probability space with
    a hand-written backward pass (:class:`_ProbabilitySpaceLoss`), about a
    third faster; when underflow could make that inaccurate (a pair whose
    labels are all but impossible under the model, or confusion logits
    spread over more than about 34 nats), and on other devices, it is computed in log
    space throughout: one ``logsumexp`` over the logits gives the row
    normalisers, which on the CPU is about three times faster than
    ``log_softmax`` over rows of C entries followed by a ``logsumexp`` over
    (P, C, C). Both give the same value and gradients up to rounding.
    """

    def forward(self, class_logits, confusion_logits, labels, partner_labels, lam, reduction="mean"):
        """
        Parameters
        ----------
        class_logits : Tensor of shape (P, C)
            Unnormalised ``log p(y | x)`` of each pair's (mixed) instance
            (log-probabilities are fine too: normalising is idempotent).
        confusion_logits : Tensor of shape (P, C, C)
            Unnormalised ``log P(z | x, a, y)``, normalised here over ``z``;
            row ``y``, column ``z``.
        labels, partner_labels : LongTensor of shape (P,)
            Class index of the pair's own label and of its partner's label.
        lam : Tensor of shape (P,)
            Mixing weight of the pair's own label.
        reduction : {"mean", "sum"}, default="mean"
            Average or sum over the pairs (a sum over no pairs is 0).

        Returns
        -------
        loss : scalar Tensor
        """
        n_pairs = len(class_logits)
        if class_logits.device.type == "cpu" and n_pairs:
            scale = 1.0 if reduction == "sum" else 1.0 / n_pairs
            loss, accurate = _ProbabilitySpaceLoss.apply(
                class_logits, confusion_logits, labels, partner_labels, lam, scale
            )
            if accurate:
                return loss
        return self.log_space(class_logits, confusion_logits, labels, partner_labels, lam, reduction)

    @staticmethod
    def log_space(class_logits, confusion_logits, labels, partner_labels, lam, reduction="mean"):
        """The loss computed in log space throughout, with autograd; the arguments of :meth:`forward`."""
        n_classes = class_logits.shape[1]
        log_class_proba = class_logits - torch.logsumexp(class_logits, 1, keepdim=True)
        # log p(y | x) - log sum_z exp(logit[y, z]): everything in log P(z | x, a) but the column.
        base = log_class_proba - torch.logsumexp(confusion_logits, 2)
        columns = _label_columns(labels, partner_labels, n_classes)
        log_annotation_proba = torch.logsumexp(base[:, :, None] + confusion_logits.gather(2, columns), 1)
        lam = lam.to(log_annotation_proba.dtype)
        per_pair = lam * log_annotation_proba[:, 0] + (1 - lam) * log_annotation_proba[:, 1]
        return -(per_pair.sum() if reduction == "sum" else per_pair.mean())


class AnnotMixNet(NeuralNet):
    """skorch net that trains an :class:`~skannot._nn.AnnotMixModule` with annot-mix.

    It is built and owned by :class:`skannot.AnnotMixClassifier`; its
    ``module`` is an initialised ``AnnotMixModule`` and its data a
    :class:`CrowdDataset`.

    Parameters
    ----------
    alpha : float
        Beta(alpha, alpha) concentration of the mixing weights; 0 disables mixup.
    sparse_annotators : bool, default=False
        Train the annotator embedding table (whose ``sparse`` flag must be
        set) with :class:`torch.optim.SparseAdam` (as ``skannot._optim.RowSparseAdam``,
        the same update done by row indexing), which updates only the rows
        of the annotators in the batch, at the learning rate the main
        optimizer has at that step. The main optimizer trains all the rest.
    mixed_precision : bool, default=False
        Run the forward passes of training steps under bfloat16 autocast;
        the loss is computed in float32.
    compile_step : bool, default=False
        Run the forward part of each training step through ``torch.compile``
        (with dynamic shapes, as the number of pairs varies per batch).
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
        self, *args, alpha=1.0, sparse_annotators=False, mixed_precision=False, compile_step=False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.sparse_annotators = sparse_annotators
        self.mixed_precision = mixed_precision
        self.compile_step = compile_step

    def initialize_optimizer(self, *args, **kwargs):
        table = "annotator_embedding.weight"
        named = [
            (n, p) for n, p in self.get_all_learnable_params() if not (self.sparse_annotators and n == table)
        ]
        opt_args, opt_kwargs = self.get_params_for_optimizer("optimizer", named)
        optimizer = self.optimizer
        params = [p for group in opt_args[0] for p in group["params"]]
        if flat_radam_applies(optimizer, opt_kwargs, params):
            # The same update on one buffer per parameter group: see skannot._optim.
            optimizer = FlatRAdam
        self.optimizer_ = optimizer(*opt_args, **opt_kwargs)
        if self.sparse_annotators:
            self.annotator_optimizer_ = RowSparseAdam(
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
        """``lambda ~ Beta(alpha, alpha)`` and a random partner for each of ``n_pairs``."""
        if self.alpha == 1:
            # Beta(1, 1) is the uniform distribution; drawing it directly skips the
            # two gamma samples (a tenth of a CPU step on Music Genres).
            lam = torch.rand(n_pairs, device=device)
        else:
            alpha = torch.tensor(float(self.alpha), device=device)
            lam = torch.distributions.Beta(alpha, alpha).sample((n_pairs,))
        partner = torch.randperm(n_pairs, device=device)
        return lam, partner

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        x, pairs = batch
        device = self.device
        x = x.to(device, non_blocking=True)
        rows, annotators, labels = (t.to(device, non_blocking=True) for t in pairs)
        if self.alpha > 0:
            lam, partner = self.mixing_weights(len(rows), x.device)
        else:
            lam, partner = None, None
        forward = self._pair_loss
        if self.compile_step:
            forward = self.__dict__.get("_compiled_pair_loss")
            if forward is None:
                forward = self.__dict__["_compiled_pair_loss"] = torch.compile(self._pair_loss, dynamic=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            loss, logits = forward(x, rows, annotators, labels, lam, partner)
        loss.backward()
        return {"loss": loss, "y_pred": logits}

    def _pair_loss(self, x, rows, annotators, labels, lam, partner):
        """The loss of one batch of pairs, and the GT logits; ``lam=None`` means no mixup."""
        module = self.module_
        if lam is not None:
            logits, embedding = module.gt_model(mix_pairs(x[rows], lam, partner))
            confusion_logits = module.pair_confusion_logits(embedding, annotators, lam, partner)
            partner_labels = labels[partner]
        else:
            logits, embedding = module.gt_model(x)
            logits, embedding = logits[rows], embedding[rows]
            confusion_logits = module.pair_confusion_logits(embedding, annotators)
            lam = torch.ones(len(rows), device=x.device)
            partner_labels = labels
        loss = self.criterion_(logits.float(), confusion_logits.float(), labels, partner_labels, lam)
        return loss, logits

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_compiled_pair_loss", None)
        state.pop("_training_modules", None)
        return state

    def _set_training(self, training=True):
        # skorch switches every module to training mode before each step, a recursive
        # call through the whole module tree; when every module is in training mode
        # already, that call changes nothing, and checking a cached list is cheaper.
        if training:
            roots = (self.module_, self.criterion_)
            cached = self.__dict__.get("_training_modules")
            if cached is None or cached[0] != tuple(map(id, roots)):
                cached = (tuple(map(id, roots)), [m for root in roots for m in root.modules()])
                self.__dict__["_training_modules"] = cached
            if all(m.training for m in cached[1]):
                return
        super()._set_training(training)

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
        raise NotImplementedError(
            "AnnotMixNet trains without an internal validation split (train_split=None)."
        )


def inference_chunks(n_rows, chunk_size):
    """Start and stop of consecutive chunks covering ``range(n_rows)``."""
    starts = np.arange(0, n_rows, chunk_size)
    return zip(starts, np.minimum(starts + chunk_size, n_rows))
