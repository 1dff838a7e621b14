"""Grad-CAM through pytorch-grad-cam (``grad-cam`` on PyPI): no hand-written class activation maps.

This module only adapts the library to ``reslab``: it finds a target layer by its dotted name,
runs :class:`pytorch_grad_cam.GradCAM` on a batch for the model's own top-1 class (or given
classes), overlays a map on an image with the library's ``show_cam_on_image``, and reduces a
map to a few simple statistics for a CSV.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def get_layer(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path such as ``layer4`` or ``features.12``.

    Raises:
        ValueError: if the path names no submodule (the message lists the top-level children).
    """
    modules = dict(model.named_modules())
    if path not in modules:
        children = [name for name, _ in model.named_children()]
        raise ValueError(f"{type(model).__name__} has no submodule {path!r}; its children are {children}.")
    return modules[path]


def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target_layer: str,
    targets: Sequence[int] | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """Grad-CAM maps of a batch.

    Args:
        model: A classifier (put into eval mode here).
        inputs: Normalised float batch ``(B, C, H, W)`` on the model's device.
        target_layer: Dotted name of the layer whose activations and gradients make the map.
        targets: One class index per image; default the model's own top-1 class.

    Returns:
        ``(cams, probs)``: maps ``(B, H, W)`` in [0, 1] at the input resolution, and the softmax
        probabilities ``(B, num_classes)`` of the model on ``inputs``.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    with torch.no_grad():
        probs = model(inputs).float().softmax(dim=1).cpu()
    classes = list(targets) if targets is not None else probs.argmax(dim=1).tolist()
    if len(classes) != inputs.shape[0]:
        raise ValueError(f"targets has {len(classes)} entries for a batch of {inputs.shape[0]} images.")
    with GradCAM(model=model, target_layers=[get_layer(model, target_layer)]) as cam:
        maps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return maps.astype(np.float32), probs


def layer_grid(model: nn.Module, inputs: torch.Tensor, target_layer: str) -> tuple[int, int]:
    """``(H, W)`` of the target layer's output on ``inputs``: the grid a Grad-CAM map is made on
    before it is resized to the input. A 1x1 grid (torchvision's ResNet-18 at 32x32) gives one value
    per image, a uniform map that says nothing about where the network looks."""
    grid: list[tuple[int, int]] = []
    hook = get_layer(model, target_layer).register_forward_hook(
        lambda _m, _i, out: grid.append(tuple(out.shape[-2:])))
    try:
        model.eval()
        with torch.no_grad():
            model(inputs[:1])
    finally:
        hook.remove()
    return grid[0]


def resize_cam(cam: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of one map ``(H, W)`` to ``(size, size)``, kept in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].clamp_(0, 1).numpy()


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The map drawn over an RGB uint8 image ``(H, W, 3)`` (the map is resized to the image).

    Returns:
        An RGB uint8 image ``(H, W, 3)``.
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if cam.shape != image.shape[:2]:
        cam = resize_cam(cam, image.shape[0])
    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True)


def cam_stats(cam: np.ndarray) -> dict[str, float]:
    """Simple statistics of one map ``(H, W)``.

    Returns:
        ``cam_mean``; ``frac_above_half`` (share of pixels above half the map's maximum: how
        spread the attention is); ``peak_y``, ``peak_x`` (where the maximum is, as fractions
        of height and width); ``com_y``, ``com_x`` (the map's centre of mass, same units).
        Fractions are NaN for an all-zero map (no positive evidence).
    """
    h, w = cam.shape
    peak = float(cam.max())
    total = float(cam.sum())
    if peak <= 0 or total <= 0:
        nan = float("nan")
        return {"cam_mean": float(cam.mean()), "frac_above_half": nan, "peak_y": nan, "peak_x": nan,
                "com_y": nan, "com_x": nan}
    py, px = np.unravel_index(int(cam.argmax()), cam.shape)
    ys, xs = np.mgrid[0:h, 0:w]
    return {
        "cam_mean": round(float(cam.mean()), 4),
        "frac_above_half": round(float((cam > 0.5 * peak).mean()), 4),
        "peak_y": round((py + 0.5) / h, 4),
        "peak_x": round((px + 0.5) / w, 4),
        "com_y": round(float((cam * (ys + 0.5)).sum() / total / h), 4),
        "com_x": round(float((cam * (xs + 0.5)).sum() / total / w), 4),
    }
