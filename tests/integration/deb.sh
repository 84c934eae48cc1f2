#!/usr/bin/env bash
# make deb: the Debian package builds with dpkg-buildpackage, lintian finds
# no errors, its Depends cover every library the binary links, and, unpacked
# into an empty root with only those libraries, it runs: roam --version,
# a store command, serve --print-config.
. "$(dirname "$0")/../lib.sh"

requires dpkg-buildpackage
requires dh
requires lintian
requires objdump
requires chroot
requires jq

"$SRC_DIR/scripts/deb.sh" "$T/deb" >"$T/deb.out" 2>"$T/deb.err" || { tail -20 "$T/deb.err" >&2; fail "make deb failed"; }
deb=$(tail -1 "$T/deb.out")
[ -f "$deb" ] || fail "scripts/deb.sh named no package: $deb"
log "built $deb"
version=$(sed -n "s/^  version : '\\([^']*\\)',\$/\\1/p" "$SRC_DIR/meson.build")
[ -n "$version" ] || fail "no version in meson.build"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "package version $(dpkg-deb -f "$deb" Version) is not meson's $version"
grep -q '^E:' "$T/deb/lintian.log" && fail "lintian errors: $(grep '^E:' "$T/deb/lintian.log")"

ROOT=$T/root
dpkg -x "$deb" "$ROOT"
for f in usr/bin/roam usr/share/man/man1/roam.1.gz usr/share/man/man1/roam-session.1.gz lib/systemd/system/roam.service \
        lib/systemd/system/roam-laptop.service usr/share/bash-completion/completions/roam; do
        [ -e "$ROOT/$f" ] || fail "the package lacks /$f"
done
grep -qx "ExecStart=/usr/bin/roam serve --role server" "$ROOT/lib/systemd/system/roam.service" ||
        fail "the packaged roam.service does not run /usr/bin/roam"

# every library the binary needs comes from a package it depends on
depends=$(dpkg-deb -f "$deb" Depends)
for soname in $(objdump -p "$ROOT/usr/bin/roam" | awk '$1 == "NEEDED" { print $2 }'); do
        path=$(ldd "$ROOT/usr/bin/roam" | awk -v s="$soname" '$1 == s { p = $3 } index($1, "/" s) { p = $1 } END { print p }')
        [ -n "$path" ] || fail "ldd does not resolve $soname"
        pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || true)
        pkg=$(sed -n '1s/:.*//p' <<<"$pkg")
        [ -n "$pkg" ] || fail "no package owns $path ($soname)"
        [[ ",$depends" =~ [,\ ]$pkg[\ ,] || ",$depends" =~ [,\ ]$pkg\ \( || ",$depends," =~ [,\ ]$pkg, ]] ||
                fail "roam needs $soname from $pkg, which is not in Depends: $depends"
done

# an otherwise empty root: the package and the libraries it links, nothing of the build tree
for lib in $(ldd "$ROOT/usr/bin/roam" | awk '/=>/ { print $3 } !/=>/ && /^\t\// { print $1 }'); do
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
done
mkdir -p "$ROOT/tmp" "$ROOT/etc"
in_root() {
        if [ "$(id -u)" = 0 ]; then
                chroot "$ROOT" "$@"
        else
                requires unshare
                unshare -r chroot "$ROOT" "$@"
        fi
}
must_succeed in_root /usr/bin/roam --version
[ "$OUT" = "roam $version" ] || fail "roam --version in the package's root says '$OUT', not 'roam $version'"
must_succeed in_root /usr/bin/roam --home /tmp/h store init
must_succeed in_root /usr/bin/roam --home /tmp/h image list --json
[ "$(jq -c . <<<"$OUT")" = '{"images":[]}' ] || fail "image list --json in the root: $OUT"
must_succeed in_root /usr/bin/roam --home /tmp/h serve --print-config
expect_match "$OUT" '^# listen = 127\.0\.0\.1:7450$' "serve --print-config in the root"
