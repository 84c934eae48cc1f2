/* SPDX-License-Identifier: MIT */
#pragma once

/* The web console of `roam serve` (both roles) and the routes it needs
 * beyond the session API (web/README.md):
 *
 *   GET  /                                 web/index.html          (no token)
 *   GET  /console/FILE                     web/FILE (app.js, ...)  (no token)
 *   GET  /novnc/core/..., /novnc/vendor/...  noVNC's ES modules      (no token)
 *   GET  /v1/events                        server-sent events: "sessions" with
 *                                          {"sessions": [...]} (the token's
 *                                          view, as GET /v1/sessions without
 *                                          readiness) at once, then on change
 *                                          (checked every second); a comment
 *                                          line every 10 s keeps it open
 *   GET  /v1/console/sessions/NAME/vnc     WebSocket (RFC 6455, binary frames)
 *                                          bridged to the session's VNC socket;
 *                                          with "Upgrade: roam-vnc" instead, a
 *                                          raw byte stream to it (no frames:
 *                                          roam session connect)
 *   POST /v1/console/sessions/NAME/ACTION  start, stop, pause, resume,
 *                                          checkpoint (the session's user,
 *                                          admin, host); reclaim, and move
 *                                          {"url", "token"} (admin, host)
 *
 * Static files carry no data and need no token (HTTP_ROUTE_PUBLIC); every
 * other route has the authentication of the API, and a user token reaches
 * only its user's sessions (404 for the others, as GET /v1/sessions/NAME).
 * A browser cannot set headers on a WebSocket or an EventSource, so those two
 * routes (and only those) also take the token as ?access_token=
 * (HTTP_ROUTE_QUERY_TOKEN); the console keeps it in sessionStorage.
 *
 * Files: the first directory that holds index.html of $ROAM_WEB_DIR,
 * <binary's dir>/../web (a build directory in the source tree: build/roam ->
 * web/), <binary's dir>/../share/roam/web and /usr/share/roam/web; noVNC is
 * <that dir>/node_modules/@novnc/novnc (scripts/web-deps.sh installs it). */

#include "../session/session.h"
#include "daemon.h"

/* The Upgrade token of the desktop's raw byte stream. */
#define VNC_RAW_PROTOCOL "roam-vnc"

/* Adds the routes to d; h is borrowed and must outlive the daemon's run. A
 * missing web directory is no error: / then answers 404 with what to do. */
int api_console_register(Daemon *d, SessionHost *h);
