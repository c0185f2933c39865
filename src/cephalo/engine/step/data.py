"""Training and validation data: cached datasets, loaders with a reproducible per-epoch order, and the loss
weights of accumulated micro-batches."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cephalo.datasets.csv_dataset import seeded_split
from cephalo.datasets.sources import available_splits
from cephalo.engine.config import TrainConfig
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset
from cephalo.preprocessing.prepare import prepare_splits


def build_datasets(config: TrainConfig) -> tuple[CachedLandmarkDataset, CachedLandmarkDataset, str]:
    """Read, check and cache the training and validation splits; returns them and a line saying which they are.

    Validation is ``--val_split`` if given, else the dataset's ``valid`` split (fold k of the training split with
    ``--fold k/n``, a seeded ``--val_fraction`` of the other folds with ``--test_fold k/n``), else a seeded
    ``--val_fraction`` of the training split (ISBI 2015 has no validation split; its test sets stay untouched).
    """
    spec = config.dataset_spec()
    fmt = spec.resolved_format
    cache = config.letterbox_cache()
    if (config.fold or config.test_fold) and config.val_split:
        raise ValueError(f"--{'fold' if config.fold else 'test_fold'} and --val_split both say what validates: "
                         "give one")
    val_split = config.val_split or ("valid" if "valid" in available_splits(spec) else None)
    splits = [config.train_split] + ([val_split] if val_split else [])
    results = prepare_splits(spec, splits, cache, config.skip_bad, progress=config.progress)
    train = results[config.train_split]
    if val_split:
        val = results[val_split]
        train_pairs, val_pairs = list(zip(train.records, train.entries)), list(zip(val.records, val.entries))
        where = f"{fmt}: train = '{config.train_split}', validation = '{val_split}'" + (
            f" (fold {config.fold} of the training split, seed {config.seed})" if config.fold else
            f" ({config.val_fraction:.0%} of the training split without its test fold {config.test_fold}, seed "
            f"{config.seed})" if config.test_fold else "")
    else:
        assigned = seeded_split([r.case_id for r in train.records], config.seed, config.val_fraction, 0.0)
        pairs = list(zip(train.records, train.entries))
        train_pairs = [p for p in pairs if assigned[p[0].case_id] == "train"]
        val_pairs = [p for p in pairs if assigned[p[0].case_id] == "valid"]
        where = f"{fmt}: validation = seeded {config.val_fraction:.0%} of '{config.train_split}'"
    if not val_pairs:
        raise ValueError(f"{config.dataset_path}: the validation split is empty; raise --val_fraction or give --val_split")
    if not train_pairs:
        raise ValueError(f"{config.dataset_path}: --val_fraction {config.val_fraction:g} leaves no training images "
                         f"(of {len(train.records)}); lower it")
    train_set = CachedLandmarkDataset(*map(list, zip(*train_pairs)))
    val_set = CachedLandmarkDataset(*map(list, zip(*val_pairs)))
    return train_set, val_set, f"{where} ({len(train_set)} / {len(val_set)} images)"


class EpochSampler(Sampler[int]):
    """A shuffled order that depends only on ``(seed, epoch)``, so a resumed run sees the same batches.

    ``set_epoch(epoch, skip)`` leaves out the first ``skip`` indices of the epoch's order (samples already
    trained on by all ranks together): a run resumed in the middle of an epoch continues with the next batch
    without loading the ones done. With several ranks, rank ``r`` takes every ``world_size``-th index from ``r``
    (padded by wrapping round so that every rank has as many), like ``DistributedSampler``. ``keyed``: it yields
    ``(epoch, index)``, for datasets whose items depend on the epoch (the local stage's jitter).
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 keyed: bool = False):
        self.size, self.seed, self.shuffle, self.rank, self.world_size = size, seed, shuffle, rank, world_size
        self.keyed = keyed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, min(skip, self.size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.size, generator=generator)[self.skip :].tolist()
        else:
            order = list(range(self.skip, self.size))
        if self.world_size > 1 and order:
            order += order[: -len(order) % self.world_size]  # equal share per rank
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self):
        if self.keyed:
            return iter([(self.epoch, i) for i in self._indices()])
        return iter(self._indices())

    def __len__(self) -> int:
        return -(-(self.size - self.skip) // self.world_size)


def build_loader(dataset: Dataset, batch_size: int, sampler: Sampler, config: TrainConfig, device: torch.device,
                 collate_fn=None) -> DataLoader:
    """Workers only read cached uint8 arrays; pinned memory (CUDA) makes the copy to the GPU asynchronous.

    Nothing here is a lambda or a local class, so workers also start under Windows' ``spawn``. The loader has its
    own generator: starting its workers would otherwise draw from the global one, which the augmentation uses and
    checkpoints restore, and a resumed run (whose workers start mid-epoch) would augment differently.
    """
    workers = config.num_workers
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      generator=torch.Generator().manual_seed(config.seed),
                      pin_memory=config.pin_memory and device.type == "cuda",
                      prefetch_factor=config.prefetch_factor if workers > 0 else None,
                      persistent_workers=config.persistent_workers and workers > 0, drop_last=False,
                      collate_fn=collate_fn)


def micro_batch_weights(num_samples: int, batch_size: int, accumulation: int) -> list[float]:
    """Loss weight of each micro-batch of an epoch: its share of the samples in its accumulation group.

    With them, accumulating micro-batches gives the gradient of one big batch, also for the last, partial group
    and a last micro-batch smaller than the others.
    """
    sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
    weights = []
    for g in range(0, len(sizes), accumulation):
        group = sizes[g : g + accumulation]
        weights += [size / sum(group) for size in group]
    return weights
