"""Data-parallel training through Hugging Face Accelerate (optional dependency).

Under ``accelerate launch``, every process runs the same script and the same
``fit``, and the processes together compute what one process would:

- they share one seed (process 0's, when ``random_state`` is None), so they
  draw the same order of instances, the same mixing weights and partners and
  the same dropout masks as a single process;
- every process loads the whole batch of ``batch_size`` instances and runs
  the network on its contiguous slice of the batch's (mixed) pairs, or of its
  instances when ``alpha=0``; dropout masks are drawn for the whole batch and
  sliced (:class:`ShardedDropout`);
- batch normalisation computes its statistics over the whole batch with
  differentiable all-reduces (:class:`SyncBatchNorm1d`);
- each process's loss is its pairs' summed loss over the batch's number of
  pairs, times the number of processes, and ``DistributedDataParallel``
  (DDP) averages the gradients: the gradient of the batch's mean loss.

So a fit on several processes equals the single-process fit up to the order
of floating-point operations, with the same steps per epoch and the same
learning-rate schedule. With one process the plain training step runs.

``accelerate`` is imported only when an accelerated fit needs a default
``Accelerator``, so the rest of skannot works without it.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np
import torch
from skorch.hf import AccelerateMixin
from torch import distributed as dist
from torch import nn

from ._fast import keep_mask
from ._nn import Dropout, mix, swap_class
from ._training import CrowdNet, PairBatchIterator, pair_weight_options
from .classifiers import AnnotMixClassifier


class _PairStep(nn.Module):
    """One training forward pass of annot-mix as a module, for DDP.

    DDP synchronises gradients only of computations that run through the
    wrapped module's ``forward``; the net's loss calls the parts of an
    ``AnnotMixModule`` one by one, so the accelerated net wraps this module,
    which holds the same parameters and runs the net's own loss.

    Parameters
    ----------
    module : AnnotMixModule
        The net's ``module_``, registered here so that DDP sees its parameters.
    pair_loss : callable
        The module's :meth:`~skannot.classifiers._annot_mix.AnnotMixModule.training_loss`, or with
        several processes :meth:`AcceleratedAnnotMixNet._sharded_pair_loss`.
    """

    def __init__(self, module, pair_loss):
        super().__init__()
        self.module = module
        self.pair_loss = pair_loss

    def forward(self, x, rows, annotators, labels, lam=None, partner=None, **options):
        """The loss and GT logits, as ``pair_loss`` returns them (``options``: the pair weights)."""
        return self.pair_loss(x, rows, annotators, labels, lam, partner, **options)


class SharedOrderPairBatchIterator(PairBatchIterator):
    """:class:`~skannot._training.PairBatchIterator` whose shuffled order comes from process 0.

    Every process iterates over the same whole batches (each then computes
    its slice, see :class:`AcceleratedAnnotMixNet`). The processes share a
    seed, so they draw the same order anyway; broadcasting it keeps them in
    step even if something seeded one process differently.

    Parameters
    ----------
    dataset : CrowdDataset
    batch_size : int
        Instances per batch, over all processes together.
    shuffle : bool, default=False
    generator : torch.Generator, optional
        CPU generator of the orders.
    accelerator : accelerate.Accelerator
        Gives ``num_processes`` and the device to broadcast on.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None, *, accelerator):
        super().__init__(dataset, batch_size, shuffle=shuffle, generator=generator)
        self.accelerator = accelerator

    def _order(self):
        order = super()._order()
        if self.shuffle and self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            order = broadcast(order.to(self.accelerator.device), from_process=0).cpu()
        return order


class ShardedDropout(Dropout):
    """skannot's :class:`~skannot._nn.Dropout` that can draw the mask of a whole batch and keep a slice.

    While :func:`row_shard` is active on its module, a training-mode layer
    whose input has ``k`` rows draws the :func:`~skannot._fast.keep_mask`
    mask of a ``total``-row input, as a single process holding the whole
    batch would, and uses its rows ``offset:offset + k``, on every device.
    Processes that share a random state and each run a slice of one batch
    thus draw the masks a single process would. Otherwise it is a plain
    :class:`~skannot._nn.Dropout`.
    """

    shard = None

    @classmethod
    def convert(cls, module):
        """Turn every :class:`~skannot._nn.Dropout` inside ``module`` into this class, in place.

        Parameters
        ----------
        module : nn.Module

        Returns
        -------
        module : nn.Module
        """
        return swap_class(module, Dropout, cls)

    def forward(self, x):
        if self.shard is None or not self.training or self.p == 0:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        offset, total = self.shard
        whole = keep_mask((total, *x.shape[1:]), self.p, x.device, 1 / (1 - self.p), self.generator)
        mask = whole[offset : offset + len(x)]
        return x * mask.to(x.dtype)


@contextlib.contextmanager
def row_shard(module, offset, total):
    """Make the :class:`ShardedDropout` layers of ``module`` treat their input as rows of a larger batch.

    Parameters
    ----------
    module : nn.Module
    offset : int
        First row of the slice.
    total : int
        Rows of the whole batch.
    """
    layers = [layer for layer in module.modules() if isinstance(layer, ShardedDropout)]
    for layer in layers:
        layer.shard = (offset, total)
    try:
        yield
    finally:
        for layer in layers:
            layer.shard = None


class SyncBatchNorm1d(nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` whose training statistics span all processes.

    In training mode under an initialised process group of more than one
    process, the mean and the variance are computed over the rows of every
    process with two differentiable all-reduces (sums, then sums of squared
    deviations), so normalisation, running statistics and gradients are those
    of one batch norm over the whole batch; it works with every backend
    (gloo on the CPU, NCCL on GPUs), unlike :class:`torch.nn.SyncBatchNorm`,
    which needs a GPU. Otherwise (evaluation, one process) it is a plain
    ``BatchNorm1d``. Inputs are (N, C) or (N, C, L).
    """

    @classmethod
    def convert(cls, module):
        """Turn every plain ``BatchNorm1d`` inside ``module`` (itself included) into this class, in place.

        The layers keep their parameters, buffers and settings; only their
        class changes.

        Parameters
        ----------
        module : nn.Module

        Returns
        -------
        module : nn.Module
        """
        return swap_class(module, nn.BatchNorm1d, cls)

    def forward(self, x):
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # as autocast runs batch norm: statistics and output in float32
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *([1] * (x.dim() - 2))]
        count = x.new_tensor([x.numel() / max(x.shape[1], 1)])
        totals = all_reduce(torch.cat([x.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centered = x - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims)) / n
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * (n.detach() / (n.detach() - 1).clamp(min=1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out


class AcceleratedAnnotMixNet(AccelerateMixin, CrowdNet):
    """:class:`~skannot._training.CrowdNet` training annot-mix through Accelerate.

    The mixin's own preparation would wrap ``module_`` in DDP; this net wraps
    a :class:`_PairStep` around it instead (see there) and leaves ``module_``
    as the plain module that prediction uses.
    """

    def _generator_device(self):
        return self.accelerator.device

    def initialize(self):
        # The mixin's initialize does not call the plain net's.
        super().initialize()
        return self._initialize_generators()

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        if self.accelerator.num_processes > 1:
            SyncBatchNorm1d.convert(self.module_)
            ShardedDropout.convert(self.module_)
            pair_loss = self._sharded_pair_loss
        else:
            pair_loss = self.module_.training_loss
        with self._current_init_context("module"):
            self.pair_step_ = self.accelerator.prepare(_PairStep(self.module_, pair_loss))
        with self._current_init_context("optimizer"):
            for name in self._optimizers:
                setattr(self, name + "_", self.accelerator.prepare(getattr(self, name + "_")))
        # Learning-rate schedulers stay unprepared: Accelerate steps a prepared one once per
        # process, which assumes the data are split into more steps, while here each process
        # takes the same number of steps as a single process would.
        self._wrapped_with_accelerator = True
        return self

    def _unwrap_accelerator(self):
        # Accelerate's optimizer wrapper cannot be pickled: unwrap it, also where a learning-rate
        # scheduler refers to it, so the fitted estimator pickles; a warm start prepares it again.
        if self._wrapped_with_accelerator:
            prepared = {id(getattr(self, name + "_")) for name in self._optimizers}
            for _, callback in self.callbacks_:
                scheduler = getattr(callback, "lr_scheduler_", None)
                if id(getattr(scheduler, "optimizer", None)) in prepared:
                    scheduler.optimizer = scheduler.optimizer.optimizer
            with self._current_init_context("optimizer"):
                for name in self._optimizers:
                    setattr(self, name + "_", getattr(self, name + "_").optimizer)
        super()._unwrap_accelerator()
        if hasattr(self, "pair_step_"):
            del self.pair_step_

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # Training again after a fit (skorch's partial_fit) needs the wrappers that the end
        # of the previous training removed.
        self._initialize_accelerator()
        return super().on_train_begin(net, X=X, y=y, **kwargs)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            # Parameters and synchronised batch-norm statistics agree on every process; buffers
            # of other layers in a custom GT module may not: take process 0's everywhere.
            for buffer in self.module_.buffers():
                broadcast(buffer.data, from_process=0)
        super().on_train_end(net, X=X, y=y, **kwargs)
        # Accelerate keeps every prepared object until told otherwise (its documented
        # practice between two trainings), which would also keep the accelerator unpicklable.
        self.accelerator.free_memory()
        return self

    def __getstate__(self):
        state = super().__getstate__()
        # skorch restores the weights onto ``device``, which Accelerate leaves at None:
        # record where they live, as a plain net does.
        if state["device"] is None:
            state["device"] = str(self.accelerator.device)
        return state

    def train_step(self, batch, **fit_params):
        with self.accelerator.accumulate(self.pair_step_):
            return CrowdNet.train_step(self, batch, **fit_params)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        x, pairs = batch
        device = self.accelerator.device
        x = x.to(device, non_blocking=True)
        rows, annotators, labels, *weights = (t.to(device, non_blocking=True) for t in pairs)
        lam, partner = self.mixing_weights(len(rows), device) if self.uses_mixup() else (None, None)
        options = pair_weight_options(weights, lam, partner)
        with self.accelerator.autocast():
            loss, logits = self.pair_step_(x, rows, annotators, labels, lam, partner, **options)
        n_processes = self.accelerator.num_processes
        if n_processes == 1:
            self.accelerator.backward(loss)
            return {"loss": loss, "y_pred": logits}
        # ``loss`` is this process's part of the batch's mean loss; DDP averages the
        # gradients over the processes, so scale by their number to get the sum.
        self.accelerator.backward(loss * n_processes)
        return {"loss": self.accelerator.reduce(loss.detach(), "sum"), "y_pred": logits}

    def _sharded_pair_loss(self, x, rows, annotators, labels, lam, partner, weights=None):
        """This process's part of the batch's mean loss, and the GT logits of its pairs.

        With mixup, the process takes a contiguous slice of the batch's pairs
        (partners may lie outside it: every process holds the whole batch);
        without, a contiguous slice of the batch's instances and their pairs.
        The loss is the slice's summed (``weights``: weighted) loss over the
        batch's number of pairs, so that the processes' parts add up to the
        single process's (weighted) mean.
        """
        module = self.module_
        n_processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        n_pairs = len(rows)
        # The single process's choice for the whole batch, so every process computes the same way.
        project_table = module.projects_table(n_pairs)
        if lam is not None:
            lo, hi = _slice_bounds(n_pairs, n_processes, rank)
            weight, partner = lam[lo:hi], partner[lo:hi]
            with row_shard(module, lo, n_pairs):
                logits, embedding = module.gt_model(mix(x[rows[lo:hi]], x[rows[partner]], weight))
            confusion_logits = module.pair_confusion_logits(
                embedding, annotators, weight, partner, slice(lo, hi), project_table
            )
            own, other = labels[lo:hi], labels[partner]
            pair_weights = None if weights is None else weights[lo:hi]
        else:
            first, last = _slice_bounds(len(x), n_processes, rank)
            lo, hi = (
                int(i) for i in torch.searchsorted(rows, torch.tensor([first, last], device=rows.device))
            )
            with row_shard(module, first, len(x)):
                logits, embedding = module.gt_model(x[first:last])
            local = rows[lo:hi] - first
            logits, embedding = logits[local], embedding[local]
            confusion_logits = module.pair_confusion_logits(
                embedding, annotators[lo:hi], project_table=project_table
            )
            own = other = labels[lo:hi]
            weight = torch.ones(hi - lo, device=x.device)
            pair_weights = None if weights is None else weights[lo:hi]
        loss = module.loss(
            logits.float(),
            confusion_logits.float(),
            own,
            other,
            weight,
            reduction="sum",
            weights=pair_weights,
        )
        return loss / n_pairs, logits


def _slice_bounds(n, n_parts, part):
    """Start and stop of part ``part`` of ``range(n)`` cut into ``n_parts`` contiguous near-equal parts."""
    bounds = np.linspace(0, n, n_parts + 1).round().astype(int)
    return int(bounds[part]), int(bounds[part + 1])


class AcceleratedAnnotMixClassifier(AnnotMixClassifier):
    """:class:`AnnotMixClassifier` that trains through Hugging Face Accelerate.

    Start a script that fits it with ``accelerate launch`` to train one model
    data-parallel on several GPUs or machines; run it plainly to train in a
    single process. Each optimizer step takes ``batch_size`` instances in all;
    the processes share the random state, split the batch's annotation pairs
    between them, synchronise batch normalisation and average their
    gradients, so that a fit on several processes equals the single-process
    fit up to floating-point order (for the default GT model; see
    ``docs/distributed.md``), and the hyperparameters keep their meaning
    whatever the number of processes. Prediction and the annotator summaries run in full on
    every process. Needs the ``accelerate`` package
    (``pip install "skannot[accelerate]"``).

    Parameters
    ----------
    module : None, nn.Module class or nn.Module instance, default=None
        GT model, as for :class:`AnnotMixClassifier`.
    accelerator : accelerate.Accelerator, default=None
        Chooses device, processes and mixed precision
        (e.g. ``Accelerator(mixed_precision="bf16")``, or
        ``Accelerator(cpu=True)``). None creates an ``Accelerator()`` at
        ``fit``, which follows ``accelerate launch``'s configuration.
    device : None, default=None
        Must stay None: Accelerate places the model on ``accelerator.device``.
    **kwargs
        Every other parameter of :class:`AnnotMixClassifier`.

    Attributes
    ----------
    accelerator_ : accelerate.Accelerator
        The accelerator of the latest ``fit``.
    device_ : torch.device
        ``accelerator_.device``. The other fitted attributes are those of
        :class:`AnnotMixClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from accelerate import Accelerator
    >>> from skannot import AcceleratedAnnotMixClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 4)).astype("float32")
    >>> Z = np.stack([(X[:, 0] > 0).astype(int)] * 3, axis=1)
    >>> clf = AcceleratedAnnotMixClassifier(accelerator=Accelerator(cpu=True), max_epochs=2, random_state=0)
    >>> clf.fit(X, Z).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **AnnotMixClassifier._parameter_constraints,
        "accelerator": "no_validation",
        "device": "no_validation",
    }

    def __init__(self, module=None, *, accelerator=None, device=None, **kwargs):
        super().__init__(module, device=device, **kwargs)
        self.accelerator = accelerator

    # Its signature shows its own parameters (the docstring refers to AnnotMixClassifier for the
    # rest), and get_params lists all of them.
    __init__.__signature__ = inspect.signature(__init__)

    @classmethod
    def _get_param_names(cls):
        return sorted({*AnnotMixClassifier._get_param_names(), "accelerator"})

    def _training_device(self):
        for name, value, advice in (
            ("mixed_precision", self.mixed_precision, 'pass Accelerator(mixed_precision="bf16") instead'),
            ("compile", self.compile, "leave it False"),
            ("sparse_annotator_updates", self.sparse_annotator_updates is True, 'leave it "auto" or False'),
        ):
            if value:
                raise ValueError(f"{type(self).__name__} does not support {name}=True; {advice}.")
        if self.device is not None:
            raise ValueError(
                f"device={self.device!r}, but {type(self).__name__} lets Accelerate place the model; "
                "leave device=None and choose the device through the accelerator (e.g. "
                "Accelerator(cpu=True)) or accelerate launch."
            )
        if self.accelerator is None:
            from accelerate import Accelerator

            self.accelerator_ = Accelerator()
        else:
            self.accelerator_ = self.accelerator
        return self.accelerator_.device

    def _fit_seed(self):
        seed = super()._fit_seed()
        if self.accelerator_.num_processes > 1:
            from accelerate.utils import broadcast

            # All processes must draw the same random numbers (see the module notes); with
            # random_state=None each drew its own seed, so process 0's is used.
            seed = int(
                broadcast(torch.tensor([seed], device=self.accelerator_.device), from_process=0).item()
            )
        return seed

    def _build_net(self, module, device, seed, validation=None):
        plain = super()._build_net(module, device, seed, validation)
        # DDP averages dense gradients only (NCCL has no sparse all-reduce): the "auto"
        # choice of sparse annotator updates falls back to dense ones.
        if hasattr(module, "annotator_embedding"):  # none with annotator_representation="features"
            module.annotator_embedding.sparse = False
        self.sparse_annotator_updates_ = False
        params = {key: value for key, value in plain.get_params(deep=False).items() if key[0] != "_"}
        params.update(
            # The accelerator's print logs on the main process only, but ignores verbose=0.
            callbacks__print_log__sink=self.accelerator_.print if self.verbose else print,
            device=None,
            sparse_annotators=False,
            iterator_train=SharedOrderPairBatchIterator,
            iterator_train__accelerator=self.accelerator_,
        )
        return AcceleratedAnnotMixNet(accelerator=self.accelerator_, **params)
