"""Torch building blocks: GT backbones, annotator heads and the module protocol of the family."""

from ._base import ConfusionTableModule, CrowdModule, weighted_mean
from ._heads import AnnotatorHead, ConfusionTable, eta_bias
from ._mlp import MLP, Dropout, mix, mix_pairs, swap_class

__all__ = [
    "MLP",
    "AnnotatorHead",
    "ConfusionTable",
    "ConfusionTableModule",
    "CrowdModule",
    "Dropout",
    "eta_bias",
    "mix",
    "mix_pairs",
    "swap_class",
    "weighted_mean",
]
