"""annot-mix's loss in probability space with a hand-written backward (the ``probability_loss`` fast path)."""

from __future__ import annotations

import torch

# The probability-space loss is accepted when its smallest row sum of shifted exponentials and its
# smallest annotation probability clear these bounds. A shifted exponential that underflows
# (below 1.2e-38 in float32) then stands for a confusion probability below 1.2e-23, so for up to
# 80,000 classes the terms lost change no annotation probability by more than 1e-7 of itself.
_MIN_ROW_SUM = 1e-15
_MIN_PROBA = 1e-11


def label_columns(labels, partner_labels, n_classes):
    """Gather index (P, C, 2) of each pair's own and partner label in every row of its confusion matrix."""
    return torch.stack([labels, partner_labels], 1)[:, None, :].expand(-1, n_classes, 2)


class ProbabilitySpaceLoss(torch.autograd.Function):
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
    probability by more than 1e-7 of itself. Otherwise the caller uses the
    log-space form (``skannot._nn.AnnotMixLoss.log_space``).

    ``apply(class_logits, confusion_logits, labels, partner_labels, lam, scale, pair_weight=None)``
    returns ``(loss, accurate)``: ``-scale * sum_p w_p [lam log P(z_p) + (1 - lam) log P(z'_p)]``,
    with ``w_p`` the pair's weight (1 when ``pair_weight`` is None).
    """

    @staticmethod
    def forward(ctx, class_logits, confusion_logits, labels, partner_labels, lam, scale, pair_weight=None):
        n_classes = class_logits.shape[1]
        class_proba = (class_logits - class_logits.amax(1, keepdim=True)).exp_()
        class_proba.div_(class_proba.sum(1, keepdim=True))  # p(y | x), (P, C)
        shifted = (confusion_logits - confusion_logits.amax()).exp_()  # (P, C, C)
        row_sums = shifted.sum(2)
        inverse = row_sums.reciprocal()
        columns = label_columns(labels, partner_labels, n_classes)
        column_proba = shifted.gather(2, columns).mul_(inverse[:, :, None])  # P(z_k | x, a, y), (P, C, 2)
        annotation_proba = torch.bmm(class_proba[:, None, :], column_proba)[:, 0]  # P(z_k | x, a), (P, 2)
        lam = lam.to(annotation_proba.dtype)
        weights = torch.stack([lam, 1 - lam], 1)
        if pair_weight is not None:
            weights = weights * pair_weight.to(weights.dtype)[:, None]
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
        return grad_class, grad_confusion, None, None, None, None, None
