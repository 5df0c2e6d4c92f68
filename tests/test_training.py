import numpy as np
import pytest
import torch
from torch.nn import functional as F

from skannot import AnnotMixClassifier
from skannot._nn import mix_pairs
from skannot._training import CrowdDataset, PairBatchIterator
from skannot._validation import Annotations, check_annotations
from skannot.classifiers._annot_mix import AnnotMixLoss


def test_mix_pairs_matches_hand_computation():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    lam = torch.tensor([0.25, 1.0, 0.5])
    partner = torch.tensor([2, 0, 1])
    expected = torch.tensor([[0.25 * 1 + 0.75 * 5, 0.25 * 2 + 0.75 * 6], [1.0 * 3, 1.0 * 4], [4.0, 5.0]])
    torch.testing.assert_close(mix_pairs(x, lam, partner), expected)
    onehot = F.one_hot(torch.tensor([0, 1, 1]), 2).float()
    torch.testing.assert_close(
        mix_pairs(onehot, lam, partner), torch.tensor([[0.25, 0.75], [0.0, 1.0], [0.0, 1.0]])
    )


def test_loss_matches_numpy_on_a_tiny_case():
    rng = np.random.default_rng(0)
    class_logits = rng.normal(size=(2, 3))
    conf_logits = rng.normal(size=(2, 3, 3))
    labels, partner_labels, lam = np.array([0, 2]), np.array([1, 2]), np.array([0.3, 1.0])

    p = np.exp(class_logits) / np.exp(class_logits).sum(1, keepdims=True)
    conf = np.exp(conf_logits) / np.exp(conf_logits).sum(2, keepdims=True)
    annotation = np.einsum("py,pyz->pz", p, conf)
    expected = -np.mean(
        lam * np.log(annotation[[0, 1], labels]) + (1 - lam) * np.log(annotation[[0, 1], partner_labels])
    )
    loss = AnnotMixLoss()(
        F.log_softmax(torch.tensor(class_logits), 1),
        F.log_softmax(torch.tensor(conf_logits), 2),
        torch.tensor(labels),
        torch.tensor(partner_labels),
        torch.tensor(lam),
    )
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_batches_hold_only_observed_pairs():
    Z = np.array([[0, -1, 1], [-1, -1, 2], [1, 1, -1], [-1, 0, -1]])
    annotations, _, _ = check_annotations(Z)
    X = torch.arange(8, dtype=torch.float32).view(4, 2)
    dataset = CrowdDataset(X, annotations)
    x, (rows, annotators, labels) = dataset.batch(torch.tensor([2, 0, 3]))
    torch.testing.assert_close(x, X[[2, 0, 3]])
    observed = {(int(r), int(a), int(z)) for r, a, z in zip(rows, annotators, labels)}
    assert observed == {(0, 0, 1), (0, 1, 1), (1, 0, 0), (1, 2, 1), (2, 1, 0)}
    # the same pairs from the epoch-wise indexing, the batch cut after two rows
    (x1, pairs1), (x2, pairs2) = dataset.batches(torch.tensor([2, 0, 3]), batch_size=2)
    torch.testing.assert_close(torch.cat([x1, x2]), X[[2, 0, 3]])
    assert {(int(r), int(a), int(z)) for r, a, z in zip(*pairs1)} == {
        (0, 0, 1),
        (0, 1, 1),
        (1, 0, 0),
        (1, 2, 1),
    }
    assert {(int(r), int(a), int(z)) for r, a, z in zip(*pairs2)} == {(0, 1, 0)}
    empty_x, empty_pairs = dataset.batch(torch.tensor([], dtype=torch.long))
    assert empty_x.shape == (0, 2) and all(len(t) == 0 for t in empty_pairs)


def test_iterator_covers_every_row_once_and_drops_a_trailing_singleton():
    annotations, _, _ = check_annotations(np.zeros((9, 1), dtype=int))
    dataset = CrowdDataset(torch.arange(9, dtype=torch.float32)[:, None], annotations)
    plain = list(PairBatchIterator(dataset, batch_size=4))
    assert [len(x) for x, _ in plain] == [4, 4, 1]
    shuffled = list(PairBatchIterator(dataset, batch_size=4, shuffle=True))
    assert [len(x) for x, _ in shuffled] == [4, 4]
    assert len(set(torch.cat([x for x, _ in shuffled])[:, 0].tolist())) == 8


def _reference_loss(module, x, pairs, lam, partner):
    """Pair by pair, as the paper writes it: mixed instance, mixed one-hot annotator, mixed label."""
    rows, annotators, labels = (t.numpy() for t in pairs)
    table = module.annotator_embedding.weight
    total = 0.0
    for p in range(len(rows)):
        q = partner[p]
        lp = float(lam[p])
        x_mix = lp * x[rows[p]] + (1 - lp) * x[rows[q]]
        onehot = torch.zeros(table.shape[0])
        onehot[annotators[p]] += lp
        onehot[annotators[q]] += 1 - lp
        logits, embedding = module.gt_model(x_mix[None])
        class_proba = F.softmax(logits, 1)[0]
        confusion = module.annotator_head(embedding, (onehot @ table)[None]).exp()[0]
        annotation = class_proba @ confusion
        total += lp * torch.log(annotation[labels[p]]) + (1 - lp) * torch.log(annotation[labels[q]])
    return -total / len(rows)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_fast_step_equals_reference_computation(alpha, crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(
        hidden_sizes=(16, 8), dropout=0.0, batch_norm=False, max_epochs=1, alpha=alpha, random_state=0
    ).fit(X[:40], Z[:40])
    net = clf.net_
    annotations, _, _ = check_annotations(Z[:40])
    x, pairs = CrowdDataset(torch.from_numpy(X[:40]), annotations).batch(torch.arange(12))
    n_pairs = len(pairs[0])
    generator = torch.Generator().manual_seed(3)
    lam = torch.rand(n_pairs, generator=generator) if alpha > 0 else torch.ones(n_pairs)
    partner = torch.randperm(n_pairs, generator=generator) if alpha > 0 else torch.arange(n_pairs)
    net.mixing_weights = lambda n, device: (lam, partner)
    step = net.train_step_single((x, pairs))
    with torch.no_grad():
        expected = _reference_loss(net.module_, x, pairs, lam, partner)
    assert step["loss"].item() == pytest.approx(float(expected), rel=1e-5)


def test_missing_entries_never_enter_the_loss(crowd_data):
    """Changing what stands in missing cells (under another missing_label) changes nothing."""
    X, _, Z, _ = crowd_data
    Z_other = np.where(Z < 0, -7, Z)
    fits = [
        AnnotMixClassifier(max_epochs=2, missing_label=missing, random_state=0).fit(X, Zm)
        for Zm, missing in ((Z, -1), (Z_other, -7))
    ]
    np.testing.assert_array_equal(fits[0].history_[:, "train_loss"], fits[1].history_[:, "train_loss"])
    np.testing.assert_array_equal(fits[0].predict_proba(X), fits[1].predict_proba(X))


@pytest.mark.parametrize("sparse", [False, True])
def test_fast_step_equals_reference_with_batch_norm(sparse, crowd_data):
    """Batch norm in training mode normalises over the batch's mixed instances; the reference
    builds them one pair at a time and runs the GT model on all of them at once."""
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(
        hidden_sizes=(16, 8),
        dropout=0.0,
        max_epochs=1,
        sparse_annotator_updates=sparse,
        random_state=0,
    ).fit(X[:40], Z[:40])
    net = clf.net_
    annotations, _, _ = check_annotations(Z[:40])
    x, pairs = CrowdDataset(torch.from_numpy(X[:40]), annotations).batch(torch.arange(16))
    rows, annotators, labels = (t.numpy() for t in pairs)
    generator = torch.Generator().manual_seed(5)
    lam = torch.rand(len(rows), generator=generator)
    partner = torch.randperm(len(rows), generator=generator)
    net.mixing_weights = lambda n, device: (lam, partner)
    step = net.train_step_single((x, pairs))

    module = net.module_
    table = module.annotator_embedding.weight
    with torch.no_grad():
        x_mix, a_mix = [], []
        for p in range(len(rows)):
            q, lp = partner[p], float(lam[p])
            x_mix.append(lp * x[rows[p]] + (1 - lp) * x[rows[q]])
            onehot = torch.zeros(table.shape[0])
            onehot[annotators[p]] += lp
            onehot[annotators[q]] += 1 - lp
            a_mix.append(onehot @ table)
        logits, embedding = module.gt_model(torch.stack(x_mix))
        class_proba = F.softmax(logits, 1)
        confusion = module.annotator_head(embedding, torch.stack(a_mix)).exp()
        total = 0.0
        for p in range(len(rows)):
            q, lp = partner[p], float(lam[p])
            annotation = class_proba[p] @ confusion[p]
            total += lp * torch.log(annotation[labels[p]]) + (1 - lp) * torch.log(annotation[labels[q]])
    assert step["loss"].item() == pytest.approx(float(-total / len(rows)), rel=1e-5)


@pytest.mark.parametrize("n, batch_size", [(25, 8), (24, 8), (5, 8), (0, 4), (7, 1)])
def test_epoch_batches_equal_batch_by_batch(n, batch_size):
    """Pair indexing for the whole epoch at once gives each batch's pairs; row 3 has no label."""
    Z = np.array([[0, 1, -1], [1, -1, -1], [0, 0, 0], [-1, -1, -1], [0, -1, 1]] * 5)[: max(n, 1)]
    rows, cols = np.nonzero(Z >= 0)
    indptr = np.concatenate([[0], np.cumsum((Z >= 0).sum(1))])
    annotations = Annotations(indptr, cols, Z[rows, cols], Z.shape[1])
    dataset = CrowdDataset(torch.arange(len(Z), dtype=torch.float32)[:, None] * 10, annotations)
    order = torch.randperm(len(Z), generator=torch.Generator().manual_seed(0))[:n]
    got = list(dataset.batches(order, batch_size))
    assert len(got) == len(list(dataset.batches(order, batch_size, batches_per_chunk=2)))
    for (x, pairs), (x_chunked, pairs_chunked) in zip(
        got, dataset.batches(order, batch_size, batches_per_chunk=2)
    ):
        assert torch.equal(x, x_chunked) and all(torch.equal(a, b) for a, b in zip(pairs, pairs_chunked))
    expected = [dataset.batch(rows) for rows in torch.split(order, batch_size)] if n else []
    assert len(got) == len(expected)
    for (x, pairs), (x_expected, pairs_expected) in zip(got, expected):
        assert torch.equal(x, x_expected)
        for a, b in zip(pairs, pairs_expected):
            assert torch.equal(a, b)
