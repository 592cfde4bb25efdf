"""A compact U-Net that turns a stack of aligned cutouts into a transient-probability map.

Input: a float tensor of shape ``(N, C, H, W)`` (by default ``C = 3`` channels: new,
reference, difference, each normalised by :func:`astrid.model.stamps.normalise_stamp`,
``H = W = 64`` pixels). Output: logits of shape ``(N, 1, H, W)``; ``sigmoid`` gives the
per-pixel probability that the pixel belongs to a real transient's PSF. A candidate's score
is read at its position (the stamp centre) by :func:`centre_logit`: the largest logit in a
small window around the centre, which tolerates sub-pixel centring differences between
pipelines.

The network is deliberately small (a few thousand to tens of thousands of parameters) so
that it trains in minutes and scores well over a thousand triplets a second on one CPU core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

__all__ = ["UNet", "UNetConfig", "centre_logit"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`.

    Parameters
    ----------
    in_channels : int
        Number of stacked cutouts (3: new, reference, difference).
    base_channels : int
        Feature channels at full resolution; doubled at each level down.
    depth : int
        Number of down-sampling steps (each halves the size; ``stamp_size`` must be
        divisible by ``2**depth``).
    stamp_size : int
        Side of the square input, in pixels.
    centre_radius : int
        Half-width, in pixels, of the window around the centre in which a candidate's
        score is read.
    """

    in_channels: int = 3
    base_channels: int = 8
    depth: int = 2
    stamp_size: int = 64
    centre_radius: int = 2

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-able dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Build from a dictionary, rejecting unknown keys (a sign of an incompatible model)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown U-Net configuration keys: {sorted(unknown)}")
        return cls(**data)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) scaled down for 64x64 cutout stacks.

    Parameters
    ----------
    config : UNetConfig
        Architecture; kept on the instance as ``self.config``.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config.base_channels
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        cin = self.config.in_channels
        widths = []
        for level in range(self.config.depth):
            width = c * 2**level
            self.downs.append(_block(cin, width))
            widths.append(width)
            cin = width
        self.pool = nn.MaxPool2d(2)
        self.bottom = _block(cin, c * 2**self.config.depth)
        cin = c * 2**self.config.depth
        for width in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(cin, width, 2, stride=2))
            self.up_blocks.append(_block(2 * width, width))
            cin = width
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-pixel logits of shape ``(N, 1, H, W)`` for input ``(N, C, H, W)``."""
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        out: torch.Tensor = self.head(x)
        return out


def centre_logit(logits: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Read each candidate's logit at the stamp centre.

    Parameters
    ----------
    logits : torch.Tensor
        Per-pixel logits, shape ``(N, 1, H, W)``.
    radius : int
        Half-width of the central window, in pixels; the window's maximum is returned.

    Returns
    -------
    torch.Tensor
        Shape ``(N,)``: the largest logit within ``radius`` pixels of pixel
        ``(H // 2, W // 2)``, the candidate's position by AstrID's convention.
    """
    h, w = logits.shape[-2:]
    cy, cx = h // 2, w // 2
    window = logits[..., cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
    return window.flatten(start_dim=1).amax(dim=1)
