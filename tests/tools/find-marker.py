#!/usr/bin/env python3
"""find-marker.py MARKER DIR...: prints the files under DIR that hold MARKER,
in their bytes or, for a zstd frame (a plain store's chunk), in what it
decompresses to (zstd(1); the decompression stops at the first such hit).
Exit 0 when found, 1 when not."""
import os
import subprocess
import sys

marker = sys.argv[1].encode()
hits, frames = [], []
for top in sys.argv[2:]:
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if marker in data:
                hits.append(path)
            elif data[:4] == b"\x28\xb5\x2f\xfd":
                frames.append(path)
for path in frames:
    out = subprocess.run(["zstd", "-dcq", "--", path], capture_output=True).stdout
    if marker in out:
        hits.append(path + " (decompressed)")
        break
for h in hits:
    print(h)
sys.exit(0 if hits else 1)
