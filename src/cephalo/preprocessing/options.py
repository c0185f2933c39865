"""The data options every command shares (``cephalo train``, ``prepare``, ``evaluate``, ``baseline``, ``bench``),
defined once: where the dataset is, how its splits are drawn, where the cache is and at which size.

``cephalo train``'s :class:`~cephalo.engine.config.TrainConfig` extends :class:`DataOptions`, so ``cephalo
prepare`` with no flags caches exactly what ``cephalo train`` with no flags reads, and a CSV split drawn for
evaluation is the split training held out (same ``--seed``, ``--val_fraction``, ``--test_fraction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cephalo.checks import between, dataset_location, fold_spec, multiple_of, writable_folder
from cephalo.datasets.sources import FORMATS, DatasetSpec, default_cache_dir
from cephalo.flags import check_values, option
from cephalo.preprocessing.cache import LetterboxCache

DEFAULT_IMAGE_SIZE = (256, 256)  # fast on a CPU; the user's own runs say --image_size 1024 1024


@dataclass
class DataOptions:
    dataset_path: str = option("synthetic", "dataset folder (Aariz or ISBI 2015 layout), a CSV file, or "
                               "'synthetic' (the built-in dataset, generated on first use)", check=dataset_location)
    dataset_format: str | None = option(None, f"layout of --dataset_path: {'|'.join(FORMATS)} (default: detected)",
                                        choices=FORMATS)
    seed: int = option(0, "seed of the CSV split and the synthetic dataset (in training also of the "
                       "initialisation, the data order and the augmentation)", check=between(0, 2**32 - 1))
    val_fraction: float = option(0.2, "share of the images that validate when the dataset has no validation split "
                                 "(a CSV without a split column, ISBI 2015)", check=between(0, 1, high_open=True))
    test_fraction: float = option(0.0, "share of a CSV without a split column held out as 'test' (never trained "
                                  "on; give the same value to train, predict and evaluate)",
                                  check=between(0, 1, high_open=True))
    fold: str | None = option(None, "k/n: cross-validation: validate on fold k of a seeded n-fold split of the "
                              "training split (--seed draws it; replaces --val_fraction and a validation split)",
                              check=fold_spec)
    test_fold: str | None = option(None, "k/n: nested cross-validation: hold out fold k of a seeded n-fold split of "
                                   "the training split as 'test' (never trained or validated on); validation is "
                                   "--val_fraction of the other folds", check=fold_spec)
    skip_bad: bool = option(False, "leave out bad images and annotations with a warning instead of stopping")
    cache_dir: str | None = option(None, "where letterboxed images are cached (default: $CEPHALO_CACHE or "
                                   f"{default_cache_dir()})", check=writable_folder)
    image_size: tuple[int, int] = option(DEFAULT_IMAGE_SIZE, "network input H W: images are letterboxed to "
                                         "it (train --time_budget without it: the size measured best at the budget)",
                                         metavar=("H", "W"), check=multiple_of(32, "the networks downsample 32x"))

    def check(self) -> None:
        """Every option's own check, then what only the options together can say; ``ValueError`` naming flags."""
        check_values(self)
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"--val_fraction {self.val_fraction:g} and --test_fraction {self.test_fraction:g} leave "
                             "no images to train on: their sum must be below 1")
        if self.fold and self.test_fold:
            raise ValueError("--fold and --test_fold both hold out a fold: give one (--fold validates on it, "
                             "--test_fold keeps it for testing)")
        if self.test_fold and self.test_fraction:
            raise ValueError("--test_fold and --test_fraction both hold out a test split: give one")

    def dataset_spec(self) -> DatasetSpec:
        return DatasetSpec(str(self.dataset_path), self.dataset_format, seed=self.seed,
                           val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                           fold=_fold(self.fold), test_fold=_fold(self.test_fold),
                           cache_dir=Path(self.cache_dir) if self.cache_dir else None)

    def cache_root(self) -> Path:
        """``--cache_dir``, else the default cache folder: the root of every cache of preprocessed images."""
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    def letterbox_cache(self) -> LetterboxCache:
        return LetterboxCache(self.cache_root(), self.image_size)


def _fold(value: str | None) -> tuple[int, int] | None:
    """``"k/n"`` as ``(k, n)``."""
    return tuple(map(int, value.split("/"))) if value else None
