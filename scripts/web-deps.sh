#!/usr/bin/env bash
# Installs the web console's npm packages into web/node_modules from
# web/package-lock.json: noVNC (@novnc/novnc, served by 'roam serve' as ES
# modules) and playwright-core (the browser tests drive Debian's chromium with
# it; it downloads no browser). Needs node and npm (scripts/deps.sh web).
# Does nothing when node_modules matches the lock file already.
# Exit: 0 done, 3 npm or its registry unreachable (tests then skip), 1 other.
set -euo pipefail
WEB=$(cd "$(dirname "$0")/../web" && pwd)
command -v npm >/dev/null || { echo "web-deps: npm is missing (scripts/deps.sh web)" >&2; exit 3; }
stamp=$WEB/node_modules/.roam-lock.sha256
want=$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
   [ -f "$WEB/node_modules/@novnc/novnc/core/rfb.js" ] && [ -f "$WEB/node_modules/playwright-core/package.json" ]; then
        exit 0
fi
echo "web-deps: npm ci in $WEB" >&2
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core fetches nothing anyway; belt and braces
if ! (cd "$WEB" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts >/tmp/roam-npm.log 2>&1); then
        tail -n 15 /tmp/roam-npm.log >&2
        echo "web-deps: npm ci failed (log: /tmp/roam-npm.log)" >&2
        exit 3
fi
echo "$want" >"$stamp"
