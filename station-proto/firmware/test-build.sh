#!/bin/sh
# SPDX-License-Identifier: MIT
# A firmware project's view of the board library: CMake (add_subdirectory) and the plain Makefile build it, an application that sees only station-proto/include links against it.
# Usage: test-build.sh FIRMWARE_DIR
set -eu
fw=$(cd "$1" && pwd)
for t in cmake make arm-none-eabi-gcc avr-gcc; do
        command -v $t >/dev/null 2>&1 || { echo "FAILED: $t not installed (scripts/deps.sh installs it)"; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The application: a board with its callbacks, nothing but the public header.
mkdir -p "$out/app"
cat > "$out/app/app.c" <<'C'
#include "station-proto/sp-board.h"

static int identify(void *c, struct spb_identity *r) { (void)c; (void)r; return SP_ERR_INTERNAL; }
static int get_csr(void *c, bool k, const char *cn, size_t n, uint8_t *d, size_t cap, size_t *l) {
        (void)c; (void)k; (void)cn; (void)n; (void)d; (void)cap; (void)l; return SPB_PENDING;
}
static int store_certs(void *c, const struct spb_certs *x) { (void)c; (void)x; return 0; }
static int store_config(void *c, const char *k, size_t kl, const uint8_t *v, size_t vl) {
        (void)c; (void)k; (void)kl; (void)v; (void)vl; return 0;
}
static int prove(void *c, const uint8_t n[SP_NONCE_LEN], uint8_t h[SP_SHA256_LEN], uint8_t s[SP_SIG_LEN]) {
        (void)c; (void)n; (void)h; (void)s; return SPB_PENDING;
}
static void write_out(void *c, const uint8_t *b, size_t n) { (void)c; (void)b; (void)n; }
static const struct spb_ops ops = { .identify = identify, .get_csr = get_csr, .store_certs = store_certs,
                                    .store_config = store_config, .prove = prove, .write = write_out };
static struct spb_board b;
static uint8_t rx[SPB_RX_BUF(1024)], tx[SPB_TX_MIN], work[SPB_WORK_BUF(300)];

int main(void) {
        static const uint8_t junk[] = { 0, 1, 2, 0 };

        if (spb_init(&b, &ops, 0, rx, sizeof rx, tx, sizeof tx, work, sizeof work) != SPB_OK)
                return 1;
        spb_feed(&b, junk, sizeof junk);
        return spb_pending(&b) ? 2 : spb_complete(&b, 0, 0) == SPB_E_INVAL ? 0 : 3;
}
C
cat > "$out/app/CMakeLists.txt" <<C
cmake_minimum_required(VERSION 3.13)
project(app C)
add_subdirectory($fw station-proto)
add_executable(app app.c)
target_link_libraries(app PRIVATE station-proto-board)
C
flags="-mcpu=cortex-m0plus -mthumb -Os -Wall -Wextra -Werror -pedantic"
echo "cmake: arm-none-eabi-gcc $flags"
cmake -S "$out/app" -B "$out/cmake" -DCMAKE_SYSTEM_NAME=Generic -DCMAKE_C_COMPILER=arm-none-eabi-gcc \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="--specs=nosys.specs -Wl,--gc-sections" \
      -DCMAKE_C_STANDARD=99 -DSPB_CRC_SMALL=ON >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; exit 1; }
cmake --build "$out/cmake" -- VERBOSE=1 >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
if grep -E 'warning|-I[^ ]*station-proto( |$)|-I[^ ]*station-proto/firmware/\.\.( |$)' "$out/build.log"; then
        echo "FAILED: a warning, or the source folder (sp-core.h) on the include path"
        exit 1
fi
grep -q 'SPC_CRC_SMALL' "$out/build.log" || { echo "FAILED: SPB_CRC_SMALL not passed"; exit 1; }
arm-none-eabi-size "$out/cmake/app"

echo "make: avr-gcc -mmcu=avrxmega3"
make -s -C "$fw" CC=avr-gcc AR=avr-ar CFLAGS="-mmcu=avrxmega3 -Os -Werror" O="$out/avr" >"$out/make.log" 2>&1 ||
        { cat "$out/make.log"; echo "FAILED: make"; exit 1; }
[ -s "$out/make.log" ] && { cat "$out/make.log"; echo "FAILED: output from make"; exit 1; }
avr-size -t "$out/avr/libstation-proto-board.a" | tail -1
echo "ok: the board library builds into a firmware project from station-proto/include alone"
