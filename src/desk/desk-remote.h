/* SPDX-License-Identifier: MIT */
#pragma once

/* Desks between roam hosts (desk.h, "between hosts"), over HTTP:
 *
 *   desk_send()   this host gives its desk to the daemon at r (another
 *                 server's terminal server; a laptop taking a desk online):
 *                 lend, push the checkpoint as desk-in/USER, POST
 *                 /v1/desks/USER/receive there. A refusal (any answer but
 *                 200) gives the desk back here; only a request that got no
 *                 answer leaves it lent (run it again: the far side knows a
 *                 retry).
 *   desk_fetch()  this host takes the desk from the daemon at r (a laptop
 *                 taking a desk offline): checks the layers here first, POST
 *                 /v1/desks/USER/lend there, pull the checkpoint as
 *                 desk-in/USER, receive it here. A failure after the lend
 *                 gives it back there (POST .../unlend). */

#include "desk.h"

struct Remote;

typedef struct DeskTransfer {
        bool suspended;          /* the desk ran and was suspended first */
        DeskMoveStats suspend;   /* that suspend's figures */
        RoamId checkpoint;       /* what moved */
        uint64_t wire_bytes;     /* on the wire, both ways */
        uint64_t chunks_sent;    /* chunks that had to move (the rest was there) */
        uint64_t chunks_total;
        uint64_t sync_ms;        /* the push or pull */
        bool resumed;            /* it runs on ts now */
        char ts[NAME_MAX_LEN + 1];
        uint64_t pid;            /* its init there, when told */
        uint64_t resume_ms;      /* the resume there (desk_resume()'s total) */
        char resume_error[512];  /* received but not resumed: why (empty: no server named) */
        uint64_t total_ms;
} DeskTransfer;

/* on: the terminal server there (NULL: the one it left from when it comes
 * back, else it stays suspended there). */
int desk_send(SessionHost *h, const char *user, struct Remote *r, const char *on, DeskTransfer *ret);
/* label: what the server records as where the desk went ("laptop NAME");
 * on: the terminal server here (NULL: the only running one). */
int desk_fetch(SessionHost *h, const char *user, struct Remote *r, const char *label, const char *on,
               DeskTransfer *ret);
