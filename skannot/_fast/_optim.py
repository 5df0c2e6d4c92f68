"""RAdam on one contiguous buffer per parameter group, and SparseAdam by row indexing (fast paths).

The network of a tabular annot-mix model is small (about 10^5 parameters in
15 tensors), so on the CPU :class:`torch.optim.RAdam` spends most of its step
on per-tensor bookkeeping and on the temporaries of its update, not on
arithmetic: about a sixth of a training step on Music Genres, even with
``foreach=True``. :class:`FlatRAdam` moves every parameter of a group into
one flat buffer (the module's parameters become views of it, and so do
their gradients) and applies the same update once per group: once the
update is rectified (from the sixth step on with the default betas), in a
single pass of torch's fused Adam kernel, whose update equals RAdam's with
the step size scaled by the rectification and ``eps`` by the bias
correction (see :meth:`FlatRAdam.step`); before that, and on torch builds
without the kernel, with five in-place passes over the buffer.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.optim import optimizer as _torch_optimizer

#: torch's fused Adam kernel (CPU since torch 2.4), or None on builds without it.
_FUSED_ADAM = getattr(torch, "_fused_adam_", None)

#: Keyword arguments of :class:`torch.optim.RAdam` that :class:`FlatRAdam` honours.
SUPPORTED_OPTIONS = frozenset(
    {"lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "foreach", "maximize"}
)


def flat_radam_applies(optimizer, options, params):
    """Whether an optimizer request can run as :class:`FlatRAdam`.

    Parameters
    ----------
    optimizer : callable
        The requested optimizer class; only :class:`torch.optim.RAdam` itself
        qualifies (a subclass may change the update).
    options : dict
        Its keyword arguments.
    params : list of Tensor
        The parameters to optimise.

    Returns
    -------
    applies : bool
        True when the options are all supported, ``lr`` is a number and the
        parameters are dense, real and share one device and dtype.
    """
    if optimizer is not torch.optim.RAdam or not set(options) <= SUPPORTED_OPTIONS:
        return False
    if isinstance(options.get("lr"), torch.Tensor) or not params:
        return False
    first = params[0]
    return all(
        p.device == first.device and p.dtype == first.dtype and not p.is_sparse and not p.is_complex()
        for p in params
    )


def _hooks_pending(optimizer):
    """Whether a step of ``optimizer`` must run torch's wrapper: a profiler records, or step hooks exist."""
    return bool(
        torch.autograd._profiler_enabled()
        or optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or getattr(_torch_optimizer, "_global_optimizer_pre_hooks", None)
        or getattr(_torch_optimizer, "_global_optimizer_post_hooks", None)
    )


def _lean_step(update):
    """``update`` as an optimizer's ``step`` that enters torch's profiler range only when it is needed.

    torch wraps every optimizer's ``step`` in a profiler range
    (``record_function``) and the calls of the step hooks; on a small
    network the range alone costs several per cent of a CPU training step,
    whether a profiler records or not. The returned ``step`` runs
    ``update`` through that same wrapper while a profiler is enabled or
    any step hook (the optimizer's own or a global one) is registered, and
    directly otherwise. It is marked ``hooked``, so torch's ``Optimizer``
    does not wrap it a second time.
    """
    wrapped = torch.optim.Optimizer.profile_hook_step(update)

    @functools.wraps(update)
    def step(self, *args, **kwargs):
        if _hooks_pending(self):
            return wrapped(self, *args, **kwargs)
        out = update(self, *args, **kwargs)
        self._optimizer_step_code()  # the entry point torch's profiler traces; empty otherwise
        return out

    step.hooked = True
    return step


def _evaluate(closure):
    """What ``closure()`` returns, run with gradients on (an optimizer steps without), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class FlatRAdam(torch.optim.RAdam):
    """:class:`torch.optim.RAdam` with each parameter group stored in one flat buffer.

    The update is RAdam's (Liu et al., 2020) as torch implements it,
    including coupled or decoupled weight decay and ``maximize``, and equal
    to :class:`torch.optim.RAdam`'s up to floating-point rounding. Creating
    the optimizer copies each group's parameters into one contiguous buffer
    and makes every parameter's ``.data`` and ``.grad`` views into the
    group's buffers, so backward passes write straight into them. Once the
    update is rectified it runs as one pass of torch's fused Adam kernel
    (``torch._fused_adam_``, with ``lr * rect`` as the step size and
    ``eps / sqrt(1 - beta2**step)`` as ``eps``), which is the same update;
    the first steps, and builds of torch without the kernel, take five
    in-place passes.

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Parameters or parameter groups, as for any torch optimizer. All
        parameters must be dense, real, and on one device with one dtype.
    lr, betas, eps, weight_decay, decoupled_weight_decay, maximize
        As for :class:`torch.optim.RAdam`.
    foreach : bool, optional
        Accepted for compatibility and ignored: there is one tensor per group.

    Notes
    -----
    ``zero_grad`` always zeroes the gradient buffers in place (it never sets
    gradients to ``None``, which would cut them off from the buffer). If
    something replaces a parameter's ``.data`` or ``.grad`` (for example
    ``module.to(other_device)`` or ``module.zero_grad()``), the next
    ``zero_grad`` or ``step`` notices, copies the current values into the
    buffer (moving the buffer and the optimizer state to the parameters'
    device and dtype if they changed) and links the views again.

    Step hooks (``register_step_pre_hook``, ``register_step_post_hook`` and
    torch's global ones) run as for any torch optimizer, and a profiler sees
    the step as ``Optimizer.step#FlatRAdam.step``; with neither a hook nor a
    profiler, the step skips torch's profiler range, which costs several
    per cent of a step on a small network (see ``_lean_step``).

    ``param_groups[i]["params"]`` holds the group's one flat buffer, and the
    optimizer state (``step``, ``exp_avg``, ``exp_avg_sq``, as
    :class:`torch.optim.RAdam` names them) is kept for that buffer.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        decoupled_weight_decay=False,
        *,
        foreach=None,
        maximize=False,
    ):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self._members = []
        self._pointers = {}
        flat_groups = []
        for group in groups:
            members = [p for p in group["params"]]
            if not members:
                raise ValueError("FlatRAdam got an empty parameter group.")
            if len({(p.device, p.dtype) for p in members}) > 1:
                raise ValueError(
                    "FlatRAdam needs the parameters of a group on one device with one dtype; "
                    "use torch.optim.RAdam for mixed parameters."
                )
            flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in members]))
            self._members.append(members)
            flat_groups.append({**group, "params": [flat]})
        super().__init__(
            flat_groups,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        for group, members in zip(self.param_groups, self._members):
            self._link(group["params"][0], members)

    # -- keeping the parameters views of the buffers ---------------------------

    def _link(self, flat, members):
        """Make the members' data and gradients views of ``flat`` and ``flat.grad``; note their addresses."""
        if flat.grad is None:
            flat.grad = torch.zeros_like(flat)
        offset = 0
        for p in members:
            n = p.numel()
            p.data = flat.data[offset : offset + n].view_as(p)
            p.grad = flat.grad[offset : offset + n].view_as(p)
            offset += n
        self._pointers[id(flat)] = (
            flat.data_ptr(),
            flat.grad.data_ptr(),
            tuple((p.data_ptr(), p.grad.data_ptr()) for p in members),
        )

    def _linked(self, flat, members):
        """Whether the buffers and the members' data and gradients still sit where :meth:`_link` put them.

        Anything that replaces a parameter's data or gradient (``p.data = ...``,
        ``module.to(...)``, ``p.grad = None``) gives it new memory, so
        comparing addresses with those noted at linking time (two integers per
        member, checked before each zero_grad and step) tells.
        """
        noted = self._pointers.get(id(flat))
        grad = flat.grad
        if noted is None or grad is None or flat.data_ptr() != noted[0] or grad.data_ptr() != noted[1]:
            return False
        for p, (data_ptr, grad_ptr) in zip(members, noted[2]):
            member_grad = p.grad
            if member_grad is None or p.data_ptr() != data_ptr or member_grad.data_ptr() != grad_ptr:
                return False
        return True

    def _relink(self):
        """Re-establish the views where something replaced a parameter's data or gradient."""
        for group, members in zip(self.param_groups, self._members):
            flat = group["params"][0]
            if self._linked(flat, members):
                continue
            # The members' own tensors hold the current values: copy them in.
            values = torch.cat([p.detach().reshape(-1) for p in members])
            grads = torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1)
                    for p in members
                ]
            )
            flat.data = values
            flat.grad = grads
            state = self.state.get(flat)
            for key in ("exp_avg", "exp_avg_sq"):
                if state and key in state:
                    state[key] = state[key].to(device=values.device, dtype=values.dtype)
            self._link(flat, members)

    def zero_grad(self, set_to_none=True):
        """Zero the gradient buffers in place (``set_to_none`` is ignored, see the class notes)."""
        self._relink()
        for group in self.param_groups:
            group["params"][0].grad.zero_()

    def __getstate__(self):
        # torch's Optimizer pickles only defaults, state and param_groups; the members must
        # travel too (pickled with the module in one go, they stay the module's parameters).
        return {**super().__getstate__(), "_members": self._members}

    def __setstate__(self, state):
        # Gradients are not pickled: the next zero_grad or step links them again.
        super().__setstate__(state)
        self._pointers = {}

    # -- the update ------------------------------------------------------------

    @_lean_step
    @torch.no_grad()
    def step(self, closure=None):
        """One RAdam update of every group.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss.

        Returns
        -------
        loss : Tensor or None
            What ``closure`` returned.
        """
        loss = _evaluate(closure)
        self._relink()
        for group in self.param_groups:
            flat = group["params"][0]
            grad = flat.grad
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            state = self.state[flat]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(flat, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(flat, memory_format=torch.preserve_format)
            state["step"] += 1
            step = state["step"].item()
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * step * beta2**step / bias_correction2
            rectified = rho_t > 5.0
            if rectified:
                rect = math.sqrt(
                    (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
                )
            if rectified and _fused_applies(flat):
                # Adam's update, lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps'), with lr' = lr * rect
                # and eps' = eps / sqrt(bc2), is RAdam's rectified one, lr * rect * sqrt(bc2) / bc1
                # * m / (sqrt(v) + eps), in one pass over the buffers instead of five.
                if weight_decay != 0 and group["decoupled_weight_decay"]:
                    flat.mul_(1 - lr * weight_decay)
                coupled = 0.0 if group["decoupled_weight_decay"] else weight_decay
                _FUSED_ADAM(
                    [flat],
                    [flat.grad],
                    [exp_avg],
                    [exp_avg_sq],
                    [],
                    [state["step"]],
                    lr=lr * rect,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=coupled,
                    eps=eps / math.sqrt(bias_correction2),
                    amsgrad=False,
                    maximize=group["maximize"],
                )
                continue
            if group["maximize"]:
                grad = -grad
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    flat.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(flat, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            if rectified:
                denominator = exp_avg_sq.sqrt().add_(eps)
                flat.addcdiv_(
                    exp_avg, denominator, value=-lr * rect * math.sqrt(bias_correction2) / bias_correction1
                )
            else:
                flat.add_(exp_avg, alpha=-lr / bias_correction1)
        return loss


def _fused_applies(flat):
    """Whether torch's fused Adam kernel can update ``flat``: the kernel exists for its device and dtype."""
    return (
        _FUSED_ADAM is not None and flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64)
    )


class RowSparseAdam(torch.optim.SparseAdam):
    """:class:`torch.optim.SparseAdam` with its update done by row indexing.

    For a parameter whose sparse gradient indexes rows (sparse dimension 1,
    as :class:`torch.nn.Embedding` with ``sparse=True`` gives), the moments
    and the parameter rows are read with ``index_select`` and written back
    with ``index_copy_`` and ``index_add_``, instead of building sparse
    tensors and masks for each of them: the same arithmetic in the same
    order (results equal torch's bit for bit), about a third less time for a
    step over a few hundred rows on the CPU. Other sparse layouts go
    through torch's update. Step hooks and profilers see its step as
    :class:`FlatRAdam`'s (see its notes).
    """

    @_lean_step
    @torch.no_grad()
    def step(self, closure=None):
        """One SparseAdam update of every parameter that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Called first, with gradients enabled: it re-evaluates the model.

        Returns
        -------
        loss : Tensor or None
            The closure's result.
        """
        loss = _evaluate(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = float(group["lr"]), group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if not grad.is_sparse:
                    raise RuntimeError(
                        "SparseAdam does not support dense gradients, please consider Adam instead"
                    )
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                if grad.sparse_dim() != 1:
                    torch.optim._functional.sparse_adam(
                        [param],
                        [grad],
                        [state["exp_avg"]],
                        [state["exp_avg_sq"]],
                        [state["step"]],
                        eps=eps,
                        beta1=beta1,
                        beta2=beta2,
                        lr=lr,
                        maximize=group.get("maximize", False),
                    )
                    continue
                if group.get("maximize", False):
                    grad = -grad
                grad = grad.coalesce()  # the update is not linear: one value per row
                values = grad._values()
                if values.numel() == 0:
                    continue
                rows = grad._indices()[0]
                exp_avg, exp_avg_sq, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
                # old + (new - old) * (1 - beta), as torch computes the moving averages
                old = exp_avg.index_select(0, rows)
                first = values.sub(old).mul_(1 - beta1).add_(old)
                exp_avg.index_copy_(0, rows, first)
                old = exp_avg_sq.index_select(0, rows)
                second = values.pow(2).sub_(old).mul_(1 - beta2).add_(old)
                exp_avg_sq.index_copy_(0, rows, second)
                step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                param.index_add_(0, rows, first.div_(second.sqrt_().add_(eps)).mul_(-step_size))
        return loss
