"""Seeded train/validation/test splits: by writer by default, so no writer's hand is seen in training and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmnist_zoo.data import Dataset
from cmnist_zoo.errors import ZooError

WRITER_FRACTIONS = (0.70, 0.15, 0.15)
IMAGE_TEST_FRACTION = 0.30
IMAGE_VAL_FRACTION_OF_TRAIN = 0.10


@dataclass(frozen=True)
class Split:
    kind: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def describe(self, dataset: Dataset) -> dict:
        """What the run records so the split can be checked and rebuilt."""
        record = {"kind": self.kind, "seed": self.seed,
                  "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)}}
        if self.kind == "writer":
            record["val_writers"] = sorted(int(s) for s in np.unique(dataset.suites[self.val]))
            record["test_writers"] = sorted(int(s) for s in np.unique(dataset.suites[self.test]))
        return record


def make_split(dataset: Dataset, kind: str, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    if kind == "writer":
        writers = rng.permutation(np.unique(dataset.suites))
        if len(writers) < 3:
            raise ZooError(f"a writer split needs at least 3 writers; the data has {len(writers)} "
                           "(use --set split=image)")
        n_val = max(1, round(len(writers) * WRITER_FRACTIONS[1]))
        n_test = max(1, round(len(writers) * WRITER_FRACTIONS[2]))
        groups = np.split(writers, [len(writers) - n_val - n_test, len(writers) - n_test])
        train, val, test = (np.flatnonzero(np.isin(dataset.suites, g)) for g in groups)
    elif kind == "image":
        order = rng.permutation(len(dataset))
        n_test = round(len(order) * IMAGE_TEST_FRACTION)
        test, rest = order[:n_test], order[n_test:]
        n_val = max(1, round(len(rest) * IMAGE_VAL_FRACTION_OF_TRAIN))
        val, train = rest[:n_val], rest[n_val:]
        train, val, test = np.sort(train), np.sort(val), np.sort(test)
    else:
        raise ZooError(f"unknown split {kind!r}; use 'writer' or 'image'")
    return Split(kind, seed, train, val, test)
