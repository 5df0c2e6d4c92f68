"""Torch building blocks: GT backbones, annotator heads and the module protocol of the family."""

from ._annotators import AnnotatorCorrection, AnnotatorFeatureMap, AnnotatorRepresentation
from ._base import ConfusionTableModule, CrowdModule, weighted_mean
from ._embeddings import AnnotatorEmbedding, OuterProduct
from ._heads import AnnotatorHead, ConfusionTable, eta_bias
from ._mlp import MLP, Dropout, mix, mix_pairs, swap_class

__all__ = [
    "MLP",
    "AnnotatorCorrection",
    "AnnotatorEmbedding",
    "AnnotatorFeatureMap",
    "AnnotatorHead",
    "AnnotatorRepresentation",
    "ConfusionTable",
    "ConfusionTableModule",
    "CrowdModule",
    "Dropout",
    "OuterProduct",
    "eta_bias",
    "mix",
    "mix_pairs",
    "swap_class",
    "weighted_mean",
]
