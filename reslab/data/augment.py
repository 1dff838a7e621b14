"""Batch transforms applied on the device to whole uint8 batches: no per-sample PIL.

:class:`Augment` chains grey -> RGB, pad-and-crop (:func:`random_crop`), flip
(:func:`random_flip`), resize or random-resized-crop (:func:`random_resized_crop`) and
normalisation. Every random draw takes an optional generator, so seeding it fixes the batch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .specs import MEAN_STD, get_spec


@dataclass(frozen=True)
class Augment:
    """A batch transform, applied on the device to whole uint8 batches.

    Order: grey -> 3 channels, pad-and-crop, flip, resize, random-resized-crop, normalise.

    Attributes:
        pad_crop: Zero-pad this many pixels on each side, then crop back at a random offset.
        flip: Horizontal flip with probability 0.5.
        resize: Output side length (bilinear); ``None`` keeps the input size.
        rrc_scale: Random-resized-crop area range, e.g. ``(0.8, 1.0)``; ``None`` turns it off.
        rrc_ratio: Aspect ratio range of the crop (``(1.0, 1.0)`` for square crops).
        mean: Per-channel mean after scaling to [0, 1]; ``None`` skips normalisation.
        std: Per-channel standard deviation.
        to_rgb: Repeat a single grey channel three times.
    """

    pad_crop: int = 0
    flip: bool = False
    resize: int | None = None
    rrc_scale: tuple[float, float] | None = None
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    to_rgb: bool = False

    @property
    def random(self) -> bool:
        return bool(self.pad_crop or self.flip or self.rrc_scale)

    def eval(self) -> "Augment":
        """The deterministic counterpart: same resize and normalisation, no randomness."""
        return Augment(resize=self.resize, mean=self.mean, std=self.std, to_rgb=self.to_rgb)

    @staticmethod
    def standard(dataset: str, train: bool, resize: int | None = None, to_rgb: bool = False) -> "Augment":
        """The usual recipe: pad-4 crop + flip for CIFAR training, none for (Fashion-)MNIST."""
        mean, std = MEAN_STD[get_spec(dataset).name]
        if to_rgb and len(mean) == 1:
            mean, std = mean * 3, std * 3
        crop = train and bool(get_spec(dataset).batches)  # CIFAR-10 / CIFAR-100
        return Augment(pad_crop=4 if crop else 0, flip=crop, resize=resize, mean=mean, std=std, to_rgb=to_rgb)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a uint8 batch ``(B, C, H, W)`` into a float32 batch."""
        if self.to_rgb and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.pad_crop:
            x = random_crop(x, self.pad_crop, generator)
        if self.flip:
            x = random_flip(x, generator)
        x = x.to(torch.float32, copy=True)  # never write into the caller's tensor
        if self.rrc_scale is not None or (self.resize is not None and self.resize != x.shape[-1]) or self.mean is None:
            x = x.div_(255)
            scale = 1.0
        else:
            scale = 255.0  # fold the division by 255 into the normalisation below
        if self.rrc_scale is not None:
            x = random_resized_crop(x, self.resize or x.shape[-1], self.rrc_scale, self.rrc_ratio, generator)
        elif self.resize is not None and self.resize != x.shape[-1]:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        if self.mean is not None:
            if len(self.mean) != x.shape[1]:
                raise ValueError(
                    f"normalisation has {len(self.mean)} channel(s) but the batch has {x.shape[1]}; "
                    f"set to_rgb or give per-channel mean/std of the right length."
                )
            mean, inv_std = _normalisation(self.mean, self.std, scale, x.device)
            x = x.sub_(mean).mul_(inv_std)
        return x


@functools.lru_cache(maxsize=64)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...], scale: float,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, 1 / std)`` as ``(1, C, 1, 1)`` tensors on ``device``, both times ``scale``: made once
    per device, so a batch on the GPU never waits for a copy from the host."""
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1) * scale
    return m, 1 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * scale)


def _rand(shape: Sequence[int], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back to the input size at a random offset per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p+1, 2p+1, H, W), a view
    offs = (_rand((2, b), x.device, generator) * (2 * pad + 1)).long()  # (2, B) in [0, 2p]
    # One gather copies each image's window: (B, C, H, W).
    return windows[torch.arange(b, device=x.device), :, offs[0], offs[1]]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 0.5."""
    mask = _rand((x.shape[0],), x.device, generator) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    tries: int = 10,
) -> torch.Tensor:
    """Batched ``RandomResizedCrop``: crop a random box per image and resize it to ``size``.

    Boxes are drawn as in torchvision (area fraction uniform in ``scale``, log aspect ratio uniform
    in ``ratio``, ``tries`` attempts, then a centre crop clamped to the ratio range), and the crop
    and resize are one bilinear ``grid_sample``, so a prior resize to ``size`` is folded in.

    Args:
        x: Float batch ``(B, C, H, W)``.
    """
    b, _, h, w = x.shape
    dev = x.device
    area = _rand((b, tries), dev, generator) * (scale[1] - scale[0]) + scale[0]
    log_r = _rand((b, tries), dev, generator) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r * (h / w))  # crop width as a fraction of W
    ch = torch.sqrt(area / r * (w / h))  # crop height as a fraction of H
    ok = (cw <= 1) & (ch <= 1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1, device=dev))
    # Fallback: the largest centred box whose ratio lies in range.
    in_ratio = w / h
    fw = min(1.0, ratio[1] / in_ratio) if in_ratio > ratio[1] else 1.0
    fh = min(1.0, in_ratio / ratio[0]) if in_ratio < ratio[0] else 1.0
    idx = first.clamp(min=0)[:, None]
    cw = torch.where(first >= 0, cw.gather(1, idx)[:, 0], torch.full((b,), fw, device=dev))
    ch = torch.where(first >= 0, ch.gather(1, idx)[:, 0], torch.full((b,), fh, device=dev))
    # Top-left corner uniform over the valid range; centre in normalised [-1, 1] coordinates.
    u = _rand((2, b), dev, generator)
    x0 = u[0] * (1 - cw)
    y0 = u[1] * (1 - ch)
    cx = (x0 + cw / 2) * 2 - 1
    cy = (y0 + ch / 2) * 2 - 1
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = cw
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (b, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
