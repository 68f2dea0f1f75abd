"""Command line: ``python -m tlcourse doctor`` and ``python -m tlcourse prefetch``.

(``tlcourse doctor`` / ``tlcourse prefetch`` do the same via the console script.)

* ``doctor``: check the installation (Python, package versions, widgets
  extension, EfficientNet-Lite0 weights, embedded datasets, CPU/GPU,
  optional downloads); one line per check with the fix for each problem; exit
  status 1 when something is broken.
* ``prefetch``: download the optional online extras (Keras backbones' ImageNet
  weights, the EuroSAT and PneumoniaMNIST datasets) now, for an offline
  classroom; ``--cache`` and ``--keras-home`` point at a shared folder. Exit
  status 1 when any item failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

#: Input sizes the notebooks use for the keras.applications backbones (no top).
DEFAULT_IMAGE_SIZES = (128,)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tlcourse",
        description="tlcourse command line: check the installation, prefetch downloads.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("doctor", help="check the installation; exit status 1 if broken",
                   description="Check the installation: one line per check (OK/INFO/WARN/"
                   "FAIL) with the command that fixes each problem.")
    cp = sub.add_parser(
        "compare", help="run notebook 03's comparison (resumable) into its results file",
        description="Run every run of the comparison's design that the results file does not hold yet, "
        "appending one JSON line per run. Killed and restarted, it continues where it stopped.")
    cp.add_argument("datasets", nargs="*", metavar="DATASET", help="datasets to run (default: all three)")
    cp.add_argument("--results", metavar="FILE", default=None,
                    help="results file (default: notebooks/results/comparison.jsonl)")
    cp.add_argument("--limit", type=int, default=None, help="stop after this many new runs")
    cp.add_argument("--no-progress", action="store_true", help="no progress bars")
    pf = sub.add_parser(
        "prefetch", help="download the online extras for an offline classroom",
        description="Download the optional online extras now: Keras backbone weights "
        "(include_top=False) and the registry datasets, each checked by hash. With no "
        "names, everything. Exit status 1 if any item failed.")
    pf.add_argument("items", nargs="*", metavar="NAME",
                    help="backbones or datasets to fetch (e.g. vgg16 eurosat)")
    pf.add_argument("--backbones", nargs="+", metavar="NAME", default=None,
                    help="backbones to fetch (default: all, unless names are given)")
    pf.add_argument("--datasets", nargs="+", metavar="NAME", default=None,
                    help="datasets to fetch (default: all, unless names are given)")
    pf.add_argument("--image-size", nargs="+", type=int, metavar="PX",
                    default=list(DEFAULT_IMAGE_SIZES),
                    help="input sizes for the backbones (MobileNetV2 has one file per "
                    "size); default: 128, what the notebooks use")
    pf.add_argument("--cache", metavar="DIR", default=None,
                    help="course cache folder (sets TLCOURSE_CACHE), e.g. a shared folder")
    pf.add_argument("--keras-home", metavar="DIR", default=None,
                    help="Keras folder; weights go to DIR/models (sets KERAS_HOME)")
    pf.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _resolve(args, parser) -> tuple[list[str], list[str]]:
    """The backbones and datasets to fetch, in a stable order; errors exit with 2."""
    from tlcourse.backbones import list_backbones
    from tlcourse.config import check_image_size
    from tlcourse.data import REMOTE

    known_b, known_d = list_backbones(), list(REMOTE)
    backbones = list(args.backbones or [])
    datasets = list(args.datasets or [])
    for item in args.items:
        if item in known_b:
            backbones.append(item)
        elif item in known_d:
            datasets.append(item)
        else:
            parser.error(f"unknown name {item!r}; backbones: {', '.join(known_b)}; "
                         f"datasets: {', '.join(known_d)}")
    for name in backbones:
        if name not in known_b:
            parser.error(f"unknown backbone {name!r}; known: {', '.join(known_b)}")
    for name in datasets:
        if name not in known_d:
            parser.error(f"unknown dataset {name!r}; known: {', '.join(known_d)}")
    if args.backbones is None and args.datasets is None and not args.items:
        backbones, datasets = known_b, known_d
    for size in args.image_size:
        try:
            check_image_size(size)
        except ValueError as exc:
            parser.error(f"--image-size: {exc}")
    return list(dict.fromkeys(backbones)), list(dict.fromkeys(datasets))


def _size_mb(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1e6:.1f} MB"
    except OSError:
        return "?"


def prefetch(backbones: list[str], datasets: list[str], image_sizes=DEFAULT_IMAGE_SIZES,
             progress: bool = True, out=None) -> list[tuple[str, bool, str]]:
    """Fetch each item; return ``[(label, ok, path or reason)]``. Never raises for one item."""
    from tlcourse import backbones as bb
    from tlcourse import data

    out = out or sys.stdout
    results: list[tuple[str, bool, str]] = []

    def record(label, func):
        print(f"--> {label}", file=out, flush=True)
        try:
            path = Path(func())
        except Exception as exc:  # noqa: BLE001 - report every failure, keep going
            reason = f"{type(exc).__name__}: {exc}"
            results.append((label, False, reason))
            print(f"FAILED  {label}\n" + _indent(reason), file=out, flush=True)
        else:
            results.append((label, True, str(path)))
            print(f"OK      {label}: {path} ({_size_mb(path)})", file=out, flush=True)

    for name in backbones:
        if name == bb.DEFAULT_BACKBONE:
            record(f"{name} (packaged weights, checked)",
                   lambda: bb.fetch_weights(name))
            continue
        seen = set()
        for size in image_sizes:
            fname = bb.keras_weights_file(name, size, False)[0]
            if fname in seen:
                continue
            seen.add(fname)
            label = f"{name} weights {fname}"
            record(label, lambda name=name, size=size: bb.fetch_weights(name, size, False))
    for name in datasets:
        rf = data.REMOTE[name]
        record(f"{name} dataset {rf.filename} (~{rf.approx_mb:.0f} MB)",
               lambda name=name: data.prefetch([name], progress=progress)[name])
    return results


def _indent(text: str) -> str:
    return "\n".join("        " + line for line in str(text).splitlines())


def _run_prefetch(args, parser) -> int:
    if args.cache:
        os.environ["TLCOURSE_CACHE"] = str(Path(args.cache).expanduser().resolve())
    if args.keras_home:
        os.environ["KERAS_HOME"] = str(Path(args.keras_home).expanduser().resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    backbones, datasets = _resolve(args, parser)
    from tlcourse.backbones import keras_home
    from tlcourse.config import cache_dir

    # Keras's get_file falls back to /tmp/.keras when its cache folder does not
    # exist yet (not writable), so create it: the weights land where asked.
    (keras_home() / "models").mkdir(parents=True, exist_ok=True)

    print(f"course cache: {cache_dir()}  (TLCOURSE_CACHE)\n"
          f"Keras weights: {keras_home() / 'models'}  (KERAS_HOME)", flush=True)
    results = prefetch(backbones, datasets, args.image_size, progress=not args.no_progress)
    failed = [r for r in results if not r[1]]
    print(f"\nprefetch: {len(results) - len(failed)} OK, {len(failed)} FAILED", flush=True)
    for label, _ok, _reason in failed:
        print(f"  FAILED: {label}", flush=True)
    if failed:
        print("Check the network (or a proxy), then run the same command again: items "
              "already fetched are not downloaded twice.", flush=True)
    return 1 if failed else 0


def _compare(args, parser) -> int:
    """``compare``: the comparison's design, run where the results file stops."""
    import time

    from tlcourse import setup_course

    setup_course(seed=0, fast_kernels=True)
    from tlcourse import experiments

    unknown = [d for d in args.datasets if d not in experiments.DESIGN]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}; choose from {', '.join(experiments.DESIGN)}")
    t0 = time.perf_counter()
    n = experiments.run_plan(tuple(args.datasets) or tuple(experiments.DESIGN), args.results,
                             progress=not args.no_progress, limit=args.limit)
    print(f"{n} new runs in {time.perf_counter() - t0:.0f} s; results: "
          f"{args.results or experiments.default_results_path()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tlcourse`` and the ``tlcourse`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from tlcourse import doctor

        return doctor.main()
    if args.command == "compare":
        return _compare(args, parser)
    return _run_prefetch(args, parser)


if __name__ == "__main__":
    sys.exit(main())
