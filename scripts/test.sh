#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test suite
# except 'slow' benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ ! -f build/build.ninja ]; then
        meson setup build -Dwerror=true
fi
ninja -C build
meson test -C build --no-suite slow --print-errorlogs --num-processes 2
