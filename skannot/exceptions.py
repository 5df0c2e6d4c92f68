"""Exceptions raised by skannot."""


class TrainingDivergedError(FloatingPointError, ValueError):
    """Training produced a non-finite (NaN or infinite) loss.

    Raised by :meth:`skannot.AnnotMixClassifier.fit`, which then leaves the
    estimator unfitted. The usual causes are a learning rate that is far too
    high or features on extreme scales; lower ``lr`` or standardise ``X``.
    It is a ``FloatingPointError`` (what went wrong) and a ``ValueError`` (a
    setting or the data must change), so code catching either sees it.

    Examples
    --------
    >>> from skannot.exceptions import TrainingDivergedError
    >>> issubclass(TrainingDivergedError, ValueError)
    True
    """
