/* SPDX-License-Identifier: MIT */
#pragma once

/* Session routes of `roam serve` (docs/sync-protocol.md, "Sessions"):
 *
 *   GET  /v1/sessions                 {"sessions": [...]} (user tokens: their own only)
 *   GET  /v1/sessions/NAME            one session (404 for another user's)
 *   POST /v1/sessions/NAME/move-in    {"checkpoint": HEX, "epoch": N} (admin, host):
 *                                     become the owner at epoch N and run the
 *                                     checkpoint; 200 {"state": "running", ...} */

#include "../session/session.h"
#include "daemon.h"

/* Adds the routes to d; h is borrowed and must outlive the daemon's run. */
int api_session_register(Daemon *d, SessionHost *h);
