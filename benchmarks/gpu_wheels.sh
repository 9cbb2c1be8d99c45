#!/usr/bin/env bash
# Wheels for the GPU machine (no network there; Python 3.12 x86-64): what sweep needs beyond the
# machine's image (netCDF4 and cftime), into .whl/ (ignored by git; carry it with the device tool).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
for pkg in netCDF4 cftime; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg"
done
ls -la .whl
