"""The one switch of the CPU fast paths: what it turns on and off, and that the plain path is torch's."""

import threading

import numpy as np
import pytest
import torch

import skannot
from skannot import AnnotMixClassifier
from skannot._fast import FlatRAdam, RowSparseAdam
from skannot._nn import Dropout
from skannot._testing import small_settings

SETTINGS = small_settings(AnnotMixClassifier, random_state=0)


def test_all_fast_paths_are_on_by_default_and_the_context_restores_the_setting():
    assert skannot.get_config()["fast_paths"] == frozenset(skannot.FAST_PATHS)
    with skannot.config_context(fast_paths=False):
        assert skannot.get_config()["fast_paths"] == frozenset()
        with skannot.config_context(fast_paths={"flat_radam"}):
            assert skannot.get_config()["fast_paths"] == {"flat_radam"}
        assert skannot.get_config()["fast_paths"] == frozenset()
    assert skannot.get_config()["fast_paths"] == frozenset(skannot.FAST_PATHS)


def test_unknown_fast_paths_are_refused_with_the_list_of_names():
    with pytest.raises(ValueError, match="byte_masks"):
        skannot.set_config(fast_paths={"warp_drive"})
    with pytest.raises(TypeError, match="collection of names"):
        skannot.set_config(fast_paths=3)
    assert skannot.get_config()["fast_paths"] == frozenset(skannot.FAST_PATHS)


def test_the_setting_is_per_thread():
    seen = {}
    with skannot.config_context(fast_paths=False):
        thread = threading.Thread(target=lambda: seen.update(skannot.get_config()))
        thread.start()
        thread.join()
    assert seen["fast_paths"] == frozenset(skannot.FAST_PATHS)


def test_fit_reads_the_switch_once_and_the_fitted_model_keeps_it(crowd_data):
    X, _, Z, _ = crowd_data
    with skannot.config_context(fast_paths=False):
        plain = AnnotMixClassifier(**SETTINGS).fit(X, Z)
    module = plain.net_.module_
    assert plain.fast_paths_ == frozenset()
    assert type(plain.net_.optimizer_) is torch.optim.RAdam
    assert not any(layer.fast_masks for layer in module.modules() if isinstance(layer, Dropout))
    assert not module.loss.probability_space

    fast = AnnotMixClassifier(**SETTINGS).fit(X, Z)
    module = fast.net_.module_
    assert type(fast.net_.optimizer_) is FlatRAdam
    assert all(layer.fast_masks for layer in module.modules() if isinstance(layer, Dropout))
    assert module.loss.probability_space
    # prediction does not depend on the switch
    with skannot.config_context(fast_paths=False):
        np.testing.assert_array_equal(fast.predict_proba(X), fast.predict_proba(X))


@pytest.mark.parametrize("fast", [True, False])
def test_sparse_table_optimizer_follows_the_switch(crowd_data, fast):
    X, _, Z, _ = crowd_data
    with skannot.config_context(fast_paths=fast):
        clf = AnnotMixClassifier(**SETTINGS, sparse_annotator_updates=True).fit(X, Z)
    expected = RowSparseAdam if fast else torch.optim.SparseAdam
    assert type(clf.net_.annotator_optimizer_) is expected


@pytest.mark.parametrize("name", sorted(skannot.FAST_PATHS))
def test_each_fast_path_alone_trains_a_model_as_good_as_the_plain_path(crowd_data, name):
    """Each path computes what torch computes (exactly or in distribution): the fits agree in accuracy."""
    X, y, Z, _ = crowd_data
    settings = {**SETTINGS, "max_epochs": 10, "sparse_annotator_updates": name == "row_sparse_adam"}
    with skannot.config_context(fast_paths=False):
        plain = AnnotMixClassifier(**settings).fit(X, Z)
    with skannot.config_context(fast_paths={name}):
        one = AnnotMixClassifier(**settings).fit(X, Z)
    assert one.fast_paths_ == {name}
    assert abs(np.mean(one.predict(X) == y) - np.mean(plain.predict(X) == y)) < 0.08


@pytest.mark.parametrize("name", ["flat_radam", "probability_loss", "row_sparse_adam", "mode_cache"])
def test_fast_paths_that_draw_no_random_numbers_give_the_plain_fit_up_to_rounding(crowd_data, name):
    X, _, Z, _ = crowd_data
    settings = {**SETTINGS, "max_epochs": 3, "sparse_annotator_updates": name == "row_sparse_adam"}
    with skannot.config_context(fast_paths=False):
        plain = AnnotMixClassifier(**settings).fit(X, Z)
    with skannot.config_context(fast_paths={name}):
        one = AnnotMixClassifier(**settings).fit(X, Z)
    np.testing.assert_allclose(one.predict_proba(X), plain.predict_proba(X), rtol=1e-3, atol=1e-4)


def test_the_mode_cache_still_switches_every_module_to_training_mode(crowd_data):
    """The cached check skips skorch's switch only when every module is in training mode already."""
    import pickle

    X, _, Z, _ = crowd_data
    net = AnnotMixClassifier(**{**SETTINGS, "max_epochs": 1}).fit(X, Z).net_
    assert "mode_cache" in net.fast_paths
    modules = list(net.module_.modules())
    net._set_training(True)
    assert all(m.training for m in modules)
    modules[3].eval()  # one module switched by hand: the next step switches it back
    net._set_training(True)
    assert all(m.training for m in modules)
    net._set_training(False)
    assert not any(m.training for m in modules)
    net._set_training(True)
    assert all(m.training for m in modules)
    assert "_training_modules" not in pickle.loads(pickle.dumps(net)).__dict__
    with net._current_init_context("module"):  # any module skorch registers on the net counts too
        net.extra_ = torch.nn.Linear(2, 2).eval()
    net._set_training(True)
    assert net.extra_.training


def test_the_mode_cache_leaves_modules_with_their_own_train_to_skorch(crowd_data):
    X, _, Z, _ = crowd_data
    net = AnnotMixClassifier(**{**SETTINGS, "max_epochs": 1}).fit(X, Z).net_
    calls = []

    class Frozen(torch.nn.Identity):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(mode)

    net.module_.frozen = Frozen()  # a module added after the net listed its modules
    net.notify("on_epoch_begin")  # a new epoch lists them again
    net._set_training(True)
    net._set_training(True)
    assert calls == [True, True]  # its own train runs at every step, as skorch would call it
