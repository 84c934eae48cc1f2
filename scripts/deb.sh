#!/usr/bin/env bash
# make deb: builds the Debian package from a copy of the source tree (the
# tracked files and new ones not ignored) with dpkg-buildpackage, then runs
# lintian on it, failing on any error. Leaves OUT/roam_VERSION_ARCH.deb.
# usage: scripts/deb.sh OUT
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: scripts/deb.sh OUT}
for c in dpkg-buildpackage dh lintian; do
        command -v $c >/dev/null || { echo "roam: make deb needs $c (scripts/deps.sh deb)" >&2; exit 1; }
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/src" "$OUT"/roam_* "$OUT"/roam-dbgsym_*
mkdir "$OUT/src"
cd "$SRC_DIR"
if git rev-parse --git-dir >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
                [ -e "$f" ] && printf '%s\0' "$f"
        done | grep -zv '^web/node_modules/' | tar --null -T - -cf - | tar -C "$OUT/src" -xf -
else
        tar --exclude='./build*' --exclude=./web/node_modules -cf - . | tar -C "$OUT/src" -xf -
fi
cd "$OUT/src"
echo "roam: dpkg-buildpackage in $OUT/src (log: $OUT/build.log)" >&2
if ! DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b >"$OUT/build.log" 2>&1; then
        tail -30 "$OUT/build.log" >&2
        echo "roam: dpkg-buildpackage failed (log: $OUT/build.log)" >&2
        exit 1
fi
deb=$(ls "$OUT"/roam_*.deb)
echo "roam: lintian $deb" >&2
lintian --fail-on error --suppress-tags-from-file /dev/null "$OUT"/roam_*.changes | tee "$OUT/lintian.log" >&2 || {
        echo "roam: lintian found errors in $deb (log: $OUT/lintian.log)" >&2
        exit 1
}
echo "$deb"
