"""The fine-tuning panel of notebook 02: sliders for depth and learning rate.

The computation lives in :class:`FineTuneLab` (plain Python, called by tests
and by notebook 03); :class:`FineTunePanel` only wires ipywidgets to it.
"""

from __future__ import annotations

import numpy as np

from .training import FineTuneData, FineTuneResult, fine_tune, trainable_params_at_depth

__all__ = ["FineTuneLab", "FineTunePanel", "fine_tune_panel"]


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

    def describe(self, result: FineTuneResult) -> str:
        """A short text report of one run against the baseline."""
        lines = [result.summary(),
                 f"trained blocks: {', '.join(result.trained_blocks) or 'none (head only)'}",
                 f"trainable parameters: {result.trainable_params:,}",
                 f"time: {result.seconds + result.cache_seconds:.1f} s (training {result.seconds:.1f} s, "
                 f"activations at the cut {result.cache_seconds:.1f} s)"]
        base_acc = getattr(self.baseline, "test_accuracy", None)
        if base_acc is not None:
            delta = result.test_accuracy - base_acc
            lines.append(f"feature-extraction baseline test accuracy {base_acc:.3f} "
                         f"({'+' if delta >= 0 else ''}{delta:.3f})")
        return "\n".join(lines)


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
        self.depth = w.IntSlider(value=depth, min=0, max=lab.max_depth, step=1, description="unfreeze",
                                 continuous_update=True, style={"description_width": "90px"},
                                 layout=w.Layout(width="420px"))
        self.learning_rate = w.FloatLogSlider(value=learning_rate, base=10, min=-6, max=-1, step=0.25,
                                              description="learning rate", readout_format=".0e",
                                              style={"description_width": "90px"},
                                              layout=w.Layout(width="420px"))
        self.epochs = w.BoundedIntText(value=epochs, min=1, max=50, description="epochs",
                                       style={"description_width": "90px"}, layout=w.Layout(width="180px"))
        self.train_button = w.Button(description="Train", button_style="primary", icon="play")
        self.params_label = w.HTML()
        self.status = w.HTML()
        self.output = w.Output()
        self.depth.observe(self._on_depth, names="value")
        self.train_button.on_click(self._on_train)
        self._on_depth()
        self.widget = w.VBox([w.HBox([self.depth, self.params_label]), self.learning_rate,
                              w.HBox([self.epochs, self.train_button]), self.status, self.output])

    def _on_depth(self, change=None) -> None:
        d = self.depth.value
        names = self.lab.blocks_at_depth(d)
        if d == 0:
            where = "feature extraction: only the classifier trains"
        else:
            span = names[0] if d == 1 else f"{names[0]} … {names[-1]}"
            where = f"{d} block{'s' if d != 1 else ''} of the base ({span}) + the classifier"
        self.params_label.value = (f"<b>{_params_text(self.lab.total_trainable_params(d))}</b> trainable "
                                   f"params: {where}")

    def _on_train(self, button=None) -> None:
        self.train_button.disabled = True
        self.error = None
        self.status.value = "training…"
        try:
            self.result = self.lab.train(self.depth.value, float(self.learning_rate.value),
                                         int(self.epochs.value))
            self.status.value = "<pre>" + self.lab.describe(self.result) + "</pre>"
            self._draw()
        except Exception as error:  # show it in the panel; a lecture must not stop
            self.error = error
            self.status.value = f"<b style='color:#b00'>{type(error).__name__}: {error}</b>"
        finally:
            self.train_button.disabled = False

    def _draw(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        from .plots import plot_history, plot_weight_shift

        r = self.result
        self.output.clear_output(wait=True)
        with self.output:
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 1.4]})
            curves = {}
            if self.lab.baseline is not None:
                curves["feature extraction"] = self.lab.baseline
            start = len(getattr(self.lab.baseline, "history", {}).get("val_accuracy", [])) \
                if self.lab.baseline is not None else 0
            curves[f"depth {r.blocks}, lr {r.learning_rate:.0e}"] = (r.history, start)
            plot_history(curves, ax=axes[0], title="validation accuracy")
            plot_weight_shift(r.shift or {b.name: 0.0 for b in self.lab.blocks}, ax=axes[1])
            fig.tight_layout()
            display(fig)
            plt.close(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def fine_tune_panel(lab: FineTuneLab, **kwargs) -> FineTunePanel:
    """Build the panel (see :class:`FineTunePanel`); display it as a cell's last line."""
    return FineTunePanel(lab, **kwargs)
