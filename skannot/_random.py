"""Random numbers of a fit, drawn from the fit's own generators, never from torch's global one.

Seeding and restoring torch's global generator cannot be made thread-safe:
two fits in threads, or a fit next to the caller's own draws, would take
numbers from one stream. So every fit draws from its own ``torch.Generator``
(and a numpy ``Generator`` for the Beta mixing weights), seeded from
``random_state``: the order of the instances, the mixing weights and
partners, the dropout masks and the initial weights.

Initial weights: torch's layers initialise themselves from the global
generator when they are built. The model is therefore built with the global
generator forked and seeded (under a lock, so concurrent fits build one at a
time, and restored afterwards), and then every layer skannot knows (linear,
convolution, embedding and normalisation layers, and skannot's own modules,
which define ``reset_parameters_(generator)``) draws its initial weights
again from the fit's generator. Only the layers of a custom GT module of
other kinds keep the values they drew while being built.
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
from torch import nn

_BUILD_LOCK = threading.Lock()

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMALISATIONS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@contextlib.contextmanager
def seeded_build(seed):
    """Build modules inside the block from torch's global generator seeded with ``seed``, then restore it.

    Parameters
    ----------
    seed : int
    """
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def linear_init_(weight, bias, generator):
    """Torch's default initialisation of a linear or convolution layer, from ``generator``.

    Parameters
    ----------
    weight : Tensor
    bias : Tensor or None
    generator : torch.Generator
    """
    with torch.no_grad():
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        if bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(bias, -bound, bound, generator=generator)


def initialize_(module, generator):
    """Draw the initial weights of every layer skannot knows in ``module`` from ``generator``, in place.

    Modules that define ``reset_parameters_(generator)`` initialise
    themselves (and their children); linear, convolution and embedding
    layers get torch's default initialisation from ``generator``;
    normalisation layers are reset (they draw nothing). Other layers keep
    their values.

    Parameters
    ----------
    module : nn.Module
    generator : torch.Generator
    """
    if hasattr(module, "reset_parameters_"):
        module.reset_parameters_(generator)
        return
    if isinstance(module, (nn.Linear, *_CONVOLUTIONS)):
        linear_init_(module.weight, module.bias, generator)
        return
    if isinstance(module, nn.Embedding):
        with torch.no_grad():
            nn.init.normal_(module.weight, generator=generator)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        return
    if isinstance(module, _NORMALISATIONS):
        module.reset_parameters()
        return
    for child in module.children():
        initialize_(child, generator)
