"""Data-parallel training through Hugging Face Accelerate (optional dependency).

Under ``accelerate launch``, every process runs the same script and the same
``fit``. The processes draw the same shuffled order of instances (process 0's
order is broadcast), split every batch of ``batch_size`` instances into one
shard per process, and average their gradients with
``DistributedDataParallel`` (DDP). So one optimizer step still consumes one
batch of ``batch_size`` instances, the number of steps per epoch and the
learning-rate schedule do not depend on the number of processes, and each
process's loss is weighted by its share of the batch's pairs, so that the
averaged gradient is the gradient of the mean over all pairs of the batch.

What differs from a single process: mixup partners are drawn within a shard,
batch normalisation uses per-shard statistics, and each process draws its own
mixing weights and dropout masks. Results are therefore statistically, not
bitwise, equal to a single-process fit; with one process they are identical.

``accelerate`` is imported only when an accelerated fit needs a default
``Accelerator``, so the rest of skannot works without it.
"""

from __future__ import annotations

import torch
from skorch.hf import AccelerateMixin
from torch import nn

from ._annot_mix import AnnotMixClassifier
from ._training import AnnotMixNet, PairBatchIterator


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
        The net's :meth:`~skannot._training.AnnotMixNet._pair_loss`.
    """

    def __init__(self, module, pair_loss):
        super().__init__()
        self.module = module
        self.pair_loss = pair_loss

    def forward(self, x, rows, annotators, labels, lam=None, partner=None):
        """The batch's loss and GT logits, as ``AnnotMixNet._pair_loss`` returns them."""
        return self.pair_loss(x, rows, annotators, labels, lam, partner)


class ShardedPairBatchIterator(PairBatchIterator):
    """:class:`~skannot._training.PairBatchIterator` that gives each process its shard of every batch.

    Yields ``(x, pairs, share)``: this process's part of the batch as
    :meth:`CrowdDataset.batch` returns it, and ``share = num_processes *
    local_pairs / batch_pairs``, the factor that turns the mean loss over the
    local pairs into this process's part of the mean over the batch once DDP
    averages the gradients.

    Parameters
    ----------
    dataset : CrowdDataset
    batch_size : int
        Instances per batch over all processes; at least 2 per process.
    shuffle : bool, default=False
    accelerator : accelerate.Accelerator
        Gives ``num_processes``, ``process_index`` and the device to broadcast on.
    """

    def __init__(self, dataset, batch_size, shuffle=False, *, accelerator):
        super().__init__(dataset, batch_size, shuffle=shuffle)
        self.accelerator = accelerator
        if batch_size < 2 * accelerator.num_processes:
            raise ValueError(
                f"batch_size={batch_size} is split over {accelerator.num_processes} processes, but "
                "batch normalisation needs at least 2 instances per process; use batch_size >= "
                f"{2 * accelerator.num_processes}."
            )

    def _n_rows(self):
        # Every process must take part in every step, with at least 2 rows: a shorter
        # trailing batch is dropped when shuffling, and its rows are seen in other epochs.
        n = len(self.dataset)
        tail = n % self.batch_size
        if self.shuffle and n > tail and 0 < tail < 2 * self.accelerator.num_processes:
            return n - tail
        return n

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        order = torch.randperm(n)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            order = broadcast(order.to(self.accelerator.device), from_process=0).cpu()
        return order

    def __iter__(self):
        n_processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        counts = self.dataset.indptr[1:] - self.dataset.indptr[:-1]
        for rows in torch.split(self._order()[: self._n_rows()], self.batch_size):
            x, pairs = self.dataset.batch(torch.tensor_split(rows, n_processes)[rank])
            share = n_processes * len(pairs[0]) / int(counts[rows].sum())
            yield x, pairs, share


class AcceleratedAnnotMixNet(AccelerateMixin, AnnotMixNet):
    """:class:`~skannot._training.AnnotMixNet` whose training step runs through Accelerate.

    The mixin's own preparation would wrap ``module_`` in DDP; this net wraps
    a :class:`_PairStep` around it instead (see there) and leaves ``module_``
    as the plain module that prediction uses.
    """

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        with self._current_init_context("module"):
            self.pair_step_ = self.accelerator.prepare(_PairStep(self.module_, self._pair_loss))
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

            # DDP keeps parameters equal, but each process updated its batch-norm running
            # statistics on its own shard last; take process 0's so all hold one model.
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
            return AnnotMixNet.train_step(self, batch, **fit_params)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        x, pairs, share = batch
        device = self.accelerator.device
        x = x.to(device, non_blocking=True)
        rows, annotators, labels = (t.to(device, non_blocking=True) for t in pairs)
        lam, partner = self.mixing_weights(len(rows), device) if self.alpha > 0 else (None, None)
        with self.accelerator.autocast():
            loss, logits = self.pair_step_(x, rows, annotators, labels, lam, partner)
        self.accelerator.backward(loss * share)
        return {"loss": loss, "y_pred": logits}


class AcceleratedAnnotMixClassifier(AnnotMixClassifier):
    """:class:`AnnotMixClassifier` that trains through Hugging Face Accelerate.

    Start a script that fits it with ``accelerate launch`` to train one model
    data-parallel on several GPUs or machines; run it plainly to train in a
    single process. Each optimizer step takes ``batch_size`` instances in all,
    split evenly over the processes, whose gradients are averaged, so the
    hyperparameters keep their meaning whatever the number of processes; see
    ``docs/distributed.md`` for what does and does not match a
    single-process fit. Prediction and the annotator summaries run in full on
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

    def _build_net(self, module, device):
        plain = super()._build_net(module, device)
        # DDP averages dense gradients only (NCCL has no sparse all-reduce): the "auto"
        # choice of sparse annotator updates falls back to dense ones.
        module.annotator_embedding.sparse = False
        self.sparse_annotator_updates_ = False
        params = {key: value for key, value in plain.get_params(deep=False).items() if key[0] != "_"}
        params.update(
            # The accelerator's print logs on the main process only, but ignores verbose=0.
            callbacks__print_log__sink=self.accelerator_.print if self.verbose else print,
            device=None,
            sparse_annotators=False,
            iterator_train=ShardedPairBatchIterator,
            iterator_train__accelerator=self.accelerator_,
        )
        return AcceleratedAnnotMixNet(accelerator=self.accelerator_, **params)
