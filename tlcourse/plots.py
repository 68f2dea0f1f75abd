"""Plots for the course notebooks (matplotlib; functions return the Figure, never show it)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["plot_image_grid", "plot_history", "plot_blocks", "plot_confusion", "plot_embedding",
           "plot_weight_shift", "plot_heatmap", "pca_2d", "plot_comparison", "plot_cost"]


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


# --------------------------------------------------------------------------- #
# Training and model pictures (notebooks 01-03)
# --------------------------------------------------------------------------- #
_FROZEN = "#9ecae1"
_TRAINABLE = "#fd8d3c"


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def plot_history(histories: dict, metric: str = "accuracy", ax=None, title: str | None = None,
                 train: bool = True, first_epoch: int | None = None):
    """Learning curves: training (dashed) and validation (solid) ``metric`` per epoch.

    ``histories`` maps a label to a Keras ``History``, its ``.history`` dict,
    or a :class:`~tlcourse.training.FineTuneResult`. Curves may start at an
    epoch offset: pass ``(history, first_epoch)`` as the value.
    ``train=False`` draws the validation curves only. ``first_epoch`` draws only
    epochs from that one on, so a short stage 2 after a long stage 1 fills the
    plot instead of a few points at its right edge. Epoch ticks are whole numbers.
    Returns the figure.
    """
    from matplotlib.ticker import MaxNLocator

    fig, ax = _axes(ax, (6, 3.5))
    colors = plt_colors()
    lo = first_epoch or 1
    for i, (label, value) in enumerate(histories.items()):
        start = 0
        if isinstance(value, tuple):
            value, start = value
        hist = getattr(value, "history", value)
        color = colors[i % len(colors)]
        for key, style, kind in ((metric, "--", "train"), (f"val_{metric}", "-o", "val")):
            curve = hist.get(key)
            if curve is None or (kind == "train" and not train):
                continue
            epochs = np.arange(start + 1, start + len(curve) + 1)
            keep = epochs >= lo
            if not keep.any():
                continue
            name = label if not train else f"{label} ({kind})"
            if kind == "val":
                ax.plot(epochs[keep], np.asarray(curve)[keep], style, color=color, markersize=3, label=name)
            else:
                ax.plot(epochs[keep], np.asarray(curve)[keep], style, color=color, alpha=0.8, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric if train else f"validation {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plt_colors() -> list[str]:
    """The matplotlib default colour cycle."""
    import matplotlib.pyplot as plt

    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_blocks(base, ax=None, title: str | None = None):
    """The backbone as a strip of blocks, coloured frozen (blue) or trainable (orange).

    Each bar's height is the block's parameter count (log scale), so it shows
    where the weights are: most sit in the top blocks. Returns the figure.
    """
    from matplotlib.patches import Patch

    from .backbones import backbone_blocks

    fig, ax = _axes(ax, (9, 2.8))
    blocks = backbone_blocks(base)
    sizes, colors, names = [], [], []
    for block in blocks:
        layers = [base.get_layer(n) for n in block.layers]
        params = sum(int(np.prod(w.shape)) for layer in layers for w in layer.weights)
        trainable = any(layer.trainable and layer.trainable_weights for layer in layers) and base.trainable
        sizes.append(params)
        colors.append(_TRAINABLE if trainable else _FROZEN)
        names.append(block.name.replace("block_", "b"))
    x = np.arange(len(blocks))
    has = np.array(sizes) > 0
    ax.bar(x[has], np.array(sizes)[has], color=np.array(colors)[has], edgecolor="black", linewidth=0.5)
    for i in np.flatnonzero(~has):  # e.g. the pooling "top": a block, but nothing to train
        ax.text(i, 1.5, "no weights", rotation=90, ha="center", va="bottom", fontsize=7, color="gray")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1)
    ax.set_xticks(x, names, rotation=90, fontsize=8)
    ax.set_ylabel("parameters")
    ax.legend(handles=[Patch(color=_FROZEN, label="frozen"), Patch(color=_TRAINABLE, label="trainable")],
              fontsize=8, loc="upper left")
    ax.set_title(title or f"{base.name}: input on the left, output on the right")
    return fig


def plot_confusion(y_true, y_pred, class_names, ax=None, title: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted) with counts. Returns the figure."""
    from sklearn.metrics import confusion_matrix

    fig, ax = _axes(ax, (5, 4.5))
    k = len(class_names)
    cm = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=np.arange(k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {np.trace(cm) / max(cm.sum(), 1):.3f}")
    return fig


def pca_2d(features: np.ndarray) -> np.ndarray:
    """Project features onto their first two principal components.

    The same projection as scikit-learn's ``PCA(n_components=2)``, computed from the
    smaller of the two Gram matrices (samples x samples or features x features), so a few
    hundred raw images of 49,152 pixels need one float64 copy of the data, not four
    (notebook 01's pixel plot: 0.27 GiB of kernel memory before). Each component's sign is
    chosen so that its largest projection is positive, so the picture does not flip between
    runs or library versions.
    """
    f = np.array(features, dtype="float64").reshape(len(features), -1)  # a copy: centred in place
    f -= f.mean(axis=0)
    if len(f) <= f.shape[1]:
        values, vectors = np.linalg.eigh(f @ f.T)
        top = np.argsort(values)[::-1][:2]
        proj = vectors[:, top] * np.sqrt(np.clip(values[top], 0, None))
    else:
        values, vectors = np.linalg.eigh(f.T @ f)
        proj = f @ vectors[:, np.argsort(values)[::-1][:2]]
    signs = np.sign(proj[np.abs(proj).argmax(axis=0), [0, 1]])
    return proj * np.where(signs == 0, 1, signs)


def plot_embedding(features, labels, class_names, ax=None, title: str | None = None):
    """Scatter of features projected to 2-D with PCA, coloured by class. Returns the figure."""
    fig, ax = _axes(ax, (5.5, 4.5))
    proj = pca_2d(features)
    colors = plt_colors()
    for c, name in enumerate(class_names):
        mask = np.asarray(labels) == c
        ax.scatter(proj[mask, 0], proj[mask, 1], s=12, alpha=0.75, color=colors[c % len(colors)], label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    ax.set_title(title or "features, first two principal components")
    return fig


def plot_weight_shift(shift: dict[str, float], ax=None, title: str | None = None):
    """Bar chart of how far each block's kernels moved in fine tuning (the "forgetting meter").

    ``shift`` is :func:`tlcourse.training.weight_shift`'s output: per block,
    ``||K1 - K0|| / ||K0||`` of its convolution and dense kernels (BatchNorm
    left out), drawn in percent. 100 % means the change is as large as the
    pretrained kernels themselves.
    """
    fig, ax = _axes(ax, (9, 2.8))
    names = [n.replace("block_", "b") for n in shift]
    values = np.array(list(shift.values()))
    ax.bar(range(len(values)), values * 100, color=[_TRAINABLE if v > 0 else _FROZEN for v in values],
           edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(values)), names, rotation=90, fontsize=8)
    ax.set_ylabel("kernel change\n|K - K0| / |K0| (%)", fontsize=9)
    ax.set_title(title or "forgetting meter: relative change of each block's conv kernels")
    return fig


def plot_heatmap(values: np.ndarray, rows, cols, row_label: str, col_label: str, ax=None,
                 title: str | None = None, fmt: str = "{:.2f}", best="max",
                 vmin: float | None = None, vmax: float | None = None, colorbar: bool = True):
    """Annotated heatmap (for example accuracy over depth x learning rate). Returns the figure.

    ``best`` is the cell drawn bold and outlined: ``"max"`` (the default) for the
    largest value, a ``(row, column)`` index (for example the cell chosen on
    validation, when ``values`` are test accuracies), or ``None`` for no cell.
    ``vmin``/``vmax`` fix the colour scale (default: this map's own range); give
    maps that are compared side by side the same pair, so equal colours mean equal
    values and a difference of a few images does not span the whole scale.
    """
    from matplotlib.patches import Rectangle

    fig, ax = _axes(ax, (6, 4))
    values = np.asarray(values, dtype=float)
    vmin = np.nanmin(values) if vmin is None else vmin
    vmax = np.nanmax(values) if vmax is None else vmax
    im = ax.imshow(values, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    if isinstance(best, str) and best == "max":
        best = np.unravel_index(np.nanargmax(values), values.shape)
    best = tuple(int(i) for i in best) if best is not None else None
    if best is not None:
        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            weight = "bold" if (i, j) == best else "normal"
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=9, weight=weight,
                    color="black" if values[i, j] > (vmin + vmax) / 2 else "white")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    if colorbar:
        fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- #
# The comparison (notebook 03)
# --------------------------------------------------------------------------- #
_METHOD_STYLE = {"feature_extraction": ("feature extraction", "#1f77b4", "o"),
                 "fine_tuning": ("fine tuning", "#ff7f0e", "s"),
                 "scratch": ("from scratch", "#2ca02c", "^")}


def plot_comparison(rows: list[dict], ax=None, title: str | None = None, ylabel: str = "test accuracy",
                    chance: float | None = None, majority: float | None = None):
    """Accuracy against labels per class, one line per method, with 95 % interval bars.

    ``rows``: dicts with ``method``, ``x`` (training labels per class),
    ``accuracy``, ``low`` and ``high`` (for example from
    :func:`tlcourse.experiments.summarize`). Works for any dataset; methods not
    in the course's three get a default style. ``chance`` draws a dotted line,
    ``majority`` (always answering the most common class) a dashed one.
    """
    from matplotlib.ticker import NullFormatter

    fig, ax = _axes(ax, (6, 4))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ticks: set = set()
    n = max(1, len(methods))
    for i, method in enumerate(methods):
        label, color, marker = _METHOD_STYLE.get(method, (method.replace("_", " "), None, "o"))
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["x"])
        x = np.array([r["x"] for r in pts], dtype=float)
        acc = np.array([r["accuracy"] for r in pts])
        low, high = np.array([r["low"] for r in pts]), np.array([r["high"] for r in pts])
        shift = x * 1.04 ** (i - (n - 1) / 2)  # side by side, so the bars do not hide each other
        ax.errorbar(shift, acc, yerr=[acc - low, high - acc], color=color, marker=marker, capsize=3, label=label)
        ticks.update(float(v) for v in x)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    if majority is not None and majority != chance:
        ax.axhline(majority, color="grey", linestyle="--", linewidth=1, label="majority class")
    ax.set_xscale("log")
    ticks = sorted(ticks)
    ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training labels per class (log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "")
    return fig


def plot_cost(rows: list[dict], ax=None, title: str | None = None):
    """Training seconds per run (log scale) against accuracy, one point per (dataset, method) with 95 % bars.

    ``rows``: dicts with ``dataset``, ``method``, ``seconds``, ``accuracy``,
    ``low``, ``high``. Any dataset names work: each gets its own marker.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = _axes(ax, (6, 4))
    marks = "os^Dvx*P"
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for r in rows:
        label, color, _ = _METHOD_STYLE.get(r["method"], (r["method"], None, "o"))
        ax.errorbar([r["seconds"]], [r["accuracy"]], yerr=[[r["accuracy"] - r["low"]], [r["high"] - r["accuracy"]]],
                    color=color, marker=marks[datasets.index(r["dataset"]) % len(marks)], capsize=3,
                    linestyle="none")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training seconds per run (median)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D  # noqa: PLC0415

    methods = list(dict.fromkeys(r["method"] for r in rows))
    by_method = [Line2D([], [], color=_METHOD_STYLE.get(m, (m, "grey", "o"))[1] or "grey", marker="s",
                        linestyle="none", label=_METHOD_STYLE.get(m, (m.replace("_", " "),))[0]) for m in methods]
    by_data = [Line2D([], [], color="black", marker=marks[i % len(marks)], linestyle="none", label=d)
               for i, d in enumerate(datasets)]
    first = ax.legend(handles=by_method, title="colour: method", fontsize=8, title_fontsize=8,
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.add_artist(first)
    ax.legend(handles=by_data, title="marker: dataset", fontsize=8, title_fontsize=8,
              loc="lower left", bbox_to_anchor=(1.01, 0.0), borderaxespad=0)
    ax.set_title(title or "cost against accuracy")
    return fig


def plot_power(curves: dict, ax=None, title: str | None = None, marks: dict | None = None):
    """Power of a paired test against the discordance rate, one line per number of test images.

    ``curves``: ``{label: (discordance rates, power)}``; ``marks``: ``{label:
    (discordance, power)}`` points to highlight (a measured discordance).
    """
    fig, ax = _axes(ax, (6, 4))
    for label, (d, pw) in curves.items():
        ax.plot(d, pw, label=label)
    for label, (d, pw) in (marks or {}).items():
        ax.plot([d], [pw], "o", color="black")
        ax.annotate(label, (d, pw), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("share of images the two methods disagree on")
    ax.set_ylabel("power (chance of detecting it)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "")
    return fig
