/* SPDX-License-Identifier: MIT */
#pragma once

/* Session routes of `roam serve` (docs/sync-protocol.md, "Sessions"):
 *
 *   GET  /v1/sessions                 {"sessions": [...]} (user tokens: their own only)
 *   GET  /v1/sessions/NAME            one session (404 for another user's)
 *   POST /v1/sessions/NAME/move-in    {"checkpoint": HEX, "epoch": N, "from_epoch": N?}
 *                                     (admin, host; a user for a session here):
 *                                     become the owner at epoch N and run the
 *                                     checkpoint; 200 {"state": "running", ...}
 *   POST /v1/sessions/NAME/precopy?rate=B  fuzzy snapshot for a laptop to pull;
 *                                     records the offline readiness
 *   POST /v1/sessions/NAME/offline    signed by a paired laptop (api-laptop.h):
 *                                     pause, final checkpoint, owner :=
 *                                     "laptop:ID" at epoch+1; 200 {"checkpoint",
 *                                     "user", "epoch", "lease_until", "laptop"}
 *   POST /v1/sessions/NAME/renew      signed by the laptop that holds it: a new
 *                                     lease; 200 {"lease_until"}
 *   POST /v1/sessions/NAME/finalize-in, /stage  (see the handlers)
 *   POST /v1/sync-files               a laptop's take-online sync file as the body
 *                                     (sync-file.h): 200 {"session", "epoch", "state"};
 *                                     a refused file: 4xx naming the check
 * Users reach only their own sessions (404 otherwise). A session offline on
 * a laptop is handed back (move-in, finalize-in, stage, renew) only by a
 * request signed by that laptop: 403 unsigned or revoked, 409 another laptop. */

#include "../session/session.h"

/* the largest sync file POST /v1/sync-files takes (larger ones: 'roam session apply-sync' on the server) */
#define API_SYNC_FILE_MAX ((size_t) 256 << 20)
/* A take offline's answer with its remainder: the grant as one line of JSON,
 * then a pack (docs/sync-protocol.md); the grant is at most this long */
#define API_GRANT_PACK_TYPE "application/x-roam-grant-pack"
#define API_GRANT_LINE_MAX 4096
#include "api-laptop.h"
#include "daemon.h"

/* A session in the API (GET /v1/sessions, the console's event stream):
 * name, user, image, state, owner, epoch, checkpoints, RAM, and for a session
 * a laptop holds "laptop" (laptop_holder_json()), else null. */
json_t *session_api_json(Catalog *c, const SessionInfo *i);

/* The body of a hand-over (move-in, finalize-in), parsed from at most the
 * route's body limit: {"checkpoint": HEX, "epoch": N >= 1, "from_epoch":
 * N >= 0 (optional unless need_from)}. from_epoch is -1 when absent.
 * -EBADMSG for anything else. Pure; fuzzed (tests/fuzz/fuzz-handover.c). */
typedef struct Handover {
        char checkpoint[ID_HEX_SIZE];
        int64_t epoch, from_epoch;
} Handover;
int parse_handover(const void *body, size_t len, bool need_from, Handover *ret);

/* A move-in that brings its remainder (docs/sync-protocol.md, "Move-in with
 * the remainder"): the hand-over as one line of JSON (at most
 * API_GRANT_LINE_MAX bytes, parse_handover() plus "ref": the staging ref
 * sessions/USER/NAME/in-eEPOCH of session name at that epoch, and "bases": N
 * when the upload starts with N base ids), then "\n" and an upload as
 * pack/put takes it. Without a newline
 * the body is the hand-over alone (*ret_upload NULL). Pure; fuzzed
 * (tests/fuzz/fuzz-handover.c). */
typedef struct MoveIn {
        Handover ho;
        char ref[REF_NAME_MAX_LEN + 1]; /* "" without an upload */
        unsigned bases;                 /* 0..PAGE_CHUNK_MAX_BASES */
        const uint8_t *upload;          /* into body, or NULL */
        size_t upload_len;
} MoveIn;
int parse_move_in(const void *body, size_t len, const char *name, MoveIn *ret);

/* Adds the routes to d; h and laptops are borrowed and must outlive the
 * daemon's run. lease_s: how long a laptop may keep a session offline
 * without renewing (0 = no limit). */
int api_session_register(Daemon *d, SessionHost *h, int64_t lease_s, ApiLaptop *laptops, bool stream_grant);

/* A fleet member's front door (api-fleet-laptop.c): the routes above ask it
 * first about a session, so that a laptop paired with the fleet reaches
 * every session through the member it talks to.
 *   route: 1 = it answered (a session elsewhere in the fleet, or offline on
 *          a laptop), 0 = this host's own: go on here, < 0 an errno;
 *          action "" for GET /v1/sessions/NAME; lease_s as registered
 *   list:  the sessions of GET /v1/sessions: takes local (this host's
 *          list, already filtered for the token) and returns the fleet's
 * GET /v1/sessions?local=1 and GET /v1/sessions/NAME?local=1 skip it (what
 * members ask each other). NULL unsets. */
typedef struct ApiSessionFleet {
        int (*route)(void *userdata, HttpRequest *req, const char *name, const char *action, int64_t lease_s);
        json_t *(*list)(void *userdata, HttpRequest *req, json_t *local);
        void *userdata;
} ApiSessionFleet;
void api_session_set_fleet(const ApiSessionFleet *f);
