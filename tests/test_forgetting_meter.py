"""The forgetting meter (training.weight_shift and plots.plot_weight_shift), on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlcourse import plots, training  # noqa: E402
from tlcourse.backbones import Block  # noqa: E402


def _tiny_model():
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 1, use_bias=True, name="b0_conv")(inputs)
    x = keras.layers.BatchNormalization(name="b0_bn")(x)
    x = keras.layers.DepthwiseConv2D(1, use_bias=False, name="b1_dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="b1_pool")(x)
    outputs = keras.layers.Dense(1, use_bias=False, name="b2_dense")(x)
    return keras.Model(inputs, outputs)


BLOCKS = [Block("block_0", ("b0_conv", "b0_bn"), "b0_bn"), Block("block_1", ("b1_dw", "b1_pool"), "b1_pool"),
          Block("block_2", ("b2_dense",), "b2_dense"), Block("block_3", ("absent",), "absent")]


def test_weight_shift_counts_kernels_only_hand_computed():
    model = _tiny_model()
    conv, bn, dw, dense = (model.get_layer(n) for n in ("b0_conv", "b0_bn", "b1_dw", "b2_dense"))
    conv.set_weights([np.array([3.0, 4.0]).reshape(1, 1, 1, 2), np.array([1.0, 1.0])])  # |K0| = 5
    bn.set_weights([np.ones(2), np.zeros(2), np.full(2, 50.0), np.full(2, 900.0)])      # large stats
    dw.set_weights([np.array([1.0, 0.0]).reshape(1, 1, 2, 1)])                          # |K0| = 1
    dense.set_weights([np.array([[2.0], [0.0]])])                                       # |K0| = 2
    before = {layer.name: layer.get_weights() for layer in model.layers}

    # conv kernel moves by (0.3, 0.4): |dK| = 0.5, relative 0.5 / 5 = 0.1.
    conv.set_weights([np.array([3.3, 4.4]).reshape(1, 1, 1, 2), np.array([9.0, 9.0])])  # bias: ignored
    # BatchNorm: gamma/beta and statistics change a lot, and must not count.
    bn.set_weights([np.full(2, 2.0), np.full(2, 5.0), np.full(2, -50.0), np.full(2, 1.0)])
    # depthwise kernel (1, 0) -> (1, 1): |dK| = 1, relative 1.0 (as large as the kernel itself).
    dw.set_weights([np.array([1.0, 1.0]).reshape(1, 1, 2, 1)])
    # dense kernel unchanged: 0.

    shift = training.weight_shift(before, model, BLOCKS)
    assert shift == pytest.approx({"block_0": 0.1, "block_1": 1.0, "block_2": 0.0, "block_3": 0.0})


def test_weight_shift_pools_the_kernels_of_a_block():
    """Two kernels in one block: sqrt(sum of squared changes) / sqrt(sum of squares)."""
    inputs = keras.Input((2,))
    x = keras.layers.Dense(1, use_bias=False, name="a")(inputs)
    outputs = keras.layers.Dense(1, use_bias=False, name="b")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("a").set_weights([np.array([[3.0], [0.0]])])
    model.get_layer("b").set_weights([np.array([[4.0]])])
    before = {n: model.get_layer(n).get_weights() for n in ("a", "b")}
    model.get_layer("a").set_weights([np.array([[3.0], [1.0]])])  # change 1, in a block of norm 5
    shift = training.weight_shift(before, model, [Block("block_0", ("a", "b"), "b")])
    assert shift["block_0"] == pytest.approx(1 / 5)


def test_plot_says_what_it_measures():
    import matplotlib

    matplotlib.use("Agg")
    fig = plots.plot_weight_shift({"block_14": 0.5, "block_15": 0.0})
    ax = fig.axes[0]
    assert "kernel" in ax.get_ylabel() and "%" in ax.get_ylabel()
    assert [p.get_height() for p in ax.patches] == pytest.approx([50.0, 0.0])
    matplotlib.pyplot.close(fig)


def test_heatmap_outlines_the_cell_it_is_given_not_its_own_maximum():
    """Notebook 02 outlines the best *validation* cell on the test map too (never the best test cell)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.patches import Rectangle

    values = np.array([[0.1, 0.9], [0.5, 0.2]])
    fig = plots.plot_heatmap(values, [1, 2], ["a", "b"], "rows", "cols", best=(1, 0))
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert [(b.get_x(), b.get_y()) for b in boxes] == [(-0.5, 0.5)]          # row 1, column 0
    bold = [t.get_text() for t in fig.axes[0].texts if t.get_weight() == "bold"]
    assert bold == ["0.50"]
    fig_max = plots.plot_heatmap(values, [1, 2], ["a", "b"], "rows", "cols")   # default: the maximum
    assert [t.get_text() for t in fig_max.axes[0].texts if t.get_weight() == "bold"] == ["0.90"]
    fig_none = plots.plot_heatmap(values, [1, 2], ["a", "b"], "rows", "cols", best=None)
    assert not [t for t in fig_none.axes[0].texts if t.get_weight() == "bold"]
    for f in (fig, fig_max, fig_none):
        matplotlib.pyplot.close(f)
