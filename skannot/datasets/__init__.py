"""Crowd data sets and annotator simulation."""

from ._feature_annotators import simulate_feature_annotators
from ._music_genres import fetch_music_genres, get_data_home
from ._simulation import make_crowd_classification, simulate_annotators

__all__ = [
    "fetch_music_genres",
    "get_data_home",
    "make_crowd_classification",
    "simulate_annotators",
    "simulate_feature_annotators",
]
