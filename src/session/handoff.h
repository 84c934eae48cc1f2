/* SPDX-License-Identifier: MIT */
#pragma once

/* The portable session: pre-copy, take offline, take online, reclaim, lease
 * (docs/handoff.md). This file holds the host-side operations; the daemons
 * (src/daemon/api-session.c on the server, src/daemon/laptop.c on the laptop)
 * drive them over HTTP.
 *
 * Ownership: exactly one host owns a session at each epoch. The server hands
 * a session to a laptop in one step (pause, final checkpoint, QEMU ends, owner
 * := the laptop at epoch+1, all before it answers), so a crash on either side
 * at any point leaves one owner: the server until that step, the laptop after
 * it. A laptop that asks again gets the same grant (idempotent). Coming back
 * goes through session_move()/session_move_in() with from_epoch checked, so a
 * stale laptop is refused and its state is kept under its staging ref. */

#include <stdint.h>

#include "session.h"

typedef struct PrecopyResult {
        RoamId id;              /* the precopy manifest */
        uint64_t chunks;        /* chunks of RAM + overlay */
        uint64_t new_chunks;    /* not in the store before: what changed since the last pre-copy */
        uint64_t new_stored;    /* their compressed size: roughly what a click would still send */
        uint64_t ns;
} PrecopyResult;

/* Offline readiness: the predicted take-offline downtime is this fixed part
 * (request and grant, the server's final checkpoint while paused, the
 * laptop's restore from its staged RAM; measured on the test guest over the
 * emulated WAN, docs/benchmarks.md) plus the remainder's bytes at the link's
 * rate. */
#define HANDOFF_OFFLINE_FIXED_S 0.5
/* A hand-over's remainder is stored and then restored: for at most this
 * long, the chunks stored are kept in memory for the restore (store_keep_fresh()) */
#define HANDOFF_FRESH_S 60

/* A fuzzy snapshot of a running session, taken without pausing it: the RAM
 * file and the overlay are imported as they are at this moment into the store
 * under sessions/USER/NAME/precopy. Receivers pull it in the background, so
 * that the final checkpoint later has little left to send. */
int handoff_precopy(SessionHost *h, const char *name, PrecopyResult *ret);

typedef struct OfflineGrant {
        RoamId checkpoint;
        int64_t epoch;        /* the holder's epoch */
        int64_t lease_until;  /* unix time; 0 = no limit */
        uint64_t pause_ns;    /* how long the server needed while paused */
        bool again;           /* the holder had it already (a repeated request) */
        SessionCheckpointResult ck; /* the final checkpoint's figures */
} OfflineGrant;

/* Server side of "take offline": pauses the session, takes the final
 * checkpoint, ends QEMU and records holder (e.g. "laptop:NAME") as owner at
 * epoch+1, with a lease of lease_s seconds (0 = none). A second request by
 * the same holder answers the same grant. */
int handoff_grant_offline(SessionHost *h, const char *name, const char *holder, int64_t lease_s,
                          OfflineGrant *ret);

typedef struct ReclaimResult {
        RoamId checkpoint;
        int64_t epoch;
        char *lost_owner;       /* who had it; caller frees */
        int64_t checkpoint_age; /* seconds between that checkpoint and now */
} ReclaimResult;

/* Admin, for a lost laptop: this host takes the session back at epoch+1 from
 * the latest checkpoint it holds and runs it. The result says how old that
 * checkpoint is (the work the lost owner did after it is not here). */
int handoff_reclaim(SessionHost *h, const char *name, ReclaimResult *ret);

typedef struct FinalizeInResult {
        bool adopted;                       /* the session is this host's now (even if the log-off failed) */
        SessionFinalizeResult finalize;     /* the log-off and the policy */
        SessionCheckpointResult checkpoint; /* of the result */
} FinalizeInResult;

/* Server side of a powered-off take online (by network or by file): a
 * laptop hands back checkpoint_hex (a disk delta) of session name, from
 * from_epoch, the epoch this host recorded when it gave the session away;
 * this host adopts it at epoch (> from_epoch), boots it for the guest's
 * log-off, applies the policy and checkpoints the result. -ESTALE for any
 * other from_epoch (the laptop's state stays as that checkpoint);
 * from_epoch -1: the caller checked the hand-over (a fleet's transaction),
 * and a session unknown here is adopted. A crash
 * from the adoption on is settled by handoff_recover() (marker "finalize"). */
int handoff_finalize_in(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch,
                        int64_t from_epoch, FinalizeInResult *ret);

/* Lease of an offline session: stored beside the session as
 * $ROAM_HOME/sessions/NAME/lease ("<unix time>\n"). check() says whether the
 * session may run here: -EKEYEXPIRED when the lease has ended, -EREMOTE
 * when it was handed in by file (below), both with a detail that says why
 * and what to do. */
int handoff_lease_set(SessionHost *h, const char *name, int64_t until);
int handoff_lease_check(SessionHost *h, const char *name);

/* What a laptop knows of the grant of a session it holds, for a later take
 * online by file: $ROAM_HOME/sessions/NAME/grant (JSON {"server": HOST ID,
 * "epoch", "checkpoint"}). get() gives -ENOENT when there is none. */
typedef struct GrantNote {
        char server[64];
        int64_t epoch;
        char checkpoint[ID_HEX_SIZE];
} GrantNote;
int handoff_grant_note_set(SessionHost *h, const char *name, const GrantNote *g);
int handoff_grant_note_get(SessionHost *h, const char *name, GrantNote *ret);

/* A copy here found stale: the server gave the session to another owner
 * (reclaim) at a later epoch than this copy's. Kept for 'roam session
 * export-stale' (src/daemon/sync-file.h): $ROAM_HOME/sessions/NAME/stale
 * (JSON {"epoch": this copy's, "server_epoch", "server_owner", "at"}).
 * get() gives -ENOENT when there is none. */
typedef struct StaleNote {
        int64_t epoch;
        int64_t server_epoch;
        char server_owner[256];
        int64_t at;
} StaleNote;
int handoff_stale_note_set(SessionHost *h, const char *name, const StaleNote *n);
int handoff_stale_note_get(SessionHost *h, const char *name, StaleNote *ret);

/* A session handed in by file (roam online --to-file): the laptop does not
 * run it again until the server refuses the file and the user says so
 * (handoff_handed_in_clear()). $ROAM_HOME/sessions/NAME/handed-in holds the
 * file's path and when. */
int handoff_handed_in_set(SessionHost *h, const char *name, const char *file);
int handoff_handed_in_clear(SessionHost *h, const char *name);

/* The parsers and formats of the files above (grant, stale, lease,
 * handed-in; handoff-files.c, fuzzed by
 * tests/fuzz/fuzz-notes.c). A parser reads text of len bytes (not
 * NUL-ended) as read back from the file: 0, or -EBADMSG when it is not what
 * the format says. format() gives a NUL-ended text (caller frees). */
int grant_note_format(const GrantNote *g, char **ret);
int grant_note_parse(const char *text, size_t len, GrantNote *ret);
int stale_note_format(const StaleNote *n, char **ret);
int stale_note_parse(const char *text, size_t len, StaleNote *ret);
/* the lease file: "UNTIL\n", seconds since the epoch */
int lease_parse(const char *text, size_t len, uint64_t *ret_until);
/* the handed-in file: "WHEN FILE\n"; never fails: what is not that is
 * shown as it is, with *ret_when 0; file gets at most file_size - 1 bytes */
void handed_in_parse(const char *text, size_t len, int64_t *ret_when, char *file, size_t file_size);

/* The hand-over marker (sessions/NAME/handover, handoff_mark()): JSON
 * {"kind", "peer"?, "token"?, "epoch", "checkpoint"?, "pid", "pid_start"}.
 * parse() gives -EBADMSG without a kind or with a checkpoint that is not an
 * id, -ENOMEM; handover_marker_done() frees peer and token. */
#define HANDOVER_PEER_MAX 4096
#define HANDOVER_TOKEN_MAX 4096
typedef struct HandoverMarker {
        char kind[16];
        char *peer;                     /* NULL when absent */
        char *token;                    /* NULL when absent */
        char checkpoint[ID_HEX_SIZE];   /* "" when absent */
        int64_t epoch;
        int64_t pid;
        int64_t pid_start;
} HandoverMarker;
int handover_marker_format(const HandoverMarker *m, char **ret);
int handover_marker_parse(const char *text, size_t len, HandoverMarker *ret);
void handover_marker_done(HandoverMarker *m);

/* ---- hand-overs in doubt ----
 * A hand-over writes a marker ($ROAM_HOME/sessions/NAME/handover, JSON,
 * atomic, mode 0600) before the step that could leave the session nowhere or
 * in two places if this process died, and removes it once the step is
 * settled. handoff_recover() settles what a crash left:
 *   "grant"  (server giving it to a laptop): owner still here -> resume the
 *            final checkpoint here; owner moved -> done.
 *   "out"    (this host sent it to peer): owner moved -> done; else ask the
 *            peer: it owns the session at the new epoch -> record that;
 *            it does not -> resume the final checkpoint here; peer
 *            unreachable -> stay stopped and ask again later (never guess).
 *   "in"     (this host took it at epoch E): owner here and QEMU not
 *            running -> restore the checkpoint.
 *   "finalize" (this server took a powered-off session back at epoch E to
 *            log it off): owner here -> the laptop's disk delta (checkpoint)
 *            again, log-off boot, policy, checkpoint (a log-off boot still
 *            running: later); owner not here -> it never moved. */
int handoff_mark(SessionHost *h, const char *name, const char *kind, const char *peer, const char *token,
                 int64_t epoch, const char *checkpoint_hex);
int handoff_unmark(SessionHost *h, const char *name);

/* 1 = peer owns session name at epoch or later, 0 = it says it does not,
 * < 0 = it cannot be asked now. */
int handoff_peer_owns(const char *peer, const char *token, const char *name, int64_t epoch);
/* The same, asked up to 5 times a second apart while it cannot be answered:
 * for a sender that got no clear answer to its hand-over (never guess). */
int handoff_ask_peer(const char *peer, const char *token, const char *name, int64_t epoch);

/* A hand-over of session name runs in this process (a begin/end pair, may
 * nest): handoff_recover() leaves its marker alone meanwhile, and settles it
 * once the hand-over returned with it still there. A marker written by
 * another process (a 'roam session move' command) is left alone while that
 * process runs. */
void handoff_busy_begin(SessionHost *h, const char *name);
void handoff_busy_end(SessionHost *h, const char *name);

typedef void (*HandoffLogFn)(const char *msg, void *userdata);
/* Settles every marker it can; returns the number still in doubt. */
int handoff_recover(SessionHost *h, HandoffLogFn log, void *userdata);
