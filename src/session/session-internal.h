/* SPDX-License-Identifier: MIT */
#pragma once

/* What the files of the session layer share (private to src/session/;
 * session.h is the API):
 *
 *   session.c     the host, operations on one session (Op: row, config,
 *                 paths, lock), info, create, start/stop/pause/resume, remove,
 *                 owner
 *   files.c       a session's paths; files in and out of the store, masters
 *                 and boot files, qemu-img overlays
 *   checkpoint.c  checkpoints: taking one (live or powered off), resolve,
 *                 verify
 *   staging.c     RAM staged ahead of a restore
 *   restore.c     restore and adopt
 *   finalize.c    finalize (the log-off boot, the policy), log-off parsing
 *   profile.c     profile disks: check-out, check-in (users/USER/profile), holds
 *   exec.c        the guest agent: exec, liveness
 *   ram-map.c     running sessions' RAM files kept mapped between imports
 *
 * Errors as in session.h: negative errno with a detail (err_set()). */

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../basic/hash.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../qmp/qmp.h"
#include "../store/blob.h"
#include "../store/store.h"
#include "session-db.h"
#include "session.h"
#include "vm.h"

/* A RAM file kept mapped between imports (ram-map.c). */
typedef struct RamMap RamMap;
#define RAM_MAPS_MAX 32

/* The last look at one session's guest agent (exec.c). */
typedef struct AgentSeen {
        char name[NAME_MAX_LEN + 1];
        SessionAgentStatus status;
} AgentSeen;

struct SessionHost {
        char *home;
        char *ram_dir;
        Store *store;
        Catalog *catalog;
        SessionOwnerDescribeFn describe_owner; /* NULL: owners as they are */
        void *describe_userdata;
        bool warm; /* start the receiving QEMU when RAM is staged (warm.c) */
        pthread_mutex_t agent_lock; /* agents */
        AgentSeen agents[128];
        SessionGuardFn guard; /* NULL: a standalone host */
        void *guard_userdata;
        /* an encrypted laptop (crypto/home-keys.h): a session's disk and
         * everything plain of it live on tmpfs, in ram_dir/NAME.files */
        bool encrypted;
        SessionGiveFn give; /* NULL: a standalone host */
        void *give_userdata;
        SessionTakeFn take; /* NULL: a standalone host */
        void *take_userdata;
        /* QEMUs ended by a hand-over's last checkpoint without waiting for
         * their exit (a pidfd each): the next launch of the session waits */
        pthread_mutex_t ending_lock;
        struct {
                char name[NAME_MAX_LEN + 1];
                int pidfd;
        } ending[16];
        size_t n_ending;
        pthread_mutex_t ram_maps_lock; /* ram-map.c */
        RamMap *ram_maps[RAM_MAPS_MAX];
        size_t n_ram_maps;
};

/* A QEMU of session name ended (SIGKILL) but maybe not gone yet: pidfd from
 * vm_end_saved_nowait() (taken; -1: gone already). */
void qemu_ending(SessionHost *h, const char *name, int pidfd);

/* ---- ram-map.c ---- */

/* The mapping of RAM file path (open as fd), made or kept, with a reference
 * the caller gives back with ram_map_put(). */
int ram_map_get(SessionHost *h, const char *path, int fd, RamMap **ret);
/* The same for an import of that file: o reads it through the mapping
 * (o->map, o->map_addr); NULL when there is none to be had (then o is as it
 * was: the import maps the file itself). Give it back after the import's
 * reading half with ram_map_put(). */
RamMap *ram_map_lend(SessionHost *h, const char *path, int fd, BlobOptions *o);
const void *ram_map_addr(const RamMap *m);
uint64_t ram_map_size(const RamMap *m);
void ram_map_put(SessionHost *h, RamMap *m);
/* Forgets path's mapping (unmapped once no import reads it). */
void ram_map_drop(SessionHost *h, const char *path);
void ram_maps_free(SessionHost *h);
/* Removes a RAM file and its mapping: -errno of unlink(). */
int ram_unlink(SessionHost *h, const char *path);

/* err_set(r, "<prefix>: <current detail>"): the detail is copied first, as
 * err_message() points into the buffer err_set() writes. */
int err_wrap(int r, const char *fmt, ...) _printf_(2, 3);

/* -EINVAL (an internal error) unless the host was given a store. */
int need_store(SessionHost *h);

static inline void vm_config_donep(VmConfig *c) {
        vm_config_done(c);
}
static inline void session_row_donep(SessionRow *r) {
        session_row_done(r);
}

/* ---- files.c: paths, files in and out of the store, overlays ---- */

/* The files of session NAME (session.h); paths_for() fills them in, caller
 * frees with paths_done(). */
typedef struct Paths {
        char *dir, *overlay, *serial, *qmp, *vnc, *agent, *pidfile, *devstate, *ram, *ram_snap, *overlay_snap;
        char *ram_fast, *overlay_fast; /* fast-hash sidecars: the base of the next import */
        char *pidfile_warm; /* the pidfile a warm QEMU was started with (warm.c) */
        char *profile, *profile_fast;  /* the user's profile disk while this session holds it (profile.c) */
        /* an encrypted home's ram_dir/NAME.files (overlay, device state,
         * sidecars, serial log), else NULL */
        char *secret_dir;
        char *xfer;                    /* a terminal server's transfer disk (src/desk/) */
} Paths;

/* How many of a session's RAM page indexes are kept (page_index_keep_recent(),
 * the list next to the RAM's fast-hash sidecar): a hand-over's remainder goes
 * against the pre-copy the receiver holds, one of the last. */
#define RAM_PAGE_INDEXES_KEPT 3
/* After an import of a session's RAM whose fast-hash sidecar is ram_fast:
 * its page index joins the list ram_fast.pages, the older ones beyond
 * RAM_PAGE_INDEXES_KEPT go. */
void ram_pages_keep(Store *s, const char *ram_fast, const RoamId *ram_index);

void paths_done(Paths *p);
int paths_for(SessionHost *h, const char *name, Paths *ret);
#define _cleanup_paths_ _cleanup_(paths_done)

/* $ROAM_HOME/masters/<image_hex>.raw and $ROAM_HOME/boot/<id_hex>, or NULL
 * (out of memory). Caller frees. */
char *master_path(SessionHost *h, const char *image_hex);
char *boot_path(SessionHost *h, const char *id_hex);

/* Imports the file at path as a blob (a full import). ret_stats may be NULL. */
int import_file(Store *s, const char *path, RoamId *ret_id, BlobStats *ret_stats);

/* Exports blob id into a new file at path (temp file beside it, then
 * rename). mode 0444 for shared read-only files. */
int export_to(Store *s, const RoamId *id, const char *path, mode_t mode);

/* A file exported once per host and shared read-only (masters, kernels):
 * present means complete (written by rename). fsync'd: a master outlives
 * many sessions. */
int materialize(SessionHost *h, const RoamId *id, const char *path);
/* A master at path (master_path() of id) with the masters its layers sit on
 * (a layer's qcow2 names its base by id: "<hex>.raw" beside it). A base the
 * store lacks is refused naming it. */
int master_materialize(SessionHost *h, const RoamId *id, const char *path);
/* "qcow2" for a layer's master file, else "raw". */
const char *master_format(const char *path);

/* Runs a tool; hint says how to get it when it is missing. */
int run_tool_hint(char **argv, const char *what, const char *hint);

/* qemu-img: a new overlay over master; an overlay pointed at master (this
 * host's path of its master). */
int overlay_create(const char *master, const char *overlay);
int overlay_rebase(const char *master, const char *overlay);

/* Replaces overlay by a fresh, empty one over master: created beside it,
 * fsync'd, renamed over it. On failure the old overlay stays. */
int overlay_reset(const char *master, const char *overlay);

/* Removes what a QEMU run leaves: sockets, pid file, snapshot copies (not
 * the RAM file). */
void remove_runtime(const Paths *p);


/* ---- session.c: operations on one session ---- */

/* An operation on one session: the row, its config, its paths, the lock. */
typedef struct Op {
        SessionRow row;
        VmConfig config;
        Paths paths;
        int lock_fd;
        pid_t pid;
        int overlay_fd, profile_fd; /* > 0: QEMU gets the overlay, the profile disk as this open file (VmPaths) */
} Op;

void op_done(Op *o);
/* Loads, locks and refreshes session name; checks the owner unless any_owner. */
int op_begin(SessionHost *h, const char *name, bool any_owner, Op *o);

/* The row's state, in the catalog and in o. */
int set_state(SessionHost *h, Op *o, SessionState st);
/* A QMP connection to o's QEMU. */
int connect_op(Op *o, Qmp **ret);

/* A QEMU operation that a crash of this process would leave half done,
 * noted in DIR/qemu-op (with this process's pid and start time) while it
 * runs: "pause" (a checkpoint stopped the guest), "launch" (a restore started
 * QEMU, whose device state is not loaded yet). session_recover_qemu_op()
 * finishes what a dead writer left. Not fsync'd: a machine crash ends QEMU
 * too. */
int qemu_op_note(const Op *o, const char *op);
void qemu_op_clear(const Op *o);

/* A VM config as the catalog keeps it (compact JSON). Caller frees. */
int config_to_text(const VmConfig *c, char **ret);
/* -EREMOTE with detail unless the row is owned here. */
int check_owner(const SessionHost *h, const SessionRow *row);

/* The store ref sessions/<user>/<name>/<leaf> into buf; -EINVAL if invalid. */
int session_ref(const char *user, const char *name, const char *leaf, char *buf, size_t size);
/* Stores manifest j as an object. */
int put_manifest(Store *s, json_t *j, RoamId *ret);
/* Writes the session-base manifest of user/name and its ref. */
int write_base(SessionHost *h, const char *user, const char *name, const char *image_hex, const VmConfig *c);

/* The VM paths of a session; boot files and master are materialized when
 * missing (from the store). Caller frees *kernel, *initrd, *master (vp
 * points into them and into o). */
int vm_paths(SessionHost *h, Op *o, VmPaths *vp, char **kernel, char **initrd, char **master);

/* Launches QEMU for o (cold boot, or incoming) with config cfg (NULL: o's
 * own); *ret_q is connected. launch(): with o's own config. */
int launch_with(SessionHost *h, Op *o, const VmConfig *cfg, bool incoming, Qmp **ret_q);
int launch(SessionHost *h, Op *o, bool incoming, Qmp **ret_q);

/* ---- an encrypted home's sessions (session.h, "Encrypted homes") ---- */

/* A stopped session's disk on tmpfs into the store (a powered-off
 * checkpoint when it is owned here), then its tmpfs files go. o is locked
 * and QEMU does not run. */
int put_away(SessionHost *h, Op *o);
/* A session to boot whose overlay is not on tmpfs (put away, or the laptop
 * rebooted): the overlay of its latest checkpoint, rebased onto this host's
 * master. 0 with nothing done when it is there or the home is plain. */
int overlay_bring_back(SessionHost *h, Op *o);

/* ---- checkpoint.c ---- */

/* The id of objects.<role> of checkpoint manifest m; -EBADMSG with detail. */
int manifest_id(json_t *m, const char *role, RoamId *ret);
/* A powered-off checkpoint of o (locked, QEMU not running). */
int checkpoint_powered_off(SessionHost *h, Op *o, SessionCheckpointResult *ret);

/* ---- staging.c ---- */

/* Removes the staged RAM of name, its warm QEMU, and what a crash left of a
 * staging. */
void staged_clear(SessionHost *h, const char *name);

/* 1 with the path (caller frees) and the index of the staged RAM file of
 * name, 0 if none. */
int staged_find(SessionHost *h, const char *name, char **ret_path, RoamId *ret_id);

/* Rewrites the file at path, which holds the blob of index from, into the
 * blob of index to (only the chunks that differ). st may be NULL. */
int patch_file(Store *s, const RoamId *from, const RoamId *to, const char *path, BlobStats *st);

/* Writes the RAM blob ram into path: from the staged file of name if there is
 * one (only the chunks that differ), else in full. */
int write_ram(SessionHost *h, const char *name, const RoamId *ram, const char *path, bool *ret_staged);

/* ---- warm.c: the receiving QEMU started ahead ---- */

/* Locks the warm QEMU of name (and the staging of its RAM): *ret_fd, close it
 * to unlock. */
int warm_lock(SessionHost *h, const char *name, int *ret_fd);
/* Ends the warm QEMU of name and removes its files (lock held). */
void warm_end(SessionHost *h, const char *name);
/* Has a warm QEMU wait for checkpoint ck, whose RAM is staged at ram: the one
 * of an earlier pre-copy patched, or a new one (*ret_started). Lock held. */
int warm_prepare(SessionHost *h, const char *name, const RoamId *ck, const char *ram, bool *ret_started);
/* Restores checkpoint m (verified; o locked, not running, config and image
 * m's) into the warm QEMU of o: RAM and overlay patched, the files moved into
 * the session's directory, the device state exported; *ret_q is connected to
 * the QEMU, which waits for the device state (restore_resume()). 1 when
 * there is no warm QEMU that fits (it is ended: restore cold), 0 when taken.
 * Lock held. */
int warm_take(SessionHost *h, Op *o, json_t *m, SessionRestoreResult *res, Qmp **ret_q);
/* ---- profile.c: the user's profile disk (docs/desktop.md) ---- */

/* Gives session o the user's profile disk at o->paths.profile (a boot with
 * it attached follows): o holds it from now until its log-off (check-in).
 * Taken from this host's copy when that is the latest, else exported from
 * users/USER/profile; a user without one gets a new, empty disk. -EBUSY
 * naming the holder when another session holds it. */
int profile_checkout(SessionHost *h, Op *o);
/* Records that o holds the user's profile (its working copy came with a
 * checkpoint): -EBUSY naming the holder when another session holds it. */
int profile_claim(SessionHost *h, Op *o);
/* The log-off's end: o's profile disk into the store as users/USER/profile
 * (a manifest {"kind":"profile", objects {"disk"}, session, epoch, host,
 * parent}), kept as this host's copy, the hold released. No disk: only the
 * hold is released. *ret (may be NULL): the manifest. */
int profile_checkin(SessionHost *h, Op *o, RoamId *ret);
/* Releases o's hold without saving anything (the session is not ours). */
void profile_drop(SessionHost *h, Op *o);
