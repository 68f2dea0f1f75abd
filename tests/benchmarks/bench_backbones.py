"""Benchmark the default backbone: weight check + conversion, load, forward speed.

Run by hand (not collected by pytest)::

    python tests/benchmarks/bench_backbones.py [--sizes 96 128 160 224] [--batches 5]

Prints: the time to check (SHA-256) and convert the packaged weights (done on
every load: there is no cache), the time of load_backbone, and forward images/second of EfficientNet-Lite0 (include_top=False) at each
size, batch 32, with the course's 2 threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160, 224])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=5, help="timed batches per size")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from tlcourse.config import setup_course

    info = setup_course(threads=args.threads)
    import numpy as np

    from tlcourse import backbones as B

    print(f"tensorflow {info['tensorflow']}, keras {info['keras']}, threads {info['threads']}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus")

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        B.fetch_weights()  # checks the SHA-256 and converts, as load_backbone does
        times.append(time.perf_counter() - t0)
    print(f"Lite0 weights: check + convert .pth {min(times):.3f}-{max(times):.3f} s (3 runs)")

    B.load_backbone(image_size=64, weights=None)  # pay Keras/TF start-up costs once
    t0 = time.perf_counter()
    B.load_backbone(image_size=128)
    print(f"load_backbone(image_size=128): {time.perf_counter() - t0:.2f} s")

    rng = np.random.default_rng(0)
    print(f"forward, include_top=False, batch {args.batch}, {args.batches} timed batches:")
    for size in args.sizes:
        model = B.load_backbone(image_size=size)
        x = rng.uniform(0, 255, (args.batch, size, size, 3)).astype("float32")
        model.predict_on_batch(x)  # build / trace
        model.predict_on_batch(x)
        t0 = time.perf_counter()
        for _ in range(args.batches):
            model.predict_on_batch(x)
        dt = time.perf_counter() - t0
        print(f"  {size:4d} px: {args.batch * args.batches / dt:7.1f} images/s "
              f"({dt / args.batches * 1000:.0f} ms/batch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
