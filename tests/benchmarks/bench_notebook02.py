"""Benchmark for notebook 02: how long one Train click takes, and the cached cut's speed-up.

Usage (repository root, course virtualenv):
    .venv/bin/python tests/benchmarks/bench_notebook02.py [--depths 1 2 3 5 8] [--epochs 4] [--repeats 3]

Prints, on notebook 02's data (clip art, 128 px, batch 32, 4 epochs, lr 1e-4), with
TensorFlow's kernels as in notebook 02 (oneDNN off; ``--fast-kernels``: on):
* the time of one click of the panel's Train button (the panel's own click handler, so the
  report and the figure it draws are included) at each depth: the first click at a depth
  (which computes the activations at the cut) and the median of the repeats (cut cached).
  Goals (issue 22): median <= 5 s at depth 3 and <= 10 s at depth 5 on an idle 2-core machine.
* the same fine tuning done naively (the full model, images through all 18 blocks in every
  step, as in notebook 02 section 2), built, compiled and fitted, side by side, and the ratio.
  Goal: >= 4x.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
import types

import tlcourse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 5, 8])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-depth", type=int, default=3)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive side-by-side")
    parser.add_argument("--fast-kernels", action="store_true",
                        help="TensorFlow with oneDNN (setup_course(fast_kernels=True), as notebooks 03 and 04)")
    args = parser.parse_args()

    settings = tlcourse.setup_course(seed=0, threads=2, fast_kernels=args.fast_kernels)
    import keras

    from tlcourse import backbones, data, training, widgets

    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores); oneDNN {settings['onednn']}")
    splits = data.load_dataset("clipart", image_size=128, as_numpy=True)
    (xtr, ytr), (xva, yva), (xte, yte) = splits.train, splits.val, splits.test
    k = len(splits.class_names)
    base = backbones.load_backbone("efficientnet_lite0", image_size=128)
    base.trainable = False
    feats = [training.extract_features(base, x).mean(axis=(1, 2)) for x in (xtr, xva)]
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((1280,)), keras.layers.Dropout(0.2), keras.layers.Dense(k)])
    head.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    head.fit(feats[0], ytr, validation_data=(feats[1], yva), epochs=40, verbose=0)
    fdata = training.FineTuneData(xtr, ytr, xva, yva, xte, yte, k)
    lab = widgets.FineTuneLab(base, head.layers[-1].get_weights(), fdata,
                              baseline=types.SimpleNamespace(history={}, test_accuracy=0.0))

    def naive_click(depth: int) -> float:
        t0 = time.perf_counter()
        pretrained = base.get_weights()
        top = {n for b in backbones.backbone_blocks(base)[-depth:] for n in b.layers}
        base.trainable = True   # notebook 02's unfreeze loop
        for layer in base.layers:
            layer.trainable = layer.name in top and not isinstance(layer, keras.layers.BatchNormalization)
        inputs = keras.Input((128, 128, 3))
        dense = keras.layers.Dense(k)
        out = dense(keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))))
        model = keras.Model(inputs, out)
        dense.set_weights(head.layers[-1].get_weights())
        model.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        model.fit(xtr, ytr, validation_data=(xva, yva), epochs=args.epochs, verbose=0)
        model.evaluate(xte, yte, verbose=0)
        seconds = time.perf_counter() - t0
        base.set_weights(pretrained)
        base.trainable = False
        return seconds

    panel = widgets.fine_tune_panel(lab, depth=3, learning_rate=1e-4, epochs=args.epochs)

    def click(depth: int) -> float:
        panel.depth.value = depth
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):   # outside a kernel, display() prints
            panel.train_button.click()   # the button's public click(): runs its handler
        seconds = time.perf_counter() - t0
        if panel.error is not None:
            raise panel.error
        return seconds

    print(f"\nTrain click, {args.epochs} epochs, lr 1e-4 (first click computes the cut; repeats reuse it)")
    medians = {}
    for depth in args.depths:
        first = click(depth)
        times = [click(depth) for _ in range(args.repeats)]
        medians[depth] = statistics.median(times)
        print(f"  depth {depth:2d}: first click {first:5.1f} s, median of {args.repeats} repeats "
              f"{medians[depth]:5.1f} s  (all: {', '.join(f'{t:.1f}' for t in times)}; load "
              f"{os.getloadavg()[0]:.2f})", flush=True)

    if args.no_naive:
        return
    d = args.naive_depth
    cached, naive = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both
        t0 = time.perf_counter()
        lab.train(d, 1e-4, args.epochs)
        cached.append(time.perf_counter() - t0)
        naive.append(naive_click(d))
    c, n = statistics.median(cached), statistics.median(naive)
    print(f"\ndepth {d}, side by side ({args.repeats} interleaved rounds):")
    print(f"  cached cut (a Train click): {c:5.1f} s")
    print(f"  naive, full forward pass:   {n:5.1f} s")
    print(f"  ratio: {n / c:.1f}x  (goal >= 4x)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
