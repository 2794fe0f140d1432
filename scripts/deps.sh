#!/usr/bin/env bash
# Installs every Debian 12 package provd needs to build, test and run its demo.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      libssl-dev openssl libuv1-dev libserialport-dev libsqlite3-dev sqlite3
      libcjson-dev libcurl4-openssl-dev libinih-dev libcmocka-dev
      libp11-dev libp11-kit-dev softhsm2 opensc libsystemd-dev systemd
      python3 python3-botocore python3-cryptography
      gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-avr avr-libc binutils-avr
      sdcc qemu-system-arm cmake make dpkg-dev awscli
      groff-base man-db)
missing=()
for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
                echo "deps.sh: missing packages (run as root to install): ${missing[*]}" >&2
                exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
