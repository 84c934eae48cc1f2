/* SPDX-License-Identifier: MIT */
#pragma once

/* Desks: terminal-server sessions. A terminal server is a roam session made
 * with --terminal-server (its image carries the terminal-server layer:
 * guest/desk/roam-desk, CRIU, Xvnc). Inside it each user's desk is a process
 * tree in its own namespaces with its own Xvnc display; roam reaches the
 * in-guest helper through the guest agent (guest-exec) and moves a desk's
 * checkpoint through the server's transfer disk (a raw file, serial
 * roam-xfer, that the helper writes a tar to and reads a tar from).
 *
 * The store keeps one ref per user, desks/USER, naming a desk manifest:
 *
 *   {"kind": "desk", "user", "uid", "display", "state": "running"|"suspended",
 *    "ts": the terminal server (session name) it runs on or was suspended on,
 *    "layers": [disk ids of that server's master chain, top first],
 *    "bytes": the checkpoint's tar size, "created", "parent": previous manifest,
 *    "objects": suspended: {"img/<CRIU image>": IDX, ..., "home.tar": IDX};
 *               running: {"last": the last suspended manifest} (so a
 *               suspend stores only what changed since)}
 *
 * A desk that went to another roam host (another server's terminal server, a
 * laptop's local one) is "away" here: {"state": "away", "at": where it went,
 * "objects": {"last": the checkpoint that left}}. An away desk cannot be
 * started, suspended, resumed or logged off here: it runs (or waits) in one
 * place only, and comes back by being received (desk_receive()).
 *
 * Moving between hosts (desk-remote.c): the side that has the desk lends it
 * (suspends it if it runs, then marks it away), the checkpoint travels as a
 * sync of what the other side lacks under the ref desk-in/USER, and the other
 * side receives it: checks that the desk is not there already and that the
 * terminal server to resume on runs every layer, sets desks/USER, resumes.
 * A refusal before that point is given back (desk_unlend()) and changes
 * nothing.
 *
 * Each file of the checkpoint is its own blob (64 KiB chunks), so a resume
 * elsewhere syncs what the other side lacks and a repeated suspend stores
 * little. uid and display come from the user's name (a hash): the same on
 * every terminal server, so CRIU restores them as they were; two users whose
 * hashes collide cannot run on one server at once (refused by the helper). */

#include <stdbool.h>
#include <stdint.h>

#include "../session/session.h"
#include "../session/vm.h"

#define DESK_XFER_DEV "/dev/disk/by-id/virtio-roam-xfer"
#define DESK_HELPER "/usr/local/sbin/roam-desk"
#define DESK_START_TIMEOUT_S 300
#define DESK_DUMP_TIMEOUT_S 900
#define DESK_LAYERS_MAX 9 /* a master and up to 8 layers */
#define DESK_AT_MAX 200 /* "at" of an away desk: a URL or a laptop's label */

typedef struct DeskInfo {
        char user[NAME_MAX_LEN + 1];
        char ts[NAME_MAX_LEN + 1];
        bool running;          /* else suspended or away */
        bool away;             /* moved to another host: at says where */
        char at[DESK_AT_MAX + 1];
        char layers[DESK_LAYERS_MAX][ID_HEX_SIZE]; /* the disks of its server's master chain, top first */
        size_t n_layers;
        uint64_t uid, display;
        uint64_t bytes;        /* the last checkpoint's size (0: none) */
        int64_t created;
        char id[ID_HEX_SIZE];  /* the manifest */
        uint64_t pid;          /* running: the desk's init as the server sees it (0: unknown) */
} DeskInfo;

typedef struct DeskMoveStats {
        uint64_t bytes;        /* the checkpoint's tar */
        uint64_t new_chunks;   /* stored by this suspend */
        uint64_t stored_bytes; /* their compressed bytes */
        uint64_t dump_ms, write_ms, import_ms; /* suspend: criu dump, tar to the disk, into the store */
        uint64_t export_ms, read_ms, restore_ms; /* resume: out of the store, tar from the disk, criu restore */
        uint64_t total_ms;
        uint64_t pid;          /* resume: the desk's init on the server */
} DeskMoveStats;

/* "running", "suspended" or "away". */
const char *desk_info_state(const DeskInfo *i);
/* The desk as JSON (the API's and --json's form). */
struct json_t *desk_info_json(const DeskInfo *i);

/* uid and display of a user's desk (stable: a hash of the name). */
void desk_ids(const char *user, uint64_t *ret_uid, uint64_t *ret_display);

/* A new desk of user on terminal server ts (a running session made with
 * --terminal-server). Refused when the user has a desk already (running or
 * suspended). */
int desk_start(SessionHost *h, const char *ts, const char *user, DeskInfo *ret);
/* The desk of user. -ENOENT "no desk". Running desks are asked for their pid. */
int desk_get(SessionHost *h, const char *user, DeskInfo *ret);
/* All desks (ts NULL) or those of one terminal server. Caller free()s. */
int desk_list(SessionHost *h, const char *ts, DeskInfo **ret, size_t *ret_n);
/* Checkpoints the running desk into the store; its processes end. A desk
 * CRIU cannot dump keeps running and the error carries CRIU's reason. */
int desk_suspend(SessionHost *h, const char *user, DeskMoveStats *ret);
/* Restores the suspended desk on ts (NULL: where it was suspended). Refused
 * without change when ts lacks a layer the desk was started with (named),
 * when the user runs there already, or when the checkpoint is damaged. */
int desk_resume(SessionHost *h, const char *user, const char *ts, DeskMoveStats *ret);
/* Ends a running desk's processes and forgets it (a suspended one: its
 * checkpoint is dropped). */
int desk_logoff(SessionHost *h, const char *user);
/* A byte stream to the running desk's display (its Xvnc, RFB): one of the
 * terminal server's virtio-serial display ports (VM_DESK_VNC_PORTS; a free
 * one, locked while the viewer has it), with the helper's relay in the
 * desk's network namespace behind it. -EBUSY when every port is in use. */
typedef struct DeskVnc {
        int fd;   /* the stream */
        int lock; /* the port's lock: close both with desk_vnc_close() */
} DeskVnc;
int desk_vnc_open(SessionHost *h, const char *user, DeskVnc *ret);
void desk_vnc_close(DeskVnc *v);

/* Drops the record of an away desk (it was logged off where it went, or
 * that host is gone): the user may start a desk here again. A desk that is
 * here is refused (log it off). */
int desk_forget(SessionHost *h, const char *user);
/* Runs the helper's exec or ps for a running desk; the helper's output in
 * *ret (caller frees session_exec_result_done()). */
int desk_exec(SessionHost *h, const char *user, char **argv, unsigned timeout_s, SessionExecResult *ret);

/* ---- between hosts ---- */

/* The ref a desk's checkpoint arrives under: desk-in/USER. */
void desk_in_ref(const char *user, char *buf, size_t size);

/* Every layer in want (a JSON array of disk ids: a desk manifest's or
 * DeskInfo's "layers") is in terminal server ts's master chain (ts may be
 * stopped); else -ENOENT naming the missing layer. */
struct json_t;
int desk_check_layers(SessionHost *h, const char *user, struct json_t *want, const char *ts);

/* A character an away desk's "at" may hold: printable ASCII, no quote or
 * backslash. */
bool desk_at_char_ok(char c);

/* Lends the desk of user to `to` (a URL or a laptop's label, printable, at
 * most DESK_AT_MAX): suspends it when it runs (*ret_suspend then has the
 * figures and *ret_suspended is true), then marks it away. The checkpoint
 * that leaves in *ret_checkpoint. A desk away at `to` already is lent again
 * (a retry); away elsewhere: -EALREADY. */
int desk_lend(SessionHost *h, const char *user, const char *to, RoamId *ret_checkpoint, DeskMoveStats *ret_suspend,
              bool *ret_suspended);
/* A checkpoint the other side of a move likely holds whole (a sync's
 * "have" hint): with checkpoint (a suspended desk), the one its desk was
 * resumed from; without, the one an away desk of user left with. -ENOENT
 * when there is none. */
int desk_base_checkpoint(SessionHost *h, const char *user, const RoamId *checkpoint, RoamId *ret);
/* Gives a lent desk back: away with checkpoint as its last, it is suspended
 * here again. */
int desk_unlend(SessionHost *h, const char *user, const RoamId *checkpoint);
/* Receives a checkpoint that arrived as desk-in/USER (which must name it):
 * refused, changing nothing, when the desk is here (running or suspended),
 * when the checkpoint is not a suspended desk of user, or when terminal server
 * `on` lacks one of its layers; else desks/USER names it. Then, with on (or,
 * when the desk comes back, the terminal server it left from), resumes it
 * there: 0 when it runs (*ret has the figures, ret_ts where); a resume the
 * helper refused (e.g. the user runs there already) undoes the receive and
 * fails (the sender takes the desk back); 1 when the resume failed without
 * an answer (the desk stays here, suspended; the error is set); 2 when there
 * was no terminal server to resume on (received, suspended). */
int desk_receive(SessionHost *h, const char *user, const RoamId *checkpoint, const char *on, DeskMoveStats *ret,
                 char ret_ts[static NAME_MAX_LEN + 1]);
