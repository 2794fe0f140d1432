#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs one test of a sanitizer build (-Db_sanitize=...): any ASan/UBSan/LSan report, from the test or from any process it starts, fails it.
#
#   run.sh REPORT_DIR SUPPRESSIONS COMMAND [ARGS...]
#
# The integration tests start provd, provctl and provd-boardsim and do not
# always look at how they exit (a daemon killed on purpose, a leak reported at
# the end of a refused start): so every process writes its report to
# REPORT_DIR/report.<pid> and this wrapper fails the test when one is there.
# The test's stdout (TAP) passes through untouched; reports go to stderr.
# (Build with clang, as .ci/run does: gcc 12's UBSan next to ASan ignores
# log_path and reports on the process's own stderr only.)
dir=$1
supp=$2
shift 2
mkdir -p "$dir" || exit 99
rm -f "$dir"/report.*

# halt_on_error: the first finding ends the process (with -fno-sanitize-recover=all
# UBSan does too). <program>.options next to this script adds options for one
# program (%b: the sanitizer runtime puts the program's name there).
here=$(cd "$(dirname "$0")" && pwd)
common="halt_on_error=1:abort_on_error=0:print_stacktrace=1:log_path=$dir/report"
export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:${ASAN_OPTIONS:+$ASAN_OPTIONS:}$common:include_if_exists=$here/%b.options"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}$common"
export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

"$@"
rc=$?

found=0
for f in "$dir"/report.*; do
        [ -e "$f" ] || continue
        found=1
        echo "=== sanitizer report $f" >&2
        cat "$f" >&2
done
if [ "$found" -ne 0 ]; then
        echo "sanitizer: reports above (kept in $dir)" >&2
        [ "$rc" -eq 0 ] && rc=1
fi
exit "$rc"
