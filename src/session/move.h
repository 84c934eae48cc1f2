/* SPDX-License-Identifier: MIT */
#pragma once

/* Moving a running session to another roam host (`roam session move`):
 *
 *   source                                   target (roam serve)
 *   checkpoint (guest keeps running)  ──push──▶ chunks, ref in-eE+1 (pre-copy)
 *   checkpoint + quit QEMU (paused)   ──push──▶ only what changed
 *   POST /v1/sessions/NAME/move-in {checkpoint, epoch e+1} ──▶ restore, cont
 *                                     ◀── 200 {"state": "running"}
 *   owner := target URL, epoch e+1 (the source never runs it again)
 *
 * The guest is paused from the final checkpoint until the target answers: the
 * downtime. If anything fails after the source's QEMU ended, the source
 * restores its own final checkpoint and stays the owner: one owner at a time,
 * never none. */

#include <stdbool.h>
#include <stdint.h>

#include "../sync/sync.h"
#include "session.h"

typedef struct SessionMoveOptions {
        bool no_precopy;       /* skip the pre-copy round */
        unsigned parallel;     /* push requests in flight (0 = default) */
        const char *owner_url; /* recorded as the new owner; NULL = the remote's URL */
        const char *token;     /* the remote's token, kept in the hand-over marker so that a
                                  restarted daemon can ask the target how the move ended */
        bool no_remainder_with_move_in; /* push the remainder, then move in: two round trips
                                           while paused (a lever to compare with) */
        bool no_stream_remainder;  /* make the remainder whole before the move-in goes (a lever
                                      to compare with; else it is sent while it is made) */
} SessionMoveOptions;

typedef struct SessionMoveResult {
        int64_t epoch;              /* the new epoch */
        RoamId checkpoint;          /* the final checkpoint */
        uint64_t downtime_ns;       /* guest paused on the source -> target confirmed running */
        uint64_t total_ns;
        uint64_t precopy_wire_bytes;/* bytes on the wire before the pause */
        uint64_t final_wire_bytes;  /* bytes on the wire while paused */
        uint64_t final_chunks;      /* chunks sent while paused */
        uint64_t final_paged;       /* ... of them as their changed pages (src/sync/pages.h) */
        uint64_t final_deltas;      /* objects after the pause as deltas (src/sync/obj-delta.h) */
        bool remainder_with_move_in;/* they went in the move-in's request (one round trip) */
        uint64_t target_restore_ns; /* as the target measured it */
        uint64_t final_checkpoint_ns; /* of the downtime: the final checkpoint here */
        SessionCheckpointResult final_ck; /* ... its parts */
        uint64_t remainder_ns;        /* ... what the target lacks, made ready to send (streamed:
                                         the plan and the pack's head, before its first byte) */
        uint64_t remainder_made_ns;   /* streamed: from the plan to the last record made */
        bool remainder_streamed;      /* the remainder went while it was made */
        bool target_ram_staged;     /* the target had the pre-copy's RAM staged */
        bool target_warm;           /* ... and its QEMU waiting on it (warm.c) */
} SessionMoveResult;

int session_move(SessionHost *h, const char *name, Remote *r, const SessionMoveOptions *o, SessionMoveResult *ret);

/* The target's side, used by the daemon's move-in route: makes this host the
 * owner of session name at epoch and restores checkpoint hex. Refuses
 * (-ESTALE) an epoch not newer than the one it knows, and a sender whose
 * from_epoch (>= 0; -1 = unchecked) is not the epoch this host recorded for
 * the current owner: a laptop coming back after a reclaim. */
int session_move_in(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, int64_t from_epoch,
                    SessionRestoreResult *ret);
