"""Benchmark a learner's big folder: streamed vs in memory, peak memory and images per second.

Run by hand (not collected by pytest), from the repository root::

    nice -n 5 .venv/bin/python tests/benchmarks/bench_folder_stream.py
    nice -n 5 .venv/bin/python tests/benchmarks/bench_folder_stream.py --sizes 2000 20000 --paths stream

The script generates folders of 64-px JPEG pictures (10 classes; smooth random colour
fields, a few KB each, like small photos) in a temporary folder, which it deletes at the
end (nothing is committed); the smaller folders are hard links to the first pictures of the
biggest. For each folder size and path it starts a fresh Python process that loads the
frozen EfficientNet-Lite0 (``pooling="avg"``, 2 threads, as the notebooks run it) and
turns the whole folder into features:

* ``stream``: ``data.load_folder_features(folder, base)``, batch by batch through tf.data
  into the feature cache (issue 19);
* ``memory``: ``data.load_folder(folder, as_numpy=True)`` and then
  ``training.extract_features(base, x)`` for train and val, the course's in-memory path.

Each run has an empty feature cache of its own (``TLCOURSE_CACHE``). Reported per run:
pictures per second (the folder's pictures over the wall time of that call, backbone
loading excluded), the process's resident set after loading the backbone, and its peak
(``VmHWM``, Linux). Goal (issue 19): at 50,000 pictures the streamed process stays under
1.5 GiB and runs at no less than 80 % of the in-memory path's pictures per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GIB = 1024**3
CLASSES = 10

RUN = """
import json, os, sys, time, warnings
from tlcourse import config
config.setup_course(threads=2)
from tlcourse import backbones, data, training

def mem():
    v = {}
    for line in open("/proc/self/status"):
        k, _, rest = line.partition(":")
        if k in ("VmHWM", "VmRSS"):
            v[k] = int(rest.split()[0]) * 1024
    return v

path, folder, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = backbones.load_backbone(image_size=size, pooling="avg")
base.trainable = False
base(data.resize_images(__import__("numpy").zeros((1, size, size, 3), "uint8"), size))
after_load = mem()["VmRSS"]
warnings.simplefilter("ignore")
t = time.perf_counter()
if path == "stream":
    s = data.load_folder_features(folder, base, image_size=size)
    n = sum(s.counts.values())
else:
    s = data.load_folder(folder, image_size=size, as_numpy=True)
    feats = [training.extract_features(base, s.train[0]), training.extract_features(base, s.val[0])]
    n = sum(s.counts.values())
seconds = time.perf_counter() - t
print(json.dumps({"n": n, "seconds": seconds, "after_load": after_load, "peak": mem()["VmHWM"]}))
"""


def make_folder(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` JPEG pictures of ``size`` px in ``CLASSES`` class folders under ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        img.save(root / f"class_{i % CLASSES:02d}" / f"{i:06d}.jpg", quality=90)
    return root


def link_subset(big: Path, root: Path, n: int) -> Path:
    """A folder of the first ``n`` pictures of ``big`` (hard links: no copy)."""
    for d in sorted(big.iterdir()):
        (root / d.name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"class_{i % CLASSES:02d}/{i:06d}.jpg"
        os.link(big / name, root / name)
    return root


def run(path: str, folder: Path, size: int, cache: Path) -> dict:
    env = dict(os.environ, TLCOURSE_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TLCOURSE_FEATURE_CACHE_MB="100000")
    out = subprocess.run([sys.executable, "-c", RUN, path, str(folder), str(size)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{path} on {folder} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 50000])
    ap.add_argument("--paths", nargs="+", default=["stream", "memory"], choices=["stream", "memory"])
    ap.add_argument("--image-size", type=int, default=64, help="picture and model input size (px)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_folder_"))
    results = []
    try:
        t = time.perf_counter()
        big = make_folder(tmp / f"n{max(args.sizes)}", max(args.sizes), args.image_size)
        print(f"generated {max(args.sizes)} pictures of {args.image_size} px in {time.perf_counter() - t:.0f} s "
              f"({sum(f.stat().st_size for f in big.rglob('*.jpg')) / 1e6:.0f} MB)", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
        print(f"{'pictures':>9} {'path':>7} {'pictures/s':>11} {'seconds':>8} {'after load':>11} {'peak':>9}")
        for n in sorted(args.sizes):
            folder = big if n == max(args.sizes) else link_subset(big, tmp / f"n{n}", n)
            for path in args.paths:
                cache = tmp / f"cache_{path}_{n}"
                r = run(path, folder, args.image_size, cache)
                shutil.rmtree(cache, ignore_errors=True)
                r.update(pictures=n, path=path, per_second=r["n"] / r["seconds"],
                         load=os.getloadavg()[0])
                results.append(r)
                print(f"{n:>9} {path:>7} {r['per_second']:>11.0f} {r['seconds']:>8.1f} "
                      f"{r['after_load'] / GIB:>9.2f} G {r['peak'] / GIB:>7.2f} G  (load {r['load']:.1f})",
                      flush=True)
        for n in sorted(args.sizes):
            got = {r["path"]: r for r in results if r["pictures"] == n}
            if len(got) == 2:
                print(f"{n}: streamed at {got['stream']['per_second'] / got['memory']['per_second']:.0%} "
                      f"of the in-memory speed, peak {got['stream']['peak'] / GIB:.2f} vs "
                      f"{got['memory']['peak'] / GIB:.2f} GiB")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
