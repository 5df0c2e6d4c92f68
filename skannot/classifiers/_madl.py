"""MaDL (Herde, Huseljic & Sick, TMLR 2023): instance-dependent confusion, annotator-weighted likelihood."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.distributions import Gamma
from torch.nn import functional as F

from .._annotator_features import REPRESENTATIONS, AnnotatorFeaturesMixin
from .._base import BaseCrowdClassifier, check_eta
from .._nn import (
    AnnotatorEmbedding,
    AnnotatorRepresentation,
    CrowdModule,
    OuterProduct,
    eta_bias,
)
from .._random import initialize_, linear_init_


class MaDLHead(nn.Module):
    """MaDL's annotator-performance (AP) head: a confusion matrix per (instance, annotator) pair.

    With ``a`` the annotator embedding and ``h(x)`` the GT model's
    embedding of the instance::

        e = W_x h(x)                          (instance embedding, size E)
        o = OuterProduct(a, e)                (size E)
        r = BN(Linear(ReLU(BN(Linear([a, e, o])))))
        logits = Linear(ReLU(r + a))          (C x C, the residual block)

    The output bias starts at :func:`~skannot._nn.eta_bias`, so that every
    confusion matrix starts near ``eta`` on its diagonal; the output weights
    keep their default random initialisation, as in the paper's code.

    Parameters
    ----------
    instance_dim : int
        Size D of the GT model's embedding.
    embed_dim : int
        Size E of the annotator and instance embeddings.
    hidden_size : int
        Width of the hidden layer.
    n_classes : int
        Number of classes C.
    eta : float
        Prior probability of a correct label.
    """

    def __init__(self, instance_dim, embed_dim, hidden_size, n_classes, eta):
        super().__init__()
        self.n_classes = n_classes
        self.eta = eta
        self.instance_projection = nn.Linear(instance_dim, embed_dim)
        self.outer_product = OuterProduct(embed_dim, embed_dim)
        self.hidden = nn.Sequential(
            nn.Linear(3 * embed_dim, hidden_size),
            nn.BatchNorm1d(hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, embed_dim),
            nn.BatchNorm1d(embed_dim),
        )
        self.output = nn.Linear(embed_dim, n_classes * n_classes)
        self.reset_parameters_(None)

    def reset_parameters_(self, generator):
        """Initialise every layer from ``generator`` and the output bias to the ``eta`` prior.

        Parameters
        ----------
        generator : torch.Generator or None
        """
        if generator is not None:
            initialize_(self.instance_projection, generator)
            self.outer_product.reset_parameters_(generator)
            initialize_(self.hidden, generator)
            linear_init_(self.output.weight, self.output.bias, generator)
        with torch.no_grad():
            self.output.bias.copy_(eta_bias(self.n_classes, self.eta))

    def forward(self, instance_embedding, annotator_embedding):
        """Unnormalised ``log P(z | x, a, y)``, shape (P, C, C); row ``y``, column ``z``.

        Parameters
        ----------
        instance_embedding : Tensor of shape (P, D)
        annotator_embedding : Tensor of shape (P, E)
        """
        instance = self.instance_projection(instance_embedding)
        product = self.outer_product(annotator_embedding, instance)
        hidden = self.hidden(torch.cat([annotator_embedding, instance, product], dim=1))
        hidden = F.relu(hidden + annotator_embedding)
        return self.output(hidden).view(-1, self.n_classes, self.n_classes)


class MaDLModule(AnnotatorRepresentation, CrowdModule):
    """GT model, annotator embeddings, the AP head and the annotator weights of MaDL.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M.
    instance_dim : int
        Size D of the GT model's embedding.
    n_classes : int
        Number of classes C.
    embed_dim : int, default=16
        Size E of the annotator and instance embeddings.
    hidden_size : int, default=128
        Width of the AP head's hidden layer.
    eta : float, default=0.8
        Initial diagonal of the confusion matrices.
    bandwidth_prior : tuple of two floats or None, default=(1.25, 0.25)
        Shape and rate of the Gamma prior on the kernel bandwidth; None
        weighs every annotator 1.
    annotator_features : Tensor of shape (M, K), optional
        Encoded features of the annotators; required by the feature
        representations.
    representation : {"embedding", "features", "features+embedding"}, default="embedding"
        Where an annotator's embedding comes from: a learned table
        (:class:`~skannot._nn.AnnotatorEmbedding`, the paper's one-hot
        input), an affine map of its features
        (:class:`~skannot._nn.AnnotatorFeatureMap`, the paper's annotator
        features as input), or that map plus a per-annotator correction that
        starts at zero (:class:`~skannot._nn.AnnotatorCorrection`).
    """

    def __init__(
        self,
        gt_model,
        n_annotators,
        instance_dim,
        n_classes,
        embed_dim=16,
        hidden_size=128,
        eta=0.8,
        bandwidth_prior=(1.25, 0.25),
        annotator_features=None,
        representation="embedding",
    ):
        super().__init__(gt_model)
        self.build_annotator_representation(
            n_annotators, embed_dim, annotator_features, representation, AnnotatorEmbedding
        )
        self.annotator_head = MaDLHead(instance_dim, embed_dim, hidden_size, n_classes, eta)
        self.bandwidth_prior = None if bandwidth_prior is None else tuple(float(v) for v in bandwidth_prior)
        if self.bandwidth_prior is None:
            self.bandwidth = None
        else:
            shape, rate = self.bandwidth_prior
            # The prior's mode, as in the paper's code.
            self.bandwidth = nn.Parameter(torch.tensor(max(0.0, (shape - 1) / rate)))

    def mark_labelled_annotators(self, labelled):
        super().mark_labelled_annotators(labelled)
        if self.representation == "embedding":
            self.annotator_embedding.mark_labelled(labelled)

    def embedding_table(self):
        """The embedding table's vectors (M, E), each annotator its own row plus the shared bias."""
        return self.annotator_embedding.table()

    def annotator_vectors(self, annotators):
        """Embeddings (P, E) of ``annotators`` (P,).

        In training every annotator reads its own; in evaluation an
        annotator without labels gets the average annotator's embedding, or
        with features its own features' embedding plus the labelled
        annotators' mean correction.
        """
        if self.representation == "embedding":
            return self.annotator_embedding(annotators)
        vectors = self.annotator_feature_map(annotators)
        if self.representation == "features+embedding":
            correction = self.annotator_embedding(annotators)
            if not self.training and not bool(self.labelled.all()):
                mean = self.annotator_embedding.mean_row(self.labelled)
                correction = torch.where(self.labelled[annotators, None], correction, mean)
            vectors = vectors + correction
        return vectors

    def log_confusion_of(self, embedding, vectors):
        """``log P(z | x, a, y)`` (P, C, C) from instance (P, D) and annotator embeddings (P, E)."""
        logits = self.annotator_head(embedding, vectors)
        return logits - torch.logsumexp(logits, dim=-1, keepdim=True)

    def log_confusion(self, embedding, annotators):
        return self.log_confusion_of(embedding, self.annotator_vectors(annotators))

    def annotator_weights(self):
        """Weight of each annotator's labels in the likelihood, shape (M,), mean 1.

        ``w_m`` is proportional to ``1 / sum_l k(v_m, v_l)`` with the RBF
        kernel ``k(v, v') = exp(-gamma ||v - v'||^2)`` on the (detached)
        annotator embeddings and the learned bandwidth ``gamma`` (clamped at
        1e-3): annotators unlike the others weigh more, so that a group of
        similar annotators (e.g. spammers giving the same answer) does not
        dominate the likelihood. All ones without a bandwidth prior.
        """
        vectors = self.annotator_table().detach()
        if self.bandwidth is None:
            return torch.ones(len(vectors), device=vectors.device)
        squared = (vectors * vectors).sum(1)
        distances = (squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T).clamp_min(0)
        similarity = torch.exp(-self.bandwidth.clamp(min=1e-3) * distances)
        inverse = 1 / similarity.sum(0)
        return inverse * (len(inverse) / inverse.sum())

    def penalty(self, logits, annotators):
        """Minus the log-density of the bandwidth under its Gamma prior (0 without a prior).

        Arguments as for :meth:`CrowdModule.penalty`.
        """
        if self.bandwidth is None:
            return 0.0
        shape, rate = self.bandwidth_prior
        prior = Gamma(torch.tensor(shape, device=logits.device), torch.tensor(rate, device=logits.device))
        return -prior.log_prob(self.bandwidth.clamp(min=1e-3))

    def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
        """MaDL's loss: the annotator-weighted mean negative log-likelihood plus :meth:`penalty`.

        Each pair's ``-log P(z | x, a)`` is multiplied by its annotator's
        weight (:meth:`annotator_weights`), and by the pair's weight from
        ``sample_weight`` / ``class_weight`` when ``weights`` is given, before
        the mean over the pairs. Parameters and returns as for
        :meth:`CrowdModule.training_loss`.
        """
        pair_weights = self.annotator_weights()[annotators]
        if weights is not None:
            pair_weights = pair_weights * weights
        return super().training_loss(x, rows, annotators, labels, weights=pair_weights)


class MaDLClassifier(AnnotatorFeaturesMixin, BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with multi-annotator deep learning.

    MaDL [1]_ learns a ground-truth (GT) model ``p(y | x)`` jointly with an
    annotator-performance (AP) model that gives a C x C confusion matrix
    ``P(z | x, m, y)`` for every (instance, annotator) pair, from a learned
    annotator embedding and an instance embedding combined through an
    outer-product layer and a residual block (:class:`MaDLHead`). The
    likelihood of an observed label is ``P(z | x, m) = sum_y p(y | x) P(z |
    x, m, y)``; each label's negative log-likelihood is weighted by its
    annotator's weight, the inverse of the annotator's summed RBF-kernel
    similarity to all annotators' embeddings (normalised to mean 1), so
    that groups of similar annotators do not dominate. The kernel's
    bandwidth is learned under a Gamma prior, whose negative log-density is
    added to the loss.

    Parameters
    ----------
    eta : float in (1/n_classes, 1), default=0.8
        Prior annotator accuracy: the AP head's output bias puts ``eta`` on
        the diagonal of every initial confusion matrix.
    embed_dim : int, default=16
        Size of the annotator and instance embeddings.
    hidden_size : int, default=128
        Width of the AP head's hidden layer.
    bandwidth_prior : tuple (shape, rate) of positive floats, or None, default=(1.25, 0.25)
        Gamma prior on the kernel bandwidth, which starts at the prior's
        mode; None turns the annotator weights off (every label weighs 1).
    annotator_features : array-like of shape (n_annotators, n_annotator_features) or DataFrame, default=None
        What is known about each annotator, one row per annotator of ``Z``
        (or a DataFrame indexed by the annotator names), encoded as for
        :class:`AnnotMixClassifier` (categorical columns one-hot, then every
        column standardised; NaN and infinite values refused). With features
        the annotator embedding is an affine map of them (the paper's
        annotator features as input), so the model predicts annotators who
        gave no label: ``predict_annotator_proba``,
        ``predict_annotator_confusion`` and ``predict_annotator_accuracy``
        take ``annotator_features=`` of new annotators. The kernel weights
        are then computed on the mapped embeddings.
    annotator_representation : {"auto", "embedding", "features", "features+embedding"}, default="auto"
        Where the annotator embedding comes from: ``"embedding"``, a learned
        table (the paper's one-hot annotators); ``"features"``, the affine
        map of ``annotator_features``; ``"features+embedding"``, that map
        plus a per-annotator correction starting at zero; ``"auto"``,
        ``"features"`` with ``annotator_features``, else ``"embedding"``.
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        Estimated confusion matrix of each annotator; entry ``[m, y, z]`` is
        the probability that annotator ``m`` says ``classes_[z]`` when the
        truth is ``classes_[y]``: ``P(z | x, m, y)`` averaged over the
        training instances annotator ``m`` labelled, weighted by ``p(y |
        x)``. An annotator without labels is modelled as the average
        annotator (the mean of the learned annotator embeddings), summarised
        over up to 1,024 training instances. Rows sum to 1.
    annotator_accuracy_ : ndarray of shape (n_annotators_,)
        Estimated fraction of each annotator's training labels that are
        correct: the mean ``support`` of its labels (see
        :meth:`label_quality`), the probability of the label's class given
        the item's other labels, so that a label does not vouch for itself.
    annotator_weights_ : ndarray of shape (n_annotators_,)
        The weight of each annotator's labels in the likelihood at the end
        of training (mean 1; all ones with ``bandwidth_prior=None``).

    Notes
    -----
    The architecture and defaults follow the paper's code and the defaults
    of its experiments on tabular data: embeddings of size 16, a linear
    instance embedding of the GT model's last hidden layer, the outer
    product and the residual block, a hidden layer of 128 units, ``eta =
    0.8`` and a Gamma(1.25, 0.25) prior on the bandwidth.

    Differences from the paper: the instance embedding reads the GT model's
    embedding without detaching it (as the annot-mix paper's implementation
    of MaDL does; the TMLR paper's code detaches it); the annotator
    embedding is a learned table plus a shared bias, initialised as the
    paper's linear layer on one-hot annotator vectors; the GT model and
    training settings are the family's shared defaults (an MLP trained with
    RAdam and a cosine learning-rate schedule, as in the annot-mix paper's
    comparison); annotator features enter through an affine map (the
    paper's code feeds them to the same linear layer as one-hot vectors,
    which is that map), standardised by skannot.

    References
    ----------
    .. [1] M. Herde, D. Huseljic and B. Sick, "Multi-annotator Deep
       Learning: A Probabilistic Framework for Classification", TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import MaDLClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = MaDLClassifier(max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_weights_.shape
    (3,)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "eta": [Interval(Real, 0, 1, closed="neither")],
        "embed_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "bandwidth_prior": [tuple, list, None],
        "annotator_features": ["array-like", None],
        "annotator_representation": [StrOptions(set(REPRESENTATIONS))],
    }
    _method_name = "MaDL"

    def __init__(
        self,
        module=None,
        *,
        eta=0.8,
        embed_dim=16,
        hidden_size=128,
        bandwidth_prior=(1.25, 0.25),
        annotator_features=None,
        annotator_representation="auto",
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self.eta = eta
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.bandwidth_prior = bandwidth_prior
        self.annotator_features = annotator_features
        self.annotator_representation = annotator_representation

    def _check_method_params(self, n_classes):
        check_eta(self.eta, n_classes)
        prior = self.bandwidth_prior
        if prior is not None and not (
            len(prior) == 2 and all(isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in prior)
        ):
            raise ValueError(
                f"bandwidth_prior={prior!r} must be (shape, rate), two positive numbers of the Gamma "
                "prior on the kernel bandwidth, e.g. (1.25, 0.25); or None to weigh every annotator 1."
            )
        self._resolved_representation()  # contradicting feature parameters fail before training

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        features = self._training_annotator_features()
        return MaDLModule(
            gt_model,
            n_annotators=n_annotators,
            instance_dim=instance_dim,
            n_classes=n_classes,
            embed_dim=self.embed_dim,
            hidden_size=self.hidden_size,
            eta=self.eta,
            bandwidth_prior=self.bandwidth_prior,
            annotator_features=features,
            representation=self.annotator_representation_,
        )

    def _summarise_annotators(self, X, annotations):
        with torch.no_grad():
            self.annotator_weights_ = self.net_.module_.annotator_weights().cpu().numpy()
        super()._summarise_annotators(X, annotations)
