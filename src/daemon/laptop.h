/* SPDX-License-Identifier: MIT */
#pragma once

/* The laptop side of the portable session (`roam serve --role laptop
 * --server URL --token T`), docs/handoff.md:
 *
 *  - a worker that, while the server is reachable, hoards the master images of
 *    the user's sessions and pulls a fresh pre-copy of each running one (RAM
 *    and overlay, taken by the server without pausing), so that take offline
 *    has little left to move; for sessions that run here it checkpoints them
 *    locally (a restart brings them back from there) and pre-copies them back
 *    to the server;
 *  - at start, sessions owned here whose QEMU is gone are restored from their
 *    latest local checkpoint (if their offline lease allows);
 *  - routes for the local CLI (admin/host tokens):
 *      POST /v1/handoff/offline {"session"}  take it offline (server -> here)
 *      POST /v1/handoff/online  {"session"}  take it online (here -> server)
 *      GET  /v1/handoff                      readiness of every session */

#include <stdint.h>

#include "../session/session.h"
#include "daemon.h"
#include "hoard.h"

typedef struct LaptopOptions {
        const char *server_url;
        const char *token;         /* the user's token on the server */
        const char *cacert;        /* for https servers (unused once pinned) */
        const char *fingerprint;   /* the server certificate's to pin; NULL = the token's, else
                                      the one pinned at pairing (laptop-identity.h) */
        const char *name;          /* this laptop's display name; NULL = host name (its identity
                                      is its key: laptop-identity.h) */
        double precopy_interval_s; /* 0 = 5 */
        double checkpoint_interval_s; /* local checkpoints of sessions running here; 0 = 30 */
        uint64_t precopy_rate;     /* bytes/s cap of background pre-copy per connection; 0 = none */
        bool no_precopy;           /* pair and hoard, but pre-copy nothing (for comparisons) */
        bool no_grant_pack;        /* the remainder in a round trip of its own: take offline pulls it
                                      after the grant, take online pushes it before the move-in
                                      (for comparisons) */
        bool no_stream_pack;       /* store the remainder with the grant once all of it came,
                                      not while it comes; send a take online's once all of it
                                      is packed, not while it is (for comparisons) */
} LaptopOptions;

int laptop_register(Daemon *d, SessionHost *h, Hoard *hoard, const LaptopOptions *o);
/* A laptop daemon with no --server (it hoards what it is asked): GET
 * /v1/handoff answers {"server": null, "sessions": []}, a hand-over says
 * there is no server. */
int laptop_register_without_server(Daemon *d);
