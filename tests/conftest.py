import numpy as np
import pytest
import torch

from skannot.datasets import simulate_annotators

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def crowd_data():
    """Separable 3-class data with 6 annotators of known, well-spread accuracies."""
    rng = np.random.default_rng(0)
    n = 600
    centers = np.array([[2.5, 0.0], [-2.5, 1.5], [0.0, -2.5]])
    y = rng.integers(0, 3, n)
    X = (centers[y] + rng.normal(size=(n, 2))).astype(np.float32)
    X = np.hstack([X, rng.normal(size=(n, 3)).astype(np.float32)])
    Z, confusion = simulate_annotators(
        X, y, n_annotators=6, accuracy=(0.3, 0.95), labels_per_sample=3, random_state=1
    )
    return X, y, Z, confusion
