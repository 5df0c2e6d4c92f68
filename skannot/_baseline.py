"""The paper's reference baseline: the same MLP trained with cross-entropy on one label per sample.

Used by the main job and the benchmarks to compare annot-mix with an MLP on
majority-vote (or gold) labels under the same network and optimisation recipe.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler
from torch import nn

from ._nn import MLP


class _LogitsOnly(nn.Module):
    def __init__(self, n_features, n_classes, hidden_sizes, dropout, batch_norm):
        super().__init__()
        self.mlp = MLP(n_features, n_classes, hidden_sizes, dropout, batch_norm)

    def forward(self, x):
        return self.mlp(x)[0]


def fit_mlp(
    X,
    y,
    *,
    n_classes,
    hidden_sizes=(256, 128),
    dropout=0.5,
    batch_norm=True,
    max_epochs=50,
    batch_size=64,
    lr=1e-2,
    random_state=0,
):
    """Train the default MLP on integer labels ``y`` in ``[0, n_classes)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Class indices.
    n_classes : int
    hidden_sizes, dropout, batch_norm, max_epochs, batch_size, lr
        As in :class:`skannot.AnnotMixClassifier`.
    random_state : int
        Seed of torch's generator during the fit (restored afterwards).

    Returns
    -------
    net : skorch.NeuralNetClassifier
        The fitted net; ``net.predict(X)`` returns class indices.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        net = NeuralNetClassifier(
            _LogitsOnly,
            module__n_features=X.shape[1],
            module__n_classes=n_classes,
            module__hidden_sizes=tuple(hidden_sizes),
            module__dropout=dropout,
            module__batch_norm=batch_norm,
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.RAdam,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            iterator_train__shuffle=True,
            iterator_train__drop_last=len(X) % batch_size == 1,
            train_split=None,
            callbacks=[
                ("lr_scheduler", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=max_epochs))
            ],
            classes=np.arange(n_classes),
            verbose=0,
        )
        net.fit(X, y)
    return net
