"""Command line: ``python -m tlcourse doctor`` and ``python -m tlcourse prefetch``.

(``tlcourse doctor`` / ``tlcourse prefetch`` do the same via the console script.)

* ``doctor``: check the installation (Python, package versions, widgets
  extension, EfficientNet-Lite0 weights, embedded datasets, CPU/GPU,
  optional downloads); one line per check with the fix for each problem; exit
  status 1 when something is broken.
* ``compare``: run notebook 03's comparison (resumable) into its results file.
* ``prefetch``: check the packaged Lite0 weights and download VGG16's ImageNet
  weights (notebook 02's optional cell) now, for an offline classroom;
  ``--keras-home`` points at a shared folder. Exit status 1 when any item failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tlcourse",
        description="tlcourse command line: check the installation, run the comparison, "
        "prefetch VGG16's weights.")
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
        "prefetch", help="download VGG16's weights for an offline classroom",
        description="Check the packaged Lite0 weights and download VGG16's ImageNet weights "
        "(notebook 02's optional cell), checked by hash. With no names, both. "
        "Exit status 1 if any item failed.")
    pf.add_argument("items", nargs="*", metavar="NAME", help="efficientnet_lite0 and/or vgg16")
    pf.add_argument("--keras-home", metavar="DIR", default=None,
                    help="Keras folder; weights go to DIR/models (sets KERAS_HOME)")
    return p


def _size_mb(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1e6:.1f} MB"
    except OSError:
        return "?"


def prefetch(names: list[str], out=None) -> list[tuple[str, bool, str]]:
    """Fetch each item; return ``[(name, ok, path or reason)]``. Never raises for one item."""
    from tlcourse import backbones as bb

    out = out or sys.stdout
    results: list[tuple[str, bool, str]] = []
    for name in names:
        print(f"--> {name}", file=out, flush=True)
        try:
            path = bb.fetch_weights(name)
        except Exception as exc:  # noqa: BLE001 - report every failure, keep going
            reason = f"{type(exc).__name__}: {exc}"
            results.append((name, False, reason))
            print(f"FAILED  {name}\n" + _indent(reason), file=out, flush=True)
        else:
            results.append((name, True, str(path)))
            print(f"OK      {name}: {path} ({_size_mb(path)})", file=out, flush=True)
    return results


def _indent(text: str) -> str:
    return "\n".join("        " + line for line in str(text).splitlines())


def _run_prefetch(args, parser) -> int:
    from tlcourse.backbones import PREFETCHABLE

    unknown = [n for n in args.items if n not in PREFETCHABLE]
    if unknown:
        parser.error(f"unknown name {unknown[0]!r}; choose from {', '.join(PREFETCHABLE)}")
    if args.keras_home:
        os.environ["KERAS_HOME"] = str(Path(args.keras_home).expanduser().resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from tlcourse.backbones import keras_home

    # Keras's get_file falls back to /tmp/.keras when its cache folder does not
    # exist yet (not writable), so create it: the weights land where asked.
    (keras_home() / "models").mkdir(parents=True, exist_ok=True)

    print(f"Keras weights: {keras_home() / 'models'}  (KERAS_HOME)", flush=True)
    results = prefetch(list(dict.fromkeys(args.items)) or list(PREFETCHABLE))
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
