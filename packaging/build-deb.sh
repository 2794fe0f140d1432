#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds provd's Debian packages from this source tree.
#
#   packaging/build-deb.sh [--nocheck] [--git REF] [--keep] [--lintian] OUTDIR
#
# dpkg-buildpackage wants debian/ at the top of the source tree, and the
# tree is shared, so this copies the sources to a scratch directory, puts
# packaging/debian there as debian/, runs `dpkg-buildpackage -us -uc -b`,
# and copies the .deb, .buildinfo and .changes files to OUTDIR.
#
#   --nocheck  skip the test suite (DEB_BUILD_OPTIONS=nocheck, profile nocheck)
#   --git REF  package the committed tree at REF instead of the working tree
#   --keep     keep the scratch directory (its path is printed)
#   --lintian  run lintian on the result; fail on any error or warning
#
# Needs dpkg-dev and debhelper (and lintian for --lintian), plus the
# Build-Depends of packaging/debian/control (dpkg-buildpackage lists what is
# missing; install it with: apt-get build-dep ./ from the scratch tree, or
# mk-build-deps).
set -euo pipefail

usage() { sed -n '4,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

nocheck=0 keep=0 lint=0 ref= outdir=
while [ $# -gt 0 ]; do
        case "$1" in
        --nocheck) nocheck=1 ;;
        --keep) keep=1 ;;
        --lintian) lint=1 ;;
        --git) [ $# -ge 2 ] || usage; ref=$2; shift ;;
        -h|--help) usage 0 ;;
        -*) echo "build-deb.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$outdir" ] || usage; outdir=$1 ;;
        esac
        shift
done
[ -n "$outdir" ] || usage

top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

tools=(dpkg-buildpackage dh dpkg-parsechangelog)
[ "$lint" -eq 0 ] || tools+=(lintian)
for tool in "${tools[@]}"; do
        if ! command -v "$tool" >/dev/null; then
                echo "build-deb.sh: $tool not found (apt-get install dpkg-dev debhelper lintian)" >&2
                exit 1
        fi
done

# The package version's upstream part must be the meson project version.
deb_version=$(dpkg-parsechangelog -l "$top/packaging/debian/changelog" -S Version)
upstream=${deb_version#*:}
upstream=${upstream%-*}
meson_version=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$top/meson.build" | head -n1)
if [ "$upstream" != "$meson_version" ]; then
        echo "build-deb.sh: packaging/debian/changelog is at $deb_version but meson.build says" \
             "version '$meson_version'; add a changelog entry (dch -v $meson_version-1)" >&2
        exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/provd-deb.XXXXXX")
if [ "$keep" -eq 1 ]; then
        echo "build-deb.sh: scratch directory $scratch"
else
        trap 'rm -rf "$scratch"' EXIT
fi
src=$scratch/provd-$upstream
mkdir "$src"

# Copy the sources: tracked and new (not ignored) files of the working tree,
# or the tree at REF. Never build directories or other checkouts' output.
if [ -n "$ref" ]; then
        git -C "$top" archive --format=tar "$ref" | tar -x -C "$src"
elif git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$top" && git ls-files -z --cached --others --exclude-standard |
                while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
                tar --null -T - -cf -) | tar -x -C "$src"
else
        tar -C "$top" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -x -C "$src"
fi
if [ ! -d "$src/packaging/debian" ]; then
        echo "build-deb.sh: no packaging/debian in the copied tree" >&2
        exit 1
fi
rm -rf "$src/debian"
cp -a "$src/packaging/debian" "$src/debian"

args=(-us -uc -b)
if [ "$nocheck" -eq 1 ]; then
        export DEB_BUILD_OPTIONS="nocheck${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}"
        args+=(-Pnocheck)
fi
echo "build-deb.sh: dpkg-buildpackage ${args[*]} in $src"
(cd "$src" && dpkg-buildpackage "${args[@]}")

shopt -s nullglob
built=("$scratch"/*.deb "$scratch"/*.buildinfo "$scratch"/*.changes)
if [ ${#built[@]} -eq 0 ]; then
        echo "build-deb.sh: dpkg-buildpackage produced no packages" >&2
        exit 1
fi
cp "${built[@]}" "$outdir"/
for f in "${built[@]}"; do
        echo "build-deb.sh: $outdir/$(basename "$f")"
done

# initial-upload-closes-no-bugs: provd is not uploaded to Debian, so there
# is no ITP bug for the changelog to close.
if [ "$lint" -eq 0 ]; then
        exit 0
fi
changes=("$outdir"/provd_"${deb_version#*:}"_*.changes)
echo "build-deb.sh: lintian ${changes[0]}"
lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs \
        --display-info "${changes[0]}"
echo "build-deb.sh: lintian: no errors or warnings"
