/* SPDX-License-Identifier: MIT */
#include "session-internal.h"
#include "host-id.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/manifest.h"
#include "../store/page-index.h"

/* The first half of an incremental import of path from base (NULL = none):
 * chunks pending or, up to capture bytes, copied (see blob_import_fd_begin()).
 * map: a RAM file (which nobody truncates), read through the mapping kept
 * for it (ram-map.c). pages: also its page index (a RAM file: the next
 * hand-over's remainder then goes as the pages that changed, src/sync/pages.h). */
static int import_begin(SessionHost *h, const char *path, const BlobBase *base, bool map, uint64_t capture,
                        bool pages, BlobPending **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        BlobOptions o = { .map = map, .capture_max = capture, .page_index = pages };
        RamMap *rm = map ? ram_map_lend(h, path, fd, &o) : NULL;
        int r = blob_import_fd_begin(h->store, fd, (uint64_t) st.st_size, &o, base, ret);
        ram_map_put(h, rm); /* the first half read all it reads */
        if (r < 0)
                return err_set_if_none(r, "cannot import '%s' into the store: %s", path, strerror(-r));
        return 0;
}

int manifest_id(json_t *m, const char *role, RoamId *ret) {
        const char *s = json_string_value(json_object_get(json_object_get(m, "objects"), role));
        if (!s || id_from_hex(s, ret) < 0)
                return err_set(-EBADMSG, "checkpoint lacks a valid %s id", role);
        return 0;
}

/* ---- checkpoint ---- */

static void add_stats(SessionCheckpointResult *res, const BlobStats *b) {
        res->chunks += b->chunks;
        res->new_chunks += b->new_chunks;
        res->new_bytes += b->new_bytes;
        res->stored_bytes += b->stored_bytes;
}

/* Completes objects (taken over: {"ram","overlay","devstate"} or just
 * {"overlay"}) with kernel, initrd and image, writes the checkpoint manifest
 * of o, its refs (numbered and latest) and the catalog's record of it. */
static int publish_checkpoint(SessionHost *h, Op *o, json_t *objects, bool powered_off, uint64_t pause_ns,
                              RoamId *ret_id, int64_t *ret_seq) {
        _cleanup_(json_decrefp) json_t *objs = objects;
        if (json_object_set_new(objs, "kernel", json_string(o->config.kernel_id)) < 0 ||
            json_object_set_new(objs, "image", json_string(o->row.image_id)) < 0 ||
            (o->config.initrd_id && json_object_set_new(objs, "initrd", json_string(o->config.initrd_id)) < 0))
                return -ENOMEM;
        _cleanup_(json_decrefp) json_t *cfg = NULL;
        int r = vm_config_to_json(&o->config, &cfg);
        if (r < 0)
                return r;
        int64_t seq = o->row.checkpoints + 1;
        _cleanup_(json_decrefp) json_t *m = json_pack(
                "{s:s, s:s, s:s, s:s, s:s, s:O, s:O, s:s?, s:I, s:I, s:I, s:I}", "kind", "checkpoint", "session",
                o->row.name, "user", o->row.user, "image", o->row.image_id, "image_name", o->row.image, "objects",
                objs, "config", cfg, "parent", o->row.last_checkpoint, "epoch", (json_int_t) o->row.epoch, "seq",
                (json_int_t) seq, "created", (json_int_t) time(NULL), "pause_ms", (json_int_t) (pause_ns / 1000000));
        if (!m)
                return -ENOMEM;
        if (!o->row.last_checkpoint && json_object_set_new(m, "parent", json_null()) < 0)
                return -ENOMEM;
        if (powered_off && json_object_set_new(m, "powered_off", json_true()) < 0)
                return -ENOMEM;
        char host[HOST_ID_LEN + 1];
        if (host_id_get(h->home, host) >= 0 && json_object_set_new(m, "host", json_string(host)) < 0)
                return -ENOMEM;
        err_clear();
        RoamId id;
        r = put_manifest(h->store, m, &id);
        if (r < 0)
                return r;
        char leaf[32], ref[REF_NAME_MAX_LEN + 1], hex[ID_HEX_SIZE];
        snprintf(leaf, sizeof leaf, "%06lld", (long long) seq);
        r = session_ref(o->row.user, o->row.name, leaf, ref, sizeof ref);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &id, NULL);
        if (r >= 0)
                r = session_ref(o->row.user, o->row.name, "latest", ref, sizeof ref);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &id, NULL);
        failpoint("checkpoint:after-refs");
        if (r >= 0)
                r = session_db_set_checkpoint(h->catalog, o->row.name, id_to_hex(&id, hex), seq);
        if (r < 0)
                return r;
        *ret_id = id;
        *ret_seq = seq;
        return 0;
}

/* A powered-off checkpoint of o (no QEMU runs; the lock is held, so nobody
 * starts it meanwhile): the overlay file is consistent as it is (QEMU flushed
 * it when it ended) and is imported directly. */
int checkpoint_powered_off(SessionHost *h, Op *o, SessionCheckpointResult *ret) {
        if (o->row.state == SESSION_CRASHED)
                return err_set(-EINVAL,
                               "session '%s' crashed and its disk may be torn (start it and stop it cleanly with "
                               "'roam session stop %s' before a powered-off checkpoint)",
                               o->row.name, o->row.name);
        int k = overlay_bring_back(h, o); /* an encrypted laptop's disk put away: from the store */
        if (k < 0)
                return k;
        uint64_t t0 = now_ns();
        SessionCheckpointResult res = { .powered_off = true };
        RoamId ov_id, prof_id;
        BlobStats bs;
        int r = import_file(h->store, o->paths.overlay, &ov_id, &bs);
        if (r < 0)
                return err_wrap(r, "session '%s'", o->row.name);
        add_stats(&res, &bs);
        res.overlay_new_chunks = bs.new_chunks;
        /* the user's profile disk travels with the session that holds it */
        bool prof = access(o->paths.profile, F_OK) == 0;
        if (prof) {
                r = import_file(h->store, o->paths.profile, &prof_id, &bs);
                if (r < 0)
                        return err_wrap(r, "session '%s': its profile disk", o->row.name);
                add_stats(&res, &bs);
        }
        res.import_ns = now_ns() - t0;
        char ov_hex[ID_HEX_SIZE], prof_hex[ID_HEX_SIZE];
        json_t *objects = json_pack("{s:s}", "overlay", id_to_hex(&ov_id, ov_hex));
        if (objects && prof && json_object_set_new(objects, "profile", json_string(id_to_hex(&prof_id, prof_hex))) < 0)
                return -ENOMEM;
        if (!objects)
                return -ENOMEM;
        r = publish_checkpoint(h, o, objects, true, 0, &res.id, &res.seq);
        if (r < 0)
                return r;
        res.total_ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

/* The RAM file and the overlay of a session, each imported incrementally
 * from the base its sidecar (ram.fast, overlay.fast in the session
 * directory) describes. Every import of them (pre-copy, checkpoint, the last
 * checkpoint of a move) reads the sidecar and writes the next one, so the
 * next import SHA-256-hashes and stores only what changed since the latest
 * one. A missing, torn or stale sidecar (its chunks gone after a gc) means a
 * full import, never an error: a sidecar is a cache. */
typedef struct LiveFiles {
        bool prof;                                           /* the session holds a profile disk */
        BlobBase *ram_base, *ov_base, *prof_base;
        BlobPending *ram_pending, *ov_pending, *dev_pending, *prof_pending; /* between begin and finish */
        BlobFast *ram_fast, *ov_fast, *prof_fast;            /* of the latest import */
        RoamId ram_id, ov_id, dev_id, prof_id;
        BlobStats ram_stats, ov_stats, dev_stats, prof_stats;
} LiveFiles;

static void live_files_done(LiveFiles *l) {
        blob_base_free(l->ram_base);
        blob_base_free(l->ov_base);
        blob_pending_free(l->ram_pending);
        blob_pending_free(l->ov_pending);
        blob_pending_free(l->dev_pending);
        blob_fast_free(l->ram_fast);
        blob_fast_free(l->ov_fast);
        blob_base_free(l->prof_base);
        blob_pending_free(l->prof_pending);
        blob_fast_free(l->prof_fast);
        *l = (LiveFiles) {};
}

/* Loads both bases from the sidecars (store lookups: before the pause). */
static int live_files_load(SessionHost *h, const Paths *p, LiveFiles *l) {
        l->prof = access(p->profile, F_OK) == 0;
        int r = blob_base_load(h->store, p->ram_fast, &l->ram_base);
        if (r >= 0)
                r = blob_base_load(h->store, p->overlay_fast, &l->ov_base);
        if (r >= 0 && l->prof)
                r = blob_base_load(h->store, p->profile_fast, &l->prof_base);
        return r;
}

/* Changed chunks a paused checkpoint copies and stores after cont: beyond
 * this they are hashed and written while paused. */
#define CHECKPOINT_CAPTURE_MAX (256ULL << 20)

/* Reads RAM file and overlay against their bases. capture: see
 * import_begin(); with it, this is only a fast hash over both files and a
 * copy of what changed (the paused part). ram_pages: the RAM's page index too
 * (not for the last checkpoint of a hand-over: nothing is sent against it
 * and its pause is downtime). */
static int live_files_begin(SessionHost *h, const Paths *p, LiveFiles *l, uint64_t capture, bool ram_pages) {
        blob_pending_free(TAKE_PTR(l->ram_pending));
        blob_pending_free(TAKE_PTR(l->ov_pending));
        blob_pending_free(TAKE_PTR(l->prof_pending));
        int r = import_begin(h, p->ram, l->ram_base, true, capture, ram_pages, &l->ram_pending);
        if (r >= 0)
                r = import_begin(h, p->overlay, l->ov_base, false, capture, false, &l->ov_pending);
        if (r >= 0 && l->prof)
                r = import_begin(h, p->profile, l->prof_base, false, capture, false, &l->prof_pending);
        return r;
}

/* Also the device state (no base: it differs every time). */
static int live_files_begin_devstate(SessionHost *h, const Paths *p, LiveFiles *l) {
        blob_pending_free(TAKE_PTR(l->dev_pending));
        return import_begin(h, p->devstate, NULL, false, 0, false, &l->dev_pending);
}

static int finish_one(BlobPending **p, RoamId *ret_id, BlobStats *ret_stats, BlobFast **ret_fast) {
        if (!*p)
                return 0;
        if (ret_fast)
                blob_fast_free(TAKE_PTR(*ret_fast));
        int r = blob_import_finish(*p, ret_id, ret_stats, ret_fast);
        blob_pending_free(TAKE_PTR(*p));
        return r;
}

/* Stores what was copied, makes the chunks durable (one store_commit() for
 * all, the first finish does it) and writes the index objects. */
static int live_files_finish(LiveFiles *l) {
        int r = finish_one(&l->ram_pending, &l->ram_id, &l->ram_stats, &l->ram_fast);
        if (r >= 0)
                r = finish_one(&l->ov_pending, &l->ov_id, &l->ov_stats, &l->ov_fast);
        if (r >= 0)
                r = finish_one(&l->prof_pending, &l->prof_id, &l->prof_stats, &l->prof_fast);
        if (r >= 0)
                r = finish_one(&l->dev_pending, &l->dev_id, &l->dev_stats, NULL);
        return r;
}

static int live_files_import(SessionHost *h, const Paths *p, LiveFiles *l) {
        int r = live_files_begin(h, p, l, 0, true);
        return r < 0 ? r : live_files_finish(l);
}

/* Makes the latest import the base of the next one (store lookups). */
static int live_files_rebase(SessionHost *h, LiveFiles *l) {
        blob_base_free(TAKE_PTR(l->ram_base));
        blob_base_free(TAKE_PTR(l->ov_base));
        blob_base_free(TAKE_PTR(l->prof_base));
        int r = blob_base_new(h->store, l->ram_fast, &l->ram_base);
        int k = blob_base_new(h->store, l->ov_fast, &l->ov_base);
        int m = l->prof_fast ? blob_base_new(h->store, l->prof_fast, &l->prof_base) : 0;
        if (r == -ENOMEM || k == -ENOMEM || m == -ENOMEM)
                return -ENOMEM;
        err_clear(); /* no base: a full import, still correct */
        return 0;
}

void ram_pages_keep(Store *s, const char *ram_fast, const RoamId *ram_index) {
        _cleanup_free_ char *list = NULL;
        if (asprintf(&list, "%s.pages", ram_fast) >= 0)
                (void) page_index_keep_recent(s, list, ram_index, RAM_PAGE_INDEXES_KEPT);
        err_clear(); /* a cache: nothing else depends on it */
}

/* Writes the sidecars of the latest import; a failure only costs the next
 * import its base. */
static void live_files_save(Store *s, const Paths *p, const LiveFiles *l) {
        if (l->ram_fast && blob_fast_save(l->ram_fast, p->ram_fast) < 0)
                (void) unlink(p->ram_fast);
        if (l->ram_fast)
                ram_pages_keep(s, p->ram_fast, &l->ram_fast->index_id);
        if (l->ov_fast && blob_fast_save(l->ov_fast, p->overlay_fast) < 0)
                (void) unlink(p->overlay_fast);
        if (l->prof_fast && blob_fast_save(l->prof_fast, p->profile_fast) < 0)
                (void) unlink(p->profile_fast);
        err_clear();
}

/* A checkpoint that is not the last one of a move first imports RAM and
 * overlay while the guest runs when its base is missing or older than this:
 * the pause then covers only what changed during that pre-pass. */
#define CHECKPOINT_PREPASS_AGE_S 2

static bool sidecar_fresh(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return false;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return now.tv_sec - st.st_mtim.tv_sec < CHECKPOINT_PREPASS_AGE_S;
}

/* 0. before the pause: the bases, and a pre-pass while the guest runs when
 * they are missing or old (not for the last checkpoint of a move, whose every
 * millisecond is downtime however it is split) */
static int checkpoint_prepass(SessionHost *h, Op *o, LiveFiles *live, bool quit, SessionCheckpointResult *res) {
        int r = live_files_load(h, &o->paths, live);
        if (r < 0)
                return r;
        if (!quit && (!live->ram_base || !live->ov_base || (live->prof && !live->prof_base) ||
                      !sidecar_fresh(o->paths.ram_fast))) {
                r = live_files_import(h, &o->paths, live);
                if (r >= 0) {
                        live_files_save(h->store, &o->paths, live);
                        r = live_files_rebase(h, live);
                }
                if (r < 0)
                        return err_wrap(r, "session '%s'", o->row.name);
                /* what the pre-pass stored counts as stored by this checkpoint */
                res->new_chunks = live->ram_stats.new_chunks + live->ov_stats.new_chunks;
                res->new_bytes = live->ram_stats.new_bytes + live->ov_stats.new_bytes;
                res->stored_bytes = live->ram_stats.stored_bytes + live->ov_stats.stored_bytes;
                res->ram_new_chunks = live->ram_stats.new_chunks;
                res->overlay_new_chunks = live->ov_stats.new_chunks;
        }
        return 0;
}

/* Stops the guest (*ret_was_running: it ran). */
static int checkpoint_stop_guest(Qmp *q, const char *name, bool *ret_was_running) {
        _cleanup_free_ char *status = NULL;
        int r = qmp_query_status(q, &status);
        if (r < 0)
                return r;
        bool was_running = !strcmp(status, "running");
        if (!strcmp(status, "postmigrate")) {
                /* left by an interrupted checkpoint: see checkpoint_resume_guest() */
                r = qmp_cont(q);
                if (r >= 0)
                        r = qmp_stop(q);
                if (r < 0)
                        return err_wrap(r, "session '%s'", name);
        }
        if (was_running) {
                r = qmp_stop(q);
                if (r < 0)
                        return err_wrap(r, "session '%s'", name);
        }
        *ret_was_running = was_running;
        return 0;
}

/* Ends the pause: QEMU ends when quitting (the state saved, *q freed), the
 * guest runs again when it ran, else it is paused as before. */
static int checkpoint_resume_guest(SessionHost *h, Op *o, Qmp **q, bool quit, bool was_running) {
        int k = 0;
        if (quit) {
                /* the last checkpoint of a move: QEMU ends, the session stays as saved
                 * (everything is in the store: no clean-up of QEMU's is needed) */
                qmp_free(TAKE_PTR(*q));
                /* not waited for: its exit (the teardown of its RAM mapping) is
                 * not the guest's downtime; the next launch waits for it */
                qemu_ending(h, o->row.name, vm_end_saved_nowait(o->pid));
                (void) unlink(o->paths.qmp);
                (void) unlink(o->paths.vnc);
                (void) unlink(o->paths.pidfile);
                (void) ram_unlink(h, o->paths.ram);
                o->pid = 0;
                k = set_state(h, o, SESSION_STOPPED);
        } else if (was_running)
                k = qmp_cont(*q);
        else {
                /* QEMU 7.2 refuses to migrate a VM left in "postmigrate" ("paused due to
                 * previous migration") and keeps its disks inactive until cont: a paused
                 * session is brought back to plain "paused" with cont + stop (the guest
                 * runs for a moment after the checkpoint was taken) */
                k = qmp_cont(*q);
                if (k >= 0)
                        k = qmp_stop(*q);
        }
        return k;
}

/* 1. pause: device state; RAM and overlay imported from their bases (only
 * changed chunks are hashed and stored). *ret_resumed: when the pause ended.
 * Quitting, the guest stays paused (*ret_was_running: it ran): it ends only
 * once the checkpoint is published (checkpoint_end_quit()). */
static int checkpoint_paused(SessionHost *h, Op *o, Qmp **q, LiveFiles *live, bool quit,
                             SessionCheckpointResult *res, uint64_t *ret_resumed, bool *ret_was_running) {
        const char *name = o->row.name;
        int r = qemu_op_note(o, "pause"); /* a crash while paused: recovery lets the guest run again */
        if (r < 0)
                return r;
        uint64_t t0 = now_ns();
        bool was_running = false;
        r = checkpoint_stop_guest(*q, name, &was_running);
        if (r < 0)
                return r;
        res->stop_ns = now_ns() - t0;
        (void) unlink(o->paths.devstate);
        r = vm_save_devstate(*q, o->paths.devstate, 60000);
        if (r < 0)
                r = err_wrap(r, "session '%s': saving the device state failed", name);
        uint64_t t1 = now_ns();
        failpoint("checkpoint:paused");
        /* QEMU flushed the overlay at stop and writes neither file until cont.
         * Quitting, everything is durably in the store before QEMU ends, so
         * that a failure leaves the guest running here (and copies would not
         * shorten anything: the guest is down until the target runs it) */
        if (r >= 0)
                r = live_files_begin(h, &o->paths, live, quit ? 0 : CHECKPOINT_CAPTURE_MAX, !quit);
        uint64_t t_scan = now_ns();
        if (r >= 0 && quit)
                r = live_files_begin_devstate(h, &o->paths, live);
        uint64_t t_dev = now_ns();
        if (r >= 0 && quit)
                r = live_files_finish(live);
        uint64_t t2 = now_ns();
        res->scan_ns = t_scan - t1;
        res->devstate_import_ns = t_dev - t_scan;
        res->finish_ns = t2 - t_dev;
        res->devstate_ns = t1 - t0;
        res->copy_ns = t2 - t1; /* the paused part of the import */
        *ret_was_running = was_running;
        if (r >= 0 && quit) {
                res->pause_ns = t2 - t0; /* so far: it ends with QEMU */
                *ret_resumed = t2;
                return 0;
        }
        int k = checkpoint_resume_guest(h, o, q, false, was_running);
        uint64_t t3 = now_ns();
        qemu_op_clear(o);
        if (r >= 0 && k < 0)
                r = err_wrap(k, "session '%s': cannot resume the guest after the checkpoint", name);
        res->pause_ns = t3 - t0;
        *ret_resumed = t3;
        return r;
}

/* The end of a quitting checkpoint, published (r >= 0) or not: QEMU ends, or
 * the guest runs again as it did. */
static int checkpoint_end_quit(SessionHost *h, Op *o, Qmp **q, int r, bool was_running) {
        int k = checkpoint_resume_guest(h, o, q, r >= 0, was_running);
        qemu_op_clear(o);
        if (r >= 0 && k < 0)
                r = err_wrap(k, "session '%s': cannot end QEMU after the checkpoint", o->row.name);
        return r;
}

/* 2. after the pause (since resumed): durable chunks and index objects,
 * device state (unless quitting), sidecars */
static int checkpoint_store(SessionHost *h, Op *o, LiveFiles *live, bool quit, SessionCheckpointResult *res,
                            uint64_t resumed) {
        int r = 0;
        if (!quit) {
                r = live_files_begin_devstate(h, &o->paths, live);
                if (r >= 0)
                        r = live_files_finish(live);
        }
        if (r < 0)
                return r;
        live_files_save(h->store, &o->paths, live);
        add_stats(res, &live->ram_stats);
        add_stats(res, &live->ov_stats);
        add_stats(res, &live->dev_stats);
        add_stats(res, &live->prof_stats);
        res->ram_new_chunks += live->ram_stats.new_chunks;
        res->overlay_new_chunks += live->ov_stats.new_chunks;
        res->import_ns = res->copy_ns + (now_ns() - resumed);
        return 0;
}

int session_checkpoint(SessionHost *h, const char *name, unsigned flags, SessionCheckpointResult *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        _cleanup_(op_done) Op o = {};
        r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        if (o.row.checkpoints >= SESSION_CHECKPOINT_SEQ_MAX)
                return err_set(-ERANGE, "session '%s' has %d checkpoints, the most it can number", name,
                               SESSION_CHECKPOINT_SEQ_MAX);
        if (o.pid == 0)
                return checkpoint_powered_off(h, &o, ret);
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = connect_op(&o, &q);
        if (r < 0)
                return r;
        SessionCheckpointResult res = {};
        bool quit = flags & SESSION_CHECKPOINT_QUIT;
        uint64_t t_start = now_ns();
        _cleanup_(live_files_done) LiveFiles live = {};
        r = checkpoint_prepass(h, &o, &live, quit, &res);
        if (r < 0)
                return r;
        uint64_t resumed, t_pause = now_ns();
        res.prepass_ns = t_pause - t_start;
        bool was_running = false;
        r = checkpoint_paused(h, &o, &q, &live, quit, &res, &resumed, &was_running);
        if (r < 0)
                return r;
        uint64_t t_side = now_ns();
        r = checkpoint_store(h, &o, &live, quit, &res, resumed);
        uint64_t t_pub = now_ns();
        res.sidecars_ns = t_pub - t_side;

        /* 3. manifest and refs; quitting, before QEMU ends: a checkpoint that
         * cannot be recorded (a full disk, a crash) leaves the guest running
         * here, never ended with its state in no checkpoint */
        if (r >= 0) {
                char ram_hex[ID_HEX_SIZE], ov_hex[ID_HEX_SIZE], dev_hex[ID_HEX_SIZE], prof_hex[ID_HEX_SIZE];
                json_t *objects = json_pack("{s:s, s:s, s:s}", "ram", id_to_hex(&live.ram_id, ram_hex), "overlay",
                                            id_to_hex(&live.ov_id, ov_hex), "devstate",
                                            id_to_hex(&live.dev_id, dev_hex));
                if (objects && live.prof &&
                    json_object_set_new(objects, "profile", json_string(id_to_hex(&live.prof_id, prof_hex))) < 0) {
                        json_decref(objects);
                        objects = NULL;
                }
                r = objects ? publish_checkpoint(h, &o, objects, false, res.pause_ns, &res.id, &res.seq) : -ENOMEM;
        }
        uint64_t t_end = now_ns();
        res.publish_ns = t_end - t_pub;
        if (quit) {
                r = checkpoint_end_quit(h, &o, &q, r, was_running);
                uint64_t t_ended = now_ns();
                res.pause_ns = t_ended - t_pause;
                res.end_ns = t_ended - t_end;
        }
        if (r < 0)
                return r;
        (void) unlink(o.paths.devstate);
        res.total_ns = now_ns() - t_start;
        if (ret)
                *ret = res;
        return 0;
}

const char *session_checkpoint_parts(const SessionCheckpointResult *ck, char *buf, size_t n) {
        snprintf(buf, n,
                 "bases %.0f, stop %.0f, device state %.0f, into the store %.0f [RAM and disks %.0f, device state "
                 "%.0f, stored and durable %.0f], sidecars %.0f, manifest %.0f, QEMU ends %.0f",
                 ck->prepass_ns / 1e6, ck->stop_ns / 1e6, (ck->devstate_ns - ck->stop_ns) / 1e6, ck->copy_ns / 1e6,
                 ck->scan_ns / 1e6, ck->devstate_import_ns / 1e6, ck->finish_ns / 1e6, ck->sidecars_ns / 1e6,
                 ck->publish_ns / 1e6, ck->end_ns / 1e6);
        return buf;
}

/* ---- checkpoints: resolve, verify ---- */

int session_checkpoint_resolve(SessionHost *h, const char *user, const char *name, const char *spec, RoamId *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (spec && strlen(spec) == ID_HEX_SIZE - 1 && id_from_hex(spec, ret) == 0)
                return 0;
        char leaf[32], ref[REF_NAME_MAX_LEN + 1];
        if (!spec || !strcmp(spec, "latest"))
                snprintf(leaf, sizeof leaf, "latest");
        else {
                uint64_t v;
                if (parse_u64(spec, &v) < 0 || v < 1 || v > SESSION_CHECKPOINT_SEQ_MAX)
                        return err_set(-EINVAL,
                                       "checkpoint '%s' is neither 'latest', a number nor a 64-digit id (see "
                                       "'roam session show %s')",
                                       spec, name);
                snprintf(leaf, sizeof leaf, "%06llu", (unsigned long long) v);
        }
        r = session_ref(user, name, leaf, ref, sizeof ref);
        if (r < 0)
                return r;
        r = store_ref_get(h->store, ref, ret);
        if (r == -ENOENT)
                return err_set(-ENOENT,
                               "session '%s' has no checkpoint '%s' (take one with 'roam session checkpoint %s')",
                               name, spec ? spec : "latest", name);
        return r;
}

typedef struct VerifyCtx {
        Store *s;
        uint64_t missing;
        const char *missing_role;
        int error;
        const char *bad_role;
} VerifyCtx;

static int verify_object(const char *role, const RoamId *id, void *userdata) {
        VerifyCtx *v = userdata;
        _cleanup_(index_freep) Index *x = NULL;
        int r = blob_load_index(v->s, id, &x);
        if (r < 0) {
                v->error = r;
                v->bad_role = role;
                return 0;
        }
        uint64_t missing = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++)
                if (!id_is_null(&x->ids[i]) && store_chunk_has(v->s, &x->ids[i]) <= 0)
                        missing++;
        if (missing && !v->missing_role)
                v->missing_role = role;
        v->missing += missing;
        return 0;
}

int session_checkpoint_verify(Store *s, const RoamId *id, json_t **ret) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        _cleanup_free_ void *data = NULL;
        size_t len;
        int r = store_object_get(s, id, MANIFEST_JSON_MAX + 64, &data, &len);
        if (r == -ENOENT)
                return err_set(r, "checkpoint %.12s is not in the store (sync it first)", hex);
        if (r < 0)
                return err_set_if_none(r, "cannot read checkpoint %.12s: %s", hex, strerror(-r));
        _cleanup_(json_decrefp) json_t *j = NULL;
        r = manifest_parse(data, len, &j);
        if (r < 0)
                return err_set_if_none(r, "checkpoint %.12s is malformed", hex);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (!kind || strcmp(kind, "checkpoint"))
                return err_set(-EBADMSG, "object %.12s is not a checkpoint", hex);
        json_t *objs = json_object_get(j, "objects"), *po = json_object_get(j, "powered_off");
        if (po && !json_is_boolean(po))
                return err_set(-EBADMSG, "checkpoint %.12s has a malformed 'powered_off'", hex);
        static const char *const required[] = { "overlay", "kernel", "image", "ram", "devstate" };
        size_t n_required = json_is_true(po) ? 3 : ELEMENTSOF(required);
        for (size_t i = 0; i < n_required; i++)
                if (!json_is_string(json_object_get(objs, required[i])))
                        return err_set(-EBADMSG, "checkpoint %.12s lacks its %s", hex, required[i]);
        VerifyCtx v = { .s = s };
        err_clear();
        r = manifest_foreach_object(j, verify_object, &v);
        if (r < 0)
                return r;
        if (v.error < 0)
                return err_set(v.error == -ENOENT ? -ENOENT : -EBADMSG,
                               "checkpoint %.12s: its %s is %s (sync it again, or run 'roam store fsck')", hex,
                               v.bad_role, v.error == -ENOENT ? "missing" : "damaged");
        if (v.missing)
                return err_set(-ENOENT,
                               "checkpoint %.12s lacks %llu chunks (first in its %s; sync it again, or run 'roam "
                               "store fsck')",
                               hex, (unsigned long long) v.missing, v.missing_role);
        if (ret)
                *ret = TAKE_PTR(j);
        return 0;
}
