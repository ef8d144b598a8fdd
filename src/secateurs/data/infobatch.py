"""InfoBatch: lossless training speed-up by unbiased dynamic data pruning (Qin et al., ICLR 2024;
reference code NUS-HPC-AI-Lab/InfoBatch, ``infobatch/infobatch.py``).

Every epoch, the examples whose last recorded loss is below the mean loss (the "well-learned" ones) are skipped with
probability ``r`` (``ratio``): exactly ``int((1 − r) · |well-learned|)`` of them are kept, uniformly at random, and
their loss is multiplied by ``1 / (1 − r)`` so that the expected gradient stays that of the full data (paper Eq. 3-4).
The last ``anneal`` fraction of the epochs (δ; the reference's ``delta = 0.875`` prunes the first 87.5 %) uses the
full data with unit weights.  Losses start equal, so nothing is pruned in the first epoch (the reference initialises
every score to 3).  Skipped examples are neither forwarded nor back-propagated: that is the saving.

``mode="random"`` is the control: in every pruning epoch it skips the *same number* of examples — the count
InfoBatch would skip given the losses it recorded (or the counts of ``skip_schedule``, e.g. an InfoBatch run's
:attr:`InfoBatch.skipped_per_epoch`) — drawn uniformly from the whole data set, without rescaling (a uniform subset
already gives an unbiased mean gradient).

Use (any PyTorch loop; see :meth:`InfoBatch.loader`)::

    ib = InfoBatch(train_set, num_epochs=30)
    loader = ib.loader(batch_size=64)               # or DataLoader(ib, batch_size=64, sampler=ib.sampler)
    for epoch in range(30):
        for x, y in loader:
            loss = ib.update(F.cross_entropy(model(x), y, reduction="none"))   # per-example losses -> scalar
            ...

With the zoo trainer: ``fit(model, ib.loader(64), 30, loss_fn=ib.loss)``.

The sampler records the order in which it hands out example indices; :meth:`InfoBatch.update` takes the next
``len(losses)`` of them, so the data set's items are unchanged (the reference instead returns ``(index, item)`` and
patches ``DataLoader``'s iterator).  This holds for any batch size and any number of workers (a DataLoader yields
batches in sampler order); pass ``indices=`` to :meth:`~InfoBatch.update` if a loop reorders batches.

Deviations from the reference: ``ratio`` must lie in [0, 1) (the reference silently clamps the keep ratio to
≥ 0.1); randomness comes from a generator seeded with ``(seed, epoch)`` instead of ``np.random.seed(epoch)``; the
number of pruning epochs is ``floor((1 − anneal) · num_epochs)`` (the reference prunes while ``epoch + 1 ≤ delta ·
num_epochs``, the same count).
"""
from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InvalidArgumentError
from ..schedules.base import check_fraction

__all__ = ["InfoBatch", "InfoBatchSampler"]

MODES = ("infobatch", "random")


class InfoBatchSampler(Sampler[int]):
    """The per-epoch index order of an :class:`InfoBatch` (each ``iter()`` starts a new epoch).

    ``len()`` is the number of examples of the coming (or current) epoch: it plans the next epoch from the losses
    recorded so far when called between epochs, so a trainer can read the epoch's length before iterating."""

    def __init__(self, owner: InfoBatch):
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner._current_or_next_plan())

    def __iter__(self) -> Iterator[int]:
        return self.owner._iterate()


class InfoBatch(Dataset):
    """Drop-in dynamic data pruning (Qin et al. 2024): a data set wrapper, its sampler, and the loss rescaling.

    Args:
        dataset: any map-style data set (its items are returned unchanged).
        num_epochs: epochs of the run (needed for the annealing).
        ratio: ``r``, the probability of skipping a well-learned example (paper default 0.5).
        anneal: ``δ``, the final fraction of epochs trained on the full data (default 0.125).
        mode: ``"infobatch"`` or ``"random"`` (the control at the same budget; module docstring).
        skip_schedule: random mode only: examples to skip in each epoch (entries past its end: 0).
        seed: seeds every random choice (per epoch, with the epoch index): same seed, same subsets.
        shuffle: shuffle each epoch's order (the reference does); False keeps index order (for tests).
    """

    def __init__(
        self,
        dataset: Dataset,
        num_epochs: int,
        ratio: float = 0.5,
        anneal: float = 0.125,
        *,
        mode: str = "infobatch",
        skip_schedule: Sequence[int] | None = None,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise InvalidArgumentError(f"num_epochs must be an integer >= 1, got {num_epochs!r}")
        ratio = check_fraction("ratio", ratio)
        if ratio >= 1.0:
            raise InvalidArgumentError(f"ratio must be in [0, 1) (1 would skip every well-learned example and "
                                       f"rescale by infinity), got {ratio}")
        anneal = check_fraction("anneal", anneal)
        if mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if skip_schedule is not None:
            if mode != "random":
                raise InvalidArgumentError("skip_schedule applies to mode='random' only")
            if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in skip_schedule):
                raise InvalidArgumentError("skip_schedule must hold non-negative integers (examples per epoch)")
        n = len(dataset)
        if n == 0:
            raise InvalidArgumentError("InfoBatch needs a non-empty data set")
        self.dataset = dataset
        self.num_epochs = num_epochs
        self.ratio = float(ratio)
        self.anneal = float(anneal)
        self.mode = mode
        self.skip_schedule = None if skip_schedule is None else [int(s) for s in skip_schedule]
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.keep_ratio = 1.0 - self.ratio
        self.prune_epochs = math.floor(round((1.0 - self.anneal) * num_epochs, 9))
        self.reset()

    # ----------------------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every recorded loss and statistic (a fresh run)."""
        n = len(self.dataset)
        self.scores = np.full(n, 3.0)  # the last loss of every example; equal at first, as in the reference
        self.weights = np.ones(n)  # loss multiplier of every example for the current epoch
        self.epoch = -1  # index of the epoch in progress (or last planned)
        self.history: list[dict[str, Any]] = []
        self._plan: np.ndarray | None = None  # planned, not yet started epoch
        self._current: np.ndarray | None = None  # order of the epoch in progress
        self._in_progress = False
        self._pending: collections.deque[int] = collections.deque()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    @property
    def sampler(self) -> InfoBatchSampler:
        """The sampler to give a DataLoader (``DataLoader(ib, batch_size=..., sampler=ib.sampler)``)."""
        return InfoBatchSampler(self)

    def loader(self, batch_size: int = 64, **kwargs: Any) -> DataLoader:
        """A DataLoader over the wrapped data set driven by :attr:`sampler` (``kwargs`` go to DataLoader)."""
        if "shuffle" in kwargs or "sampler" in kwargs or "batch_sampler" in kwargs:
            raise InvalidArgumentError("InfoBatch.loader sets the sampler itself; do not pass shuffle/sampler")
        return DataLoader(self, batch_size=batch_size, sampler=self.sampler, **kwargs)

    # ---------------------------------------------------------------------------------------------- planning
    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, MODES.index(self.mode)])

    def is_pruning_epoch(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) prunes; the last ``anneal`` fraction of the epochs does not."""
        return epoch < self.prune_epochs

    def _make_plan(self) -> np.ndarray:
        epoch = self.epoch + 1
        n = len(self.dataset)
        rng = self._rng(epoch)
        self.weights[:] = 1.0
        well = np.flatnonzero(self.scores < self.scores.mean())
        infobatch_skip = len(well) - int(self.keep_ratio * len(well))
        if not self.is_pruning_epoch(epoch):
            kept = np.arange(n)
        elif self.mode == "infobatch":
            chosen = rng.choice(well, size=len(well) - infobatch_skip, replace=False) if len(well) else well
            self.weights[chosen] = 1.0 / self.keep_ratio
            keep_mask = np.ones(n, dtype=bool)
            keep_mask[well] = False
            keep_mask[chosen] = True
            kept = np.flatnonzero(keep_mask)
        else:
            if self.skip_schedule is not None:
                skip = self.skip_schedule[epoch] if epoch < len(self.skip_schedule) else 0
            else:
                skip = infobatch_skip
            skip = min(skip, n - 1)
            kept = np.sort(rng.choice(n, size=n - skip, replace=False))
        order = rng.permutation(kept) if self.shuffle else kept
        self.epoch = epoch
        self.history.append({
            "epoch": epoch, "pruning": self.is_pruning_epoch(epoch), "visited": int(len(kept)),
            "skipped": int(n - len(kept)), "well_learned": int(len(well)),
            "mean_loss": float(self.scores.mean()),
        })
        return order

    def _current_or_next_plan(self) -> np.ndarray:
        if self._in_progress and self._current is not None:
            return self._current
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def _iterate(self) -> Iterator[int]:
        order = self._plan if self._plan is not None else self._make_plan()
        self._plan = None
        self._current = order
        self._in_progress = True
        self._pending.clear()  # an interrupted epoch leaves nothing behind
        for i in order.tolist():
            self._pending.append(i)
            yield i
        self._in_progress = False

    # ------------------------------------------------------------------------------------------------ losses
    def update(self, losses: Tensor, indices: Any = None) -> Tensor:
        """Record per-example ``losses`` (shape ``(b,)``, unreduced) and return their weighted mean.

        The recorded score is the unweighted loss (detached); the returned scalar is ``mean(w_i · loss_i)`` with
        ``w_i = 1/(1 − r)`` for the kept well-learned examples of a pruning epoch and 1 otherwise (paper Eq. 4;
        reference ``InfoBatch.update``).  ``indices``: the batch's example indices, when the loop does not consume
        batches in sampler order.
        """
        if not isinstance(losses, Tensor) or losses.ndim != 1:
            raise InvalidArgumentError("InfoBatch.update needs the unreduced per-example losses, a 1-D tensor "
                                       "(e.g. F.cross_entropy(logits, y, reduction='none'))")
        b = losses.shape[0]
        if indices is None:
            if len(self._pending) < b:
                raise InvalidArgumentError(f"InfoBatch.update got {b} losses but only {len(self._pending)} examples "
                                           "were handed out by its sampler; iterate a DataLoader built with "
                                           "ib.sampler (or ib.loader()) or pass indices=")
            idx = np.fromiter((self._pending.popleft() for _ in range(b)), dtype=np.int64, count=b)
        else:
            idx = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices, dtype=np.int64).reshape(-1)
            if len(idx) != b:
                raise InvalidArgumentError(f"{len(idx)} indices for {b} losses")
        values = losses.detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(values).all():
            raise InvalidArgumentError("InfoBatch.update got a non-finite loss")
        self.scores[idx] = values
        weights = torch.as_tensor(self.weights[idx], dtype=losses.dtype, device=losses.device)
        return (losses * weights).mean()

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy through :meth:`update` — the ``loss_fn`` for :func:`secateurs.zoo.fit`."""
        return self.update(torch.nn.functional.cross_entropy(logits, targets, reduction="none"))

    # ------------------------------------------------------------------------------------------------ stats
    @property
    def skipped_per_epoch(self) -> list[int]:
        """Examples skipped in each planned epoch (a ``skip_schedule`` for the random control)."""
        return [h["skipped"] for h in self.history]

    @property
    def total_skipped(self) -> int:
        return int(sum(self.skipped_per_epoch))

    def saved_fraction(self) -> float:
        """Fraction of the example forward/backward passes of the planned epochs that were skipped."""
        if not self.history:
            return 0.0
        return self.total_skipped / (len(self.history) * len(self.dataset))
