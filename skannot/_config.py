"""One switch for the CPU fast paths, in the spirit of :func:`sklearn.config_context`.

skannot trains small networks on the CPU, where per-call overheads dominate
plain PyTorch. A few hand-written paths (``skannot._fast``) do the same
computation in fewer kernel calls. They are on by default; turning them off
runs the plain PyTorch path each of them is tested against.

The switch is read once, when ``fit`` builds the network: a fitted model
keeps the paths it was trained with (and its prediction does not depend on
them).
"""

from __future__ import annotations

import contextlib
import threading

#: The CPU fast paths, by name, and what each replaces.
FAST_PATHS = {
    "flat_radam": (
        "torch.optim.RAdam -> skannot._fast.FlatRAdam (one buffer for all parameters, "
        "updated by torch's fused Adam kernel once rectified)"
    ),
    "byte_masks": "torch's Bernoulli dropout masks -> skannot._fast.keep_mask (random bits, table look-up)",
    "probability_loss": "annot-mix's log-space loss -> a probability-space loss with a hand-written backward",
    "row_sparse_adam": "torch.optim.SparseAdam -> skannot._fast.RowSparseAdam (row indexing, bit-identical)",
    "mode_cache": "skorch's per-step switch to training mode -> a cached check that every module is in it",
}

_DEFAULT = {"fast_paths": frozenset(FAST_PATHS)}
_local = threading.local()


def _config():
    if not hasattr(_local, "config"):
        _local.config = dict(_DEFAULT)
    return _local.config


def _resolve_fast_paths(value):
    if value is True:
        return frozenset(FAST_PATHS)
    if value is False or value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    try:
        names = frozenset(value)
    except TypeError:
        raise TypeError(
            f"fast_paths={value!r} must be True, False or a collection of names among {sorted(FAST_PATHS)}."
        ) from None
    unknown = sorted(names - set(FAST_PATHS))
    if unknown:
        raise ValueError(f"Unknown fast path(s) {unknown}; the CPU fast paths are {sorted(FAST_PATHS)}.")
    return names


def get_config():
    """The current skannot configuration.

    Returns
    -------
    config : dict
        ``{"fast_paths": frozenset}``: the names of the CPU fast paths in
        use (see :data:`FAST_PATHS`). The setting is per thread, as
        scikit-learn's is.
    """
    return dict(_config())


def set_config(fast_paths=None):
    """Set skannot's configuration for the current thread.

    Parameters
    ----------
    fast_paths : bool or collection of str, default=None
        True turns every CPU fast path on (the default), False turns them
        all off (plain PyTorch), a collection of names (keys of
        ``skannot.FAST_PATHS``) turns on just those. None leaves the setting
        unchanged.

    Returns
    -------
    None

    Examples
    --------
    >>> import skannot
    >>> skannot.set_config(fast_paths=False)
    >>> sorted(skannot.get_config()["fast_paths"])
    []
    >>> skannot.set_config(fast_paths=True)
    """
    if fast_paths is not None:
        _config()["fast_paths"] = _resolve_fast_paths(fast_paths)


@contextlib.contextmanager
def config_context(*, fast_paths=None):
    """Set skannot's configuration inside a ``with`` block, and restore it after.

    Parameters
    ----------
    fast_paths : bool or collection of str, default=None
        As for :func:`set_config`.

    Returns
    -------
    context : context manager
        The block runs with the configuration set.

    Examples
    --------
    >>> import numpy as np
    >>> import skannot
    >>> X = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    >>> Z = np.stack([(X[:, 0] > 0).astype(int)] * 2, axis=1)
    >>> with skannot.config_context(fast_paths=False):  # plain PyTorch throughout
    ...     clf = skannot.AnnotMixClassifier(max_epochs=1, random_state=0).fit(X, Z)
    >>> clf.fast_paths_
    frozenset()
    """
    previous = get_config()
    set_config(fast_paths=fast_paths)
    try:
        yield
    finally:
        _config().update(previous)
