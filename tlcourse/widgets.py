"""The fine-tuning panel of notebook 02: sliders for depth and learning rate.

The computation lives in :class:`FineTuneLab` (plain Python, called by tests
and by notebook 03); :class:`FineTunePanel` only wires ipywidgets to it.
"""

from __future__ import annotations

import numpy as np

from .training import FineTuneData, FineTuneResult, fine_tune, trainable_params_at_depth

__all__ = ["FineTuneLab", "FineTunePanel", "fine_tune_panel", "example_figure"]


class FineTuneLab:
    """Everything a fine-tuning click needs: base, stage-1 head, data and the baseline.

    ``baseline`` is the feature-extraction result (a :class:`FineTuneResult`
    at depth 0, or a Keras history dict) that every run is compared with.
    """

    def __init__(self, base, head_weights, data: FineTuneData, baseline=None, seed: int = 0):
        from .backbones import backbone_blocks

        self.base = base
        self.head_weights = head_weights
        self.data = data
        self.baseline = baseline
        self.seed = seed
        self.blocks = backbone_blocks(base)
        self.runs: list[FineTuneResult] = []

    @property
    def max_depth(self) -> int:
        """Number of blocks that can be unfrozen."""
        return len(self.blocks)

    def trainable_params(self, depth: int) -> int:
        """Backbone parameters that would train at this depth (BatchNorm kept frozen)."""
        return trainable_params_at_depth(self.base, depth)

    def total_trainable_params(self, depth: int) -> int:
        """Everything that trains at this depth: the base's blocks plus the classifier."""
        return self.trainable_params(depth) + sum(int(np.prod(w.shape)) for w in self.head_weights or [])

    def blocks_at_depth(self, depth: int) -> list[str]:
        """Names of the blocks that train at this depth, bottom to top."""
        return [b.name for b in self.blocks[len(self.blocks) - depth:]] if depth else []

    def train(self, depth: int, learning_rate: float, epochs: int = 5) -> FineTuneResult:
        """Run one fine-tuning (cached, seeded) and remember it in ``self.runs``."""
        result = fine_tune(self.base, self.head_weights, self.data, blocks=depth,
                           learning_rate=learning_rate, epochs=epochs, seed=self.seed)
        self.runs.append(result)
        return result

    @property
    def baseline_val_accuracy(self) -> float | None:
        """The feature-extraction baseline's validation accuracy (last epoch), if known."""
        b = self.baseline
        if b is None:
            return None
        if getattr(b, "val_accuracy", None) is not None:
            return float(b.val_accuracy)
        curve = getattr(b, "history", b if isinstance(b, dict) else {}).get("val_accuracy")
        return float(curve[-1]) if curve else None

    def where(self, depth: int) -> str:
        """What trains at ``depth``, in a few words (for a label that must not wrap)."""
        names = self.blocks_at_depth(depth)
        if depth == 0:
            return "only the classifier (it keeps training from the stage-1 head)"
        span = names[0] if depth == 1 else f"{names[0]} … {names[-1]}"
        return f"{depth} block{'s' if depth != 1 else ''} ({span}) + the classifier"

    def describe(self, result: FineTuneResult) -> str:
        """A short text report of one run against the baseline, on **validation** data.

        The test accuracy is left out on purpose: settings are chosen on validation;
        :meth:`describe_test` reports the test set, once, for the final pick.
        """
        n_val = len(self.data.y_val)
        lines = [f"depth {result.blocks}, learning rate {result.learning_rate:.0e}, {result.epochs} epochs: "
                 f"validation accuracy {result.val_accuracy:.3f}"]
        base_val = self.baseline_val_accuracy
        if base_val is not None:
            delta = result.val_accuracy - base_val
            lines.append(f"feature-extraction baseline (validation) {base_val:.3f}: "
                         f"{'+' if delta >= 0 else ''}{delta:.3f}, {round(delta * n_val):+d} of {n_val} images")
        if result.blocks == 0:
            lines.append("depth 0 is not the baseline itself: the stage-1 head trains for more epochs, "
                         "so it may differ by a few images")
        lines += [f"trainable parameters: {result.trainable_params:,} ({self.where(result.blocks)})",
                  f"time: {result.seconds + result.cache_seconds:.1f} s (training {result.seconds:.1f} s, "
                  f"activations at the cut {result.cache_seconds:.1f} s)"]
        return "\n".join(lines)

    def describe_test(self, result: FineTuneResult) -> str:
        """The test accuracy of ``result`` against the baseline's (for the setting finally chosen)."""
        text = (f"test accuracy of depth {result.blocks}, learning rate {result.learning_rate:.0e}: "
                f"{result.test_accuracy:.3f}")
        base_acc = getattr(self.baseline, "test_accuracy", None)
        if base_acc is not None:
            delta = result.test_accuracy - base_acc
            text += f" (feature-extraction baseline {base_acc:.3f}, {'+' if delta >= 0 else ''}{delta:.3f})"
        return text


def example_figure(lab: FineTuneLab, result: FineTuneResult, figsize=(9.5, 3.0)):
    """What a Train click draws for ``result``: validation accuracy of the baseline's last
    epochs and of stage 2 (left), the forgetting meter (right). Returns the figure."""
    import matplotlib.pyplot as plt

    from .plots import plot_history, plot_weight_shift

    fig, axes = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [1, 1.4]})
    curves = {}
    start = 0
    if lab.baseline is not None:
        curves["feature extraction"] = lab.baseline
        start = len(getattr(lab.baseline, "history", {}).get("val_accuracy", []))
    curves[f"depth {result.blocks}, lr {result.learning_rate:.0e}"] = (result.history, start)
    plot_history(curves, ax=axes[0], title="validation accuracy", train=False,
                 first_epoch=max(1, start - 2))
    plot_weight_shift(result.shift or {b.name: 0.0 for b in lab.blocks}, ax=axes[1], title="forgetting meter")
    fig.tight_layout()
    return fig


def _params_text(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


class FineTunePanel:
    """An ipywidgets panel driving a :class:`FineTuneLab`.

    Attributes used by tests: ``depth``, ``learning_rate``, ``epochs`` (the
    controls), ``train_button``, ``params_label``, ``status``, ``result`` (the
    last :class:`FineTuneResult`) and ``widget`` (the box to display).
    """

    def __init__(self, lab: FineTuneLab, depth: int = 3, learning_rate: float = 1e-4, epochs: int = 5):
        import ipywidgets as w

        self.lab = lab
        self.result: FineTuneResult | None = None
        self.error: Exception | None = None
        style = {"description_width": "90px"}
        self.depth = w.IntSlider(value=depth, min=0, max=lab.max_depth, step=1, description="unfreeze",
                                 continuous_update=True, style=style, layout=w.Layout(width="420px"))
        self.learning_rate = w.FloatLogSlider(value=learning_rate, base=10, min=-6, max=-1, step=0.25,
                                              description="learning rate", readout_format=".0e",
                                              style=style, layout=w.Layout(width="420px"))
        self.epochs = w.BoundedIntText(value=epochs, min=1, max=50, description="epochs",
                                       style=style, layout=w.Layout(width="180px"))
        self.train_button = w.Button(description="Train", button_style="primary", icon="play")
        self.test_button = w.Button(description="Check on test", icon="flag-checkered", disabled=True,
                                    tooltip="Look at the test set once, for the setting you finally pick")
        nowrap = w.Layout(width="auto", margin="0 0 0 98px")   # under the sliders, one line
        self.params_label = w.HTML(layout=nowrap)
        self.status = w.HTML()
        self.test_status = w.HTML(value="<i>Choose on validation; press <b>Check on test</b> once, "
                                        "for your final pick.</i>")
        self.output = w.Output()
        for widget, name in ((self.params_label, "params"), (self.status, "status"), (self.output, "output"),
                             (self.test_status, "test-status")):
            widget.add_class(f"tlcourse-panel-{name}")   # for the browser test and for styling
        self.depth.observe(self._on_depth, names="value")
        self.train_button.on_click(self._on_train)
        self.test_button.on_click(self._on_test)
        self._on_depth()
        self.widget = w.VBox([self.depth, self.params_label, self.learning_rate,
                              w.HBox([self.epochs, self.train_button, self.test_button]),
                              self.status, self.output, self.test_status])

    def _on_depth(self, change=None) -> None:
        d = self.depth.value
        self.params_label.value = (f"<span style='white-space:nowrap'><b>"
                                   f"{_params_text(self.lab.total_trainable_params(d))}</b> trainable params: "
                                   f"{self.lab.where(d)}</span>")

    def _on_train(self, button=None) -> None:
        self.train_button.disabled = True
        self.test_button.disabled = True
        self.error = None
        self.status.value = "training…"
        try:
            self.result = self.lab.train(self.depth.value, float(self.learning_rate.value),
                                         int(self.epochs.value))
            self.status.value = "<pre>" + self.lab.describe(self.result) + "</pre>"
            self.test_status.value = ("<i>Test accuracy hidden: choose on validation; press <b>Check on "
                                      "test</b> once, for your final pick.</i>")
            self._draw()
            self.test_button.disabled = False
        except Exception as error:  # show it in the panel; a lecture must not stop
            self.error = error
            self.status.value = f"<b style='color:#b00'>{type(error).__name__}: {error}</b>"
        finally:
            self.train_button.disabled = False

    def _on_test(self, button=None) -> None:
        if self.result is not None:
            self.test_status.value = f"<pre>{self.lab.describe_test(self.result)}</pre>"

    def _draw(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.output.clear_output(wait=True)
        with self.output:
            fig = example_figure(self.lab, self.result)
            display(fig)
            plt.close(fig)

    def _repr_mimebundle_(self, **kwargs):
        """The widget view, with a plain-text stand-in that says what it is (not ``VBox(...)``)."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = ("[fine-tuning panel: sliders 'unfreeze' and 'learning rate', a Train button; "
                                  "run the notebook to use it]")
        return bundle


def fine_tune_panel(lab: FineTuneLab, **kwargs) -> FineTunePanel:
    """Build the panel (see :class:`FineTunePanel`); display it as a cell's last line."""
    return FineTunePanel(lab, **kwargs)
