import numpy as np
import pytest
import torch

from skannot._nn import MLP, AnnotatorHead, eta_bias
from skannot.classifiers._annot_mix import AnnotMixModule


@pytest.mark.parametrize("n_classes, eta", [(2, 0.9), (10, 0.9), (100, 0.02), (3, 0.999999)])
def test_eta_initialisation_gives_eta_on_the_diagonal(n_classes, eta):
    head = AnnotatorHead(instance_dim=7, annotator_dim=5, hidden_size=4, n_classes=n_classes, eta=eta)
    confusion = head(torch.randn(3, 7), torch.randn(3, 5)).exp()
    assert torch.isfinite(confusion).all()
    torch.testing.assert_close(confusion.sum(-1), torch.ones(3, n_classes))
    diagonal = torch.diagonal(confusion, dim1=1, dim2=2)
    torch.testing.assert_close(diagonal, torch.full_like(diagonal, eta))
    off = confusion[:, ~torch.eye(n_classes, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, (1 - eta) / (n_classes - 1)))


def test_eta_bias_matches_closed_form():
    bias = eta_bias(4, 0.7).view(4, 4)
    expected = np.log(0.7 * 3 / 0.3)
    assert bias[0, 0].item() == pytest.approx(expected)
    assert bias[0, 1].item() == 0


def test_mlp_contract_and_validation():
    logits, embedding = MLP(6, 3, hidden_sizes=(8, 5)).eval()(torch.randn(4, 6))
    assert logits.shape == (4, 3) and embedding.shape == (4, 5)
    with pytest.raises(ValueError, match="at least one hidden layer"):
        MLP(6, 3, hidden_sizes=())


def test_annotator_log_proba_is_the_marginal_over_true_classes():
    torch.manual_seed(0)
    module = AnnotMixModule(MLP(4, 3, (6,)), n_annotators=5, instance_dim=6, n_classes=3).eval()
    with torch.no_grad():
        module.annotator_head.output.weight.normal_()
        x, annotators = torch.randn(2, 4), torch.tensor([4, 0, 2])
        log_proba, log_class = module.annotator_log_proba(x, annotators)
        _, embedding = module.gt_model(x)
        log_conf = module.log_confusion(embedding.repeat_interleave(3, 0), annotators.repeat(2)).view(
            2, 3, 3, 3
        )
    assert log_proba.shape == (2, 3, 3)
    p, conf = log_class.exp().numpy(), log_conf.exp().numpy()
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(log_proba[i, j].exp().numpy(), p[i] @ conf[i, j], rtol=1e-5)
    torch.testing.assert_close(log_proba.exp().sum(-1), torch.ones(2, 3))
