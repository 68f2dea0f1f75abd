#!/usr/bin/env bash
# Rebuild notebooks from their paired .py sources and execute them in place.
# Usage: tools/build_notebooks.sh [NN ...]   (default: every notebook)
# Run from the repository root with the course's virtualenv active (or PY=...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=($(ls notebooks/[0-9][0-9]_*.py | sed 's#notebooks/\([0-9][0-9]\)_.*#\1#'))
for n in "${names[@]}"; do
  src=$(ls notebooks/${n}_*.py)
  nb=${src%.py}.ipynb
  $PY -m jupytext --to ipynb --update "$src" -o "$nb" -q 2>/dev/null || $PY -m jupytext --to ipynb "$src" -o "$nb"
  start=$(date +%s)
  $PY -m jupyter nbconvert --to notebook --execute --inplace "$nb" --ExecutePreprocessor.timeout=900
  $PY tools/notebook_meta.py "$nb"
  echo "$nb executed in $(( $(date +%s) - start )) s"
done
