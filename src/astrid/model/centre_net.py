"""The U-Net evaluated only where the centre score depends on it (fast, exact scoring).

A candidate's score is :func:`astrid.model.unet.centre_logit`: the largest logit in a
``(2r+1)``-pixel window around the stamp centre. Each output pixel of the U-Net depends on a
bounded neighbourhood of the input (its receptive field), so the window depends on a
central part of every feature map only: for the default model (64-pixel stamps, depth 2,
radius 2) a 48x48 crop of the input, 44x44 of the first feature map and down to 5x5 at the
decoder's end; 2.1 M multiply-adds per triplet instead of 14.5 M for the whole map (1/6.8).

:class:`CentreWindowNet` runs the same layers, with batch norms folded into the
convolutions, on exactly those regions. Convolutions see the same inputs as in the full
network: real neighbours inside the stamp, zeros where the region reaches past its border
(what ``padding=1`` gives). So its centre logits equal :func:`centre_logit` of the full
network up to float32 rounding (summation order). Maps of every pixel
(:meth:`astrid.model.score.Scorer.probability_map`) still use the full network.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from astrid.model.unet import UNet

__all__ = ["CentreWindowNet", "Span"]

#: A half-open pixel interval ``(lo, hi)`` along one axis of a feature map; the regions are
#: squares (the window is centred and every layer treats both axes alike).
Span = tuple[int, int]


def _grow(span: Span, by: int, size: int) -> Span:
    """``span`` widened by ``by`` pixels each side, clipped to ``[0, size)``."""
    return max(span[0] - by, 0), min(span[1] + by, size)


def _hull(a: Span, b: Span) -> Span:
    return min(a[0], b[0]), max(a[1], b[1])


def _fold(block: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Weights and biases of a ``Conv-BN-ReLU-Conv-BN-ReLU`` block, batch norms folded in."""
    layers = list(block.children())
    out = []
    for conv, bn in ((layers[0], layers[1]), (layers[3], layers[4])):
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError("not a Conv-BN-ReLU-Conv-BN-ReLU block")
        if (conv.kernel_size, conv.padding, conv.stride, conv.dilation, conv.groups) != (
            (3, 3),
            (1, 1),
            (1, 1),
            (1, 1),
            1,
        ) or conv.padding_mode != "zeros":
            raise TypeError("not a 3x3, padding-1 convolution")
        fused = fuse_conv_bn_eval(conv, bn)
        out.append((fused.weight.detach().clone(), _bias(fused)))
    return out


def _max_pool2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` for even sides, as maxima of strided views: the same values,
    ~10x faster than the pooling kernel on small channels-last maps."""
    y = x.permute(0, 2, 3, 1)
    y = torch.maximum(y[:, 0::2], y[:, 1::2])
    return torch.maximum(y[:, :, 0::2], y[:, :, 1::2]).permute(0, 3, 1, 2)


def _bias(conv: nn.Conv2d | nn.ConvTranspose2d) -> torch.Tensor:
    if conv.bias is None:
        return torch.zeros(conv.out_channels)
    return conv.bias.detach().clone()


class CentreWindowNet:
    """Centre logits of a :class:`~astrid.model.unet.UNet`, computed on the regions they need.

    Parameters
    ----------
    net : UNet
        A trained network (not modified; its batch norms are folded in eval mode).

    Raises
    ------
    TypeError
        If ``net``'s layers are not those :class:`~astrid.model.unet.UNet` builds, or its
        centre window reaches past the stamp.
    """

    def __init__(self, net: UNet) -> None:
        # a subclass may change forward(): only the layers UNet builds are mirrored here
        if type(net) is not UNet:
            raise TypeError(f"{type(net).__name__} is not astrid.model.unet.UNet")
        cfg = net.config
        if not 0 <= cfg.centre_radius < cfg.stamp_size - cfg.stamp_size // 2:
            raise TypeError(f"the centre window (radius {cfg.centre_radius}) leaves the stamp")
        net = copy.deepcopy(net).eval()  # folding needs eval mode; the caller's net untouched
        self.depth = cfg.depth
        self.down_weights = [_fold(b) for b in net.downs]
        self.bottom_weights = _fold(net.bottom)
        self.up_block_weights = [_fold(b) for b in net.up_blocks]
        ups = [u for u in net.ups if isinstance(u, nn.ConvTranspose2d)]
        if len(ups) != cfg.depth or any(
            u.kernel_size != (2, 2) or u.stride != (2, 2) or u.padding != (0, 0) for u in ups
        ):
            raise TypeError("up-sampling is not a 2x2, stride-2 transposed convolution")
        self.up_weights = [(u.weight.detach().clone(), _bias(u)) for u in ups]
        head, pool = net.head, net.pool
        if not isinstance(head, nn.Conv2d) or head.kernel_size != (1, 1):
            raise TypeError("the head is not a 1x1 convolution")
        if not isinstance(pool, nn.MaxPool2d) or pool.kernel_size != 2 or pool.stride != 2:
            raise TypeError("down-sampling is not a 2x2 max pool")
        self.head = (head.weight.detach().clone(), _bias(head))
        self.sizes = [cfg.stamp_size // 2**level for level in range(cfg.depth + 1)]
        self._plan(cfg.stamp_size // 2, cfg.centre_radius)

    def _plan(self, centre: int, radius: int) -> None:
        """Regions (spans) each layer must produce, from the window back to the input."""
        depth, sizes = self.depth, self.sizes
        window: Span = (max(centre - radius, 0), min(centre + radius + 1, sizes[0]))
        # decoder, top down: the up block of level l makes up_out[l] from cat_in[l]
        self.up_out: list[Span] = [(0, 0)] * depth
        self.up_mid: list[Span] = [(0, 0)] * depth
        self.cat_in: list[Span] = [(0, 0)] * depth
        need = window
        for level in range(depth):
            self.up_out[level] = need
            self.up_mid[level] = _grow(need, 1, sizes[level])
            self.cat_in[level] = _grow(self.up_mid[level], 1, sizes[level])
            lo, hi = self.cat_in[level]
            need = (lo // 2, (hi + 1) // 2)  # the 2x2 up-sampling's input, one level down
        self.bottom_out = need
        self.bottom_mid = _grow(need, 1, sizes[depth])
        self.bottom_in = _grow(self.bottom_mid, 1, sizes[depth])
        # encoder, bottom up: the down block of level l makes down_out[l] (skip and pool
        # input) from down_in[l]; its pool makes pool_out[l], the next block's input
        self.down_out: list[Span] = [(0, 0)] * depth
        self.down_mid: list[Span] = [(0, 0)] * depth
        self.down_in: list[Span] = [(0, 0)] * depth
        self.pool_out: list[Span] = [(0, 0)] * depth
        nxt = self.bottom_in
        for level in reversed(range(depth)):
            self.pool_out[level] = nxt
            self.down_out[level] = _hull(self.cat_in[level], (2 * nxt[0], 2 * nxt[1]))
            self.down_mid[level] = _grow(self.down_out[level], 1, sizes[level])
            self.down_in[level] = _grow(self.down_mid[level], 1, sizes[level])
            nxt = self.down_in[level]
        self.input_span: Span = nxt

    @staticmethod
    def _conv3(
        x: torch.Tensor, have: Span, want: Span, size: int, wb: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """3x3 convolution + ReLU producing region ``want`` from ``x`` covering ``have``."""
        lo, hi = want[0] - 1, want[1] + 1
        a, b = max(lo, 0), min(hi, size)
        x = x[..., a - have[0] : b - have[0], a - have[0] : b - have[0]]
        pad_lo, pad_hi = a - lo, hi - b
        if pad_lo or pad_hi:
            x = F.pad(x, (pad_lo, pad_hi, pad_lo, pad_hi))
        return F.relu(F.conv2d(x, wb[0], wb[1]), inplace=True)

    def _block(
        self,
        x: torch.Tensor,
        have: Span,
        mid: Span,
        out: Span,
        size: int,
        weights: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        x = self._conv3(x, have, mid, size, weights[0])
        return self._conv3(x, mid, out, size, weights[1])

    @staticmethod
    def _crop(x: torch.Tensor, have: Span, want: Span) -> torch.Tensor:
        a, b = want[0] - have[0], want[1] - have[0]
        return x[..., a:b, a:b]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Centre logits, shape ``(N,)``, of full stamps ``(N, C, S, S)``."""
        return self.from_crop(self._crop(x, (0, self.sizes[0]), self.input_span))

    def from_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Centre logits, shape ``(N,)``, of stamps already cropped to :attr:`input_span`
        along both axes (``stamps[..., lo:hi, lo:hi]``)."""
        return self.window_from_crop(x).flatten(start_dim=1).amax(dim=1)

    def window_from_crop(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the whole centre window, shape ``(N, 1, 2r+1, 2r+1)`` (the full
        map's ``[..., c-r:c+r+1, c-r:c+r+1]``), of stamps cropped as for :meth:`from_crop`."""
        sizes = self.sizes
        span = self.input_span
        skips = []
        for level in range(self.depth):
            out = self.down_out[level]
            x = self._block(
                x, span, self.down_mid[level], out, sizes[level], self.down_weights[level]
            )
            skips.append(x)
            pooled = self.pool_out[level]
            x = _max_pool2(self._crop(x, out, (2 * pooled[0], 2 * pooled[1])))
            span = pooled
        x = self._block(
            x, span, self.bottom_mid, self.bottom_out, sizes[self.depth], self.bottom_weights
        )
        span = self.bottom_out
        for level in reversed(range(self.depth)):
            w, b = self.up_weights[self.depth - 1 - level]
            up = F.conv_transpose2d(x, w, b, stride=2)
            cat = self.cat_in[level]
            x = torch.cat(
                [
                    self._crop(up, (2 * span[0], 2 * span[1]), cat),
                    self._crop(skips[level], self.down_out[level], cat),
                ],
                dim=1,
            )
            x = self._block(
                x,
                cat,
                self.up_mid[level],
                self.up_out[level],
                sizes[level],
                self.up_block_weights[self.depth - 1 - level],
            )
            span = self.up_out[level]
        return F.conv2d(x, self.head[0], self.head[1])
