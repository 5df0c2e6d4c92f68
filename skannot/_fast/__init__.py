"""The CPU fast paths, in one place.

Each path computes what a plain PyTorch component computes, in fewer kernel
calls, and is tested against it (``tests/test_fast.py`` and the tests named
in ``docs/performance.md``). Which of them a fit uses is set by
:func:`skannot.config_context` (``fast_paths``; all on by default); the
estimators read that switch once, when ``fit`` builds the network:

``flat_radam``
    :class:`FlatRAdam` replaces :class:`torch.optim.RAdam` when the user's
    options allow it (see :func:`flat_radam_applies`).
``byte_masks``
    :func:`keep_mask` draws the dropout masks of skannot's ``Dropout`` on
    the CPU.
``probability_loss``
    :class:`ProbabilitySpaceLoss` computes annot-mix's loss on the CPU.
``row_sparse_adam``
    :class:`RowSparseAdam` replaces :class:`torch.optim.SparseAdam` for a
    sparse annotator table.
``mode_cache``
    the skorch net skips its per-step switch to training mode when every
    module is in it already and none overrides ``train``.
"""

from ._dropout import keep_mask
from ._loss import ProbabilitySpaceLoss, label_columns
from ._optim import FlatRAdam, RowSparseAdam, flat_radam_applies

__all__ = [
    "FlatRAdam",
    "ProbabilitySpaceLoss",
    "RowSparseAdam",
    "flat_radam_applies",
    "keep_mask",
    "label_columns",
]
