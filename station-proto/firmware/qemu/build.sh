#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the QEMU reference board image: mbedTLS from Debian's source package (fetched once, cached), the board library through firmware/Makefile, the port.
#
# Usage: build.sh OUTDIR
#   OUTDIR/provd-qemu-board.elf    the image (qemu-system-arm -M mps2-an385 -kernel ...)
#   OUTDIR/mbedtls/                the unpacked source and its build, kept between runs
#
# mbedTLS comes from `apt-get source mbedtls` with a private APT configuration
# (a deb-src entry for bookworm under OUTDIR/apt): no change to the system's
# sources, no root needed; APT checks the package against the signed Debian
# archive (debian-archive-keyring) as for any download. Exit 77 when it cannot
# be fetched (offline), so the test that uses the image is skipped, not failed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
cc=arm-none-eabi-gcc
ar=arm-none-eabi-ar
cpu="-mcpu=cortex-m3 -mthumb"
command -v $cc >/dev/null 2>&1 || { echo "build.sh: $cc not installed (scripts/deps.sh)"; exit 77; }

mb=$out/mbedtls
if [ ! -f "$mb/src/include/mbedtls/ecdsa.h" ]; then
        apt=$out/apt
        mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc" "$mb"
        echo "deb-src http://deb.debian.org/debian bookworm main" > "$apt/etc/sources.list"
        set -- -o Dir::Etc::SourceList="$apt/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
               -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Sandbox::User="$(id -un)" \
               -o Debug::NoLocking=1
        if ! apt-get "$@" -qq update >"$apt/log" 2>&1 ||
           ! (cd "$mb" && apt-get "$@" -qq source mbedtls >>"$apt/log" 2>&1); then
                echo "build.sh: cannot fetch mbedtls with apt-get source (offline?):"
                tail -5 "$apt/log"
                exit 77
        fi
        rm -rf "$mb/src"
        mv "$(find "$mb" -maxdepth 1 -type d -name 'mbedtls-*' | head -1)" "$mb/src"
fi

cflags="$cpu -Os -g -ffunction-sections -fdata-sections"
mbflags="$cflags -I$mb/src/include -DMBEDTLS_CONFIG_FILE=\"$here/mbedtls-config.h\""
# Rebuilt when the configuration changes (its hash names the archive).
sum=$(cat "$here/mbedtls-config.h" "$0" | sha256sum | cut -c1-16)
lib=$mb/libmbedcrypto-$sum.a
if [ ! -f "$lib" ]; then
        rm -rf "$mb/obj"
        mkdir -p "$mb/obj"
        for f in "$mb"/src/library/*.c; do
                # shellcheck disable=SC2086
                $cc $mbflags -c "$f" -o "$mb/obj/$(basename "${f%.c}").o"
        done
        rm -f "$mb"/libmbedcrypto-*.a
        $ar rcs "$lib.tmp" "$mb"/obj/*.o
        mv "$lib.tmp" "$lib"
fi

# The board library the way a firmware project gets it: firmware/Makefile, public include folder only.
make -s -C "$here/.." CC=$cc AR=$ar CFLAGS="$cflags -Werror" O="$out/spb"

# shellcheck disable=SC2086
$cc $mbflags -std=c99 -Wall -Wextra -Werror -I"$here/../../include" \
        -c "$here/main.c" -o "$out/main.o"
# shellcheck disable=SC2086
$cc $cflags -std=c99 -Wall -Wextra -Werror -c "$here/startup.c" -o "$out/startup.o"
# shellcheck disable=SC2086
$cc $cpu -T "$here/link.ld" -nostartfiles --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections \
        -Wl,-Map="$out/provd-qemu-board.map" -o "$out/provd-qemu-board.elf" \
        "$out/startup.o" "$out/main.o" "$out/spb/libstation-proto-board.a" "$lib"
arm-none-eabi-size "$out/provd-qemu-board.elf"
