"""FlatRAdam (RAdam on one buffer per parameter group) and RowSparseAdam (SparseAdam by rows)."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from skannot._fast import FlatRAdam, RowSparseAdam, flat_radam_applies


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


@pytest.mark.parametrize(
    "options",
    [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}, {"maximize": True}],
)
def test_the_fused_pass_equals_the_five_passes(monkeypatch, options):
    """Rectified steps run torch's fused Adam kernel; without it (older torch) the same update."""
    from skannot._fast import _optim

    assert _optim._FUSED_ADAM is not None  # torch 2.4 and later have it
    calls = []
    fused = _optim._FUSED_ADAM
    monkeypatch.setattr(
        _optim, "_FUSED_ADAM", lambda *args, **kwargs: calls.append(1) or fused(*args, **kwargs)
    )
    with_kernel = _model(dtype=torch.float64)
    got = _train(with_kernel, FlatRAdam(with_kernel.parameters(), lr=1e-2, **options))
    assert len(calls) == 40 - 5  # every step from the sixth on (beta2 = 0.999)
    monkeypatch.setattr(_optim, "_FUSED_ADAM", None)
    without = _model(dtype=torch.float64)
    expected = _train(without, FlatRAdam(without.parameters(), lr=1e-2, **options))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    for a, b in zip(with_kernel.state_dict().values(), without.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


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


def _sparse_row_grad(n_rows, n_cols, picked, generator):
    """An uncoalesced row-sparse gradient (duplicate rows included), as nn.Embedding(sparse=True) gives."""
    values = torch.randn(len(picked), n_cols, generator=generator)
    return torch.sparse_coo_tensor(picked[None], values, (n_rows, n_cols), check_invariants=True)


@pytest.mark.parametrize("maximize", [False, True])
def test_row_sparse_adam_equals_torch_sparse_adam_bit_for_bit(maximize):
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(50, 8, generator=generator)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    options = {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, "maximize": maximize}
    row_adam, sparse_adam = RowSparseAdam([ours], **options), torch.optim.SparseAdam([theirs], **options)
    for step in range(12):
        picked = torch.randint(0, 50, (30,), generator=generator)
        if step == 5:
            picked = picked[:0]  # an empty gradient: the step count still advances
        grad = _sparse_row_grad(50, 8, picked, generator)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        row_adam.step()
        sparse_adam.step()
        assert torch.equal(ours, theirs)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(
            torch.as_tensor(row_adam.state[ours][key]), torch.as_tensor(sparse_adam.state[theirs][key])
        )
    # the state is torch's: a SparseAdam state dict loads and continues the same way
    reloaded = RowSparseAdam([torch.nn.Parameter(theirs.detach().clone())], **options)
    reloaded.load_state_dict(sparse_adam.state_dict())
    assert reloaded.state_dict()["state"][0]["step"] == 12


def test_row_sparse_adam_refuses_dense_gradients_and_passes_other_layouts_to_torch():
    parameter = torch.nn.Parameter(torch.zeros(4, 3))
    parameter.grad = torch.ones(4, 3)
    with pytest.raises(RuntimeError, match="dense gradients"):
        RowSparseAdam([parameter]).step()
    # element-sparse gradient (sparse dimension 2): torch's own update
    generator = torch.Generator().manual_seed(1)
    ours, theirs = torch.nn.Parameter(torch.randn(4, 3, generator=generator)), None
    theirs = torch.nn.Parameter(ours.detach().clone())
    grad = torch.sparse_coo_tensor(
        torch.tensor([[0, 2, 3], [1, 1, 0]]), torch.tensor([1.0, -2.0, 0.5]), (4, 3), check_invariants=True
    )
    ours.grad, theirs.grad = grad.clone(), grad.clone()
    RowSparseAdam([ours], lr=0.1).step()
    torch.optim.SparseAdam([theirs], lr=0.1).step()
    assert torch.equal(ours, theirs)


def test_row_sparse_adam_returns_the_closure_loss():
    parameter = torch.nn.Parameter(torch.zeros(4, 3))
    assert RowSparseAdam([parameter]).step(lambda: torch.tensor(2.5)).item() == 2.5


def _one_step(optimizer_class, parameter):
    """An optimizer of ``parameter`` with a gradient of ones (dense, or sparse rows 0 and 2)."""
    if optimizer_class is RowSparseAdam:
        parameter.grad = torch.sparse_coo_tensor(
            torch.tensor([[0, 2]]), torch.ones(2, 3), (4, 3), check_invariants=True
        )
        return optimizer_class([parameter], lr=0.1)
    optimizer = optimizer_class([parameter], lr=0.1)
    parameter.grad.fill_(1.0)  # a view of the optimizer's gradient buffer
    return optimizer


@pytest.mark.parametrize("optimizer_class", [FlatRAdam, RowSparseAdam])
def test_step_hooks_run_as_for_torch_optimizers(optimizer_class):
    """The step skips torch's wrapper only when nothing would see it: hooks still run, in order."""
    parameter = torch.nn.Parameter(torch.zeros(4, 3))
    optimizer = _one_step(optimizer_class, parameter)
    calls = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: calls.append(("pre", opt, parameter.sum().item()))
    )
    optimizer.register_step_post_hook(
        lambda opt, args, kwargs: calls.append(("post", opt, parameter.sum().item()))
    )
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append(("global post", opt)))
    try:
        optimizer.step()
    finally:
        handle.remove()
    assert [c[:2] for c in calls] == [("pre", optimizer), ("post", optimizer), ("global post", optimizer)]
    assert calls[0][2] == 0 and calls[1][2] != 0  # before and after the update
    calls.clear()
    optimizer.step()  # the global hook is gone; the optimizer's own still run
    assert [c[0] for c in calls] == ["pre", "post"]


@pytest.mark.parametrize("optimizer_class", [FlatRAdam, RowSparseAdam])
def test_a_profiler_sees_the_step_and_torch_does_not_wrap_it_twice(monkeypatch, optimizer_class):
    parameter = torch.nn.Parameter(torch.zeros(4, 3))
    optimizer = _one_step(optimizer_class, parameter)
    assert optimizer_class.step.hooked  # torch's Optimizer leaves it as it is
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        optimizer.step()
    names = [event.name for event in profile.events()]
    assert names.count(f"Optimizer.step#{optimizer_class.__name__}.step") == 1
    # Without a profiler or hooks, no profiler range is entered, and the update still runs.
    entered, record_function = [], torch.autograd.profiler.record_function
    monkeypatch.setattr(
        torch.autograd.profiler,
        "record_function",
        lambda *a, **k: entered.append(a) or record_function(*a, **k),
    )
    before = parameter.detach().clone()
    optimizer.step()
    assert entered == [] and not torch.equal(parameter, before)
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1).step()  # torch's own optimizers do enter it
    assert entered


def test_one_replaced_gradient_or_parameter_is_noticed():
    """A gradient's storage swapped under the same tensor, or one parameter's data replaced."""
    model = _model()
    optimizer = FlatRAdam(model.parameters(), lr=1e-2)
    _train(model, optimizer, steps=2)
    (flat,) = optimizer.param_groups[0]["params"]
    weight = model[0].weight
    weight.grad.data = torch.ones_like(weight)
    optimizer.zero_grad()
    assert weight.grad.untyped_storage().data_ptr() == flat.grad.untyped_storage().data_ptr()
    replacement = weight.detach().clone() + 1
    weight.data = replacement
    optimizer.zero_grad()
    assert weight.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    assert torch.equal(weight, replacement)
