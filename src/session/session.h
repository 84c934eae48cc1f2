/* SPDX-License-Identifier: MIT */
#pragma once

/* Sessions: a user's VM on this host, its files, its checkpoints.
 *
 * Files of a session NAME (created by session_create()):
 *
 *   $ROAM_HOME/sessions/NAME/overlay.qcow2   the session's disk delta over its
 *                                            master (absolute backing path)
 *   $ROAM_HOME/sessions/NAME/serial.log      serial console (appended across runs)
 *   $ROAM_HOME/sessions/NAME/qmp.sock        QEMU's QMP socket while it runs
 *   $ROAM_HOME/sessions/NAME/vnc.sock        QEMU's VNC server (unix socket; the
 *                                            web console proxies it)
 *   $ROAM_HOME/sessions/NAME/qemu.pid        QEMU's pid while it runs
 *   $ROAM_RAM_DIR/NAME.ram                   guest RAM (memory-backend-file)
 *
 *   $ROAM_HOME/masters/<image id>.raw        the master image, exported from the
 *                                            store once per host, read-only (0444),
 *                                            shared by every session of the image
 *   $ROAM_HOME/boot/<index id>               kernels and initrds, likewise
 *
 * $ROAM_RAM_DIR defaults to /dev/shm/roam-<first 12 hex digits of the
 * SHA-256 of the absolute $ROAM_HOME> (so two homes never collide).
 *
 * The catalog (session-db.h) has one row per session; the store holds:
 *
 *   sessions/<user>/<name>/base     a manifest {"kind":"session-base"} naming
 *                                   the image, kernel and initrd (keeps them
 *                                   from gc while the session exists)
 *   sessions/<user>/<name>/latest   the newest checkpoint manifest
 *   sessions/<user>/<name>/000001   every checkpoint by sequence number
 *
 * Checkpoint manifest (src/store/manifest.h), JSON:
 *
 *   {"kind":"checkpoint", "session":NAME, "user":USER, "image":<image index id>,
 *    "image_name":IMG, "objects":{"ram","overlay","devstate","kernel","initrd",
 *    "image"}, "config":{VM config, vm.h}, "parent":<previous id or null>,
 *    "epoch":N, "seq":N, "created":unix, "pause_ms":N}
 *
 * Taking one: stop the guest -> device state (x-ignore-shared, ~40 ms) ->
 * copy the RAM file and the overlay to sibling snapshot files -> cont (the
 * guest pause ends here) -> import the snapshots into the store (only changed
 * chunks are new) -> manifest -> refs. Restoring one: check that every chunk
 * is present (before anything is touched) -> export RAM, overlay, device
 * state, master, kernel, initrd -> rebase the overlay onto this host's master
 * -> QEMU -incoming defer -> load the device state -> cont.
 *
 * Ownership: every row has an owner ("local" or a URL) and an epoch. start,
 * restore, checkpoint and the other VM operations refuse a session owned
 * elsewhere (-EREMOTE: "session 'X' is owned by URL since epoch N").
 *
 * Concurrency: each operation on one session holds an flock on its directory,
 * so two roam processes (CLI and daemon) never drive one QEMU at once. Reads
 * (session_get/list) only try the lock to refresh the state.
 *
 * States: running/paused come from QEMU itself (query-status). A QEMU that is
 * gone while the row says running or paused is "crashed" (never restarted
 * silently); a guest that powered itself off is "stopped" (QEMU is quit then).
 *
 * Errors: negative errno with a one-line detail (err_set()) that names the
 * session and says what to do. Nothing prints. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../basic/hash.h"
#include "../daemon/catalog.h"
#include "../store/store.h"
#include "session-db.h"
#include "vm.h"

#define SESSION_APPEND_DEFAULT "console=ttyS0 quiet panic=-1"
#define SESSION_STOP_TIMEOUT_S_DEFAULT 60
#define SESSION_CHECKPOINT_SEQ_MAX 999999

typedef struct SessionHost SessionHost;

/* home: the state directory (made absolute); store and catalog are borrowed
 * and must outlive the host. store may be NULL for operations that do not
 * touch it (start, stop, pause, resume, get, list, log); create, checkpoint,
 * restore and remove need it (a writer: the store lock held shared).
 * Caller frees with session_host_free(). */
int session_host_new(const char *home, Store *store, Catalog *catalog, SessionHost **ret);
void session_host_free(SessionHost *h);
static inline void session_host_freep(SessionHost **h) {
        if (*h)
                session_host_free(*h);
}
/* Borrowed. */
const char *session_host_ram_dir(const SessionHost *h);
/* The store given to session_host_new() (borrowed; may be NULL). */
Store *session_host_store(const SessionHost *h);

typedef struct SessionCreate {
        const char *name;
        const char *user;
        const char *image;        /* image name: the store ref images/<image> */
        const char *kernel;       /* file; imported into the store */
        const char *initrd;       /* file or NULL */
        const char *append;       /* NULL: SESSION_APPEND_DEFAULT */
        const char *profile_disk; /* raw file or NULL */
        uint64_t ram_mib;         /* 0: VM_RAM_MIB_DEFAULT */
        unsigned cpus;            /* 0: 1 */
        const char *accel;        /* NULL: "auto" */
} SessionCreate;

typedef struct SessionInfo {
        SessionRow row; /* row.state is refreshed from QEMU */
        VmConfig config;
        pid_t pid;      /* QEMU's pid while running or paused, else 0 */
        char *dir;      /* state directory */
        char *overlay, *serial, *qmp, *vnc, *ram, *master; /* paths */
        uint64_t overlay_bytes; /* allocated bytes of the overlay */
        uint64_t ram_bytes;     /* allocated bytes of the RAM file */
} SessionInfo;

void session_info_done(SessionInfo *i);
void session_info_list_free(SessionInfo *list, size_t n);

/* Checks the RAM a new or restored session needs against what the host can
 * give (MemAvailable and the free space of the RAM directory). -ENOMEM with
 * detail. */
int session_check_ram(const char *ram_dir, uint64_t ram_mib);

/* Creates a session (state "created"): validates everything first; on any
 * failure nothing is left (no row, no directory, no ref). Errors: -EINVAL
 * (name, sizes), -ENOENT (image, kernel), -EEXIST (name taken), -ENOMEM
 * (more RAM than the host has). ret may be NULL. */
int session_create(SessionHost *h, const SessionCreate *a, SessionInfo *ret);

/* Boots the session's VM from its overlay (cold boot). -EBUSY if it runs. */
int session_start(SessionHost *h, const char *name);
/* Presses the power button and waits up to timeout_s for the guest to power
 * off; past that, QEMU is quit hard and *ret_forced (may be NULL) is true.
 * The RAM file is removed. */
int session_stop(SessionHost *h, const char *name, int timeout_s, bool *ret_forced);
int session_pause(SessionHost *h, const char *name);
int session_resume(SessionHost *h, const char *name);

/* One session with its state refreshed. Caller frees with session_info_done(). */
int session_get(SessionHost *h, const char *name, SessionInfo *ret);
/* All sessions by name. Caller frees with session_info_list_free(). */
int session_list(SessionHost *h, SessionInfo **ret, size_t *ret_n);

/* Removes a session that does not run: files, RAM file, row and its refs
 * (chunks stay until 'roam store gc'). -EBUSY if it runs. */
int session_remove(SessionHost *h, const char *name);

typedef enum SessionCheckpointFlags {
        /* end QEMU after the device state is saved instead of resuming the
         * guest (the last checkpoint of a move); the state becomes "stopped"
         * and the caller changes the owner */
        SESSION_CHECKPOINT_QUIT = 1 << 0,
} SessionCheckpointFlags;

typedef struct SessionCheckpointResult {
        RoamId id;         /* the manifest */
        int64_t seq;       /* its number: ref sessions/<user>/<name>/<seq %06d> */
        uint64_t pause_ns; /* stop -> cont, as the guest saw it */
        uint64_t devstate_ns, copy_ns, import_ns, total_ns;
        uint64_t chunks, new_chunks, new_bytes, stored_bytes; /* sums over ram, overlay, devstate */
        uint64_t ram_new_chunks, overlay_new_chunks;
} SessionCheckpointResult;

/* Takes a checkpoint of a running or paused session (a paused one stays
 * paused). ret may be NULL. */
int session_checkpoint(SessionHost *h, const char *name, unsigned flags, SessionCheckpointResult *ret);

/* Finds a checkpoint of user/name: spec NULL or "latest", a sequence number
 * ("3", "000003"), or a 64-hex manifest id. -ENOENT with detail. */
int session_checkpoint_resolve(SessionHost *h, const char *user, const char *name, const char *spec, RoamId *ret);

/* Checks that manifest id is a checkpoint whose objects and chunks are all in
 * the store. -ENOENT/-EBADMSG with a detail naming what is missing. On
 * success *ret (may be NULL) is the parsed JSON (caller json_decref()s). */
int session_checkpoint_verify(Store *s, const RoamId *id, json_t **ret);

typedef struct SessionRestoreResult {
        RoamId id;
        uint64_t export_ns; /* store -> files */
        uint64_t qemu_ns;   /* QEMU start, device state, cont */
        uint64_t total_ns;
} SessionRestoreResult;

/* Restores a checkpoint (spec as in session_checkpoint_resolve()) into a
 * session that is not running, and resumes it. A checkpoint with missing
 * chunks fails before anything changes. When no session NAME exists here and
 * spec is a manifest id, the session is adopted from the manifest (a move's
 * receiving side). ret may be NULL. */
int session_restore(SessionHost *h, const char *name, const char *spec, SessionRestoreResult *ret);

/* Changes the owner (see session_db_set_owner()). Refuses while QEMU runs
 * here (-EBUSY) unless the new owner is local. */
int session_set_owner(SessionHost *h, const char *name, const char *owner, int64_t epoch, int64_t expected_epoch);

/* The path of the serial console log of a session. Caller frees. */
int session_log_path(SessionHost *h, const char *name, char **ret);
