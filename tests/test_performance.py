"""The fast paths compute what the plain ones do; the speed options are wired and validated."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError
from torch.nn import functional as F

from skannot import AnnotMixClassifier
from skannot._accelerate import ShardedDropout, row_shard
from skannot._fast import FlatRAdam, ProbabilitySpaceLoss, keep_mask
from skannot._fast._dropout import _field_bits
from skannot._nn import MLP, Dropout, mix
from skannot._testing import small_settings
from skannot._training import CrowdDataset
from skannot._validation import check_annotations
from skannot.classifiers._annot_mix import AnnotMixLoss, AnnotMixModule

SMALL = small_settings(AnnotMixClassifier, hidden_sizes=(16, 8), annotator_hidden_size=8)


def fast_dropout(p, fast=True):
    layer = Dropout(p)
    layer.use_fast_paths({"byte_masks"} if fast else set())
    return layer


@pytest.mark.parametrize("fast", [True, False])
def test_dropout_keeps_units_with_probability_one_minus_p_and_rescales(fast):
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    out = fast_dropout(0.3, fast).train()(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / 0.7))
    torch.testing.assert_close(Dropout(0.3).eval()(x), x)
    torch.testing.assert_close(Dropout(0.0).train()(x), x)
    assert (Dropout(1.0).train()(x) == 0).all()


@pytest.mark.parametrize("p", [0.1, 0.25, 0.3, 0.5, 0.75, 0.9, 3 / 256])
def test_keep_mask_keeps_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    mask = keep_mask((301, 333), p)  # an odd number of elements
    assert mask.shape == (301, 333) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    tolerance = 4 * (p * (1 - p) / mask.numel()) ** 0.5
    assert abs(mask.mean().item() - (1 - p)) < tolerance
    # every position within a byte (table masks) and within a 64-bit draw keeps at the same rate
    by_position = mask.flatten()[: 301 * 333 // 8 * 8].view(-1, 8).mean(0)
    torch.testing.assert_close(by_position, torch.full((8,), 1 - p), rtol=0, atol=8 * tolerance)
    # neighbouring elements (fields of one byte, halves of one 64-bit draw) are independent
    both = (mask.flatten()[:-1:2] * mask.flatten()[1::2]).mean().item()
    assert abs(both - (1 - p) ** 2) < 0.01
    torch.manual_seed(0)
    assert torch.equal(keep_mask((301, 333), p), mask)


@pytest.mark.parametrize(
    ("p", "bits"), [(0.5, 1), (0.25, 2), (0.75, 2), (0.125, 4), (3 / 256, 8), (0.1, None)]
)
def test_keep_mask_takes_the_fewest_bits_that_give_p_exactly(p, bits):
    assert _field_bits(p) == bits


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_keep_mask_scale_is_the_value_of_kept_elements(p):
    torch.manual_seed(1)
    plain = keep_mask((40, 50), p)
    torch.manual_seed(1)
    scaled = keep_mask((40, 50), p, scale=1 / (1 - p))
    torch.testing.assert_close(scaled, plain / (1 - p))


@pytest.mark.parametrize("fast", [True, False])
def test_dropout_gradient_is_the_mask(fast):
    x = torch.randn(50, 20, requires_grad=True)
    out = fast_dropout(0.5, fast).train()(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() * 2)


def test_loss_accepts_unnormalised_logits():
    """Normalising inside the loss makes logits and log-probabilities give the same value."""
    generator = torch.Generator().manual_seed(0)
    class_logits = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    confusion_logits = torch.randn(7, 4, 4, generator=generator, dtype=torch.float64)
    labels, partner_labels = torch.randint(0, 4, (2, 7), generator=generator)
    lam = torch.rand(7, generator=generator, dtype=torch.float64)
    loss = AnnotMixLoss(probability_space=True)
    from_logits = loss(class_logits + 3.0, confusion_logits - 1.5, labels, partner_labels, lam)
    from_log_proba = loss(
        F.log_softmax(class_logits, 1), F.log_softmax(confusion_logits, 2), labels, partner_labels, lam
    )
    assert from_logits.item() == pytest.approx(from_log_proba.item(), rel=1e-12)


def test_default_radam_runs_flat_and_other_optimizers_foreach(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(**SMALL, random_state=0).fit(X, Z)
    optimizer = clf.net_.optimizer_
    assert type(optimizer) is FlatRAdam and isinstance(optimizer, torch.optim.RAdam)
    # one buffer holds the whole network; the module's parameters are views of it
    (flat,) = optimizer.param_groups[0]["params"]
    module = clf.net_.module_
    assert flat.numel() == sum(p.numel() for p in module.parameters())
    assert all(
        p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in module.parameters()
    )
    clf = AnnotMixClassifier(**SMALL, optimizer=torch.optim.SGD, random_state=0).fit(X, Z)
    assert clf.net_.optimizer_.defaults["foreach"] is True
    clf = AnnotMixClassifier(**SMALL, optimizer=torch.optim.SGD, optimizer__foreach=False, random_state=0)
    assert clf.fit(X, Z).net_.optimizer_.defaults["foreach"] is False
    clf = AnnotMixClassifier(**SMALL, optimizer=_PlainSGD, random_state=0).fit(X, Z)
    assert clf.net_.optimizer_.defaults["foreach"] is None
    # options FlatRAdam does not implement fall back to torch's RAdam
    clf = AnnotMixClassifier(**SMALL, optimizer__differentiable=False, random_state=0).fit(X, Z)
    assert type(clf.net_.optimizer_) is torch.optim.RAdam


def test_flat_radam_fit_matches_torch_radam(crowd_data):
    """Same data, seed and update: the flat buffer changes only floating-point rounding."""
    X, _, Z, _ = crowd_data
    flat = AnnotMixClassifier(**SMALL, random_state=0).fit(X, Z)
    plain = AnnotMixClassifier(**SMALL, optimizer__differentiable=False, random_state=0).fit(X, Z)
    np.testing.assert_allclose(flat.history_[:, "train_loss"], plain.history_[:, "train_loss"], rtol=1e-4)
    np.testing.assert_allclose(flat.predict_proba(X), plain.predict_proba(X), atol=1e-4)


class _PlainSGD(torch.optim.SGD):
    """An optimizer whose constructor takes no ``foreach``."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)


@pytest.mark.parametrize(
    ("n_annotators", "expected"),
    [(6, False), (500, True)],
)
def test_auto_sparse_updates_follow_the_table_size(n_annotators, expected, crowd_data):
    X, _, Z, _ = crowd_data
    Z_wide = np.full((len(X), n_annotators), -1)
    Z_wide[:, :6] = Z
    clf = AnnotMixClassifier(**SMALL, random_state=0).fit(X, Z_wide)
    # 500 x 4 table entries against about 400 other parameters of the small model.
    assert clf.sparse_annotator_updates_ is expected
    assert hasattr(clf.net_, "annotator_optimizer_") is expected


def test_sparse_updates_move_only_the_annotators_in_the_batch(crowd_data):
    X, _, Z, _ = crowd_data
    Z = Z.copy()
    Z[:, 5] = -1
    Z[0, 5] = Z[0, 0] if Z[0, 0] >= 0 else 0
    # One epoch first: the AP head's output weights start at zero, so the very first step
    # gives the table no gradient at all. No schedule, so the learning rate stays positive.
    clf = AnnotMixClassifier(
        **{**SMALL, "max_epochs": 1}, lr_scheduler=None, sparse_annotator_updates=True, random_state=0
    ).fit(X, Z)
    net = clf.net_
    table = net.module_.annotator_embedding.weight
    assert all(p is not table for group in net.optimizer_.param_groups for p in group["params"])
    before = table.detach().clone()
    annotations, _, _ = check_annotations(Z)
    dataset = CrowdDataset(torch.from_numpy(X), annotations)
    net.train_step(dataset.batch(torch.arange(1, 40)))  # sample 0, annotator 5's only label, is out
    after = table.detach()
    torch.testing.assert_close(after[5], before[5], rtol=0, atol=0)
    assert not torch.equal(after[:5], before[:5])


def test_sparse_updates_follow_the_learning_rate_schedule_and_warm_start(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(
        **{**SMALL, "max_epochs": 3}, sparse_annotator_updates=True, warm_start=True, random_state=0
    ).fit(X, Z)
    net = clf.net_
    # The last epoch (of 3) ran at the cosine schedule's lr * (1 + cos(2 pi / 3)) / 2.
    assert net.annotator_optimizer_.param_groups[0]["lr"] == pytest.approx(clf.lr / 4)
    table = net.module_.annotator_embedding.weight.detach().clone()
    clf.fit(X, Z)
    assert len(clf.history_) == 3 and np.isfinite(clf.history_[:, "train_loss"]).all()
    assert not torch.equal(clf.net_.module_.annotator_embedding.weight, table)


def test_mixed_precision_is_refused_on_the_cpu(crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match="mixed_precision=True needs a CUDA device"):
        AnnotMixClassifier(**SMALL, mixed_precision=True).fit(X, Z)


@pytest.mark.parametrize(
    "params",
    [{"sparse_annotator_updates": "always"}, {"mixed_precision": "yes"}, {"compile": 1.5}],
)
def test_speed_options_are_validated(params, crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(InvalidParameterError):
        AnnotMixClassifier(**SMALL, **params).fit(X, Z)


def test_compile_runs_the_step_through_torch_compile(crowd_data, monkeypatch):
    """The wiring only: compiling for real takes minutes on a small CPU."""
    compiled = []

    def fake_compile(fn, **kwargs):
        compiled.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(**SMALL, compile=True, random_state=0).fit(X, Z)
    assert compiled == [{"dynamic": True}]
    reference = AnnotMixClassifier(**SMALL, random_state=0).fit(X, Z)
    np.testing.assert_array_equal(clf.history_[:, "train_loss"], reference.history_[:, "train_loss"])
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("alpha", [1.0, 0.4, 2.0])
def test_mixing_weights_follow_beta_alpha_alpha(alpha, crowd_data):
    X, _, Z, _ = crowd_data
    net = AnnotMixClassifier(**SMALL, alpha=alpha, random_state=0).fit(X, Z).net_
    torch.manual_seed(0)
    lam, partner = net.mixing_weights(200_000, torch.device("cpu"))
    assert ((lam >= 0) & (lam <= 1)).all()
    assert lam.mean().item() == pytest.approx(0.5, abs=0.005)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.02)
    assert torch.equal(partner.sort().values, torch.arange(200_000))


def test_dropout_in_row_shards_draws_the_whole_batch_mask():
    """Slices of a batch under row_shard, with the same random state, give the whole batch's masks."""
    x = torch.randn(11, 6)
    layer = ShardedDropout(0.4).train()
    layer.use_fast_paths({"byte_masks"})  # what the single process draws on the CPU
    torch.manual_seed(2)
    whole = layer(x)
    parts = []
    for lo, hi in [(0, 4), (4, 5), (5, 11), (11, 11)]:
        torch.manual_seed(2)
        with row_shard(layer, lo, 11):
            parts.append(layer(x[lo:hi]))
    torch.testing.assert_close(torch.cat(parts), whole)
    with row_shard(layer, 0, 11):
        torch.testing.assert_close(layer.eval()(x), x)


def test_loss_sum_reduction():
    generator = torch.Generator().manual_seed(0)
    class_logits, confusion_logits = (
        torch.randn(5, 3, generator=generator),
        torch.randn(5, 3, 3, generator=generator),
    )
    labels, partner_labels = torch.randint(0, 3, (2, 5), generator=generator)
    lam = torch.rand(5, generator=generator)
    loss = AnnotMixLoss(probability_space=True)
    args = (class_logits, confusion_logits, labels, partner_labels, lam)
    torch.testing.assert_close(loss(*args, reduction="sum"), 5 * loss(*args))
    empty = [a[:0] for a in args]
    assert loss(*empty, reduction="sum").item() == 0


def _loss_inputs(n_pairs=37, n_classes=5, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    class_logits = torch.randn(n_pairs, n_classes, generator=generator, dtype=dtype).requires_grad_()
    confusion_logits = (
        3 * torch.randn(n_pairs, n_classes, n_classes, generator=generator, dtype=dtype)
    ).requires_grad_()
    labels, partner_labels = torch.randint(0, n_classes, (2, n_pairs), generator=generator)
    partner_labels[:5] = labels[:5]  # pairs mixed with a partner of the same label
    lam = torch.rand(n_pairs, generator=generator, dtype=dtype)
    return class_logits, confusion_logits, labels, partner_labels, lam


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_probability_space_loss_equals_log_space_loss_and_gradients(dtype, reduction):
    args = _loss_inputs(dtype=dtype)
    loss = AnnotMixLoss(probability_space=True)
    fast = loss(*args, reduction=reduction)
    assert fast.grad_fn.name() == "ProbabilitySpaceLossBackward"  # the CPU path was taken
    plain = AnnotMixLoss.log_space(*args, reduction=reduction)
    tolerance = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(fast, plain, **tolerance)
    for got, expected in zip(torch.autograd.grad(fast, args[:2]), torch.autograd.grad(plain, args[:2])):
        torch.testing.assert_close(got, expected, **tolerance)


def test_probability_space_loss_passes_gradcheck():
    class_logits, confusion_logits, labels, partner_labels, lam = _loss_inputs(n_pairs=9, n_classes=4)
    assert torch.autograd.gradcheck(
        lambda c, f: AnnotMixLoss(probability_space=True)(c, f, labels, partner_labels, lam),
        (class_logits, confusion_logits),
    )


@pytest.mark.parametrize("case", ["spread confusion logits", "impossible label"])
def test_loss_falls_back_to_log_space_where_probabilities_underflow(case):
    class_logits, confusion_logits, labels, partner_labels, lam = (
        a.detach().float() if a.is_floating_point() else a for a in _loss_inputs()
    )
    if case == "spread confusion logits":
        confusion_logits[0] += (
            60.0  # other rows' sums of exponentials shifted by the maximum fall below 1e-15
        )
    else:
        class_logits[0] = torch.tensor([50.0, 0, 0, 0, 0])  # class 0 is certain...
        confusion_logits[0, 0] = torch.tensor([40.0, 0, 0, 0, 0])  # ...and its annotators say 0
        labels[0] = partner_labels[0] = 3
    class_logits.requires_grad_()
    confusion_logits.requires_grad_()
    args = (class_logits, confusion_logits, labels, partner_labels, lam)
    _, accurate = ProbabilitySpaceLoss.apply(*args, 1 / len(labels))
    assert not accurate
    loss = AnnotMixLoss(probability_space=True)(*args)
    assert loss.grad_fn.name() != "ProbabilitySpaceLossBackward"
    torch.testing.assert_close(loss, AnnotMixLoss.log_space(*args))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, args[:2]))


@pytest.mark.parametrize("mixed", [True, False])
def test_projected_annotator_table_gives_the_plain_head_output_and_gradients(mixed):
    """Mixing rows of the projected table equals projecting mixed embeddings, and the head on the cat."""
    torch.manual_seed(0)
    module = AnnotMixModule(MLP(6, 3, (8,)), n_annotators=4, instance_dim=8, n_classes=3, annotator_dim=5)
    module = module.double()
    with torch.no_grad():
        module.annotator_head.output.weight.normal_()  # zero at initialisation: no gradient to the rest
    n_pairs = 11
    embedding = torch.randn(n_pairs, 8, dtype=torch.float64)
    annotators = torch.randint(0, 4, (n_pairs,))
    partner = torch.randperm(n_pairs)
    lam = torch.rand(n_pairs, dtype=torch.float64) if mixed else None
    table = module.annotator_embedding
    reference_input = table(annotators)
    if mixed:
        reference_input = mix(reference_input, table(annotators[partner]), lam)
    results = [module.annotator_head.logits(embedding, reference_input)]
    for project_table in (True, False, None):  # None: 4 annotators < 11 pairs, so projected
        results.append(module.pair_confusion_logits(embedding, annotators, lam, partner, None, project_table))
    parameters = list(module.annotator_head.parameters()) + [table.weight]
    expected_grads = torch.autograd.grad(results[0].sum(), parameters)
    for result in results[1:]:
        torch.testing.assert_close(result, results[0], rtol=1e-12, atol=1e-12)
        for got, expected in zip(torch.autograd.grad(result.sum(), parameters), expected_grads):
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # a slice of the pairs (one process's share in data-parallel training) gives its rows
    part = slice(3, 8)
    for project_table in (True, False):
        sliced = module.pair_confusion_logits(
            embedding[part],
            annotators,
            None if lam is None else lam[part],
            partner[part],
            part,
            project_table,
        )
        torch.testing.assert_close(sliced, results[0][part], rtol=1e-12, atol=1e-12)


def test_sparse_annotator_table_is_never_projected():
    module = AnnotMixModule(MLP(6, 3, (8,)), n_annotators=4, instance_dim=8, n_classes=3, annotator_dim=5)
    module.annotator_embedding.sparse = True
    annotators = torch.randint(0, 4, (20,))
    module.pair_confusion_logits(torch.randn(20, 8), annotators).sum().backward()
    assert module.annotator_embedding.weight.grad.is_sparse
