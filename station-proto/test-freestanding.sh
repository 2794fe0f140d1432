#!/bin/sh
# SPDX-License-Identifier: MIT
# Proves the board library builds for a microcontroller: every board source
# compiles with `cc -std=c99 -ffreestanding -Wall -Wextra -Werror -c` with
# only the public include folder on the include path, and the
# board sources and the headers they use include no system header beyond
# <stdint.h> <stddef.h> <stdbool.h> <string.h>.
# Usage: test-freestanding.sh SRCDIR CC [CC-ARGS...]
set -eu
src=$1
shift
cd "$src"
board_files="board.c crc.c cobs.c tlv.c frame.c sha256.c"
headers="sp-core.h include/station-proto/sp-board.h include/station-proto/sp-wire.h"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
for f in $board_files; do
        if "$@" -std=c99 -ffreestanding -Wall -Wextra -Werror -pedantic -Iinclude -c "$f" -o "$out/${f%.c}.o"; then
                echo "ok: $* -std=c99 -ffreestanding -Wall -Wextra -Werror -pedantic -c $f"
        else
                echo "FAILED: $f"
                fail=1
        fi
done
# The small CRC (bytewise table only) for boards short of flash.
if "$@" -std=c99 -ffreestanding -Wall -Wextra -Werror -pedantic -DSPC_CRC_SMALL -Iinclude -c crc.c -o "$out/crc-small.o"; then
        echo "ok: crc.c with -DSPC_CRC_SMALL"
else
        echo "FAILED: crc.c with -DSPC_CRC_SMALL"
        fail=1
fi
for f in $board_files $headers; do
        bad=$(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*<' "$f" |
              grep -vE '<(stdint|stddef|stdbool|string)\.h>' || true)
        if [ -n "$bad" ]; then
                echo "FAILED: $f includes a header a freestanding board may not have: $bad"
                fail=1
        fi
        bad=$(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
              grep -vE '"(sp-core\.h|sp-wire\.h|station-proto/sp-wire\.h|station-proto/sp-board\.h)"' || true)
        if [ -n "$bad" ]; then
                echo "FAILED: $f includes a project header outside the board set: $bad"
                fail=1
        fi
done
# No calls into libc beyond string.h (and no heap): check the objects' undefined symbols.
if command -v nm >/dev/null 2>&1; then
        undef=$(nm -u "$out"/*.o | awk 'NF == 2 && $1 == "U" {print $2}' | grep -vE '^(spc_|spb_)' |
                grep -vE '^(memchr|memcpy|memmove|memset|memcmp|strlen)$' | sort -u || true)
        if [ -n "$undef" ]; then
                echo "FAILED: board objects call outside the core and <string.h>: $undef"
                fail=1
        fi
fi
[ "$fail" -eq 0 ] && echo "board library is freestanding C99"
exit "$fail"
