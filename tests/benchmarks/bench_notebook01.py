"""Benchmark notebook 01: cached-feature head vs frozen base in the loop, and seed spread.

Run by hand (not collected by pytest), from the repository root::

    .venv/bin/python tests/benchmarks/bench_notebook01.py [--rounds 3] [--seeds 0 1 2 3 4]

In one process, on the notebook's images (clip art, 128 px, read with
``data.load_dataset``, so in another order than the notebook's
``image_dataset_from_directory``), batch 32, and the notebook's head
(Dropout 0.2 + Dense logits, Adam 1e-3), it prints:

1. Per-epoch wall time (``tlcourse.training.EpochTimer``, median) of three ways
   to train the same head, interleaved round by round so machine noise hits all
   of them:

   - ``cached``: the head on features cached once from the frozen base (section 4);
   - ``base+aug``: augmentation -> frozen base -> head, end to end (section 5);
   - ``base``: frozen base -> head, no augmentation (the honest comparison:
     the base's forward pass, not the augmentation, is what caching saves).

   Every epoch includes the validation pass, as in the notebook. Each model is
   traced by a 1-epoch warm-up fit that is not timed. Goal: base+aug / cached >= 20x.
2. The test accuracy of the notebook's cached-feature head (40 epochs) for each
   seed (``keras.utils.set_random_seed(seed)`` before building the head), and
   min/max. The notebook asserts > 0.70 (its stored value is one seed, in its own order).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime

GOAL_RATIO = 20.0
NOTEBOOK_FLOOR = 0.70


def load_avg() -> str:
    return "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--cached-epochs", type=int, default=20, help="timed epochs per round, cached head")
    ap.add_argument("--base-epochs", type=int, default=4, help="timed epochs per round, base in the loop")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--head-epochs", type=int, default=40, help="epochs of the seed runs (notebook: 40)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import tlcourse

    info = tlcourse.setup_course(seed=0, threads=args.threads)

    import keras
    import numpy as np

    from tlcourse import backbones, data, training

    print(f"bench_notebook01  {datetime.now():%Y-%m-%d %H:%M}  tensorflow {info['tensorflow']}, "
          f"keras {info['keras']}, threads {info['threads']}, {os.cpu_count()} cpus, "
          f"{platform.machine()}")
    print(f"load average at start: {load_avg()}")

    # --- the notebook's images (the files notebook 01 reads, as NumPy arrays) ---------------
    image_size = 128
    splits = data.load_dataset("clipart", image_size=image_size, as_numpy=True)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits.train, splits.val, splits.test
    num_classes = splits.num_classes
    print(f"clipart {image_size} px: train {len(x_train)}, val {len(x_val)}, test {len(x_test)}, "
          f"{num_classes} classes")

    # --- the frozen base and its cached features, sections 3-4 -------------------------
    base = backbones.load_backbone("efficientnet_lite0", image_size=image_size, pooling="avg")
    base.trainable = False
    t0 = time.perf_counter()
    f_train = base.predict(x_train, batch_size=64, verbose=0)
    f_val = base.predict(x_val, batch_size=64, verbose=0)
    f_test = base.predict(x_test, batch_size=64, verbose=0)
    print(f"feature extraction once (train+val+test, incl. tracing): {time.perf_counter() - t0:.1f} s")

    def make_head():
        return keras.Sequential([keras.Input((f_train.shape[1],)), keras.layers.Dropout(0.2),
                                 keras.layers.Dense(num_classes)], name="head")

    def compiled(model):
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def end_to_end(augment: bool):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((image_size, image_size, 3))
        x = data.augmentation(seed=0)(inputs) if augment else inputs
        x = base(x, training=False)
        return compiled(keras.Model(inputs, make_head()(x)))

    keras.utils.set_random_seed(0)
    configs = {
        "cached": (compiled(make_head()), (f_train, y_train), (f_val, y_val), args.cached_epochs),
        "base+aug": (end_to_end(True), (x_train, y_train), (x_val, y_val), args.base_epochs),
        "base": (end_to_end(False), (x_train, y_train), (x_val, y_val), args.base_epochs),
    }

    # --- 1. per-epoch time, interleaved ---------------------------------------------------
    times: dict[str, list[float]] = {k: [] for k in configs}
    for model, (x, y), val, _ in configs.values():  # warm-up: trace train/val functions
        model.fit(x, y, validation_data=val, epochs=1, batch_size=32, verbose=0)
    for r in range(args.rounds):
        line = []
        for name, (model, (x, y), val, epochs) in configs.items():
            timer = training.EpochTimer()
            model.fit(x, y, validation_data=val, epochs=epochs, batch_size=32, verbose=0,
                      callbacks=[timer])
            times[name] += timer.times
            line.append(f"{name} {1000 * timer.median:.0f} ms")
        print(f"round {r + 1}/{args.rounds} (median epoch): " + ", ".join(line)
              + f"   [load {load_avg()}]")

    med = {k: statistics.median(v) for k, v in times.items()}
    print("\nper-epoch wall time, median over all timed epochs (with validation pass, batch 32):")
    for name, v in times.items():
        print(f"  {name:9s} {1000 * med[name]:8.1f} ms   (n={len(v)}, min {1000 * min(v):.1f}, "
              f"max {1000 * max(v):.1f})")
    ratio_aug = med["base+aug"] / med["cached"]
    ratio_plain = med["base"] / med["cached"]
    print(f"ratio base+aug / cached: {ratio_aug:6.1f}x   (goal >= {GOAL_RATIO:.0f}x: "
          f"{'met' if ratio_aug >= GOAL_RATIO else 'NOT met'})")
    print(f"ratio base     / cached: {ratio_plain:6.1f}x   (no augmentation)")
    print(f"augmentation's share of an end-to-end epoch: "
          f"{100 * (med['base+aug'] - med['base']) / med['base+aug']:.0f} %")

    # --- 2. seed spread of the notebook's cached-feature head -------------------------------
    if args.seeds:
        print(f"\ncached-feature head, {args.head_epochs} epochs, Adam 1e-3, test accuracy by seed "
              f"({len(y_test)} test images):")
        accs = []
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            head = compiled(make_head())
            head.fit(f_train, y_train, validation_data=(f_val, y_val), epochs=args.head_epochs,
                     batch_size=32, verbose=0)
            pred = np.argmax(head.predict(f_test, verbose=0), axis=1)
            accs.append(float(np.mean(pred == y_test)))
            print(f"  seed {seed}: {accs[-1]:.3f}")
        print(f"min {min(accs):.3f}, max {max(accs):.3f}, mean {np.mean(accs):.3f} "
              f"(notebook floor {NOTEBOOK_FLOOR:.2f}: "
              f"{'all above' if min(accs) > NOTEBOOK_FLOOR else 'NOT all above'})")

    print(f"\nload average at end: {load_avg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
