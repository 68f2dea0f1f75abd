"""Benchmark: the fine-tune click's fit with the old PyDataset shuffler vs ``training.seeded_batches``.

Usage (repository root, course virtualenv):
    .venv/bin/python tests/benchmarks/bench_shuffler.py [--depth 3] [--epochs 4] [--rounds 3]

The old ``ShuffledBatches`` (a ``keras.utils.PyDataset`` that reshuffled in
``on_epoch_end``) is re-declared here, as it was, only to time it. On notebook 02's
data (clip art, 128 px, batch 32, lr 1e-4), both feed the same compiled
fine-tuning model (restored to its start by ``training.compiled_model`` before
every fit), interleaved for ``--rounds`` rounds so machine noise hits both.
Prints each fit's seconds, the medians and their ratio, and whether two fits
with the same seed gave the same weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import tlcourse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tlcourse.setup_course(seed=0, threads=2)
    import keras

    from tlcourse import backbones, data, training

    class ShuffledBatches(keras.utils.PyDataset):  # the old shuffler, for timing only
        def __init__(self, x, y, batch_size=32, seed=0):
            super().__init__()
            self.x, self.y, self.batch_size = x, np.asarray(y), batch_size
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self):
            return -(-len(self.x) // self.batch_size)

        def __getitem__(self, i):
            idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
            return self.x[idx], self.y[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.x))

    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    s = data.load_dataset("clipart", image_size=128, as_numpy=True)
    base = backbones.load_backbone("efficientnet_lite0", image_size=128)
    fd = training.FineTuneData(*s.train, *s.val, *s.test, s.num_classes)
    acts = training.cut_activations(base, args.depth, fd)

    def model():
        return training.compiled_model(
            ("bench", args.depth), lambda: training.build_fine_tune_model(base, args.depth, s.num_classes,
                                                                           acts[0].shape[1:])[0], 1e-4, owner=base)

    def fit(kind):
        m = model()
        t0 = time.perf_counter()
        if kind == "PyDataset (old)":
            m.fit(ShuffledBatches(acts[0], fd.y_train, 32, 0), validation_data=(acts[1], fd.y_val),
                  epochs=args.epochs, verbose=0)
        else:
            train, steps = training.seeded_batches(acts[0], fd.y_train, 32, 0, args.epochs)
            m.fit(train, steps_per_epoch=steps, validation_data=(acts[1], fd.y_val), epochs=args.epochs,
                  verbose=0, shuffle=False)
        return time.perf_counter() - t0, [w.copy() for w in m.get_weights()]

    kinds = ("PyDataset (old)", "seeded_batches (new)")
    for kind in kinds:
        fit(kind)  # warm-up: tracing
    times: dict = {k: [] for k in kinds}
    weights: dict = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds:
            sec, w = fit(kind)
            times[kind].append(sec)
            weights[kind].append(w)
            print(f"round {r}  {kind:22s} {sec:6.2f} s")
    for kind in kinds:
        same = all(all(np.array_equal(a, b) for a, b in zip(weights[kind][0], w)) for w in weights[kind][1:])
        print(f"{kind:22s} median {statistics.median(times[kind]):.2f} s; same weights every round: {same}")
    ratio = statistics.median(times[kinds[1]]) / statistics.median(times[kinds[0]])
    print(f"new / old: {ratio:.2f}x   load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
