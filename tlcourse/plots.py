"""Plots for the course notebooks (matplotlib; functions return the Figure, never show it)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["plot_image_grid"]


def _first_n(images: Any, labels: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Accept numpy/tensors, or a tf.data dataset of (images, labels) (batched or not)."""
    if labels is None and hasattr(images, "take") and hasattr(images, "element_spec"):
        xs, ys = [], []
        count = 0
        for elem in images:
            x, y = (elem[0], elem[1]) if isinstance(elem, (tuple, list)) else (elem, None)
            x = np.asarray(x)
            batched = x.ndim == 4
            x = x if batched else x[None]
            xs.append(x)
            if y is not None:
                y = np.asarray(y)
                ys.append(y if batched else y[None])
            count += len(x)
            if count >= n:
                break
        x = np.concatenate(xs)[:n]
        y = np.concatenate(ys)[:n] if ys else None
        return x, y
    x = np.asarray(images)[:n]
    y = None if labels is None else np.asarray(labels)[:n]
    return x, y


def _to_display(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    if img.size and img.max() <= 1.0 and img.min() >= 0.0:  # already 0..1
        return img
    return np.clip(img, 0, 255).astype(np.uint8)


def plot_image_grid(
    images: Any,
    labels: Any = None,
    class_names: Sequence[str] | None = None,
    n: int = 16,
    ncols: int = 8,
    predictions: Any = None,
    fig: Any = None,
    title: str | None = None,
    size: float = 1.6,
):
    """A labelled grid of sample images; returns the matplotlib ``Figure``.

    Args:
        images: a batch (numpy array or tensor, N x H x W x C or N x H x W,
            float 0..255, float 0..1 or uint8), or a ``tf.data`` dataset of
            ``(images, labels)``, batched or not (the first ``n`` are shown;
            then leave ``labels`` as None).
        labels: integer labels (or None for no titles).
        class_names: names for the labels; without it the numbers are shown.
        n: how many images to show at most.
        ncols: images per row.
        predictions: predicted labels (ints) or scores (N x classes, argmax is
            taken); titles become ``"true / pred"``, mistakes in red.
        fig: an existing figure to draw into (cleared first); default a new one
            with ``figsize`` ``(ncols * size, rows * size)``.
        title: a title over the grid.
        size: inches per image for a new figure.
    """
    import matplotlib.pyplot as plt

    if n < 1 or ncols < 1:
        raise ValueError("n and ncols must be positive")
    x, y = _first_n(images, labels, n)
    if len(x) == 0:
        raise ValueError("no images to plot")
    preds = None
    if predictions is not None:
        preds = np.asarray(predictions)[: len(x)]
        if preds.ndim == 2:
            preds = preds.argmax(axis=-1)
    count = len(x)
    cols = min(ncols, count)
    rows = math.ceil(count / cols)

    def name(i: int) -> str:
        i = int(i)
        return str(class_names[i]) if class_names is not None and 0 <= i < len(class_names) else str(i)

    if fig is None:
        fig = plt.figure(figsize=(cols * size, rows * size + (0.4 if title else 0)))
    else:
        fig.clf()
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= count:
            continue
        img = _to_display(x[k])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        if preds is not None:
            ok = y is None or int(preds[k]) == int(y[k])
            text = f"{name(y[k])} / {name(preds[k])}" if y is not None else name(preds[k])
            ax.set_title(text, fontsize=8, color="black" if ok else "red")
        elif y is not None:
            ax.set_title(name(y[k]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
