"""The shared base of the family: everything an estimator does that is not its method.

:class:`BaseCrowdClassifier` owns the common parameters, input validation,
``classes_`` and annotator names, the skorch net and its training loop on
batches of observed pairs, the divergence check, prediction, annotator
summaries, scoring, warm starts and persistence. A method (one file in
``skannot/classifiers/``) adds its own parameters and builds its
:class:`~skannot._nn.CrowdModule`, which holds its annotator model and loss.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import LRScheduler, ProgressBar
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from ._annotators import annotator_indices, check_fitted_annotations
from ._config import get_config
from ._consensus import (
    annotator_report_frame,
    consensus_from_evidence,
    label_quality_frame,
    sample_labels,
)
from ._large_data import DatasetRows, read_crowd_dataset
from ._nn import MLP, Dropout
from ._random import initialize_, seeded_build
from ._training import (
    AnnotationValidation,
    CrowdDataset,
    CrowdNet,
    PairBatchIterator,
    held_out_rows,
    inference_chunks,
)
from ._validation import Annotations, check_aligned_index, check_annotations, check_sample_weight
from .exceptions import TrainingDivergedError
from .metrics import annotation_accuracy_score

#: Prefixes of the nested parameters passed on to the components, skorch style.
PREFIXES = ("module__", "optimizer__", "lr_scheduler__", "callbacks__")
#: Rows per forward pass of the GT model at prediction time.
_ROW_CHUNK = 8192
#: Upper bound on (pairs x C x C) floats held at once by the annotator model.
_PAIR_BUDGET = 1 << 22
#: Most classes ``fit`` accepts: annotator models hold C x C values per annotator or pair.
_MAX_CLASSES = 1000
#: Training instances over which annotators without any label are summarised.
_REFERENCE_ROWS = 1024

#: The docs of the shared parameters; each method's docstring places them with ``{shared_parameters}``.
SHARED_PARAMETERS = """\
    module : None, nn.Module class or nn.Module instance, default=None
        GT model. ``None`` builds the tabular :class:`~skannot.MLP` from
        ``hidden_sizes``, ``dropout`` and ``batch_norm``. A custom module's
        ``forward(x)`` must return ``(logits, embedding)`` of shapes
        (batch, n_classes) and (batch, embedding_dim); annotator models that
        depend on the instance read the embedding. A class is instantiated
        with the ``module__*`` parameters, plus ``n_features`` and
        ``n_classes`` when its constructor takes them and they are not
        given; an instance is deep-copied.
    hidden_sizes : tuple of int, default=(256, 128)
        Hidden layer widths of the default MLP.
    dropout : float in [0, 1), default=0.5
        Dropout of the default MLP.
    batch_norm : bool, default=True
        Batch normalisation in the default MLP.
    max_epochs : int, default=50
        Passes over the training instances.
    batch_size : int >= 2, default=64
        Instances per batch; every observed label of those instances is a
        training pair of the batch.
    lr : float, default=1e-2
        Learning rate.
    optimizer : torch optimizer class, default=torch.optim.RAdam
        Configure it further with ``optimizer__*`` (e.g.
        ``optimizer__weight_decay=1e-4``). With the ``flat_radam`` fast path
        on (see :func:`skannot.config_context`), ``torch.optim.RAdam`` with
        options among ``lr``, ``betas``, ``eps``, ``weight_decay``,
        ``decoupled_weight_decay``, ``maximize`` and ``foreach`` runs as
        ``skannot._fast.FlatRAdam``: the same update on one contiguous
        buffer holding all parameters, in one pass of torch's fused Adam
        kernel once the update is rectified. Other optimizers get
        ``foreach=True`` where they accept it.
    lr_scheduler : {"cosine"} or None, default="cosine"
        ``"cosine"`` anneals the learning rate to 0 over ``max_epochs``
        (``lr_scheduler__*`` parameters go to
        :class:`torch.optim.lr_scheduler.CosineAnnealingLR`); None keeps it
        constant.
    classes : array-like of shape (n_classes,), default=None
        All class labels; by default the labels observed in ``Z``.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation in ``Z``. NaN, None and ``pandas.NA`` are
        missing in float, object and DataFrame input in any case.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (a GPU if present).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout and mixup, so that
        an int gives reproducible fits on the CPU, also in threads. A fit
        draws from its own generators, not from torch's global one (see
        ``docs/reliability.md``, "Randomness and threads").
    verbose : int, default=0
        ``> 0`` prints the training loss per epoch and a progress bar.
    warm_start : bool, default=False
        If True and already fitted on data with the same features, classes
        and annotators, ``fit`` continues from the current weights with a
        fresh optimizer and a new learning-rate cycle of ``max_epochs``;
        ``history_`` then records this latest fit. Training settings changed
        with ``set_params`` in between (``lr``, ``max_epochs``,
        ``batch_size``, ``optimizer``, ``callbacks`` and the method's
        training settings such as ``alpha``) apply; the network's shape and
        initialisation settings stay those of the first fit.
    mixed_precision : bool, default=False
        Run the forward passes of training under bfloat16 autocast on CUDA
        (the loss and all prediction stay in float32). Refused on the CPU,
        where bfloat16 autocast is slower for layers of this size.
    compile : bool, default=False
        Compile the forward part of each training step with
        :func:`torch.compile` (dynamic shapes). Meant for CUDA; the first
        steps pay the compilation time.
    callbacks : list of skorch callbacks or (name, callback) tuples, default=None
        Extra skorch callbacks (e.g. ``skorch.callbacks.EarlyStopping``
        monitoring ``train_loss``, or ``valid_loss`` with
        ``early_stopping=True``); ``callbacks__name__param`` sets their
        parameters.
    class_weight : dict, "balanced" or None, default=None
        Weight of the loss of each training label by its class: the
        annotator's observed label for the crowd methods, the aggregated
        label for :class:`~skannot.AggregateClassifier` (the true class is
        unknown, so it cannot be weighted). A dict maps class labels to
        weights (classes left out weigh 1); ``"balanced"`` gives class ``c``
        the weight ``n / (n_classes * n_c)``, with ``n_c`` the number of
        training instances whose majority vote is ``c`` (an instance tied
        between classes counts for each in equal shares). Multiplies
        ``sample_weight``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the labelled instances, record
        after every epoch the mean negative log-likelihood of their
        annotations (``history_[:, "valid_loss"]``) and their annotation
        accuracy (``"valid_acc"``), stop when ``valid_loss`` has not improved
        for ``n_iter_no_change`` epochs, and keep the weights of the best
        epoch (``best_epoch_``). The held-out instances are chosen
        stratified by their majority-vote label. Off by default: it lowered
        annot-mix's test accuracy in every setting measured (Music Genres
        73.5 to 70.8 %, 10 seeds), while it helped majority vote on noisy
        simulated crowds (see ``docs/user_guide/model_selection.md``).
    validation_fraction : float in (0, 1), default=0.1
        Share of the labelled instances held out with ``early_stopping``.
    n_iter_no_change : int >= 1, default=10
        Epochs without a lower ``valid_loss`` after which
        ``early_stopping`` stops.
    gt_weight_decay : float >= 0, default=0.0
        Weight decay (the optimizer's ``weight_decay``) of the GT model's
        parameters only, through an optimizer parameter group; the
        annotator model keeps ``optimizer__weight_decay`` (0 by default).
        The annot-mix paper uses 1e-4 on the GT model and 0 on the
        annotator model for its image data sets.
    **kwargs
        Nested parameters: ``module__*``, ``optimizer__*``, ``lr_scheduler__*``
        and ``callbacks__*``, reachable by ``set_params`` and grid search."""

#: The docs of the fitted attributes every estimator of the family has.
SHARED_ATTRIBUTES = """\
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` was a DataFrame with string column names.
    n_annotators_ : int
        Number of annotator columns of ``Z``.
    annotator_names_ : ndarray of shape (n_annotators_,)
        Column names of ``Z`` when it was a DataFrame, else ``0 .. n_annotators_ - 1``.
    n_labels_per_annotator_ : ndarray of shape (n_annotators_,)
        Number of observed training labels of each annotator.
    fast_paths_ : frozenset of str
        The CPU fast paths the fit used (see :func:`skannot.config_context`).
    net_ : skannot._training.CrowdNet
        The fitted skorch net; ``net_.module_`` is the torch module.
    history_ : skorch.History
        Per-epoch record of the latest ``fit`` (``history_[:, "train_loss"]``;
        with ``early_stopping``, also ``"valid_loss"``, ``"valid_acc"`` and
        ``"valid_loss_best"``).
    best_epoch_ : int
        With ``early_stopping``: the epoch (counted from 1) whose weights
        were kept, the one with the lowest ``valid_loss``.
    device_ : torch.device
        Device the model lives on."""

#: ``annotator_accuracy_`` of the methods whose confusion matrices do not depend on the
#: instance; their docstrings place it with ``{class_level_accuracy}``.
CLASS_LEVEL_ACCURACY = """\
    annotator_accuracy_ : ndarray of shape (n_annotators_,)
        Estimated fraction of each annotator's training labels that are
        correct: the mean ``support`` of its labels (see
        :meth:`label_quality`), the probability of the label's class given
        the item's other labels, so that a label does not vouch for itself.
        The learned matrix's own expectation, its diagonal weighted by the
        mean ``p(y | x)`` over the annotator's instances, is
        ``(annotator_confusion_.diagonal(axis1=1, axis2=2) * prior).sum(1)``;
        the support ranks annotators better on Music Genres
        (``docs/user_guide/cleaning.md``)."""


def check_eta(eta, n_classes):
    """Refuse an initial diagonal ``eta`` outside (1 / n_classes, 1) with a message saying why.

    Parameters
    ----------
    eta : float
        Prior probability of a correct label (the methods' ``eta``).
    n_classes : int
        Number of classes C.
    """
    if not 1 / n_classes < eta < 1:
        raise ValueError(
            f"eta={eta} must lie in (1/n_classes, 1) = ({1 / n_classes:.4g}, 1) for "
            f"{n_classes} classes: annotators are assumed better than random guessing."
        )


def resolve_device(device):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device into a torch.device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'auto'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available on this machine; use "
                "device='cpu', or device='auto' to take a GPU only when there is one."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    elif resolved.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'auto'.")
    return resolved


class BaseCrowdClassifier(ClassifierMixin, BaseEstimator):
    """Base of the learning-from-crowds estimators: a GT model trained on annotations.

        Not used directly: each method subclasses it with its own parameters
        (listed in its ``__init__``, which passes the shared ones on) and its
        :meth:`_build_crowd_module`. The subclass's constructor signature, as
        ``inspect.signature`` and ``get_params`` see it, is its own parameters
        followed by the shared ones, and ``{shared_parameters}`` /
        ``{shared_attributes}`` in its docstring stand for their docs.

        Parameters
        ----------
    {shared_parameters}
    """

    _parameter_constraints = {
        "module": [None, callable],
        "hidden_sizes": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [callable],
        "lr_scheduler": [StrOptions({"cosine"}), None],
        "classes": ["array-like", None],
        "missing_label": "no_validation",
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "mixed_precision": ["boolean"],
        "compile": ["boolean"],
        "callbacks": [list, None],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "gt_weight_decay": [Interval(Real, 0, None, closed="left")],
    }

    #: Short name of the method in messages.
    _method_name = "this estimator"

    def __init__(
        self,
        module=None,
        *,
        hidden_sizes=(256, 128),
        dropout=0.5,
        batch_norm=True,
        max_epochs=50,
        batch_size=64,
        lr=1e-2,
        optimizer=torch.optim.RAdam,
        lr_scheduler="cosine",
        classes=None,
        missing_label=-1,
        device="cpu",
        random_state=None,
        verbose=0,
        warm_start=False,
        mixed_precision=False,
        compile=False,
        callbacks=None,
        class_weight=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        gt_weight_decay=0.0,
        **kwargs,
    ):
        self.module = module
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.classes = classes
        self.missing_label = missing_label
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.mixed_precision = mixed_precision
        self.compile = compile
        self.callbacks = callbacks
        self.class_weight = class_weight
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.gt_weight_decay = gt_weight_decay
        unknown = [key for key in kwargs if not key.startswith(PREFIXES)]
        if "annotator_features" in unknown:
            raise TypeError(
                f"{type(self).__name__} got annotator_features, but its annotator model is a free "
                "confusion matrix per annotator (or, for aggregation, no annotator model), which cannot "
                "be computed from features; "
                "AnnotMixClassifier(annotator_features=...) and MaDLClassifier(annotator_features=...) "
                "learn annotators from their features."
            )
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {unknown}; nested "
                f"parameters must start with one of {list(PREFIXES)}."
            )
        self._nested_params = dict(kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__doc__:
            for marker, text in (
                ("    {shared_parameters}", SHARED_PARAMETERS),
                ("    {shared_attributes}", SHARED_ATTRIBUTES),
                ("    {class_level_accuracy}", CLASS_LEVEL_ACCURACY),
            ):
                cls.__doc__ = cls.__doc__.replace(marker, text)
        if "__init__" in vars(cls) and not hasattr(cls.__init__, "__signature__"):
            parent = next(
                base
                for base in cls.__mro__[1:]
                if "__init__" in vars(base) and issubclass(base, BaseCrowdClassifier)
            )
            cls.__init__.__signature__ = _merged_signature(cls.__init__, parent.__init__)

    # -- parameters --------------------------------------------------------

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update(self._nested_params)
        return params

    def set_params(self, **params):
        nested = {key: params.pop(key) for key in list(params) if key.startswith(PREFIXES)}
        super().set_params(**params)
        self._nested_params.update(nested)
        return self

    def _params_for(self, prefix):
        start = prefix + "__"
        return {
            key[len(start) :]: value for key, value in self._nested_params.items() if key.startswith(start)
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.classifier_tags.multi_label = False
        return tags

    def __setstate__(self, state):
        # skorch moves a GPU-trained net to the CPU when it is unpickled on a machine
        # without CUDA; prediction must send its inputs to where the weights now are.
        device = state.get("device_")
        if device is not None and device.type == "cuda" and not torch.cuda.is_available():
            state = {**state, "device_": torch.device("cpu")}
        super().__setstate__(state)

    # -- what a method defines ------------------------------------------------

    def _check_method_params(self, n_classes):
        """Check the method's parameters against the data (here: nothing)."""

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        """The method's :class:`~skannot._nn.CrowdModule` around ``gt_model``."""
        raise NotImplementedError

    def _training_annotations(self, annotations, n_classes):
        """The annotations the net trains on (the observed ones; aggregating methods replace them)."""
        return annotations

    def _net_options(self, module):
        """Extra keyword arguments of the :class:`~skannot._training.CrowdNet` (none here)."""
        return {}

    # -- fitting -----------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, Z=None, sample_weight=None):
        """Fit the GT and annotator models to instances and their noisy annotations.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features), or torch Dataset
            Training instances (numeric; NaN and inf are refused). For data
            that does not fit in memory, a torch ``Dataset`` whose items are
            ``(x, annotation_row)``, e.g. ``skorch.dataset.Dataset(X, Z)`` over
            ``np.memmap`` arrays: only the observed labels are loaded, the
            features are read batch by batch (see ``docs/large_data.md``).
        Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
            Annotations: ``Z[i, m]`` is annotator ``m``'s label of sample ``i``
            or ``missing_label``. A 1-D array is a single annotator. In a
            scipy sparse matrix the stored entries are the labels (a stored 0
            is class 0) and entries not stored are missing; it is never made
            dense. Samples without any label do not enter training. None when
            ``X`` is a Dataset.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each instance: it scales the loss of every
            label of that instance (multiplied by ``class_weight``; for a
            mixup pair, the weights of the two mixed labels are mixed with the
            same ``lambda``). The weights of the training labels are rescaled
            to mean 1, so only their ratios matter; all-one weights give the
            unweighted fit. In a ``Pipeline`` pass
            ``annotmixclassifier__sample_weight=w``, or with scikit-learn's
            metadata routing call ``set_fit_request(sample_weight=True)``.

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        ValueError
            For invalid parameters or data (see ``docs/reliability.md``).
        skannot.exceptions.TrainingDivergedError
            If the training loss becomes NaN or infinite; the estimator is
            then left unfitted.
        """
        name = type(self).__name__
        if Z is None and not isinstance(X, Dataset):
            # sklearn's wording, which its estimator checks and users of other classifiers know.
            raise ValueError(
                f"Z is None: {name} requires y to be passed, but the target y is None; "
                "pass the annotations Z of shape (n_samples, n_annotators), or a 1-D y for one annotator."
            )
        warm = self.warm_start and hasattr(self, "net_")
        if isinstance(X, Dataset):
            X, annotations, classes, names = self._read_dataset(X, Z, reset=not warm)
        else:
            check_aligned_index(X, Z)
            X = validate_data(self, X, dtype=np.float32, reset=not warm)
            annotations, classes, names = check_annotations(
                Z, missing_label=self.missing_label, classes=self.classes, n_samples=len(X)
            )
        n_classes = len(classes)
        if n_classes > _MAX_CLASSES:
            raise ValueError(
                f"Z has {n_classes} classes; {name} supports at most {_MAX_CLASSES}. Its annotator "
                "model holds a C x C confusion matrix per annotator (annot-mix and other instance-dependent "
                "models: per (instance, annotator) pair), so memory grows with C**2. Merge rare classes, "
                "or mark their labels as missing."
            )
        if n_classes < 2:
            raise ValueError(
                f"Z holds a single class ({classes.tolist()[0]!r}); a classifier needs more than one class. "
                "Pass classes=[...] listing every class if the others exist but were not observed."
            )
        self._check_method_params(n_classes)
        if warm:
            self._check_warm_start(classes, annotations.n_annotators)
        labelled = np.flatnonzero(np.diff(annotations.indptr) > 0)
        if len(labelled) < 2:
            raise ValueError(
                f"{name} needs at least 2 samples with an observed label; Z has {len(labelled)}."
            )
        sample_weight = check_sample_weight(sample_weight, annotations.n_samples)
        class_weights = self._class_weights(annotations.subset(labelled), classes)
        device = self._training_device()
        if self.mixed_precision and device.type != "cuda":
            raise ValueError(
                f"mixed_precision=True needs a CUDA device, but the model runs on {device}; "
                "set mixed_precision=False on the CPU."
            )

        # A fit that fails from here on (diverged loss, out of memory, an
        # interrupt outside skorch's epoch loop) must not leave a half-trained
        # estimator that looks fitted.
        try:
            self.classes_ = classes
            self.n_annotators_ = annotations.n_annotators
            self.annotator_names_ = names if names is not None else np.arange(annotations.n_annotators)
            self.device_ = device
            self.fast_paths_ = get_config()["fast_paths"]
            seed = self._fit_seed()
            labelled_annotations = annotations.subset(labelled)
            validation = None
            if self.early_stopping:
                held_out = held_out_rows(labelled_annotations, n_classes, self.validation_fraction, seed)
                validation = (self._rows(X, labelled[held_out]), labelled_annotations.subset(held_out))
                labelled = np.delete(labelled, held_out)
            train = annotations.subset(labelled)
            training_annotations = self._training_annotations(train, n_classes)
            weights = self._pair_weights(training_annotations, sample_weight, labelled, class_weights)
            dataset = CrowdDataset(self._rows(X, labelled), training_annotations, weights)
            # A warm start wraps the fitted module in a new net, so the current
            # training settings apply.
            module = self.net_.module_ if warm else self._build_module(X, n_classes, seed)
            Dropout.convert(module)
            _use_fast_paths(module, self.fast_paths_)
            if weights is not None:
                self._check_module_takes_weights(module)
            self.net_ = self._build_net(module, device, seed, validation)
            self.net_.initialize()
            self._check_callback_names()
            self.net_.partial_fit(dataset)
            self.history_ = self.net_.history
            if validation is not None:
                self.best_epoch_ = dict(self.net_.callbacks_)["annotation_validation"].best_epoch_
            self._check_finite_weights()
            # Over the labels the net trained on: held-out ones would describe untrained annotators.
            self._summarise_annotators(dataset.X, train)
        except BaseException:
            self._forget_fit()
            raise
        return self

    @staticmethod
    def _rows(X, rows):
        """The features of the samples ``rows`` as the net reads them (a tensor, or lazy Dataset rows)."""
        if isinstance(X, DatasetRows):
            return X.subset(rows)
        # Index only when some rows are left out: X[rows] would copy all of X.
        return _as_tensor(np.ascontiguousarray(X if len(rows) == len(X) else X[rows]))

    def _class_weights(self, annotations, classes):
        """Weight of each class's labels, shape (n_classes,), from ``class_weight``; None without it."""
        if self.class_weight is None:
            return None
        n_classes = len(classes)
        if isinstance(self.class_weight, str):
            # "balanced": n / (C n_c) over the majority votes, ties shared out equally.
            votes = annotations.votes(n_classes)
            top = votes == votes.max(1, keepdims=True)
            counts = (top / top.sum(1, keepdims=True)).sum(0)
            return np.where(counts > 0, len(votes) / (n_classes * np.maximum(counts, 1e-12)), 1.0)
        weights = np.ones(n_classes)
        index = {label: k for k, label in enumerate(classes.tolist())}
        for label, weight in self.class_weight.items():
            key = label.item() if isinstance(label, np.generic) else label
            if key not in index:
                raise ValueError(
                    f"class_weight names the class {label!r}, which is not among the classes "
                    f"{classes.tolist()}; use the class labels of Z as keys."
                )
            if not (isinstance(weight, Real) and np.isfinite(weight) and weight >= 0):
                raise ValueError(f"class_weight[{label!r}]={weight!r} must be a finite number >= 0.")
            weights[index[key]] = weight
        return weights

    def _pair_weights(self, annotations, sample_weight, rows, class_weights):
        """Weight of each training label (n_labels,), in CSR order; None for an unweighted fit."""
        if sample_weight is None and class_weights is None:
            return None
        weights = np.ones(annotations.n_labels)
        if sample_weight is not None:
            weights *= sample_weight[rows][annotations.samples]
        if class_weights is not None:
            weights *= class_weights[annotations.labels]
        if not weights.sum() > 0:
            raise ValueError(
                "sample_weight and class_weight give every training label zero weight; give some "
                "labelled instances and classes a positive weight."
            )
        return weights

    def _check_module_takes_weights(self, module):
        if "weights" not in inspect.signature(module.training_loss).parameters:
            raise ValueError(
                f"{type(self).__name__}'s module {type(module).__name__} has a training_loss without a "
                "weights argument, so it cannot train with sample_weight or class_weight; fit without "
                "them, or add weights=None to its training_loss and scale each pair's loss by it."
            )

    def _check_callback_names(self):
        """Refuse ``callbacks__NAME__...`` parameters that name no callback of the net."""
        names = {name for name, _ in self.net_.callbacks_}
        unknown = sorted(
            {key.split("__")[1] for key in self._nested_params if key.startswith("callbacks__")} - names
        )
        if unknown:
            raise ValueError(
                f"callbacks__ parameters name no callback: {unknown}. The callbacks are {sorted(names)}; "
                "name your own with (name, callback) tuples in callbacks=[...]."
            )

    def _check_finite_weights(self):
        """Refuse a fit whose last steps left non-finite weights (the loss is checked before each step)."""
        module = self.net_.module_
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDivergedError(
                    f"Training diverged: after the last step, {name} holds NaN or infinite values. "
                    f"Lower lr (now {self.lr}) or standardise the features of X (e.g. with StandardScaler)."
                )

    def _fit_seed(self):
        """The seed of torch's generators during ``fit``, drawn from ``random_state``."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _forget_fit(self):
        for name in [name for name in vars(self) if name.endswith("_") and not name.startswith("_")]:
            delattr(self, name)

    def _read_dataset(self, dataset, Z, reset):
        """Features (read lazily), annotations, classes and names of a Dataset given to ``fit``."""
        if Z is not None:
            raise ValueError(
                "fit(dataset) reads the annotations from the Dataset's (x, annotation_row) items; "
                "pass Z=None, or pass X and Z as arrays."
            )
        X, annotations, classes = read_crowd_dataset(
            dataset, missing_label=self.missing_label, classes=self.classes
        )
        if reset:
            self.n_features_in_ = X.n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            self._check_dataset_features(X)
        return X, annotations, classes, None

    def _check_dataset_features(self, rows):
        if rows.n_features != self.n_features_in_:
            raise ValueError(
                f"The Dataset has {rows.n_features} features, but {type(self).__name__} is fitted "
                f"on {self.n_features_in_}."
            )

    def _training_device(self):
        """Device the net trains on (the accelerated subclass lets Accelerate choose)."""
        return resolve_device(self.device)

    def _check_warm_start(self, classes, n_annotators):
        if not np.array_equal(classes, self.classes_) or n_annotators != self.n_annotators_:
            raise ValueError(
                "warm_start=True continues training the fitted model, which needs the same "
                f"classes and number of annotators: fitted on classes {self.classes_.tolist()} "
                f"and {self.n_annotators_} annotators, got {classes.tolist()} and {n_annotators}. "
                "Set warm_start=False to fit from scratch."
            )

    def _build_gt_model(self, n_features, n_classes):
        params = self._params_for("module")
        if self.module is None:
            sizes = tuple(self.hidden_sizes)
            if not sizes or not all(isinstance(s, Integral) and s > 0 for s in sizes):
                raise ValueError(
                    f"hidden_sizes={self.hidden_sizes!r} must be a non-empty sequence of positive ints."
                )
            return MLP(n_features, n_classes, sizes, self.dropout, self.batch_norm, **params)
        if isinstance(self.module, nn.Module):
            if params:
                raise ValueError(
                    f"module__ parameters {sorted(params)} need module to be a class; "
                    "module is an instance, so configure it before passing it."
                )
            return copy.deepcopy(self.module)
        accepted = inspect.signature(self.module).parameters
        for name, value in (("n_features", n_features), ("n_classes", n_classes)):
            if name in accepted and name not in params:
                params[name] = value
        return self.module(**params)

    def _build_module(self, X, n_classes, seed):
        """The method's module, its initial weights drawn from a generator seeded with ``seed``."""
        with seeded_build(seed):
            gt_model = self._build_gt_model(X.shape[1], n_classes)
            instance_dim = _embedding_dim(gt_model, X[:2], n_classes)
            module = self._build_crowd_module(
                gt_model, X.shape[1], instance_dim, n_classes, self.n_annotators_
            )
        initialize_(module, torch.Generator().manual_seed(seed))
        return module

    def _build_net(self, module, device, seed, validation=None):
        callbacks = list(self.callbacks or [])
        if validation is not None:
            # First, so that the user's callbacks (EarlyStopping, Checkpoint) read this epoch's valid_loss.
            scores = AnnotationValidation(
                partial(self._validation_scores, *validation), n_iter_no_change=self.n_iter_no_change
            )
            callbacks.insert(0, ("annotation_validation", scores))
        if self.lr_scheduler == "cosine":
            options = {"T_max": max(self.max_epochs, 1), **self._params_for("lr_scheduler")}
            t_max = options["T_max"]
            if not isinstance(t_max, Integral) or isinstance(t_max, bool) or t_max < 1:
                raise ValueError(
                    f"lr_scheduler__T_max={t_max!r} must be a positive int: the number of epochs over "
                    "which the cosine schedule anneals the learning rate (by default max_epochs)."
                )
            scheduler = LRScheduler(policy=torch.optim.lr_scheduler.CosineAnnealingLR, **options)
            callbacks.append(("lr_scheduler", scheduler))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        nested = {
            key: value
            for key, value in self._nested_params.items()
            if key.startswith(("optimizer__", "callbacks__"))
        }
        if self.gt_weight_decay:
            groups = nested.get("optimizer__param_groups", [])
            nested["optimizer__param_groups"] = [
                ("gt_model.*", {"weight_decay": self.gt_weight_decay}),
                *groups,
            ]
        if "optimizer__foreach" not in nested and "foreach" in inspect.signature(self.optimizer).parameters:
            # One multi-tensor update instead of a Python loop over parameters:
            # the same arithmetic, a third of the optimizer's time on the CPU.
            nested["optimizer__foreach"] = True
        return CrowdNet(
            module=module,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=PairBatchIterator,
            iterator_train__shuffle=True,
            train_split=None,
            callbacks=callbacks,
            device=device,
            verbose=self.verbose,
            fast_paths=self.fast_paths_,
            mixed_precision=self.mixed_precision,
            compile_step=self.compile,
            seed=seed,
            **self._net_options(module),
            **nested,
        )

    # -- annotator summaries -------------------------------------------------

    def _summarise_annotators(self, X, annotations):
        """Set ``annotator_confusion_`` and ``annotator_accuracy_`` (see the class docs).

        Per annotator ``m`` it sums, over pairs ``(x, m)``: ``w = p(y | x)``,
        ``w * P(. | x, m, y)`` and the unweighted ``P(. | x, m, y)``; the last
        keeps a row well defined when the model gives class ``y`` no mass.
        Annotators without labels are summarised over a fixed sample of up to
        1,024 training instances. ``annotator_accuracy_`` of an annotator with
        labels is the mean support of its labels (:meth:`_consensus_accuracy`);
        the diagonal sums give it for the others.
        """
        module = self.net_.module_.eval()
        counts = annotations.labels_per_annotator()
        self.n_labels_per_annotator_ = counts
        unlabelled = counts == 0
        module.mark_labelled_annotators(torch.from_numpy(~unlabelled).to(self.device_))
        sums = _AnnotatorSums(self.n_annotators_, len(self.classes_))
        with torch.inference_mode():
            self._add_pair_posteriors(sums, module, X, annotations)
            if unlabelled.any():
                reference = X[np.random.default_rng(0).permutation(len(X))[:_REFERENCE_ROWS]]
                n = len(reference)
                missing = np.flatnonzero(unlabelled)
                # Every instance of the reference sample paired with every unlabelled annotator,
                # a bounded number of annotators at a time.
                for chunk in np.array_split(missing, -(-len(missing) * n // _PAIR_BUDGET) or 1):
                    pairs = Annotations(
                        np.arange(0, n * len(chunk) + 1, len(chunk)),
                        np.tile(chunk, n),
                        np.zeros(n * len(chunk), dtype=np.int64),
                        self.n_annotators_,
                    )
                    self._add_pair_posteriors(sums, module, reference, pairs)
                counts = np.where(unlabelled, n, counts)
        self.annotator_confusion_, model_accuracy = sums.summaries(counts)
        self.annotator_accuracy_ = self._consensus_accuracy(X, annotations, model_accuracy)

    def _add_pair_posteriors(self, sums, module, X, annotations):
        """Add ``p(y | x)`` and ``P(z | x, a, y)`` of every observed pair to ``sums``, in float64.

        Raises :class:`~skannot.exceptions.TrainingDivergedError` when the
        model's outputs on the training instances are not finite (finite
        weights can still overflow on extreme features).
        """
        for (lo, hi), logits, embedding, annotators in self._observed_pairs(module, X, annotations):
            class_proba = F.softmax(logits.float(), dim=1).double().cpu()
            confusion = module.log_confusion(embedding, annotators).float().exp().double().cpu()
            if not (bool(torch.isfinite(class_proba).all()) and bool(torch.isfinite(confusion).all())):
                raise TrainingDivergedError(
                    "The fitted model gives NaN or infinite probabilities on training instances "
                    "(its outputs overflow). Standardise the features of X (e.g. with StandardScaler) "
                    f"or lower lr (now {self.lr})."
                )
            sums.add(torch.from_numpy(annotations.annotators[lo:hi]), class_proba, confusion)

    def _observed_pairs(self, module, X, annotations):
        """GT logits (P, C), embeddings (P, D) and annotators (P,) of the observed pairs, chunk by chunk.

        Yields ``((lo, hi), logits, embedding, annotators)`` for the pairs at
        CSR positions ``lo:hi``, on the model's device; chunks of rows of
        ``X`` are sized so that (pairs x C x C) stays within the memory budget.
        """
        device = self.device_
        samples = torch.from_numpy(annotations.samples)
        annotators = torch.from_numpy(annotations.annotators)
        rows_per_chunk = self._rows_per_pair_chunk(int(np.diff(annotations.indptr).max(initial=0)))
        for start, stop in inference_chunks(len(X), rows_per_chunk):
            lo, hi = int(annotations.indptr[start]), int(annotations.indptr[stop])
            if lo == hi:
                continue
            logits, embedding = module.gt_model(X[start:stop].to(device))
            rows = (samples[lo:hi] - start).to(device)
            yield (lo, hi), logits[rows], embedding[rows], annotators[lo:hi].to(device)

    def _rows_per_pair_chunk(self, pairs_per_row):
        """Rows per chunk so that (pairs x C x C) stays within the memory budget."""
        n_classes = len(self.classes_)
        return max(1, min(_ROW_CHUNK, _PAIR_BUDGET // max(1, pairs_per_row * n_classes * n_classes)))

    # -- prediction ----------------------------------------------------------

    def _validated_X(self, X):
        check_is_fitted(self)
        if isinstance(X, Dataset):
            rows = DatasetRows(X)
            self._check_dataset_features(rows)
            return rows
        return _as_tensor(validate_data(self, X, dtype=np.float32, reset=False))

    def _log_class_proba(self, X):
        module = self.net_.module_.eval()
        # Chunks are written into the result: no list of pieces, no second copy from a concatenation.
        out = torch.empty(len(X), len(self.classes_))
        with torch.inference_mode():
            for start, stop in inference_chunks(len(X), _ROW_CHUNK):
                logits = module(X[start:stop].to(self.device_)).float()
                out[start:stop] = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).cpu()
        return out

    def predict_proba(self, X):
        """Estimated class posteriors ``p(y | x)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; rows sum to 1.
        """
        return self._log_class_proba(self._validated_X(X)).exp_().numpy()

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed in log space.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return self._log_class_proba(self._validated_X(X)).numpy()

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        log_proba = self._log_class_proba(self._validated_X(X))
        return self.classes_[log_proba.argmax(1).numpy()]

    def predict_annotator_proba(self, X, annotators=None):
        """Probability of each annotator's label, ``P(z | x, a)``.

        Computed in chunks whose memory does not grow with ``len(X)``; the
        returned array itself has n_samples x n_annotators x n_classes entries.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        annotators : array-like of shape (n_selected,), default=None
            The annotators to predict, by name (values of
            ``annotator_names_``) or by column index; all by default.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_selected, n_classes)
            ``proba[i, j, z]`` is the probability that annotator
            ``annotators[j]`` labels sample ``i`` as ``classes_[z]``.
        """
        X = self._validated_X(X)
        if annotators is None:
            annotators = np.arange(self.n_annotators_)
        else:
            annotators = annotator_indices(annotators, self.annotator_names_)
        out = np.empty((len(X), len(annotators), len(self.classes_)), dtype=np.float32)
        selected = torch.from_numpy(annotators.astype(np.int64)).to(self.device_)
        rows_per_chunk = self._rows_per_pair_chunk(len(annotators))
        module = self.net_.module_.eval()
        with torch.inference_mode():
            for start, stop in inference_chunks(len(X), rows_per_chunk):
                log_proba, _ = module.annotator_log_proba(X[start:stop].to(self.device_), selected)
                out[start:stop] = log_proba.exp().cpu().numpy()
        return out

    def _annotation_log_likelihood(self, X, annotations):
        """``log P(z | x, a)`` of each observed label, from the pairs only.

        Parameters
        ----------
        X : Tensor of shape (n_samples, n_features)
            Validated instances.
        annotations : Annotations
            Observed labels of the rows of ``X``, with class indices into
            ``classes_``.

        Returns
        -------
        log_likelihood : ndarray of shape (n_labels,)
            In the CSR order of ``annotations``.
        """
        module = self.net_.module_.eval()
        out = torch.empty(annotations.n_labels, dtype=torch.float64)
        labels = torch.from_numpy(annotations.labels)
        with torch.inference_mode():
            for (lo, hi), logits, embedding, annotators in self._observed_pairs(module, X, annotations):
                log_proba = module.annotation_log_proba(logits.float(), embedding, annotators).double()
                log_proba = log_proba - torch.logsumexp(log_proba, 1, keepdim=True)
                out[lo:hi] = log_proba.gather(1, labels[lo:hi, None].to(log_proba.device))[:, 0].cpu()
        return out.numpy()

    def _validation_scores(self, X, annotations):
        """Mean negative log-likelihood and accuracy of the held-out ``annotations`` of ``X``."""
        log_likelihood = self._annotation_log_likelihood(X, annotations)
        predicted = self._log_class_proba(X).argmax(1).numpy()
        accuracy = float(np.mean(predicted[annotations.samples] == annotations.labels))
        return -float(log_likelihood.mean()), accuracy

    def score(self, X, Z, sample_weight=None):
        """Accuracy of the predictions against the observed annotations.

        Every observed label in ``Z`` counts once; missing entries are
        ignored. With a 1-D ``y`` this is plain accuracy. Used by
        ``GridSearchCV`` and ``cross_val_score`` when no ``scoring`` is given.
        Accuracy is chosen over the log-likelihood of the annotations
        (:func:`skannot.metrics.annotation_log_likelihood_scorer`) because it
        judges only the class predictions, so it compares with any other
        classifier scored on the same annotations and reads like ordinary
        accuracy, and because in the study of
        ``docs/user_guide/model_selection.md`` (``benchmarks/selection.py``:
        grids over annot-mix's ``alpha``, the network size and the methods,
        on Music Genres and three simulated crowds, 5 seeds) the model it
        picked was closer to the gold-best one on average (regret 0.71
        against 0.99 accuracy points) and its worst pick milder (6.8 against
        28.9), although the log-likelihood picked the gold-best model more
        often (38 against 33 of 60 times) and is the better scorer for
        settings that leave the model's capacity alone, such as annot-mix's
        ``alpha``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        Z : array-like or DataFrame of shape (n_samples, n_annotators) or (n_samples,)
            Annotations, with ``missing_label`` for missing entries.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample's labels.

        Returns
        -------
        score : float
        """
        return annotation_accuracy_score(
            Z, self.predict(X), missing_label=self.missing_label, sample_weight=sample_weight
        )

    # -- consensus, label quality and annotator reports ----------------------

    def _consensus(self, X, annotations, posterior=True):
        """Consensus posterior of every item and support of every label; the hook a method may override.

        Here the model's posterior ``p(y | x, z) ∝ p(y | x) prod_m P(z_m | x,
        m, y)`` (see :mod:`skannot._consensus`).

        Parameters
        ----------
        X : Tensor of shape (n_samples, n_features)
            Validated instances.
        annotations : Annotations
            Their observed labels, with fitted annotator and class indices.
        posterior : bool, default=True
            Compute the posterior; without it only the support, in memory
            that does not grow with ``n_samples``.

        Returns
        -------
        posterior : ndarray of shape (n_samples, n_classes) or None
        support : ndarray of shape (n_labels,)
        """
        with torch.inference_mode():
            log_prior = self._log_class_proba(X).double() if posterior else None
            return consensus_from_evidence(annotations, self._label_evidence(X, annotations), log_prior)

    def _label_evidence(self, X, annotations):
        """``(lo, hi, log p(y | x), log P(z_j | x, m, y))`` of the labels at CSR positions ``lo:hi``."""
        module = self.net_.module_.eval()
        labels = torch.from_numpy(annotations.labels)
        n_classes = len(self.classes_)
        for (lo, hi), logits, embedding, annotators in self._observed_pairs(module, X, annotations):
            log_prior = F.log_softmax(logits.float(), dim=1).double().cpu()
            log_confusion = module.log_confusion(embedding, annotators).float()
            columns = labels[lo:hi].to(log_confusion.device)[:, None, None].expand(-1, n_classes, 1)
            yield lo, hi, log_prior, log_confusion.gather(2, columns)[:, :, 0].double().cpu()

    def _consensus_accuracy(self, X, annotations, model_accuracy):
        """Mean support of each annotator's labels; ``model_accuracy`` for annotators without labels."""
        _, support = self._consensus(X, annotations, posterior=False)
        counts = annotations.labels_per_annotator()
        total = np.bincount(annotations.annotators, weights=support, minlength=self.n_annotators_)
        return np.where(counts > 0, total / np.maximum(counts, 1), model_accuracy)

    def _consensus_inputs(self, X, Z):
        """Validated ``X`` and the annotations ``Z`` read against the fitted annotators and classes."""
        check_is_fitted(self)
        check_aligned_index(X, Z)
        X_valid = self._validated_X(X)
        return X_valid, check_fitted_annotations(self, Z, len(X_valid))

    def predict_consensus_proba(self, X, Z):
        """Posterior of each item's true class given its features and its observed annotations.

        ``p(y | x, z) ∝ p(y | x) prod_m P(z_m | x, m, y)`` over the observed
        labels ``z_m`` of the item, computed in log space and in chunks (the
        memory grows with ``n_samples x n_classes`` and the number of labels,
        not with the number of annotators). An item without labels gets
        ``p(y | x)``, as :meth:`predict_proba` gives it. On the training items
        the GT model has learned their labels already, so this posterior
        leans on them more than an out-of-fold one would
        (:func:`skannot.model_selection.cross_val_predict` gives those); see
        ``docs/user_guide/cleaning.md`` for how the two compare.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Items, training or new ones.
        Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
            Their annotations by the fitted annotators, ``missing_label`` (or
            NaN/None) where missing. A DataFrame's columns are matched to
            ``annotator_names_`` by name (any order; annotators may be left
            out); any other ``Z`` has one column per fitted annotator, in the
            fitted order. Labels must be among ``classes_``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; rows sum to 1.

        Raises
        ------
        ValueError
            If ``Z`` does not have one row per item, has other annotators
            than the fit, or labels outside ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from skannot import AnnotMixClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 3)).astype("float32")
        >>> y = (X[:, 0] > 0).astype(int)
        >>> Z = np.where(rng.random((100, 3)) < 0.8, y[:, None], 1 - y[:, None])
        >>> clf = AnnotMixClassifier(max_epochs=3, random_state=0).fit(X, Z)
        >>> clf.predict_consensus_proba(X, Z).shape
        (100, 2)
        """
        X, annotations = self._consensus_inputs(X, Z)
        return self._consensus(X, annotations)[0]

    def predict_consensus(self, X, Z):
        """Most probable true class of each item given its features and annotations.

        The mode of :meth:`predict_consensus_proba` (ties go to the first
        class of ``classes_``).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
            As for :meth:`predict_consensus_proba`.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        return self.classes_[self.predict_consensus_proba(X, Z).argmax(1)]

    def label_quality(self, X, Z):
        """How likely each observed annotation is correct, one row per label.

        Sort by ``quality`` to list the labels most likely wrong first:
        ``clf.label_quality(X, Z).sort_values("quality")``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
            As for :meth:`predict_consensus_proba`.

        Returns
        -------
        quality : DataFrame of shape (n_labels, 7)
            One row per observed label, by item and then by annotator
            column, with the columns

            - ``sample``: the item, as the index label of ``X`` when it is a
              DataFrame (else of ``Z`` when that is one), else its row
              position;
            - ``annotator``: the annotator's name (``annotator_names_``);
            - ``label``: the label it gave;
            - ``quality``: ``p(y = label | x, z)``, the consensus posterior's
              probability that the label is correct, given the item's
              features and all its labels;
            - ``support``: the probability of the label's class from the
              item's *other* labels alone (their likelihoods under the
              annotator model and a uniform class prior; ``p(y = label |
              x)`` when the item has no other label). The label's own
              likelihood is left out, and so is the GT model, which has
              learned the label during ``fit``: nothing that saw the label
              vouches for it. ``annotator_accuracy_`` is its mean over an
              annotator's training labels;
            - ``consensus``: the item's consensus label
              (:meth:`predict_consensus`);
            - ``consensus_proba``: its posterior probability.

            ``quality`` rather than ``support`` ranks the wrong labels best
            (area under the ROC curve on Music Genres in
            ``docs/user_guide/cleaning.md``).

        Examples
        --------
        >>> import numpy as np
        >>> from skannot import AnnotMixClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 3)).astype("float32")
        >>> y = (X[:, 0] > 0).astype(int)
        >>> Z = np.where(rng.random((100, 3)) < 0.8, y[:, None], 1 - y[:, None])
        >>> clf = AnnotMixClassifier(max_epochs=3, random_state=0).fit(X, Z)
        >>> table = clf.label_quality(X, Z)
        >>> list(table.columns)
        ['sample', 'annotator', 'label', 'quality', 'support', 'consensus', 'consensus_proba']
        >>> len(table)  # one row per observed label
        300
        """
        X_valid, annotations = self._consensus_inputs(X, Z)
        posterior, support = self._consensus(X_valid, annotations)
        samples = sample_labels(X, Z, len(X_valid))
        return label_quality_frame(
            posterior, support, annotations, self.classes_, self.annotator_names_, samples
        )

    def annotator_report(self, X, Z):
        """A table of the annotators: labels given, estimated accuracy and agreement with the consensus.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
            As for :meth:`predict_consensus_proba`; on the training data the
            ``accuracy`` column equals ``annotator_accuracy_``.

        Returns
        -------
        report : DataFrame of shape (n_annotators_, 4)
            Indexed by ``annotator_names_`` (index name ``"annotator"``), in
            the fitted order, with the columns

            - ``n_labels``: the annotator's labels in ``Z``;
            - ``accuracy``: the estimated fraction of them that are correct,
              the mean ``support`` of :meth:`label_quality` over them;
            - ``agreement``: the fraction of them equal to the item's
              consensus label;
            - ``fitted_accuracy``: ``annotator_accuracy_``, estimated on the
              training data (also for annotators without labels in ``Z``).

            ``accuracy`` and ``agreement`` are NaN for an annotator without
            labels in ``Z``. Sort by ``accuracy`` to find the least reliable
            annotators.

        Examples
        --------
        >>> import numpy as np
        >>> from skannot import AnnotMixClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 3)).astype("float32")
        >>> y = (X[:, 0] > 0).astype(int)
        >>> Z = np.where(rng.random((100, 3)) < 0.8, y[:, None], 1 - y[:, None])
        >>> clf = AnnotMixClassifier(max_epochs=3, random_state=0).fit(X, Z)
        >>> clf.annotator_report(X, Z).columns.tolist()
        ['n_labels', 'accuracy', 'agreement', 'fitted_accuracy']
        """
        X_valid, annotations = self._consensus_inputs(X, Z)
        posterior, support = self._consensus(X_valid, annotations)
        return annotator_report_frame(
            posterior, support, annotations, self.annotator_names_, self.annotator_accuracy_
        )


class _AnnotatorSums:
    """Running per-annotator sums behind ``annotator_confusion_`` and ``annotator_accuracy_``."""

    def __init__(self, n_annotators, n_classes):
        self.weighted = torch.zeros(n_annotators, n_classes, n_classes, dtype=torch.float64)
        self.plain = torch.zeros_like(self.weighted)
        self.mass = torch.zeros(n_annotators, n_classes, dtype=torch.float64)

    def add(self, annotators, class_proba, confusion):
        self.weighted.index_add_(0, annotators, class_proba[:, :, None] * confusion)
        self.plain.index_add_(0, annotators, confusion)
        self.mass.index_add_(0, annotators, class_proba)

    def summaries(self, counts):
        """Confusion matrices (M, C, C) and accuracies (M,) from the sums over ``counts`` pairs each."""
        counts = torch.from_numpy(counts).to(torch.float64)
        eps = 1e-6
        confusion = (self.weighted + eps * self.plain) / (self.mass + eps * counts[:, None])[:, :, None]
        accuracy = torch.diagonal(self.weighted, dim1=1, dim2=2).sum(1) / counts
        return confusion.numpy(), accuracy.numpy()


def _as_tensor(array):
    """``torch.from_numpy(array)`` without torch's warning on read-only arrays (skannot never writes X)."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        return torch.from_numpy(array)


def _use_fast_paths(module, fast_paths):
    """Tell every part of ``module`` that has CPU fast paths which of them to use."""
    for part in module.modules():
        if hasattr(part, "use_fast_paths"):
            part.use_fast_paths(fast_paths)


def _merged_signature(own_init, parent_init):
    """The signature of ``own_init`` followed by the keyword parameters of ``parent_init`` it passes on."""
    own = inspect.signature(own_init).parameters
    base = inspect.signature(parent_init).parameters
    named = [p for p in own.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    names = {p.name for p in named}
    extra = [
        p.replace(kind=p.KEYWORD_ONLY) if p.kind is p.POSITIONAL_OR_KEYWORD else p
        for p in base.values()
        if p.name not in names and p.name != "self" and p.kind is not p.VAR_KEYWORD
    ]
    var_keyword = [p for p in base.values() if p.kind is p.VAR_KEYWORD]
    return inspect.Signature([*named, *extra, *var_keyword])


def _embedding_dim(gt_model, x, n_classes):
    """Check the GT model's output contract on two rows and return its embedding size."""
    was_training = gt_model.training
    gt_model.eval()
    with torch.no_grad():
        out = gt_model(torch.from_numpy(np.ascontiguousarray(x)))
    gt_model.train(was_training)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError(
            "The GT module's forward(x) must return (logits, embedding); got "
            f"{type(out).__name__}. Return the class logits and the representation "
            "the annotator model should read (e.g. the last hidden layer)."
        )
    logits, embedding = out
    if logits.shape != (len(x), n_classes):
        raise ValueError(
            f"The GT module returned logits of shape {tuple(logits.shape)}; expected "
            f"(batch, n_classes) = ({len(x)}, {n_classes})."
        )
    if embedding.dim() != 2 or embedding.shape[0] != len(x):
        raise ValueError(
            f"The GT module returned an embedding of shape {tuple(embedding.shape)}; "
            "expected (batch, embedding_dim)."
        )
    return embedding.shape[1]


BaseCrowdClassifier.__doc__ = BaseCrowdClassifier.__doc__.replace(
    "    {shared_parameters}", SHARED_PARAMETERS
)
