"""Annotator features: checking, aligning and encoding what a user knows about each annotator.

A user may describe the annotators by features (experience, a qualification
test score, a specialty): an array of shape (n_annotators, n_annotator_features)
in the column order of ``Z``, or a DataFrame indexed by the annotator names
(the column names of a DataFrame ``Z``). :class:`AnnotatorFeatureEncoder`
checks them, puts the rows in the order of ``Z``'s annotators, one-hot
encodes the categorical columns of a DataFrame and standardises every
column with the training annotators' mean and spread, so that a model reads
features on one scale. The same fitted encoder turns the features of new
annotators into the same columns at prediction time.

:class:`AnnotatorFeaturesMixin` is the estimator side, for any method whose
module reads an annotator representation (annot-mix today): the
``annotator_features`` and ``annotator_representation`` parameters'
checks, warm starts, and the predictions for annotators given by their
features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pandas.api import types
from sklearn.utils.validation import check_is_fitted

from ._base import _AnnotatorSums
from ._training import inference_chunks

#: Values of ``annotator_representation``.
REPRESENTATIONS = ("auto", "embedding", "features", "features+embedding")


class AnnotatorFeatureEncoder:
    """Turns user annotator features into standardised float32 rows, fitted on the training annotators.

    Numeric and boolean columns are kept; categorical, string and object
    columns of a DataFrame are one-hot encoded over the categories seen at
    fit (an unseen category at prediction time gives zeros in that column's
    block, as :class:`sklearn.preprocessing.OneHotEncoder` does with
    ``handle_unknown="ignore"``). Every resulting column is then
    standardised with the mean and standard deviation over the training
    annotators (a constant column is only centred).

    Attributes
    ----------
    n_features_in_ : int
        Columns of the features passed to :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,) or None
        Column names, when :meth:`fit` got a DataFrame.
    categories_ : dict
        For each categorical column name, its sorted categories.
    n_encoded_ : int
        Columns after one-hot encoding.
    """

    def fit_transform(self, features, names):
        """Check ``features`` against the annotators ``names``, fit the encoding and apply it.

        Parameters
        ----------
        features : array-like of shape (n_annotators, n_annotator_features) or DataFrame
            One row per annotator: in the order of ``names`` for an array, or
            indexed by ``names`` (any order) for a DataFrame.
        names : array-like of shape (n_annotators,)
            The annotator names (``annotator_names_``).

        Returns
        -------
        encoded : ndarray of float32 of shape (n_annotators, n_encoded_)
        """
        names = np.asarray(names, dtype=object)
        if isinstance(features, pd.DataFrame):
            features = _align_rows(features, names)
            self.feature_names_in_ = np.asarray(features.columns, dtype=object)
            self.categories_ = {
                column: _categories(features[column])
                for column in features.columns
                if not _is_numeric(features[column])
            }
        else:
            self.feature_names_in_ = None
            self.categories_ = {}
            features = _numeric_array(features, "annotator_features")
            if len(features) != len(names):
                raise ValueError(
                    f"annotator_features has {len(features)} rows but Z has {len(names)} annotators; "
                    "pass one row per annotator, in the column order of Z (or a DataFrame indexed by "
                    "Z's annotator names)."
                )
        self.n_features_in_ = features.shape[1]
        raw = self._encode(features, "annotator_features")
        if raw.shape[1] == 0:
            raise ValueError("annotator_features has no columns; pass at least one feature per annotator.")
        self.n_encoded_ = raw.shape[1]
        self.mean_ = raw.mean(0)
        scale = raw.std(0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return ((raw - self.mean_) / self.scale_).astype(np.float32)

    def transform(self, features, name="annotator_features", names=None):
        """Encode the features of any annotators (e.g. new ones) with the fitted encoding.

        Parameters
        ----------
        features : array-like of shape (n_new, n_features_in_) or DataFrame
            A DataFrame needs the fitted columns (by name, any order); an
            array needs the fitted number of columns in the fitted order,
            and is refused when the fit had categorical columns.
        name : str, default="annotator_features"
            How error messages call the argument.
        names : array-like of shape (n_annotators,), optional
            The annotators the rows must be: a DataFrame's rows are put in
            their order, an array must have one row each.

        Returns
        -------
        encoded : ndarray of float32 of shape (n_new, n_encoded_)
        """
        if names is not None and isinstance(features, pd.DataFrame):
            features = _align_rows(features, np.asarray(names, dtype=object))
        elif names is not None and len(features) != len(names):
            raise ValueError(
                f"{name} has {len(features)} rows but the model has {len(names)} annotators; pass "
                "one row per annotator, in the column order of Z."
            )
        if isinstance(features, pd.DataFrame):
            if self.feature_names_in_ is not None:
                columns = list(self.feature_names_in_)
                missing = [c for c in columns if c not in features.columns]
                extra = [c for c in features.columns if c not in columns]
                if missing or extra:
                    raise ValueError(
                        f"{name} must have the columns the model was fitted with, {columns}; "
                        f"missing {missing}, unexpected {extra}."
                    )
                features = features[columns]
            elif features.shape[1] != self.n_features_in_:
                raise ValueError(self._count_message(name, features.shape[1]))
        else:
            if self.categories_:
                raise ValueError(
                    f"The model was fitted on annotator features with categorical columns "
                    f"{list(self.categories_)}; pass {name} as a DataFrame with the columns "
                    f"{list(self.feature_names_in_)}."
                )
            features = _numeric_array(features, name)
            if features.shape[1] != self.n_features_in_:
                raise ValueError(self._count_message(name, features.shape[1]))
        return ((self._encode(features, name) - self.mean_) / self.scale_).astype(np.float32)

    def _count_message(self, name, n_columns):
        return (
            f"{name} has {n_columns} columns, but the model was fitted on annotator features with "
            f"{self.n_features_in_}; pass the same features, in the same order, for every annotator."
        )

    def _encode(self, features, name):
        """Numeric float64 columns of ``features``: categorical columns one-hot, then numeric ones checked."""
        if not isinstance(features, pd.DataFrame):
            return _finite(features, name)
        blocks = []
        for column in features.columns:
            values = features[column]
            if column in self.categories_:
                if values.isna().any():
                    raise ValueError(
                        f"{name} column {column!r} has missing values; fill them (e.g. with a "
                        "category 'unknown') before fitting or predicting."
                    )
                categories = self.categories_[column]
                blocks.append(
                    (np.asarray(values, dtype=object)[:, None] == np.asarray(categories)[None, :]).astype(
                        np.float64
                    )
                )
            elif not _is_numeric(values):
                raise ValueError(
                    f"{name} column {column!r} is not numeric, but it was numeric when the model was "
                    "fitted; pass the same kinds of columns as at fit."
                )
            else:
                blocks.append(_finite(values.to_numpy(dtype=np.float64, na_value=np.nan)[:, None], name))
        return np.hstack(blocks) if blocks else np.zeros((len(features), 0))


def _align_rows(features, names):
    """The rows of a DataFrame in the order of ``names``, or a ValueError saying which rows do not match."""
    index = pd.Index(features.index)
    if index.has_duplicates:
        raise ValueError(
            "annotator_features has duplicate index labels "
            f"{sorted(map(str, index[index.duplicated()].unique()))[:5]}; give each annotator one row."
        )
    wanted = pd.Index(names)
    missing = wanted.difference(index, sort=False)
    extra = index.difference(wanted, sort=False)
    if len(missing) or len(extra):
        raise ValueError(
            "The index of annotator_features must hold exactly the annotator names of Z "
            f"({len(names)} annotators: the column names of a DataFrame Z, else 0 .. n_annotators - 1); "
            f"no row for {list(missing[:5])}{' ...' if len(missing) > 5 else ''}, rows for unknown "
            f"annotators {list(extra[:5])}{' ...' if len(extra) > 5 else ''}. Select the rows with "
            "annotator_features.loc[list(Z.columns)]."
        )
    return features.loc[wanted]


def _is_numeric(values):
    return types.is_numeric_dtype(values.dtype) or types.is_bool_dtype(values.dtype)


def _categories(values):
    if isinstance(values.dtype, pd.CategoricalDtype):
        return list(values.cat.categories)
    return sorted(pd.unique(values.dropna()), key=str)


def _numeric_array(features, name):
    """A 2-D float64 array of ``features``, or a ValueError saying what to pass."""
    try:
        array = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be numeric; got values that are not numbers ({exc}). Pass a DataFrame, "
            "whose categorical columns skannot one-hot encodes, or encode them yourself (e.g. with "
            "sklearn.preprocessing.OneHotEncoder)."
        ) from exc
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D, one row per annotator and one column per feature; got shape "
            f"{array.shape}. For a single feature use features.reshape(-1, 1)."
        )
    return array


def _finite(array, name):
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or infinite values; impute them (e.g. with "
            "sklearn.impute.SimpleImputer, adding an indicator column with add_indicator=True) "
            "before fitting or predicting."
        )
    return array


class AnnotatorFeaturesMixin:
    """Annotator features for an estimator whose module reads an annotator representation.

    The estimator stores ``annotator_features`` and
    ``annotator_representation``; its module takes the encoded features and
    the resolved representation (see
    :class:`~skannot.classifiers._annot_mix.AnnotMixModule`) and provides
    ``annotator_vectors(annotators)``, ``new_annotator_vectors(features)``,
    ``log_confusion_of(embedding, vectors)`` and, with features,
    ``annotator_feature_map``. The mixin checks the parameters, encodes the
    features at fit, renews them on warm starts and predicts annotators
    given by their features.
    """

    def _resolved_representation(self):
        """``annotator_representation`` with "auto" resolved; ValueError if it contradicts the features."""
        given = self.annotator_features is not None
        representation = self.annotator_representation
        if representation == "auto":
            return "features" if given else "embedding"
        if representation == "embedding" and given:
            raise ValueError(
                "annotator_representation='embedding' learns a free vector per annotator and ignores "
                "annotator_features; choose 'features' or 'features+embedding' to use them, or pass "
                "annotator_features=None."
            )
        if representation != "embedding" and not given:
            raise ValueError(
                f"annotator_representation={representation!r} needs annotator_features, one row per "
                "annotator of Z; pass them, or choose 'embedding' (or 'auto')."
            )
        return representation

    def _training_annotator_features(self):
        """Encoded features (n_annotators_, K) of a fresh fit, or None; sets the fitted feature attributes."""
        self.annotator_representation_ = representation = self._resolved_representation()
        if hasattr(self, "annotator_feature_names_in_"):
            del self.annotator_feature_names_in_
        if representation == "embedding":
            self.annotator_encoder_ = None
            self.n_annotator_features_in_ = 0
            return None
        encoder = AnnotatorFeatureEncoder()
        encoded = encoder.fit_transform(self.annotator_features, self.annotator_names_)
        self.annotator_encoder_ = encoder
        self.n_annotator_features_in_ = encoder.n_features_in_
        if encoder.feature_names_in_ is not None:
            self.annotator_feature_names_in_ = encoder.feature_names_in_
        return torch.from_numpy(encoded)

    def _check_warm_start(self, classes, n_annotators):
        super()._check_warm_start(classes, n_annotators)
        representation = self._resolved_representation()
        if representation != self.annotator_representation_:
            raise ValueError(
                "warm_start=True continues training the fitted model, whose annotators are "
                f"represented by {self.annotator_representation_!r}; the parameters now ask for "
                f"{representation!r}. Set warm_start=False to fit from scratch."
            )
        if representation != "embedding":
            # The features may have been corrected in between; the fitted encoding applies.
            encoded = self.annotator_encoder_.transform(self.annotator_features, names=self.annotator_names_)
            self.net_.module_.annotator_feature_map.set_features(torch.from_numpy(encoded))

    def _annotator_vectors_for(self, module, annotator_features):
        """Vectors (A, E) of the fitted annotators (features None) or of the annotators given by features."""
        if annotator_features is None:
            return module.annotator_vectors(torch.arange(self.n_annotators_, device=self.device_))
        if self.annotator_representation_ == "embedding":
            raise ValueError(
                f"{type(self).__name__} was fitted without annotator_features, so it knows its annotators "
                "only by their labels and cannot predict annotators given by features; refit with "
                "annotator_features=..., or leave annotator_features out to predict the fitted annotators."
            )
        encoded = self.annotator_encoder_.transform(annotator_features)
        return module.new_annotator_vectors(torch.from_numpy(encoded).to(self.device_))

    def _annotator_log_outputs(self, X, annotator_features):
        """``log p(y | x)`` (B, C) and ``log P(z | x, a, y)`` (B, A, C, C) for chunks of rows of ``X``.

        Yields ``(start, stop, log_prior, log_confusion)``; chunks are sized
        so that (rows x annotators x C x C) stays within the memory budget.
        """
        module = self.net_.module_.eval()
        n_classes = len(self.classes_)
        vectors = self._annotator_vectors_for(module, annotator_features)
        n_selected = len(vectors)
        for start, stop in inference_chunks(len(X), self._rows_per_pair_chunk(max(n_selected, 1))):
            logits, embedding = module.gt_model(X[start:stop].to(self.device_))
            n_rows = stop - start
            log_confusion = module.log_confusion_of(
                embedding.repeat_interleave(n_selected, 0), vectors.repeat(n_rows, 1)
            ).float()
            log_prior = torch.log_softmax(logits.float(), dim=1)
            yield start, stop, log_prior, log_confusion.view(n_rows, n_selected, n_classes, n_classes)

    def predict_annotator_proba(self, X, annotators=None, *, annotator_features=None):
        """Probability of each annotator's label, ``P(z | x, a)``, also for annotators given by features.

        Computed in chunks whose memory does not grow with ``len(X)``; the
        returned array itself has n_samples x n_selected x n_classes entries.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        annotators : array-like of shape (n_selected,), default=None
            Fitted annotators to predict, by name (values of
            ``annotator_names_``) or by column index; all by default.
        annotator_features : array-like or DataFrame, default=None
            Of shape (n_selected, n_annotator_features_in_): features of the
            annotators to predict instead, e.g. annotators
            who labelled nothing in training, encoded as at fit (a DataFrame
            needs the fitted columns; its index is not read). Needs a fit
            with ``annotator_features``; not together with ``annotators``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_selected, n_classes)
            ``proba[i, j, z]`` is the probability that annotator ``j`` (of
            ``annotators``, or row ``j`` of ``annotator_features``) labels
            sample ``i`` as ``classes_[z]``.

        Raises
        ------
        ValueError
            If ``annotator_features`` is given to a model fitted without
            features, together with ``annotators``, or with other columns
            than at fit, NaN or infinite values.
        """
        if annotator_features is None:
            return super().predict_annotator_proba(X, annotators)
        if annotators is not None:
            raise ValueError(
                "Pass either annotators (fitted annotators by name or index) or annotator_features "
                "(annotators given by their features), not both."
            )
        X = self._validated_X(X)
        out = None
        with torch.inference_mode():
            for start, stop, log_prior, log_confusion in self._annotator_log_outputs(X, annotator_features):
                log_proba = torch.logsumexp(log_prior[:, None, :, None] + log_confusion, 2)
                if out is None:
                    out = np.empty((len(X), log_proba.shape[1], len(self.classes_)), dtype=np.float32)
                out[start:stop] = log_proba.exp().cpu().numpy()
        if out is None:
            n_selected = len(self._annotator_vectors_for(self.net_.module_.eval(), annotator_features))
            out = np.empty((0, n_selected, len(self.classes_)), dtype=np.float32)
        return out

    def _annotator_summaries(self, X, annotator_features):
        check_is_fitted(self)
        X = self._validated_X(X)
        if len(X) == 0:
            raise ValueError("X has no rows; the summaries average over the instances of X.")
        sums = None
        with torch.inference_mode():
            for _, _, log_prior, log_confusion in self._annotator_log_outputs(X, annotator_features):
                n_rows, n_selected, n_classes = log_confusion.shape[:3]
                if sums is None:
                    sums = _AnnotatorSums(n_selected, n_classes)
                prior = log_prior.exp().double().cpu().repeat_interleave(n_selected, 0)
                confusion = log_confusion.exp().double().cpu().view(-1, n_classes, n_classes)
                sums.add(torch.arange(n_selected).repeat(n_rows), prior, confusion)
        return sums.summaries(np.full(sums.mass.shape[0], len(X)))

    def predict_annotator_confusion(self, X, annotator_features=None):
        """Confusion matrices of annotators over the instances ``X``, also for annotators given by features.

        ``P(z | x, a, y)`` averaged over the rows of ``X``, each weighted by
        the estimated ``p(y | x)``, as ``annotator_confusion_`` averages over
        an annotator's training items: the matrix an annotator is expected to
        show on work like ``X``. Pass the features of an annotator who has
        not labelled anything to estimate it before routing work to it.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Instances to average over (e.g. the training items, or the
            items to be labelled).
        annotator_features : array-like or DataFrame, default=None
            Of shape (n_selected, n_annotator_features_in_): features of the
            annotators, as for :meth:`predict_annotator_proba`;
            the fitted annotators (``n_selected = n_annotators_``) by default.

        Returns
        -------
        confusion : ndarray of shape (n_selected, n_classes, n_classes)
            Entry ``[j, y, z]``: probability that annotator ``j`` says
            ``classes_[z]`` when the truth is ``classes_[y]``; rows sum to 1.

        Raises
        ------
        ValueError
            As for :meth:`predict_annotator_proba`, or when ``X`` has no rows.
        """
        return self._annotator_summaries(X, annotator_features)[0]

    def predict_annotator_accuracy(self, X, annotator_features=None):
        """Expected accuracy of annotators on the instances ``X``, also for annotators given by features.

        ``mean_x sum_y p(y | x) P(z = y | x, a, y)``: the model's probability
        that the annotator's label of an item of ``X`` is correct, averaged
        over ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        annotator_features : array-like or DataFrame, default=None
            As for :meth:`predict_annotator_confusion`.

        Returns
        -------
        accuracy : ndarray of shape (n_selected,)

        Raises
        ------
        ValueError
            As for :meth:`predict_annotator_confusion`.
        """
        return self._annotator_summaries(X, annotator_features)[1]
