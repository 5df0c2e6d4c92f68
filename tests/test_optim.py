"""FlatRAdam: torch's RAdam update on one buffer per parameter group."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from skannot._optim import FlatRAdam, flat_radam_applies


def _model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)).to(dtype)


def _train(model, optimizer, steps=40, seed=1):
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 5, generator=generator, dtype=next(model.parameters()).dtype)
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
        {"betas": (0.8, 0.99), "eps": 1e-6, "maximize": True},
    ],
)
def test_updates_equal_torch_radam(options):
    """40 steps pass the rectification threshold (step 6 with beta2 = 0.999, step 5 with 0.99)."""
    reference, flat = _model(dtype=torch.float64), _model(dtype=torch.float64)
    expected = _train(reference, torch.optim.RAdam(reference.parameters(), lr=1e-2, **options))
    got = _train(flat, FlatRAdam(flat.parameters(), lr=1e-2, **options))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    for a, b in zip(flat.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_parameter_groups_keep_their_own_settings():
    reference, flat = _model(dtype=torch.float64), _model(dtype=torch.float64)

    def groups(model):
        return [
            {"params": model[0].parameters(), "lr": 0.05, "weight_decay": 0.2},
            {"params": list(model[1].parameters()) + list(model[3].parameters())},
        ]

    expected = _train(reference, torch.optim.RAdam(groups(reference), lr=1e-2))
    optimizer = FlatRAdam(groups(flat), lr=1e-2)
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 1]
    torch.testing.assert_close(_train(flat, optimizer), expected, rtol=1e-9, atol=1e-10)


def test_parameters_and_gradients_are_views_of_the_buffer():
    model = _model()
    optimizer = FlatRAdam(model.parameters(), lr=1e-2)
    (flat,) = optimizer.param_groups[0]["params"]
    assert flat.numel() == sum(p.numel() for p in model.parameters())
    model(torch.randn(8, 5)).sum().backward()
    assert flat.grad.abs().sum() > 0
    optimizer.zero_grad()
    assert all(p.grad is not None and (p.grad == 0).all() for p in model.parameters())
    assert (flat.grad == 0).all()
    with torch.no_grad():
        flat.zero_()
    assert all((p == 0).all() for p in model.parameters())


def test_replaced_gradients_and_data_are_taken_back_into_the_buffer():
    """module.zero_grad() (set to None) and a dtype change do not cut the parameters off."""
    reference, model = _model(), _model()
    torch_radam = torch.optim.RAdam(reference.parameters(), lr=1e-2)
    optimizer = FlatRAdam(model.parameters(), lr=1e-2)
    _train(reference, torch_radam, steps=3)
    _train(model, optimizer, steps=3)
    for net in (reference, model):
        net.zero_grad()  # sets every .grad to None
        net.double()  # replaces every .data
    for state in torch_radam.state.values():
        state["exp_avg"], state["exp_avg_sq"] = state["exp_avg"].double(), state["exp_avg_sq"].double()
    expected = _train(reference, torch_radam, steps=7, seed=2)
    got = _train(model, optimizer, steps=7, seed=2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    (flat,) = optimizer.param_groups[0]["params"]
    assert flat.dtype == torch.float64 and optimizer.state[flat]["exp_avg"].dtype == torch.float64
    assert all(
        p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in model.parameters()
    )


def test_pickled_with_its_module_it_trains_on_as_before():
    model = _model()
    optimizer = FlatRAdam(model.parameters(), lr=1e-2)
    _train(model, optimizer, steps=8)
    twin_model, twin_optimizer = pickle.loads(pickle.dumps((model, optimizer)))
    buffer = io.BytesIO()
    torch.save((model, optimizer), buffer)
    buffer.seek(0)
    saved_model, saved_optimizer = torch.load(buffer, weights_only=False)
    copied_model, copied_optimizer = copy.deepcopy((model, optimizer))
    expected = _train(model, optimizer, steps=8, seed=3)
    for m, o in [
        (twin_model, twin_optimizer),
        (saved_model, saved_optimizer),
        (copied_model, copied_optimizer),
    ]:
        assert _train(m, o, steps=8, seed=3) == expected
        for a, b in zip(m.parameters(), model.parameters()):
            assert torch.equal(a, b)


def test_state_dict_round_trip():
    model = _model()
    optimizer = FlatRAdam(model.parameters(), lr=1e-2)
    _train(model, optimizer, steps=8)
    other_model = _model()
    other_model.load_state_dict(model.state_dict())
    other = FlatRAdam(other_model.parameters(), lr=1e-2)
    other.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert _train(other_model, other, steps=5, seed=4) == _train(model, optimizer, steps=5, seed=4)


def test_applicability_and_errors():
    params = list(_model().parameters())
    assert flat_radam_applies(torch.optim.RAdam, {"lr": 0.1, "foreach": True}, params)
    assert not flat_radam_applies(torch.optim.Adam, {"lr": 0.1}, params)
    assert not flat_radam_applies(torch.optim.RAdam, {"lr": 0.1, "capturable": True}, params)
    assert not flat_radam_applies(torch.optim.RAdam, {"lr": torch.tensor(0.1)}, params)
    assert not flat_radam_applies(
        torch.optim.RAdam, {"lr": 0.1}, params + [torch.zeros(2, dtype=torch.float64)]
    )
    assert not flat_radam_applies(torch.optim.RAdam, {"lr": 0.1}, [])
    with pytest.raises(ValueError, match="one device with one dtype"):
        FlatRAdam(params + [nn.Parameter(torch.zeros(2, dtype=torch.float64))])
    with pytest.raises(ValueError, match="empty parameter group"):
        FlatRAdam([{"params": []}])
