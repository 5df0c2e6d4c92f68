"""Dropout masks from raw random bits (the ``byte_masks`` fast path).

On the CPU, torch's Bernoulli sampler was the largest single cost of a
training step on Music Genres. :func:`keep_mask` draws the same distribution
from 64-bit random words: one random bit per unit for the default p = 0.5.
"""

from __future__ import annotations

import math

import torch
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


def keep_mask(shape, p, device=None, scale=1.0, generator=None):
    """Float mask of zeros and ``scale``, each ``scale`` with probability ``1 - p``, from raw random bits.

    When ``p`` is a multiple of 1/256 with k in (1, 2, 4, 8) bits
    (``p * 2**k`` an integer, as for the default 0.5), each element takes
    ``k`` random bits and the mask values of a whole random byte are looked
    up in a 256-row table: the keep probability is exactly ``1 - p`` and
    the cost is a fraction of drawing one number per element. For other
    ``p`` each element takes 23 random bits as the mantissa of a float in
    [1, 2) and is kept when that float is at least ``1 + p`` (keep
    probability ``1 - p`` rounded to a multiple of 2**-23). Either way the
    bits come from 64-bit draws of ``generator``, and no boolean tensors are
    made (whose element-wise kernels are several times slower than float
    ones on the CPU).

    Parameters
    ----------
    shape : tuple of int
    p : float in [0, 1)
        Drop probability.
    device : torch.device, optional
    scale : float, default=1.0
        Value of the kept elements (``1 / (1 - p)`` for dropout).
    generator : torch.Generator, optional
        Source of the random bits; torch's global generator by default.

    Returns
    -------
    mask : float32 Tensor of shape ``shape``
    """
    n = math.prod(shape)
    bits = _field_bits(p)
    if bits is None:
        words = _random_words((n + 1) // 2, device, generator)
        uniform = words.view(torch.int32)[:n].bitwise_and_(0x007FFFFF).bitwise_or_(0x3F800000)
        mask = uniform.view(torch.float32).sub_(p).floor_()
        return (mask if scale == 1 else mask.mul_(scale)).view(shape)
    n_bytes = -(-n * bits // 8)
    words = _random_words(-(-n_bytes // 8), device, generator)
    table = _mask_table(p, bits, float(scale), words.device)
    values = F.embedding(words.view(torch.uint8)[:n_bytes].long(), table)
    return values.view(-1)[:n].view(shape)


def _random_words(n, device, generator):
    return torch.randint(-(2**63), 2**63 - 1, (n,), dtype=torch.int64, device=device, generator=generator)
