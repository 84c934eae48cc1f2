#!/usr/bin/env bash
# find-marker.sh MARKER DIR...: prints every file under DIR that holds
# MARKER, in its bytes or, for a zstd frame (a plain store's chunk), in what
# it decompresses to. Exit 0 when found, 1 when not.
set -uo pipefail
marker=$1; shift
found=1
while IFS= read -r -d '' f; do
        if grep -qaF -- "$marker" "$f" 2>/dev/null ||
                { [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' ')" = 28b52ffd ] &&
                        zstd -dcq -- "$f" 2>/dev/null | grep -qaF -- "$marker"; }; then
                printf '%s\n' "$f"
                found=0
        fi
done < <(find "$@" -type f -print0 2>/dev/null)
exit $found
