#!/usr/bin/env bash
# make install DESTDIR=...: the binary, a man page for roam and one for every
# verb group (made from the verb tables, covering every verb), bash and zsh
# completion that complete from roam's own help, and the systemd units.
. "$(dirname "$0")/../lib.sh"

requires make
requires meson
requires groff
ROOT=$T/root
make -s -C "$SRC_DIR" install BUILD="$BUILD_DIR" DESTDIR="$ROOT" >"$T/install.log" 2>&1 ||
        { cat "$T/install.log" >&2; fail "make install failed"; }
P=$ROOT/usr/local
for f in bin/roam share/man/man1/roam.1 share/bash-completion/completions/roam share/zsh/vendor-completions/_roam \
        lib/systemd/system/roam.service lib/systemd/system/roam-laptop.service share/doc/roam/roam.conf.example \
        share/roam/web/index.html; do
        [ -f "$P/$f" ] || fail "make install did not lay out $f"
done
[ -x "$P/bin/roam" ] || fail "the installed roam is not executable"
must_succeed "$P/bin/roam" --version
expect_match "$OUT" '^roam [0-9]+\.[0-9]+\.[0-9]+$' "roam --version"

# every verb group of 'roam --help' has its page, and every verb is in a page
groups=$("$P/bin/roam" --help | awk '/^Commands:/ { c = 1; next } c && / COMMAND \.\.\./ { print $1 }')
[ -n "$groups" ] || fail "roam --help lists no verb groups"
for g in $groups; do
        page=$P/share/man/man1/roam-$g.1
        [ -f "$page" ] || fail "no man page roam-$g.1 for verb group '$g'"
        for v in $("$P/bin/roam" "$g" --help | awk '/^Commands:/ { c = 1; next } c && /^  [a-z]/ { print $1 }'); do
                # (roff writes a hyphen as \-)
                grep -qF ".SS \"roam $g ${v//-/\\-}" "$page" || fail "roam-$g.1 lacks 'roam $g $v'"
        done
done
n_pages=$(ls "$P/share/man/man1" | wc -l)
[ "$n_pages" = $(($(wc -w <<<"$groups") + 1)) ] || fail "expected roam.1 and one page per group, got $n_pages pages"
for v in $("$P/bin/roam" --help | awk '/^Commands:/ { c = 1; next } c && /^  [a-z]/ && !/ COMMAND \.\.\./ { print $1 }'); do
        grep -qF ".SS \"roam ${v//-/\\-}" "$P/share/man/man1/roam.1" || fail "roam.1 lacks 'roam $v'"
done
# the pages hold the help text itself (one source)
grep -q 'Lists the images in the store' "$P/share/man/man1/roam-image.1" || fail "roam-image.1 lacks the help text"
for page in "$P"/share/man/man1/*.1; do
        w=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "groff failed on $page: $w"
        [ -z "$w" ] || fail "groff warns about $(basename "$page"): $w"
done

# the units run the installed binary
grep -qx "ExecStart=/usr/local/bin/roam serve --role server" "$P/lib/systemd/system/roam.service" ||
        fail "roam.service does not run /usr/local/bin/roam serve"
grep -qx "ExecStart=/usr/local/bin/roam serve --role laptop" "$P/lib/systemd/system/roam-laptop.service" ||
        fail "roam-laptop.service does not run /usr/local/bin/roam serve --role laptop"
# the example config is one roam serve takes
must_succeed "$P/bin/roam" --home "$T/h" serve --config "$P/share/doc/roam/roam.conf.example" --print-config
expect_match "$OUT" '^# listen = ' "--print-config of the example"

# bash completion, from the installed roam's help
complete_words() { # WORDS...: what bash completes for the last one
        (
                PATH=$P/bin:$PATH
                . "$P/share/bash-completion/completions/roam"
                COMP_WORDS=("$@")
                COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
                _roam
                echo "${COMPREPLY[*]}"
        )
}
expect_match "$(complete_words roam im)" '^image$' "completion of 'roam im'"
expect_match "$(complete_words roam --home /x image "")" '^import export list show rm$' "completion of 'roam image'"
expect_match "$(complete_words roam serve --print-c)" '^--print-config$' "completion of 'roam serve --print-c'"
expect_match "$(complete_words roam --log-level w)" '^warning$' "completion of '--log-level w'"
if command -v zsh >/dev/null; then
        zsh -n "$P/share/zsh/vendor-completions/_roam" || fail "_roam is not valid zsh"
fi
log "installed: $(cd "$ROOT" && find . -type f | sort | tr '\n' ' ')"
