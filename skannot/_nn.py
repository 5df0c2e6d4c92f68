"""Torch modules of annot-mix: the tabular backbone, the annotator head, and both joined.

The ground-truth (GT) model maps instances to class logits and an instance
embedding. The annotator-performance (AP) head maps the *detached* instance
embedding and an annotator embedding to a C x C confusion matrix
``P(z | x, a, y)`` whose row ``y`` is the distribution of the annotator's
label ``z`` given the true class ``y``.
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
from torch import nn
from torch.nn import functional as F


def _field_bits(p):
    """Fewest bits k in (1, 2, 4, 8) with ``p * 2**k`` an integer, or None."""
    for bits in (1, 2, 4, 8):
        if (p * 2**bits).is_integer():
            return bits
    return None


_MASK_TABLES = {}


def _mask_table(p, bits, scale, device):
    """(256, 8 // bits) float32 table: the mask values that one random byte stands for.

    The byte holds ``8 // bits`` fields of ``bits`` bits (lowest first); a field
    ``u`` keeps its unit when ``u >= p * 2**bits``.
    """
    key = (p, bits, scale, device)
    table = _MASK_TABLES.get(key)
    if table is None:
        fields = torch.arange(256)[:, None] >> torch.arange(0, 8, bits) & (2**bits - 1)
        table = ((fields >= round(p * 2**bits)) * scale).to(torch.float32).to(device)
        _MASK_TABLES[key] = table
    return table


def keep_mask(shape, p, device=None, scale=1.0):
    """Float mask of zeros and ``scale``, each ``scale`` with probability ``1 - p``, from raw random bits.

    When ``p`` is a multiple of 1/256 with k in (1, 2, 4, 8) bits
    (``p * 2**k`` an integer, as for the default 0.5), each element takes
    ``k`` random bits and the mask values of a whole random byte are looked
    up in a 256-row table: the keep probability is exactly ``1 - p`` and
    the cost is a fraction of drawing one number per element. For other
    ``p`` each element takes 23 random bits as the mantissa of a float in
    [1, 2) and is kept when that float is at least ``1 + p`` (keep
    probability ``1 - p`` rounded to a multiple of 2**-23). Either way the
    bits come from 64-bit draws of torch's global generator, and no boolean
    tensors are made (whose element-wise kernels are several times slower
    than float ones on the CPU).

    Parameters
    ----------
    shape : tuple of int
    p : float in [0, 1)
        Drop probability.
    device : torch.device, optional
    scale : float, default=1.0
        Value of the kept elements (``1 / (1 - p)`` for dropout).

    Returns
    -------
    mask : float32 Tensor of shape ``shape``
    """
    n = math.prod(shape)
    bits = _field_bits(p)
    if bits is None:
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 1) // 2,), dtype=torch.int64, device=device)
        uniform = words.view(torch.int32)[:n].bitwise_and_(0x007FFFFF).bitwise_or_(0x3F800000)
        mask = uniform.view(torch.float32).sub_(p).floor_()
        return (mask if scale == 1 else mask.mul_(scale)).view(shape)
    n_bytes = -(-n * bits // 8)
    words = torch.randint(-(2**63), 2**63 - 1, (-(-n_bytes // 8),), dtype=torch.int64, device=device)
    table = _mask_table(p, bits, float(scale), words.device)
    values = F.embedding(words.view(torch.uint8)[:n_bytes].long(), table)
    return values.view(-1)[:n].view(shape)


def mix(own, other, lam):
    """Row-wise convex combination ``lam * own + (1 - lam) * other``.

    Parameters
    ----------
    own, other : Tensor of shape (P, ...)
    lam : Tensor of shape (P,)
        Weight of ``own``.

    Returns
    -------
    mixed : Tensor of shape (P, ...)
    """
    lam = lam.view(-1, *([1] * (own.dim() - 1))).to(own.dtype)
    return lam * own + (1 - lam) * other


_ROW_SHARD = threading.local()


@contextlib.contextmanager
def row_shard(offset, total):
    """Make training-mode :class:`Dropout` treat its input as rows of a larger batch.

    Inside the block, a :class:`Dropout` whose input has ``k`` rows draws the
    mask of a ``total``-row input, as a single process holding the whole
    batch would, and uses its rows ``offset:offset + k``. Processes that
    share a random state and each run a slice of one batch thus draw the
    masks a single process would (data-parallel training, see
    ``skannot._accelerate``).

    Parameters
    ----------
    offset : int
        First row of the slice.
    total : int
        Rows of the whole batch.
    """
    previous = getattr(_ROW_SHARD, "value", None)
    _ROW_SHARD.value = (offset, total)
    try:
        yield
    finally:
        _ROW_SHARD.value = previous


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with a faster mask on the CPU.

    On the CPU, torch's Bernoulli sampler was the largest single cost of a
    training step on Music Genres, so the mask comes from :func:`keep_mask`
    instead: the same distribution (each unit kept with probability ``1 - p``
    and scaled by ``1 / (1 - p)``), from a different random stream. Other
    devices use torch's fused kernel, except inside :func:`row_shard`, where
    every device draws :func:`keep_mask` masks.
    """

    def forward(self, x):
        shard = getattr(_ROW_SHARD, "value", None)
        if not self.training or self.p == 0 or (shard is None and (x.device.type != "cpu" or self.inplace)):
            return super().forward(x)
        if self.p == 1:
            return x * 0
        scale = 1 / (1 - self.p)
        if shard is None:
            mask = keep_mask(x.shape, self.p, x.device, scale)
        else:
            offset, total = shard
            mask = keep_mask((total, *x.shape[1:]), self.p, x.device, scale)[offset : offset + len(x)]
        return x * mask.to(x.dtype)


class MLP(nn.Module):
    """Default tabular GT model: an MLP that returns logits and an embedding.

    Each hidden block is ``Linear -> BatchNorm1d (optional) -> ReLU -> Dropout``;
    the output of the last block is the instance embedding and a final linear
    layer gives the class logits.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_classes : int
        Number of classes.
    hidden_sizes : sequence of int, default=(256, 128)
        Width of each hidden block. Must not be empty: the last block's output
        is the embedding the annotator head reads.
    dropout : float, default=0.5
        Dropout probability after each hidden block.
    batch_norm : bool, default=True
        Whether to put batch normalisation in each hidden block.

    Notes
    -----
    ``forward(x)`` takes ``x`` of shape (batch, n_features) and returns
    ``(logits, embedding)`` of shapes (batch, n_classes) and
    (batch, hidden_sizes[-1]). Any module with this contract can replace it
    as ``AnnotMixClassifier(module=...)``.
    """

    def __init__(self, n_features, n_classes, hidden_sizes=(256, 128), dropout=0.5, batch_norm=True):
        super().__init__()
        if len(hidden_sizes) == 0:
            raise ValueError("hidden_sizes must name at least one hidden layer.")
        layers, width = [], n_features
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        """Class logits and the last hidden layer.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)

        Returns
        -------
        logits : Tensor of shape (batch, n_classes)
        embedding : Tensor of shape (batch, hidden_sizes[-1])
        """
        embedding = self.body(x)
        return self.head(embedding), embedding


def eta_bias(n_classes, eta):
    """Output bias of the AP head whose softmax rows put ``eta`` on the diagonal.

    Parameters
    ----------
    n_classes : int
        Number of classes C.
    eta : float in (1/C, 1)
        Prior probability that an annotator's label is correct.

    Returns
    -------
    bias : Tensor of shape (C * C,)
        Row-major flattened C x C matrix with ``log(eta (C - 1) / (1 - eta))``
        on the diagonal and zero elsewhere.
    """
    diagonal = math.log(eta) - math.log1p(-eta) + math.log(n_classes - 1)
    return (diagonal * torch.eye(n_classes)).flatten()


class AnnotatorHead(nn.Module):
    """AP model: confusion matrices from instance and annotator embeddings.

    ``concat(instance_embedding, annotator_embedding) -> Linear -> ReLU ->
    Linear(C * C)``, with the output weights zero and the output bias set by
    :func:`eta_bias`, so that every confusion matrix starts with ``eta`` on
    its diagonal and ``(1 - eta) / (C - 1)`` elsewhere.

    Parameters
    ----------
    instance_dim : int
        Size D of the GT model's instance embedding.
    annotator_dim : int
        Size E of the annotator embedding.
    hidden_size : int
        Width of the hidden layer.
    n_classes : int
        Number of classes C.
    eta : float
        Initial diagonal of the confusion matrices.
    """

    def __init__(self, instance_dim, annotator_dim, hidden_size, n_classes, eta):
        super().__init__()
        self.n_classes = n_classes
        self.hidden = nn.Linear(instance_dim + annotator_dim, hidden_size)
        self.output = nn.Linear(hidden_size, n_classes * n_classes)
        with torch.no_grad():
            self.output.weight.zero_()
            self.output.bias.copy_(eta_bias(n_classes, eta))

    def logits(self, instance_embedding, annotator_embedding):
        """Unnormalised log confusion matrices, shape (P, C, C)."""
        hidden = F.relu(self.hidden(torch.cat([instance_embedding, annotator_embedding], dim=1)))
        return self.output(hidden).view(-1, self.n_classes, self.n_classes)

    def forward(self, instance_embedding, annotator_embedding):
        """Log confusion matrices, shape (P, C, C); row ``y`` is ``log P(z | x, a, y)``."""
        logits = self.logits(instance_embedding, annotator_embedding)
        # Not F.log_softmax: on the CPU it is several times slower over rows of C entries.
        return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


class AnnotMixModule(nn.Module):
    """GT model, annotator embedding table and AP head in one module.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M (rows of the embedding table).
    instance_dim : int
        Size D of the GT model's embedding.
    n_classes : int
        Number of classes C.
    annotator_dim : int, default=128
        Size E of the annotator embedding.
    hidden_size : int, default=128
        Width of the AP head's hidden layer.
    eta : float, default=0.9
        Initial diagonal of the confusion matrices.
    """

    def __init__(
        self, gt_model, n_annotators, instance_dim, n_classes, annotator_dim=128, hidden_size=128, eta=0.9
    ):
        super().__init__()
        self.gt_model = gt_model
        self.annotator_embedding = nn.Embedding(n_annotators, annotator_dim)
        self.annotator_head = AnnotatorHead(instance_dim, annotator_dim, hidden_size, n_classes, eta)

    def forward(self, x):
        """Class logits of shape (batch, C); what skorch calls for inference."""
        return self.gt_model(x)[0]

    def annotator_log_confusion(self, instance_embedding, annotator_embedding):
        """``log P(z | x, a, y)`` of shape (P, C, C) from detached instance embeddings."""
        return self.annotator_head(instance_embedding.detach(), annotator_embedding)

    def projects_table(self, n_pairs):
        """Whether :meth:`pair_confusion_logits` projects the whole table for a batch of ``n_pairs`` pairs.

        Yes when the table has fewer rows than the batch has pairs and takes dense gradients.
        """
        table = self.annotator_embedding
        return not table.sparse and table.num_embeddings < n_pairs

    def pair_confusion_logits(
        self, instance_embedding, annotators, lam=None, partner=None, pairs=None, project_table=None
    ):
        """Unnormalised ``log P(z | x, a~, y)`` of shape (P, C, C) for pairs with mixed annotators.

        The annotator representation of pair ``p`` is ``lam[p] * E[a] + (1 -
        lam[p]) * E[a']`` with ``E`` the embedding table, ``a`` the pair's
        annotator and ``a'`` its partner's (just ``E[a]`` when ``lam`` is
        None). The AP head's first layer is affine in it, so its output is
        ``lam * T[a] + (1 - lam) * T[a']`` for the projected table ``T = E
        W_a^T + b``: with fewer annotators than pairs in the batch, the table
        is projected once and its rows are mixed, which saves multiplications;
        otherwise rows of ``E`` are looked up once per pair of the batch (so
        a sparse table gradient has one row per pair), mixed and projected.
        Both give the same values up to rounding. The instance embedding is
        detached and enters through the other columns of that layer.

        Parameters
        ----------
        instance_embedding : Tensor of shape (P, D)
            GT-model embeddings of the computed pairs' (mixed) instances.
        annotators : LongTensor of shape (N,)
            Annotator of every pair of the batch.
        lam : Tensor of shape (P,), optional
            Weight of each computed pair's own annotator; None means no mixing.
        partner : LongTensor of shape (P,), optional
            Position in ``annotators`` of each computed pair's partner;
            required with ``lam``.
        pairs : slice, optional
            The computed pairs among the batch's N (all by default; a
            process of data-parallel training computes a slice).
        project_table : bool, optional
            Project the whole table first; by default when the table has
            fewer rows than the batch has pairs and dense gradients.

        Returns
        -------
        confusion_logits : Tensor of shape (P, C, C)
            Row ``y``, column ``z``.
        """
        head, table = self.annotator_head, self.annotator_embedding
        n_instance = instance_embedding.shape[1]
        instance_weight = head.hidden.weight[:, :n_instance]
        annotator_weight = head.hidden.weight[:, n_instance:]
        if project_table is None:
            project_table = self.projects_table(len(annotators))
        own = annotators if pairs is None else annotators[pairs]
        if project_table:
            projected = F.linear(table.weight, annotator_weight, head.hidden.bias)  # (M, H)
            annotator_part = F.embedding(own, projected)
            if lam is not None:
                annotator_part = mix(annotator_part, F.embedding(annotators[partner], projected), lam)
        else:
            looked_up = table(annotators)  # one lookup per pair of the batch
            annotator_embedding = looked_up if pairs is None else looked_up[pairs]
            if lam is not None:
                annotator_embedding = mix(annotator_embedding, looked_up[partner], lam)
            annotator_part = F.linear(annotator_embedding, annotator_weight, head.hidden.bias)
        hidden = torch.addmm(annotator_part, instance_embedding.detach(), instance_weight.t()).relu_()
        return head.output(hidden).view(-1, head.n_classes, head.n_classes)

    def annotator_log_proba(self, x, annotators):
        """``log P(z | x, a)`` for every pair of a row of ``x`` and an annotator.

        Parameters
        ----------
        x : Tensor of shape (B, ...)
            Instances.
        annotators : LongTensor of shape (A,)
            Annotator indices.

        Returns
        -------
        log_proba : Tensor of shape (B, A, C)
        log_class_proba : Tensor of shape (B, C)
            ``log p(y | x)``.
        log_confusion : Tensor of shape (B, A, C, C)
            ``log P(z | x, a, y)``.
        """
        logits, embedding = self.gt_model(x)
        log_class_proba = F.log_softmax(logits, dim=1)
        n, m = len(x), len(annotators)
        log_confusion = self.annotator_log_confusion(
            embedding.repeat_interleave(m, dim=0),
            self.annotator_embedding(annotators).repeat(n, 1),
        ).view(n, m, *logits.shape[1:], logits.shape[1])
        log_proba = torch.logsumexp(log_class_proba[:, None, :, None] + log_confusion, dim=2)
        return log_proba, log_class_proba, log_confusion
