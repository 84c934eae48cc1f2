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
 * Each file of the checkpoint is its own blob (64 KiB chunks), so a resume
 * elsewhere syncs what the other side lacks and a repeated suspend stores
 * little. uid and display come from the user's name (a hash): the same on
 * every terminal server, so CRIU restores them as they were; two users whose
 * hashes collide cannot run on one server at once (refused by the helper). */

#include <stdbool.h>
#include <stdint.h>

#include "../session/session.h"

#define DESK_XFER_DEV "/dev/disk/by-id/virtio-roam-xfer"
#define DESK_HELPER "/usr/local/sbin/roam-desk"
#define DESK_START_TIMEOUT_S 300
#define DESK_DUMP_TIMEOUT_S 900

typedef struct DeskInfo {
        char user[NAME_MAX_LEN + 1];
        char ts[NAME_MAX_LEN + 1];
        bool running;          /* else suspended */
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
/* Runs the helper's exec or ps for a running desk; the helper's output in
 * *ret (caller frees session_exec_result_done()). */
int desk_exec(SessionHost *h, const char *user, char **argv, unsigned timeout_s, SessionExecResult *ret);
