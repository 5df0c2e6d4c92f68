"""annot-mix (Herde et al., ECAI 2024): instance-dependent confusion matrices and triple mixup."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from .._annotator_features import REPRESENTATIONS, AnnotatorFeaturesMixin
from .._base import BaseCrowdClassifier, check_eta
from .._fast import ProbabilitySpaceLoss, label_columns
from .._nn import AnnotatorHead, AnnotatorRepresentation, CrowdModule, mix, mix_pairs


class AnnotMixLoss(nn.Module):
    """Negative marginal log-likelihood of (mixed) annotations.

    For pair ``p`` with mixed one-hot label ``lam * e(z) + (1 - lam) * e(z')``::

        log P(z | x, a) = logsumexp_y [log p(y | x) + log P(z | x, a, y)]
        loss = -mean_p [lam_p log P(z_p | ...) + (1 - lam_p) log P(z'_p | ...)]

    Only the two columns ``z`` and ``z'`` of each confusion matrix are needed
    after its rows are normalised, so the (P, C, C) normalised matrices are
    never formed. On the CPU, with the ``probability_loss`` fast path on
    (``probability_space``), the loss is computed in probability space with
    a hand-written backward pass (:class:`skannot._fast.ProbabilitySpaceLoss`), about a
    third faster; when underflow could make that inaccurate (a pair whose
    labels are all but impossible under the model, or confusion logits
    spread over more than about 34 nats), and on other devices, it is computed in log
    space throughout: one ``logsumexp`` over the logits gives the row
    normalisers, which on the CPU is about three times faster than
    ``log_softmax`` over rows of C entries followed by a ``logsumexp`` over
    (P, C, C). Both give the same value and gradients up to rounding.

    Parameters
    ----------
    probability_space : bool, default=False
        Take the probability-space form on the CPU; ``fit`` sets it from the
        ``probability_loss`` fast path.
    """

    def __init__(self, probability_space=False):
        super().__init__()
        #: Use the probability-space form on the CPU (the ``probability_loss`` fast path).
        self.probability_space = probability_space

    def use_fast_paths(self, fast_paths):
        """Turn the ``probability_loss`` fast path on or off (called by ``fit``)."""
        self.probability_space = "probability_loss" in fast_paths

    def forward(
        self, class_logits, confusion_logits, labels, partner_labels, lam, reduction="mean", weights=None
    ):
        """
        Parameters
        ----------
        class_logits : Tensor of shape (P, C)
            Unnormalised ``log p(y | x)`` of each pair's (mixed) instance
            (log-probabilities are fine too: normalising is idempotent).
        confusion_logits : Tensor of shape (P, C, C)
            Unnormalised ``log P(z | x, a, y)``, normalised here over ``z``;
            row ``y``, column ``z``.
        labels, partner_labels : LongTensor of shape (P,)
            Class index of the pair's own label and of its partner's label.
        lam : Tensor of shape (P,)
            Mixing weight of the pair's own label.
        reduction : {"mean", "sum"}, default="mean"
            Average or sum over the pairs (a sum over no pairs is 0).
        weights : Tensor of shape (P,), optional
            Weight of each pair's loss (both of its label terms).

        Returns
        -------
        loss : scalar Tensor
        """
        n_pairs = len(class_logits)
        if self.probability_space and class_logits.device.type == "cpu" and n_pairs:
            scale = 1.0 if reduction == "sum" else 1.0 / n_pairs
            loss, accurate = ProbabilitySpaceLoss.apply(
                class_logits, confusion_logits, labels, partner_labels, lam, scale, weights
            )
            if accurate:
                return loss
        return self.log_space(class_logits, confusion_logits, labels, partner_labels, lam, reduction, weights)

    @staticmethod
    def log_space(
        class_logits, confusion_logits, labels, partner_labels, lam, reduction="mean", weights=None
    ):
        """The loss computed in log space throughout, with autograd; the arguments of :meth:`forward`."""
        n_classes = class_logits.shape[1]
        log_class_proba = class_logits - torch.logsumexp(class_logits, 1, keepdim=True)
        # log p(y | x) - log sum_z exp(logit[y, z]): everything in log P(z | x, a) but the column.
        base = log_class_proba - torch.logsumexp(confusion_logits, 2)
        columns = label_columns(labels, partner_labels, n_classes)
        log_annotation_proba = torch.logsumexp(base[:, :, None] + confusion_logits.gather(2, columns), 1)
        lam = lam.to(log_annotation_proba.dtype)
        per_pair = lam * log_annotation_proba[:, 0] + (1 - lam) * log_annotation_proba[:, 1]
        if weights is not None:
            per_pair = per_pair * weights
        return -(per_pair.sum() if reduction == "sum" else per_pair.mean())


class AnnotMixModule(AnnotatorRepresentation, CrowdModule):
    """GT model, annotator representation and AP head in one module.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M (rows of the embedding table).
    instance_dim : int
        Size D of the GT model's embedding.
    n_classes : int
        Number of classes C.
    annotator_dim : int, default=128
        Size E of the annotator representation.
    hidden_size : int, default=128
        Width of the AP head's hidden layer.
    eta : float, default=0.9
        Initial diagonal of the confusion matrices.
    annotator_features : Tensor of shape (M, K), optional
        Encoded features of the annotators; required by the feature
        representations.
    representation : {"embedding", "features", "features+embedding"}, default="embedding"
        Where an annotator's vector comes from: a free row per annotator
        (``annotator_embedding``, the paper's model), an affine map of its
        features (:class:`~skannot._nn.AnnotatorFeatureMap`), or that map
        plus a per-annotator correction that starts at zero
        (:class:`~skannot._nn.AnnotatorCorrection`, then the
        ``annotator_embedding``).
    """

    supports_mixup = True

    def __init__(
        self,
        gt_model,
        n_annotators,
        instance_dim,
        n_classes,
        annotator_dim=128,
        hidden_size=128,
        eta=0.9,
        annotator_features=None,
        representation="embedding",
    ):
        super().__init__(gt_model)
        self.n_annotators = n_annotators
        # With ``labelled``: annotators without training labels are predicted as the average
        # annotator (with features: from their own features, plus the mean correction).
        self.build_annotator_representation(
            n_annotators, annotator_dim, annotator_features, representation, nn.Embedding
        )
        self.annotator_head = AnnotatorHead(instance_dim, annotator_dim, hidden_size, n_classes, eta)
        self.loss = AnnotMixLoss()

    def annotator_rows(self, annotators):
        """Training representation (P, E) of ``annotators`` (P,): every annotator reads its own vector."""
        if self.representation == "embedding":
            return self.annotator_embedding(annotators)
        vectors = self.annotator_feature_map(annotators)
        if self.representation == "features+embedding":
            vectors = vectors + self.annotator_embedding(annotators)
        return vectors

    def annotator_vectors(self, annotators):
        """Representations (P, E) of ``annotators`` (P,) for prediction.

        An annotator without labels gets the mean embedding of the labelled
        ones; with features, its own features' vector (plus the mean
        correction of the labelled annotators).
        """
        if self.representation == "features":
            return self.annotator_feature_map(annotators)
        vectors = self.annotator_embedding(annotators)
        if not bool(self.labelled.all()):
            mean = self.annotator_embedding.weight[self.labelled].mean(0)
            vectors = torch.where(self.labelled[annotators, None], vectors, mean)
        if self.representation == "features+embedding":
            vectors = vectors + self.annotator_feature_map(annotators)
        return vectors

    def log_confusion_of(self, embedding, vectors):
        """``log P(z | x, a, y)`` (P, C, C) from instance embeddings (P, D) and annotator vectors (P, E)."""
        return self.annotator_head(embedding.detach(), vectors)

    def log_confusion(self, embedding, annotators):
        return self.log_confusion_of(embedding, self.annotator_vectors(annotators))

    def projects_table(self, n_pairs):
        """Whether :meth:`pair_confusion_logits` projects the whole table for a batch of ``n_pairs`` pairs.

        Yes when the table has fewer rows than the batch has pairs and takes dense gradients.
        """
        table = getattr(self, "annotator_embedding", None)
        return not (table is not None and table.sparse) and self.n_annotators < n_pairs

    def pair_confusion_logits(
        self, instance_embedding, annotators, lam=None, partner=None, pairs=None, project_table=None
    ):
        """Unnormalised ``log P(z | x, a~, y)`` of shape (P, C, C) for pairs with mixed annotators.

        The annotator representation of pair ``p`` is ``lam[p] * E[a] + (1 -
        lam[p]) * E[a']`` with ``E`` the representation table
        (:meth:`annotator_table`: the embedding table, or the map of the
        annotators' features, which is affine, so that this mixes the
        feature vectors with the same weight), ``a`` the pair's annotator
        and ``a'`` its partner's (just ``E[a]`` when ``lam`` is None). The
        AP head's first layer is affine in it, so its output is
        ``lam * T[a] + (1 - lam) * T[a']`` for the projected table ``T = E
        W_a^T + b``: with fewer annotators than pairs in the batch, the table
        is projected once and its rows are mixed, which saves multiplications;
        otherwise rows of ``E`` are looked up once per pair of the batch (so
        a sparse table gradient has one row per pair), mixed and projected.
        Both give the same values up to rounding. The instance embedding is
        detached and enters through the other columns of that layer.

        Parameters
        ----------
        instance_embedding : Tensor of shape (P, D)
            GT-model embeddings of the computed pairs' (mixed) instances.
        annotators : LongTensor of shape (N,)
            Annotator of every pair of the batch.
        lam : Tensor of shape (P,), optional
            Weight of each computed pair's own annotator; None means no mixing.
        partner : LongTensor of shape (P,), optional
            Position in ``annotators`` of each computed pair's partner;
            required with ``lam``.
        pairs : slice, optional
            The computed pairs among the batch's N (all by default; a
            process of data-parallel training computes a slice).
        project_table : bool, optional
            Project the whole table first; by default when the table has
            fewer rows than the batch has pairs and dense gradients.

        Returns
        -------
        confusion_logits : Tensor of shape (P, C, C)
            Row ``y``, column ``z``.
        """
        head = self.annotator_head
        n_instance = instance_embedding.shape[1]
        instance_weight = head.hidden.weight[:, :n_instance]
        annotator_weight = head.hidden.weight[:, n_instance:]
        if project_table is None:
            project_table = self.projects_table(len(annotators))
        own = annotators if pairs is None else annotators[pairs]
        if project_table:
            projected = F.linear(self.annotator_table(), annotator_weight, head.hidden.bias)  # (M, H)
            annotator_part = F.embedding(own, projected)
            if lam is not None:
                annotator_part = mix(annotator_part, F.embedding(annotators[partner], projected), lam)
        else:
            looked_up = self.annotator_rows(annotators)  # one lookup per pair of the batch
            annotator_embedding = looked_up if pairs is None else looked_up[pairs]
            if lam is not None:
                annotator_embedding = mix(annotator_embedding, looked_up[partner], lam)
            annotator_part = F.linear(annotator_embedding, annotator_weight, head.hidden.bias)
        hidden = torch.addmm(annotator_part, instance_embedding.detach(), instance_weight.t()).relu_()
        return head.output(hidden).view(-1, head.n_classes, head.n_classes)

    def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
        """annot-mix's loss of one batch: the marginal likelihood of the (mixed) pairs.

        With ``lam``, each pair's instance, annotator embedding and one-hot
        label are mixed with its partner pair's, all with the pair's weight
        (see :meth:`pair_confusion_logits` and :class:`AnnotMixLoss`);
        without, the GT model runs once on the batch's instances. ``weights``
        (already mixed by the net) scale each pair's loss.
        Parameters and returns as for :meth:`CrowdModule.training_loss`.
        """
        if lam is not None:
            logits, embedding = self.gt_model(mix_pairs(x[rows], lam, partner))
            confusion_logits = self.pair_confusion_logits(embedding, annotators, lam, partner)
            partner_labels = labels[partner]
        else:
            logits, embedding = self.gt_model(x)
            logits, embedding = logits[rows], embedding[rows]
            confusion_logits = self.pair_confusion_logits(embedding, annotators)
            lam = torch.ones(len(rows), device=x.device)
            partner_labels = labels
        loss = self.loss(
            logits.float(), confusion_logits.float(), labels, partner_labels, lam, weights=weights
        )
        return loss, logits


class AnnotMixClassifier(AnnotatorFeaturesMixin, BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with annot-mix.

    Annot-mix [1]_ learns a ground-truth (GT) model ``p(y | x)`` jointly with an
    annotator-performance (AP) model ``P(z | x, a, y)``, a C x C confusion
    matrix for each (instance, annotator) pair, by maximising the marginal
    likelihood ``sum_y p(y | x) P(z | x, a, y)`` of the observed annotations.
    Mixup [2]_ is applied to (instance, annotator, label) triples.

    Parameters
    ----------
    alpha : float >= 0, default=1.0
        Mixing weights are drawn from Beta(alpha, alpha); ``alpha=0`` turns
        mixup off.
    eta : float in (1/n_classes, 1), default=0.9
        Prior annotator accuracy: every confusion matrix starts with ``eta``
        on its diagonal and ``(1 - eta) / (n_classes - 1)`` elsewhere.
    annotator_embed_dim : int, default=128
        Size of the learned annotator embedding.
    annotator_hidden_size : int, default=128
        Width of the AP head's hidden layer.
    sparse_annotator_updates : bool or "auto", default="auto"
        How the annotator embedding table is trained. False: like every other
        parameter, by ``optimizer``, whose update touches every row at every
        step (rows of annotators absent from the batch still move with
        momentum), so a step costs O(n_annotators x annotator_embed_dim).
        True: lazily, by :class:`torch.optim.SparseAdam` at the current
        learning rate, which updates only the rows of the annotators in the
        batch, so the cost of a step does not grow with the number of
        annotators; ``optimizer__*`` settings such as weight decay then do
        not apply to the table. ``"auto"`` is True when the table has more
        parameters than the rest of the model (with the defaults on 124
        features and 10 classes: above 880 annotators). With
        ``annotator_representation="features"`` there is no table, and
        True is refused.
    annotator_features : array-like of shape (n_annotators, n_annotator_features) or DataFrame, default=None
        What is known about each annotator (experience, test scores, a
        specialty): one row per annotator of ``Z``, in its column order, or
        a DataFrame indexed by the annotator names (the column names of a
        DataFrame ``Z``, else ``0 .. n_annotators - 1``), in any order. A
        DataFrame's categorical, string and object columns are one-hot
        encoded (an unseen category at prediction time gives zeros); then
        every column is standardised over the training annotators. NaN and
        infinite values are refused. With features the annotator vector is
        an affine map of them (see ``annotator_representation``), so the
        model shares what it learns across similar annotators and predicts
        annotators who gave no label: ``predict_annotator_proba``,
        ``predict_annotator_confusion`` and ``predict_annotator_accuracy``
        take ``annotator_features=`` of new annotators. Triple mixup mixes
        the feature vectors with the same weight as the instances and
        labels, as the paper mixes one-hot annotator vectors. The paper has
        one-hot annotators only; features are skannot's extension, measured
        in ``docs/user_guide/annotator_features.md``.
    annotator_representation : {"auto", "embedding", "features", "features+embedding"}, default="auto"
        Where the AP head's annotator vector comes from. ``"embedding"``: a
        free learned vector per annotator (the paper's model; an annotator
        without labels is the average annotator). ``"features"``: an affine
        map of ``annotator_features``, shared by all annotators.
        ``"features+embedding"``: that map plus a per-annotator correction
        that starts at zero, learned from the annotator's own labels (new
        annotators and those without labels get the mean correction).
        ``"auto"``: ``"features"`` with ``annotator_features``, else
        ``"embedding"``.
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        Estimated confusion matrix of each annotator; entry ``[m, y, z]`` is
        the probability that annotator ``m`` says ``classes_[z]`` when the
        truth is ``classes_[y]``. It is ``P(z | x, m, y)`` averaged over the
        training instances annotator ``m`` labelled, weighted by the estimated
        posterior ``p(y | x)``, so its cost grows with the number of labels.
        An annotator without labels is modelled as the average annotator
        (the mean of the learned annotator embeddings), or with
        ``annotator_features`` from its own features, summarised over up to
        1,024 training instances. Rows sum to 1.
    annotator_accuracy_ : ndarray of shape (n_annotators_,)
        Estimated fraction of each annotator's training labels that are
        correct: the mean, over its labels ``z``, of their ``support`` (see
        :meth:`label_quality`), the probability of class ``z`` given the
        item's *other* labels under the annotator model and a uniform class
        prior (``p(y = z | x)`` where the item has no other label). Neither
        the label's own likelihood nor ``p(y | x)``, which has learned the
        label, enters, so an annotator does not vouch for itself; on Music
        Genres this ranks annotators better than the model's expected
        accuracy ``mean_x sum_y p(y | x) P(z = y | x, m, y)`` and than
        agreement with majority vote (``docs/user_guide/cleaning.md``). For
        an annotator without labels it is that expected accuracy over up to
        1,024 training instances.
    sparse_annotator_updates_ : bool
        Whether the annotator table was trained with sparse updates (the
        resolved ``sparse_annotator_updates``).
    annotator_representation_ : str
        The resolved ``annotator_representation``.
    n_annotator_features_in_ : int
        Columns of ``annotator_features`` seen in ``fit`` (0 without).
    annotator_feature_names_in_ : ndarray of shape (n_annotator_features_in_,)
        Column names of ``annotator_features``, when it was a DataFrame.
    annotator_encoder_ : AnnotatorFeatureEncoder or None
        The fitted encoding of the annotator features (one-hot columns and
        standardisation); None without features.

    Notes
    -----
    Interrupting ``fit`` with Ctrl-C (``KeyboardInterrupt``) during training
    ends the epoch loop early, as in skorch: ``fit`` then returns normally
    with the weights reached so far, ``history_`` holds the epochs that were
    started, and the estimator predicts. A fit that fails in any other way,
    including a diverged loss, leaves the estimator unfitted.

    References
    ----------
    .. [1] M. Herde, L. Lührs, D. Huseljic and B. Sick, "Annot-Mix: Learning
       with Noisy Class Labels from Multiple Annotators via a Mixup
       Extension", ECAI 2024.
    .. [2] H. Zhang, M. Cisse, Y. N. Dauphin and D. Lopez-Paz, "mixup: Beyond
       Empirical Risk Minimization", ICLR 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import AnnotMixClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = AnnotMixClassifier(max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_confusion_.shape
    (3, 2, 2)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "eta": [Interval(Real, 0, 1, closed="neither")],
        "annotator_embed_dim": [Interval(Integral, 1, None, closed="left")],
        "annotator_hidden_size": [Interval(Integral, 1, None, closed="left")],
        "sparse_annotator_updates": ["boolean", StrOptions({"auto"})],
        "annotator_features": ["array-like", None],
        "annotator_representation": [StrOptions(set(REPRESENTATIONS))],
    }
    _method_name = "annot-mix"

    def __init__(
        self,
        module=None,
        *,
        alpha=1.0,
        eta=0.9,
        annotator_embed_dim=128,
        annotator_hidden_size=128,
        sparse_annotator_updates="auto",
        annotator_features=None,
        annotator_representation="auto",
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self.alpha = alpha
        self.eta = eta
        self.annotator_embed_dim = annotator_embed_dim
        self.annotator_hidden_size = annotator_hidden_size
        self.sparse_annotator_updates = sparse_annotator_updates
        self.annotator_features = annotator_features
        self.annotator_representation = annotator_representation

    def _check_method_params(self, n_classes):
        check_eta(self.eta, n_classes)
        representation = self._resolved_representation()
        if representation == "features" and self.sparse_annotator_updates is True:
            raise ValueError(
                "sparse_annotator_updates=True trains a per-annotator table lazily, but "
                "annotator_representation='features' has none; set sparse_annotator_updates='auto' or "
                "False, or choose 'features+embedding'."
            )

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        features = self._training_annotator_features()
        return AnnotMixModule(
            gt_model,
            n_annotators=n_annotators,
            instance_dim=instance_dim,
            n_classes=n_classes,
            annotator_dim=self.annotator_embed_dim,
            hidden_size=self.annotator_hidden_size,
            eta=self.eta,
            annotator_features=features,
            representation=self.annotator_representation_,
        )

    def _net_options(self, module):
        sparse = self.sparse_annotator_updates
        table = getattr(module, "annotator_embedding", None)
        if table is None:
            sparse = False
        elif sparse == "auto":
            size = table.weight.numel()
            sparse = size > sum(p.numel() for p in module.parameters()) - size
        if table is not None:
            table.sparse = sparse
        self.sparse_annotator_updates_ = sparse
        return {"alpha": self.alpha, "sparse_annotators": sparse}
