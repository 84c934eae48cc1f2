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
 *   $ROAM_HOME/profiles/<user>.img           the user's profile disk: raw ext4
 *                                            (SESSION_PROFILE_MIB, sparse), made
 *                                            when first needed, attached only
 *                                            while a session is finalized, never
 *                                            removed by a session operation
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
 * A powered-off checkpoint (of a stopped or never started session) has no
 * RAM and no device state: "powered_off":true and objects {"overlay",
 * "kernel","initrd"?,"image"}, "pause_ms":0. It is the disk delta alone, what
 * a laptop uploads when it takes a powered-off session online. Restoring it
 * leaves the session stopped (ready to boot); finalizing it runs the guest's
 * log-off hook and applies the session's policy (session_finalize()).
 *
 * Policy (VmConfig.policy, part of the config JSON, so it travels in every
 * checkpoint): persistent sessions keep their disk delta when finalized,
 * pooled ones are reset to the master image.
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
#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../guest/agent.h"
#include "../store/store.h"
#include "session-db.h"
#include "vm.h"

#define SESSION_APPEND_DEFAULT "console=ttyS0 quiet panic=-1"
#define SESSION_STOP_TIMEOUT_S_DEFAULT 60
#define SESSION_CHECKPOINT_SEQ_MAX 999999
#define SESSION_FINALIZE_TIMEOUT_S_DEFAULT 300 /* a desktop under TCG on a busy host */
#define SESSION_PROFILE_MIB 256

typedef struct SessionHost SessionHost;

/* home: the state directory (made absolute); store and catalog are borrowed
 * and must outlive the host. store may be NULL for operations that do not
 * touch it (start, stop, pause, resume, get, list, log); create, checkpoint,
 * restore and remove need it (a writer: the store lock held shared).
 * Caller frees with session_host_free(). */
int session_host_new(const char *home, Store *store, Catalog *catalog, SessionHost **ret);
void session_host_free(SessionHost *h);
/* How a refusal names an owner that is not this host (e.g. "laptop 'x' (id
 * ...)" for "laptop:ID": the laptops are the daemon's, above this layer). */
typedef void (*SessionOwnerDescribeFn)(void *userdata, const char *session, const char *owner, char *buf,
                                       size_t size);
void session_host_set_owner_describer(SessionHost *h, SessionOwnerDescribeFn fn, void *userdata);
static inline void session_host_freep(SessionHost **h) {
        if (*h)
                session_host_free(*h);
}
/* In a fleet (docs/fleet.md): asked by every operation on a session owned
 * here (after the host's own owner check, with the session locked) whether
 * this host may touch it at this epoch; < 0 (with detail) refuses. Without
 * one (a standalone host) nothing changes. */
typedef int (*SessionGuardFn)(void *userdata, const char *session, int64_t epoch);
void session_host_set_guard(SessionHost *h, SessionGuardFn fn, void *userdata);
/* In a fleet: asked by take offline (handoff_grant_offline()) after the final
 * checkpoint and before the session's row names the laptop: the fleet gives
 * session (owned here at epoch) to holder at epoch + 1 with the grant's lease
 * end first (its transaction decides); < 0 (with detail) refuses, and the
 * session resumes here. Without one nothing changes. */
typedef int (*SessionGiveFn)(void *userdata, const char *session, int64_t epoch, const char *holder,
                             int64_t lease_until);
void session_host_set_give(SessionHost *h, SessionGiveFn fn, void *userdata);
/* In a fleet: asked by reclaim (handoff_reclaim()) before the session's row
 * names this host again: the fleet takes session from holder (its owner at
 * epoch) to this host at epoch + 1 first; < 0 (with detail) refuses. */
typedef int (*SessionTakeFn)(void *userdata, const char *session, const char *holder, int64_t epoch);
void session_host_set_take(SessionHost *h, SessionTakeFn fn, void *userdata);
/* Borrowed. */
const char *session_host_ram_dir(const SessionHost *h);
/* The store given to session_host_new() (borrowed; may be NULL). */
Store *session_host_store(const SessionHost *h);

typedef struct SessionCreate {
        const char *name;
        const char *user;
        const char *image;        /* image name: the store ref images/<image> */
        const char *kernel;       /* file, imported into the store; NULL: the image's own
                                   * (roam image import --kernel), else default_kernel */
        const char *initrd;       /* file or NULL */
        const char *default_kernel, *default_initrd; /* for an image without boot files, or NULL */
        const char *append;       /* NULL: SESSION_APPEND_DEFAULT */
        const char *profile_disk; /* raw file or NULL */
        uint64_t ram_mib;         /* 0: VM_RAM_MIB_DEFAULT */
        unsigned cpus;            /* 0: 1 */
        const char *accel;        /* NULL: "auto" */
        bool agent;               /* a port for qemu-guest-agent */
        bool terminal_server;     /* desks inside (src/desk/): the transfer disk, roam.ts=1 */
        VmPolicy policy;          /* 0: VM_POLICY_PERSISTENT */
} SessionCreate;

/* A terminal server's transfer disk (sessions/NAME/xfer.raw, sparse): a
 * desk's checkpoint goes through it, at most this big. */
#define SESSION_XFER_BYTES (4ull << 30)

typedef enum SessionAgentState {
        SESSION_AGENT_NONE,      /* the session has no agent port */
        SESSION_AGENT_DOWN,      /* it does not run here */
        SESSION_AGENT_SILENT,    /* it runs, the agent did not answer in time */
        SESSION_AGENT_ANSWERING,
        _SESSION_AGENT_STATE_MAX,
} SessionAgentState;
typedef struct SessionAgentStatus {
        SessionAgentState state;
        uint64_t ping_ms;  /* ANSWERING: the round trip */
        int64_t checked;   /* unix time of the look (0: never looked) */
        char error[160];   /* SILENT: why */
} SessionAgentStatus;
/* "none", "down", "silent", "answering". */
const char *session_agent_state_to_string(SessionAgentState s);
/* Asks the agent (connect, sync, guest-ping within timeout_ms; 0 =
 * GUEST_AGENT_PING_MS) and remembers the answer in the host (below). Never
 * fails for a silent agent: that is its state. -ENOENT for an unknown
 * session. */
int session_agent_probe(SessionHost *h, const char *name, int timeout_ms, SessionAgentStatus *ret);
/* The last probe's answer for name (checked = 0 when there was none). */
void session_agent_cached(SessionHost *h, const char *name, SessionAgentStatus *ret);

typedef struct SessionInfo {
        SessionRow row; /* row.state is refreshed from QEMU */
        VmConfig config;
        pid_t pid;      /* QEMU's pid while running or paused, else 0 */
        char *dir;      /* state directory */
        char *overlay, *serial, *qmp, *vnc, *ram, *master; /* paths */
        uint64_t overlay_bytes; /* allocated bytes of the overlay */
        uint64_t ram_bytes;     /* allocated bytes of the RAM file */
        SessionAgentStatus agent; /* the host's last look at its guest agent (session_agent_cached()) */
        bool has_profile;       /* it holds the user's profile disk here (sessions/NAME/profile.img) */
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

/* The master file of image disk id on this host ($ROAM_HOME/masters/<hex>.raw,
 * exported from the store once, with the masters a layer sits on): its path
 * in *ret_path (caller frees). A layer whose base the store lacks is refused
 * naming the missing disk. */
int session_master_file(SessionHost *h, const RoamId *disk, char **ret_path);
/* The disks of a master's chain, top (disk) first, down to the raw master:
 * a NULL-terminated list of hex ids (caller strv_free()s). */
int session_master_chain(SessionHost *h, const RoamId *disk, char ***ret);
/* A terminal server's transfer disk: $ROAM_HOME/sessions/NAME/xfer.raw
 * (caller frees), NULL when out of memory. */
char *session_xfer_path(SessionHost *h, const char *name);

/* Boots the session's VM from its overlay (cold boot). -EBUSY if it runs. */
int session_start(SessionHost *h, const char *name);
/* Presses the power button and waits up to timeout_s for the guest to power
 * off; past that, QEMU is quit hard and *ret_forced (may be NULL) is true.
 * The RAM file is removed. */
int session_stop(SessionHost *h, const char *name, int timeout_s, bool *ret_forced);
int session_pause(SessionHost *h, const char *name);
/* A command in the running guest through qemu-guest-agent (the session
 * needs VmConfig.agent and a guest that runs the agent; src/guest/agent.h). */
#define SESSION_EXEC_TIMEOUT_S_DEFAULT GUEST_EXEC_TIMEOUT_S_DEFAULT
typedef GuestExec SessionExec;
typedef GuestExecResult SessionExecResult;
static inline void session_exec_result_done(SessionExecResult *r) {
        guest_exec_result_done(r);
}
/* -ESRCH not running, -EOPNOTSUPP no agent, -ETIMEDOUT the agent did not
 * answer or the command did not end in time; all with a message that names
 * the session. The session's lock is held only to look it up. */
int session_exec(SessionHost *h, const char *name, const SessionExec *e, SessionExecResult *ret);

/* The guest agent's liveness. */

/* Writes the running session's display as a PNG file (QMP screendump),
 * complete or not at all (temp file beside it, fsync, rename). */
int session_screenshot(SessionHost *h, const char *name, const char *file);
int session_resume(SessionHost *h, const char *name);

/* One session with its state refreshed. Caller frees with session_info_done(). */
int session_get(SessionHost *h, const char *name, SessionInfo *ret);
/* All sessions by name. Caller frees with session_info_list_free(). */
int session_list(SessionHost *h, SessionInfo **ret, size_t *ret_n);

/* Encrypted homes (a laptop's, crypto/home-keys.h): what is plain of a
 * session — overlay, device state, the fast-hash sidecars, the serial log —
 * lives on tmpfs in $ROAM_RAM_DIR/NAME.files beside its RAM file (refused
 * when that is not tmpfs), and reaches the disk only through the encrypted
 * store: session_stop() puts the disk away as a powered-off checkpoint and
 * drops it from tmpfs; a start or a powered-off checkpoint brings it back
 * from the latest checkpoint. session_put_away() does the same for a session
 * that does not run ('roam lock'; one that is not owned here loses only its
 * tmpfs copy); all: its serial log too. 0 on a plain home. */
int session_put_away(SessionHost *h, const char *name, bool all);

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
        bool powered_off;  /* a powered-off checkpoint: the overlay alone */
        int64_t seq;       /* its number: ref sessions/<user>/<name>/<seq %06d> */
        uint64_t pause_ns; /* stop -> cont, as the guest saw it */
        uint64_t devstate_ns, copy_ns, import_ns, total_ns;
        uint64_t stop_ns;  /* of devstate_ns: the guest stopped (QEMU flushes its disks) */
        /* of copy_ns: reading RAM, overlay and profile against their bases;
         * the device state; storing and making durable what was new */
        uint64_t scan_ns, devstate_import_ns, finish_ns;
        /* before the pause: the bases loaded (and a pre-pass when due); after
         * what pause_ns's paused part stored: the sidecars, the manifest and
         * its refs, and (quitting) QEMU's end */
        uint64_t prepass_ns, sidecars_ns, publish_ns, end_ns;
        uint64_t chunks, new_chunks, new_bytes, stored_bytes; /* sums over ram, overlay, devstate */
        uint64_t ram_new_chunks, overlay_new_chunks;
} SessionCheckpointResult;

/* Takes a checkpoint of a running or paused session (a paused one stays
 * paused). Of a stopped or created session it takes a powered-off checkpoint:
 * the overlay alone (no QEMU, no pause; flags are ignored; of the counters
 * only the overlay's and total_ns are set). A crashed session is refused
 * (its disk may be torn: start and stop it first). ret may be NULL. */
int session_checkpoint(SessionHost *h, const char *name, unsigned flags, SessionCheckpointResult *ret);

/* Where a live checkpoint's time went, for a log line: "bases B, stop S,
 * device state D, into the store C [RAM and disks R, device state I, stored
 * and durable F], sidecars X, manifest M, QEMU ends Q" (ms). Returns buf. */
const char *session_checkpoint_parts(const SessionCheckpointResult *ck, char *buf, size_t n);

/* Finds a checkpoint of user/name: spec NULL or "latest", a sequence number
 * ("3", "000003"), or a 64-hex manifest id. -ENOENT with detail. */
int session_checkpoint_resolve(SessionHost *h, const char *user, const char *name, const char *spec, RoamId *ret);

/* Checks that manifest id is a checkpoint whose objects and chunks are all in
 * the store (ram and devstate are required unless it is powered off). -ENOENT/-EBADMSG with a detail naming what is missing. On
 * success *ret (may be NULL) is the parsed JSON (caller json_decref()s). */
int session_checkpoint_verify(Store *s, const RoamId *id, json_t **ret);

typedef struct SessionRestoreResult {
        RoamId id;
        bool powered_off;   /* the checkpoint was powered off: the session is stopped */
        uint64_t verify_ns; /* is all of the checkpoint here (part of export_ns) */
        uint64_t ram_ns;    /* RAM file (part of export_ns) */
        bool ram_staged;    /* ... patched from a staged file (session_stage_ram()) */
        bool warm;          /* into the QEMU started with the staging (launch_ns 0) */
        uint64_t export_ns; /* store -> files */
        uint64_t launch_ns; /* QEMU start until it answers (part of qemu_ns) */
        uint64_t qemu_ns;   /* QEMU start, device state, cont (0 when powered off) */
        uint64_t devstate_ns; /* ... of it loading the device state, */
        uint64_t cont_ns;     /* ... and cont (the rest: records in the catalog) */
        uint64_t total_ns;
} SessionRestoreResult;

/* Restores a checkpoint (spec as in session_checkpoint_resolve()) into a
 * session that is not running, and resumes it; a powered-off checkpoint
 * replaces the overlay (rebased onto this host's master) and leaves the
 * session stopped. A checkpoint with missing chunks fails before anything
 * changes. When no session NAME exists here and spec is a manifest id, the
 * session is adopted from the manifest (a move's receiving side) at the
 * manifest's epoch. ret may be NULL. */
typedef struct SessionStageResult {
        bool full;               /* written in full (nothing staged before) */
        uint64_t chunks_written; /* else: chunks that differed */
        double seconds;
        bool warm;               /* a QEMU waits on it (session_host_set_warm()) */
        bool warm_started;       /* ... started now (else an earlier one was patched) */
        double warm_seconds;
        char warm_error[256];    /* why no QEMU waits ("" when one does, or none was tried) */
} SessionStageResult;

/* Writes the RAM of checkpoint (whose chunks are all in the store) ahead of
 * a restore of session name on this host, into the host's RAM directory:
 * the next restore of name (session_restore(), session_move_in()) then
 * writes only the chunks that changed since. Staging again patches the
 * staged file. Meant for a session that runs elsewhere (a laptop stages the
 * server's pre-copy). Costs the RAM directory the checkpoint's non-zero RAM. */
int session_stage_ram(SessionHost *h, const char *name, const RoamId *checkpoint, SessionStageResult *ret);
/* The RAM file staged for name, mapped read-only (its RAM index id in id):
 * a plain copy of that blob, for rebuilding a remainder's pages from
 * (sync_pack_ask_attach_plain()) without reading the store. It holds the
 * staged bytes until the restore that takes the file writes into it: done
 * with it before that. 0 with it, -ENOENT when nothing is staged. */
typedef struct SessionStagedView {
        RoamId id;
        void *addr;
        size_t len;
} SessionStagedView;
int session_staged_view(SessionHost *h, const char *name, SessionStagedView *ret);
void session_staged_view_done(SessionStagedView *v);
/* Removes what session_stage_ram() wrote for name (when it will not come:
 * the session stopped elsewhere). */
void session_unstage_ram(SessionHost *h, const char *name);

/* Warm restores (on by default): when RAM is staged, the QEMU that will
 * restore it is started too and waits (-incoming defer) on the staged RAM
 * and the pre-copy's overlay, so that the restore of the hand-over patches
 * both in place and only loads the device state (src/session/warm.c). */
void session_host_set_warm(SessionHost *h, bool on);
/* Ends the waiting QEMU of name, if any. */
void session_warm_stop(SessionHost *h, const char *name);
/* Ends the waiting QEMUs that will not be used (of sessions running here, or
 * whose staged RAM is gone): at a daemon's start; all of them when all (at
 * its end). */
void session_warm_sweep(SessionHost *h, bool all);

int session_restore(SessionHost *h, const char *name, const char *spec, SessionRestoreResult *ret);

/* Adopts checkpoint checkpoint_hex (a 64-hex manifest id, already in the
 * store, e.g. uploaded by a laptop) as session name on this host, owned here
 * at epoch:
 *   - no session name here: it is created from the manifest (user, image,
 *     config with its policy, sequence number);
 *   - a session name owned elsewhere (away): it must belong to the same user,
 *     epoch must be newer than the one known here (-ESTALE), and it becomes
 *     owned here; if the restore then fails, the old owner and epoch are put
 *     back;
 *   - a session name owned here already: -EBUSY.
 * Then the checkpoint is restored (session_restore()): a powered-off one
 * leaves the session stopped (finalize or start it next), a running one
 * resumes it. Finally sessions/<user>/<name>/latest names the checkpoint.
 * Everything is verified (all chunks present, the manifest names session
 * name) before anything changes. epoch < 0: one more than both the
 * checkpoint's epoch and the epoch known here. *ret (may be NULL) is the
 * session afterwards; caller frees with session_info_done(). */
int session_adopt(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, SessionInfo *ret);

/* The profile disk of user on this host ($ROAM_HOME/profiles/<user>.img),
 * made when missing: a sparse raw file of SESSION_PROFILE_MIB MiB with an
 * empty ext4 (mke2fs -t ext4 -q), created under a temp name and linked into
 * place, so a concurrent call never sees a half-made disk. Caller frees
 * *ret (the absolute path). -EINVAL (user name), or the errno of what failed
 * with a detail naming the path. */
int session_profile_disk(SessionHost *h, const char *user, char **ret);

/* Which session of this host holds user's profile ($ROAM_HOME/profiles/
 * USER.hold, a line "SESSION SINCE"): 0 and session (and *ret_since, may be
 * NULL), -ENOENT when none does. */
int session_profile_hold(SessionHost *h, const char *user, char session[static NAME_MAX_LEN + 1],
                         int64_t *ret_since);
/* Pure (fuzzed): parses the line of a hold file. -EBADMSG. */
int session_profile_hold_parse(const char *text, size_t len, char session[static NAME_MAX_LEN + 1],
                               int64_t *ret_since);

typedef struct SessionFinalizeResult {
        VmPolicy policy;
        bool reset;            /* the overlay was replaced by a fresh one (pooled) */
        char logoff[256];      /* the guest's last "roam-guest: logoff ..." console
                                * line of this boot, or "" if it printed none */
        uint64_t boot_ns;      /* QEMU start -> the guest powered itself off */
        uint64_t reset_ns;     /* the overlay reset (pooled) */
        uint64_t total_ns;
        bool profile_saved;    /* the profile disk went into the store: */
        RoamId profile;        /* users/USER/profile, this manifest */
} SessionFinalizeResult;

/* Finalizes a stopped (or created) session: boots it once with the kernel
 * command line plus " roam.logoff=1 roam.user=<user>" and the user's profile
 * disk (session_profile_disk(), locked with flock for the boot, so two
 * finalizes of one user take turns) as the second virtio disk instead of the
 * configured one; the guest runs its log-off hook and powers itself off. Then
 * by the policy: persistent keeps the overlay; pooled replaces it with a
 * fresh overlay over the master (created beside it, renamed over it). The
 * session is left stopped either way.
 *
 * Errors (all leave the overlay as it was and the session stopped): -EBUSY
 * for a running or paused session, -EINVAL for a crashed one; -ETIMEDOUT if
 * the guest did not power off within timeout_s (QEMU is ended hard); -EIO if
 * the guest reported "roam-guest: logoff failed". ret may be NULL. */
int session_finalize_timeout(SessionHost *h, const char *name, int timeout_s, SessionFinalizeResult *ret);
/* The same with SESSION_FINALIZE_TIMEOUT_S_DEFAULT. */
int session_finalize(SessionHost *h, const char *name, SessionFinalizeResult *ret);

/* Pure helpers (exposed for the tests). */

/* The kernel command line of a finalize boot: append (may be NULL) without
 * any roam.logoff= or roam.user= words, plus " roam.logoff=1 roam.user=USER".
 * -EINVAL if user is not a valid name, -E2BIG past VM_APPEND_MAX. Caller
 * frees *ret. */
int session_logoff_append(const char *append, const char *user, char **ret);
/* Copies the last line of log (len bytes, not NUL-terminated) that starts
 * with "roam-guest: logoff " into buf (without "\r\n"; truncated to size).
 * 1 if found, 0 if not (buf = ""). */
int session_logoff_line(const char *log, size_t len, char *buf, size_t size);

/* Changes the owner (see session_db_set_owner()). Refuses while QEMU runs
 * here (-EBUSY) unless the new owner is local. */
int session_set_owner(SessionHost *h, const char *name, const char *owner, int64_t epoch, int64_t expected_epoch);

/* After a crash of the process that checkpointed or restored session name
 * (session-internal.h, qemu_op_note()): a guest a checkpoint left paused runs
 * again, a QEMU a restore left half-started is ended (the session is then
 * "crashed", to be restored). 1 when it did something (what, one line, in
 * what[size]), 0 when nothing was left to do or the operation still runs. */
int session_recover_qemu_op(SessionHost *h, const char *name, char *what, size_t size);

/* The path of the serial console log of a session. Caller frees. */
int session_log_path(SessionHost *h, const char *name, char **ret);
