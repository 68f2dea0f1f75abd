"""Plot helpers: they draw what they are given (any dataset name), computed by scikit-learn."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from tlcourse import plots  # noqa: E402


def test_pca_2d_finds_the_directions_of_largest_spread():
    rng = np.random.default_rng(0)
    # 3-D points spread mostly along (1, 1, 0), then along (0, 0, 1)
    t = rng.normal(size=(200, 3)) * [10.0, 3.0, 0.1]
    basis = np.array([[1, 1, 0], [0, 0, 1], [1, -1, 0]]) / np.array([[2 ** 0.5], [1], [2 ** 0.5]])
    x = t @ basis + 5.0
    proj = plots.pca_2d(x)
    centred = x - x.mean(axis=0)
    for k, direction in enumerate(basis[:2]):
        expected = centred @ direction
        assert abs(np.corrcoef(proj[:, k], expected)[0, 1]) > 0.999
        assert proj[np.abs(proj[:, k]).argmax(), k] > 0  # the sign rule: no flipping
    np.testing.assert_allclose(plots.pca_2d(x[::-1])[::-1], proj, atol=1e-9)


@pytest.mark.parametrize("shape", [(40, 500), (300, 20)])  # more pixels than images, and fewer
def test_pca_2d_equals_scikit_learns_pca(shape):
    from sklearn.decomposition import PCA

    x = np.random.default_rng(1).normal(size=shape).astype("float32") * np.linspace(3, 0.1, shape[1])
    reference = PCA(n_components=2, svd_solver="full").fit_transform(x.astype("float64"))
    proj = plots.pca_2d(x)
    for k in range(2):
        np.testing.assert_allclose(np.abs(proj[:, k]), np.abs(reference[:, k]), rtol=1e-6, atol=1e-8)


def test_plot_confusion_counts_each_true_and_predicted_pair():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 2, 0]
    fig = plots.plot_confusion(y_true, y_pred, ["cat", "dog", "bird"])
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert cells == {(0, 0): 1, (0, 1): 1, (1, 1): 1, (2, 2): 2, (2, 0): 1}  # (true row, predicted column)
    assert ax.get_title() == "accuracy 0.667"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "bird"]


def _rows(dataset: str) -> list[dict]:
    return [dict(dataset=dataset, method=method, x=per_class, accuracy=base + per_class / 100,
                 low=base + per_class / 100 - 0.05, high=base + per_class / 100 + 0.04, seconds=1.0 + per_class)
            for method, base in (("feature_extraction", 0.6), ("fine_tuning", 0.7)) for per_class in (5, 20)]


@pytest.mark.parametrize("dataset", ["spoken words", "my own pictures"])
def test_plot_comparison_draws_any_dataset(dataset):
    fig = plots.plot_comparison(_rows(dataset), title=dataset)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["feature extraction", "fine tuning"] and ax.get_title() == dataset
    means = [container.lines[0].get_ydata().tolist() for container in ax.containers]
    assert means == [pytest.approx([0.65, 0.8]), pytest.approx([0.75, 0.9])]
    fig = plots.plot_cost(_rows(dataset) + _rows("clipart"))
    ax = fig.axes[0]
    legends = [a for a in ax.get_children() if isinstance(a, type(ax.get_legend()))]
    # one legend per code (colour: method, marker: dataset), any dataset names, outside the data
    assert {tuple(t.get_text() for t in leg.get_texts()) for leg in legends} == \
        {("feature extraction", "fine tuning"), (dataset, "clipart")}
    fig.canvas.draw()
    for leg in legends:
        assert leg.get_window_extent().x0 >= ax.get_window_extent().x1 - 1


def test_plot_history_accepts_histories_and_offsets():
    fig = plots.plot_history({"a": {"accuracy": [0.1, 0.2], "val_accuracy": [0.3, 0.4]},
                              "b": ({"val_accuracy": [0.5]}, 2)})
    lines = fig.axes[0].lines
    assert [line.get_xdata().tolist() for line in lines] == [[1, 2], [1, 2], [3]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a (train)", "a (val)", "b (val)"]
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())   # whole epochs, no 1.5
    zoomed = plots.plot_history({"stage 1": {"val_accuracy": [0.1] * 40}, "stage 2": ({"val_accuracy": [0.8, 0.9]}, 40)},
                                train=False, first_epoch=38)
    lines = zoomed.axes[0].lines
    assert [line.get_xdata().tolist() for line in lines] == [[38, 39, 40], [41, 42]]
    assert [t.get_text() for t in zoomed.axes[0].get_legend().get_texts()] == ["stage 1", "stage 2"]


def test_plot_heatmap_shares_a_colour_scale():
    a = plots.plot_heatmap(np.array([[0.745, 0.751]]), [1], ["x", "y"], "r", "c", vmin=0.5, vmax=1.0)
    assert a.axes[0].images[0].get_clim() == (0.5, 1.0)
