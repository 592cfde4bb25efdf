"""The torch view of a training set, with augmentation drawn per batch (training split only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from astrid.model.examples import LabelledStamps

__all__ = ["StampDataset"]


class StampDataset:
    """A :class:`torch.utils.data.Dataset` over a :class:`LabelledStamps`.

    Parameters
    ----------
    data : LabelledStamps
    augment : bool
        Apply a random rotation by a multiple of 90 degrees, a random flip, and (with
        probability ``pad_prob``) zero the first row and column as :func:`fit_stamp` does to a
        63x63 ZTF cutout. Use only for the training split.
    seed : int
        Seed of the augmentation stream.
    pad_prob : float
        Probability of the ZTF-style padding augmentation.
    """

    def __init__(
        self, data: LabelledStamps, augment: bool = False, seed: int = 0, pad_prob: float = 0.3
    ) -> None:
        self.data = data
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.pad_prob = pad_prob

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, Any, Any, Any]:
        """``(stamp (3, S, S), mask (1, S, S), label, weight)`` as tensors."""
        import torch

        x = np.asarray(self.data.stamps[i], dtype=np.float32)
        m = np.asarray(self.data.masks[i], dtype=np.float32)
        if self.augment:
            k = int(self.rng.integers(4))
            x = np.rot90(x, k, axes=(1, 2))
            m = np.rot90(m, k)
            if self.rng.random() < 0.5:
                x = x[:, :, ::-1]
                m = m[:, ::-1]
            if self.rng.random() < self.pad_prob:
                x = x.copy()
                x[:, 0, :] = 0.0
                x[:, :, 0] = 0.0
        return (
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.ascontiguousarray(m))[None],
            torch.tensor(float(self.data.labels[i])),
            torch.tensor(float(self.data.weights[i])),
        )
