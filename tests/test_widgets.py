"""The fine-tuning panel, driven headless: set the sliders, click Train, check the result."""

from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from tlcourse import training, widgets  # noqa: E402
from tlcourse.backbones import load_backbone  # noqa: E402


@pytest.fixture(scope="module")
def lab():
    base = load_backbone("efficientnet_lite0", image_size=64)
    base.trainable = False
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (36, 64, 64, 3)).astype("float32")
    y = np.arange(36) % 3
    data = training.FineTuneData(x[:18], y[:18], x[18:27], y[18:27], x[27:], y[27:], 3)
    head = [rng.normal(0, 0.01, (1280, 3)).astype("float32"), np.zeros(3, "float32")]
    baseline = types.SimpleNamespace(history={"accuracy": [0.3, 0.4], "val_accuracy": [0.3, 0.35]},
                                     test_accuracy=0.33)
    return widgets.FineTuneLab(base, head, data, baseline=baseline)


def test_depth_slider_snaps_to_blocks_and_shows_trainable_params_live(lab):
    panel = widgets.fine_tune_panel(lab, depth=1)
    assert panel.depth.min == 0 and panel.depth.max == 18 and panel.depth.step == 1
    text_1 = panel.params_label.value
    panel.depth.value = 3
    assert panel.params_label.value != text_1
    assert f"{lab.total_trainable_params(3) / 1e6:.2f} M" in panel.params_label.value
    assert "block_14" in panel.params_label.value and "head" in panel.params_label.value
    panel.train_button.click()  # the label and the report count the same weights
    assert panel.result.trainable_params == lab.total_trainable_params(3)
    panel.depth.value = 1
    assert "head … head" not in panel.params_label.value and "1 block (head) + the classifier" in panel.params_label.value
    assert "white-space:nowrap" in panel.params_label.value   # one line at 1366 px, not "+ the / classifier"
    panel.depth.value = 0
    assert "only the classifier" in panel.params_label.value


def test_learning_rate_slider_is_log_scale(lab):
    panel = widgets.fine_tune_panel(lab)
    panel.learning_rate.value = 1e-5
    assert panel.learning_rate.value == pytest.approx(1e-5)
    assert panel.learning_rate.min == -6 and panel.learning_rate.max == -1  # exponents


def test_clicking_train_runs_the_computation_and_reports(lab):
    panel = widgets.fine_tune_panel(lab)
    panel.depth.value = 2
    panel.learning_rate.value = 1e-3
    panel.epochs.value = 2
    panel.train_button.click()
    assert panel.error is None
    r = panel.result
    assert r.blocks == 2 and r.epochs == 2 and r.learning_rate == pytest.approx(1e-3)
    assert r.trained_blocks == ["block_15", "head"]
    assert len(r.history["val_accuracy"]) == 2
    assert "baseline" in panel.status.value and "block_15" in panel.status.value
    assert not panel.train_button.disabled
    assert lab.runs[-1] is r
    # validation against the validation baseline; the test set only on request
    assert f"validation accuracy {r.val_accuracy:.3f}" in panel.status.value
    assert "baseline (validation) 0.350" in panel.status.value
    assert "test" not in panel.status.value.replace("Check on test", "")
    assert f"{r.test_accuracy:.3f}" not in panel.test_status.value and not panel.test_button.disabled
    panel.test_button.click()
    assert f"test accuracy of depth 2, learning rate 1e-03: {r.test_accuracy:.3f}" in panel.test_status.value
    assert "baseline 0.330" in panel.test_status.value


def test_depth_zero_says_why_it_is_not_the_baseline(lab):
    r = lab.train(0, 1e-3, epochs=1)
    assert "depth 0 is not the baseline itself" in lab.describe(r)


def test_panel_reads_as_text_without_a_kernel(lab):
    bundle = widgets.fine_tune_panel(lab)._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("[fine-tuning panel") and "VBox" not in data["text/plain"]


def test_a_failing_click_is_shown_in_the_panel_not_raised(lab, monkeypatch):
    panel = widgets.fine_tune_panel(lab)

    def boom(*args, **kwargs):
        raise ValueError("learning_rate must be a positive number")

    monkeypatch.setattr(lab, "train", boom)
    panel.train_button.click()
    assert isinstance(panel.error, ValueError)
    assert "positive" in panel.status.value
    assert not panel.train_button.disabled


def test_lab_computation_is_a_plain_function(lab):
    a = lab.train(1, 1e-3, epochs=1)
    b = lab.train(1, 1e-3, epochs=1)
    assert a.history == b.history  # seeded: the same click gives the same curve
    assert lab.blocks_at_depth(0) == []
    assert lab.blocks_at_depth(2) == ["block_15", "head"]
    assert "trainable parameters" in lab.describe(a)


def test_notebook_02_leaves_the_sliders_to_the_learner():
    """Run all must not move the learner's sliders or click Train: the tests above drive the panel."""
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "notebooks" / "02_fine_tuning.py").read_text()
    for forbidden in ("panel.depth.value", "panel.learning_rate.value", "panel.epochs.value",
                      "train_button.click"):
        assert forbidden not in source, forbidden
