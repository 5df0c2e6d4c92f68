"""Torch building blocks: GT backbones, annotator heads and the module protocol of the family."""

from ._base import CrowdModule
from ._heads import AnnotatorHead, eta_bias
from ._mlp import MLP, Dropout, mix, mix_pairs

__all__ = ["MLP", "AnnotatorHead", "CrowdModule", "Dropout", "eta_bias", "mix", "mix_pairs"]
