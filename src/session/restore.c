/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

/* ---- restore ---- */

/* Creates the row and directory of a session adopted from a checkpoint, at
 * epoch (< 0: the checkpoint's). */
static int adopt(SessionHost *h, const char *name, json_t *m, const RoamId *id, int64_t epoch) {
        const char *user = json_string_value(json_object_get(m, "user"));
        const char *session = json_string_value(json_object_get(m, "session"));
        const char *image = json_string_value(json_object_get(m, "image"));
        const char *image_name = json_string_value(json_object_get(m, "image_name"));
        json_t *seq = json_object_get(m, "seq"), *mepoch = json_object_get(m, "epoch");
        if (!name_is_valid(user) || !session || !image)
                return err_set(-EBADMSG, "checkpoint has no valid user, session or image");
        if (strcmp(session, name))
                return err_set(-EINVAL, "checkpoint belongs to session '%s', not '%s'", session, name);
        _cleanup_(vm_config_donep) VmConfig c = {};
        int r = vm_config_from_json(json_object_get(m, "config"), &c);
        if (r < 0)
                return r;
        _cleanup_free_ char *config_text = NULL;
        r = config_to_text(&c, &config_text);
        if (r < 0)
                return r;
        char hex[ID_HEX_SIZE];
        SessionRow row = {
                .name = (char *) name,
                .user = (char *) user,
                .image = (char *) (image_name ? image_name : "?"),
                .image_id = (char *) image,
                .config = config_text,
                /* "crashed" until the restore that follows ends (running, or
                 * stopped for a powered-off checkpoint): if this process dies
                 * before, the session is one to restore from this checkpoint
                 * (a laptop daemon does that by itself), not a stopped one */
                .state = SESSION_CRASHED,
                .owner = (char *) SESSION_OWNER_LOCAL,
                .epoch = epoch >= 0 ? epoch : json_is_integer(mepoch) ? json_integer_value(mepoch) : 0,
                .last_checkpoint = id_to_hex(id, hex),
                .checkpoints = json_is_integer(seq) ? json_integer_value(seq) : 0,
        };
        r = session_db_insert(h->catalog, &row);
        if (r < 0)
                return r;
        _cleanup_paths_ Paths p = {};
        r = paths_for(h, name, &p);
        if (r >= 0) {
                (void) rm_rf(p.dir);
                r = mkdir_p(p.dir, 0700);
        }
        if (r >= 0)
                r = write_base(h, user, name, image, &c);
        if (r < 0) {
                (void) session_db_delete(h->catalog, name);
                if (p.dir)
                        (void) rm_rf(p.dir);
                return err_set_if_none(r, "cannot adopt session '%s': %s", name, strerror(-r));
        }
        return 0;
}

/* The profile disk of checkpoint m (if it has one) into a temp file beside
 * o's (*ret_tmp, caller renames or removes), after o claimed the user's
 * profile; NULL when the checkpoint has none. */
static int restore_profile(SessionHost *h, Op *o, json_t *m, char **ret_tmp) {
        *ret_tmp = NULL;
        if (!json_object_get(json_object_get(m, "objects"), "profile"))
                return 0;
        RoamId id;
        int r = manifest_id(m, "profile", &id);
        if (r < 0)
                return r;
        r = profile_claim(h, o);
        if (r < 0)
                return err_wrap(r, "cannot restore session '%s'", o->row.name);
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.restore", o->paths.profile) < 0)
                return -ENOMEM;
        r = export_to(h->store, &id, tmp, 0600);
        if (r < 0)
                return r;
        *ret_tmp = TAKE_PTR(tmp);
        return 0;
}

/* Records in the catalog that session o follows checkpoint id with o's config. */
static int record_restored(SessionHost *h, Op *o, const RoamId *id) {
        _cleanup_free_ char *config_text = NULL;
        char hex[ID_HEX_SIZE];
        int r = config_to_text(&o->config, &config_text);
        if (r >= 0)
                r = session_db_set_config(h->catalog, o->row.name, config_text);
        if (r >= 0)
                r = session_db_set_checkpoint(h->catalog, o->row.name, id_to_hex(id, hex), 0);
        return r;
}

/* Restores powered-off checkpoint m into o (locked, not running; o's config
 * and image are the checkpoint's): the overlay, rebased onto this host's
 * master, replaces the session's; master and boot files are materialized so
 * that a later start needs no store; the session is left stopped. */
static int restore_powered_off(SessionHost *h, Op *o, json_t *m, SessionRestoreResult *res, uint64_t t0) {
        const char *name = o->row.name;
        RoamId ov_id, image_id;
        int r;
        if ((r = manifest_id(m, "overlay", &ov_id)) < 0 || (r = manifest_id(m, "image", &image_id)) < 0)
                return r;
        _cleanup_free_ char *ov_tmp = NULL;
        if (asprintf(&ov_tmp, "%s.restore", o->paths.overlay) < 0)
                return -ENOMEM;
        remove_runtime(&o->paths);
        _cleanup_free_ char *prof_tmp = NULL;
        r = restore_profile(h, o, m, &prof_tmp);
        if (r >= 0)
                r = export_to(h->store, &ov_id, ov_tmp, 0600);
        if (r >= 0) {
                /* the master this overlay needs, the boot files, at this host's paths */
                _cleanup_free_ char *kernel = NULL, *initrd = NULL, *master = NULL;
                VmPaths vp;
                r = vm_paths(h, o, &vp, &kernel, &initrd, &master);
                if (r >= 0)
                        r = overlay_rebase(master, ov_tmp);
        }
        if (r >= 0) {
                _cleanup_close_ int fd = open(ov_tmp, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fsync(fd) < 0)
                        r = -errno;
        }
        if (r >= 0 && rename(ov_tmp, o->paths.overlay) < 0)
                r = -errno;
        if (r >= 0 && prof_tmp && rename(prof_tmp, o->paths.profile) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(ov_tmp);
                if (prof_tmp)
                        (void) unlink(prof_tmp);
                return err_set_if_none(r, "cannot restore session '%s': %s", name, strerror(-r));
        }
        (void) fsync_parent(o->paths.overlay);
        (void) unlink(o->paths.profile_fast);
        /* a powered-off session has no RAM and no device state */
        (void) ram_unlink(h, o->paths.ram);
        (void) unlink(o->paths.devstate);
        res->powered_off = true;
        res->export_ns = now_ns() - t0;
        r = record_restored(h, o, &res->id);
        if (r >= 0)
                r = set_state(h, o, SESSION_STOPPED);
        if (r < 0)
                return r;
        res->qemu_ns = 0;
        res->total_ns = now_ns() - t0;
        return 0;
}

/* Restores checkpoint m (verified) into session name (row exists, QEMU not running). */
/* The checkpoint's config and image replace o's. */
static int restore_take_config(Op *o, json_t *m) {
        VmConfig c = {};
        int r = vm_config_from_json(json_object_get(m, "config"), &c);
        if (r < 0)
                return r;
        vm_config_done(&o->config);
        o->config = c;
        const char *image = json_string_value(json_object_get(m, "image"));
        char *image_dup = image ? strdup(image) : NULL;
        if (!image_dup)
                return -EBADMSG;
        free(o->row.image_id);
        o->row.image_id = image_dup;
        return 0;
}

/* The files of checkpoint m: temp names first, renamed into place once all
 * are written (RAM from a staged file when there is one); on failure none
 * of them is left. */
static int restore_files(SessionHost *h, Op *o, json_t *m, SessionRestoreResult *res) {
        const char *name = o->row.name;
        RoamId ram_id, ov_id, dev_id, image_id;
        int r;
        if ((r = manifest_id(m, "ram", &ram_id)) < 0 || (r = manifest_id(m, "overlay", &ov_id)) < 0 ||
            (r = manifest_id(m, "devstate", &dev_id)) < 0 || (r = manifest_id(m, "image", &image_id)) < 0)
                return r;
        r = mkdir_p(h->ram_dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the RAM directory '%s': %s", h->ram_dir, strerror(-r));
        _cleanup_free_ char *master = master_path(h, o->row.image_id);
        _cleanup_free_ char *ov_tmp = NULL;
        if (!master || asprintf(&ov_tmp, "%s.restore", o->paths.overlay) < 0)
                return -ENOMEM;
        remove_runtime(&o->paths);
        _cleanup_free_ char *prof_tmp = NULL;
        r = restore_profile(h, o, m, &prof_tmp);
        if (r < 0)
                return r;
        uint64_t t_ram = now_ns();
        r = write_ram(h, name, &ram_id, o->paths.ram_snap, &res->ram_staged);
        res->ram_ns = now_ns() - t_ram;
        if (r >= 0)
                r = export_to(h->store, &ov_id, ov_tmp, 0600);
        if (r >= 0)
                r = export_to(h->store, &dev_id, o->paths.devstate, 0600);
        if (r >= 0)
                r = master_materialize(h, &image_id, master); /* the master this overlay needs */
        if (r >= 0)
                r = overlay_rebase(master, ov_tmp); /* ... at this host's path */
        if (r >= 0 && rename(o->paths.ram_snap, o->paths.ram) < 0)
                r = -errno;
        if (r >= 0 && rename(ov_tmp, o->paths.overlay) < 0)
                r = -errno;
        if (r >= 0 && prof_tmp && rename(prof_tmp, o->paths.profile) < 0)
                r = -errno;
        if (r >= 0 && prof_tmp)
                (void) unlink(o->paths.profile_fast); /* its base is another file now */
        if (r < 0) {
                (void) unlink(ov_tmp);
                if (prof_tmp)
                        (void) unlink(prof_tmp);
                (void) unlink(o->paths.ram_snap);
                (void) unlink(o->paths.devstate);
                return err_set_if_none(r, "cannot restore session '%s': %s", name, strerror(-r));
        }
        return 0;
}

/* QEMU (q, waiting with -incoming defer: r >= 0): device state, cont; the
 * session is running, or stopped when that failed. */
static int restore_resume(SessionHost *h, Op *o, Qmp *q, int r, SessionRestoreResult *res) {
        if (r >= 0) {
                uint64_t t0 = now_ns();
                r = vm_load_devstate(q, o->paths.devstate, 60000);
                uint64_t t1 = now_ns();
                if (r >= 0)
                        r = qmp_cont(q);
                res->devstate_ns = t1 - t0;
                res->cont_ns = now_ns() - t1;
                if (r < 0) {
                        r = err_wrap(r, "cannot restore session '%s'", o->row.name);
                        (void) vm_kill(q, o->pid);
                        o->pid = 0;
                        remove_runtime(&o->paths);
                }
        }
        (void) unlink(o->paths.devstate);
        if (r < 0) {
                (void) set_state(h, o, SESSION_STOPPED);
                qemu_op_clear(o);
                return r;
        }
        r = set_state(h, o, SESSION_RUNNING);
        qemu_op_clear(o);
        return r;
}

/* QEMU: incoming (since t1), device state, cont. */
static int restore_launch(SessionHost *h, Op *o, SessionRestoreResult *res, uint64_t t1) {
        _cleanup_(qmp_freep) Qmp *q = NULL;
        int r = qemu_op_note(o, "launch"); /* a crash before cont: recovery ends this QEMU */
        if (r >= 0)
                r = launch(h, o, true, &q);
        res->launch_ns = now_ns() - t1;
        failpoint("restore:after-launch");
        return restore_resume(h, o, q, r, res);
}

/* Restores m into the warm QEMU of o if there is one that fits: 0 when it
 * runs from there (or failed there: r < 0), 1 when the restore runs cold. */
static int restore_warm(SessionHost *h, Op *o, json_t *m, SessionRestoreResult *res, uint64_t t0) {
        int fd;
        int r = warm_lock(h, o->row.name, &fd);
        if (r < 0)
                return r;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = qemu_op_note(o, "launch"); /* a crash before cont: recovery ends this QEMU */
        if (r >= 0)
                r = warm_take(h, o, m, res, &q);
        close(fd);
        if (r != 0) {
                qemu_op_clear(o); /* cold from the start, or its QEMU ended already */
                return r;
        }
        uint64_t t1 = now_ns();
        res->export_ns = t1 - t0;
        res->warm = true;
        r = record_restored(h, o, &res->id);
        if (r < 0) {
                (void) vm_kill(q, o->pid);
                o->pid = 0;
                remove_runtime(&o->paths);
                (void) unlink(o->paths.devstate);
                return r;
        }
        failpoint("restore:after-launch"); /* the same point as a cold restore's */
        return restore_resume(h, o, q, 0, res);
}

/* Restores checkpoint m (verified) into session name (row exists, QEMU not running). */
static int restore_into(SessionHost *h, const char *name, json_t *m, SessionRestoreResult *res, uint64_t t0) {
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, false, &o);
        if (r < 0)
                return r;
        if (o.pid > 0)
                return err_set(-EBUSY,
                               "session '%s' is %s (stop it first: the checkpoint replaces its state)", name,
                               session_state_to_string(o.row.state));
        r = restore_take_config(&o, m);
        if (r < 0)
                return r;
        if (json_is_true(json_object_get(m, "powered_off")))
                return restore_powered_off(h, &o, m, res, t0);
        r = session_check_ram(h->ram_dir, o.config.ram_mib);
        if (r < 0)
                return err_wrap(r, "cannot restore session '%s'", name);
        r = restore_warm(h, &o, m, res, t0);
        if (r <= 0) {
                if (r < 0)
                        return r;
                uint64_t t2 = now_ns();
                res->qemu_ns = t2 - t0 - res->export_ns;
                res->total_ns = t2 - t0;
                return 0;
        }
        r = restore_files(h, &o, m, res);
        if (r < 0)
                return r;
        uint64_t t1 = now_ns();
        res->export_ns = t1 - t0;

        /* the catalog follows the checkpoint (config, image, parent of the next one) */
        r = record_restored(h, &o, &res->id);
        if (r < 0)
                return r;
        r = restore_launch(h, &o, res, t1);
        if (r < 0)
                return r;
        uint64_t t2 = now_ns();
        res->qemu_ns = t2 - t1;
        res->total_ns = t2 - t0;
        return 0;
}

/* Undoes adopt() after a failed restore: an adopted session that never ran
 * is not left behind. Its checkpoint refs stay (they arrived with the data);
 * only the base ref adopt() wrote goes. */
static int unadopt(SessionHost *h, const char *name, const char *user, int r) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", err_message(r));
        _cleanup_paths_ Paths p = {};
        if (paths_for(h, name, &p) >= 0) {
                (void) ram_unlink(h, p.ram);
                (void) rm_rf(p.dir);
        }
        char ref[REF_NAME_MAX_LEN + 1];
        if (user && session_ref(user, name, "base", ref, sizeof ref) >= 0)
                (void) store_ref_delete(h->store, ref);
        (void) session_db_delete(h->catalog, name);
        return err_set(r, "%s", saved); /* the restore's error, not the clean-up's */
}

int session_restore(SessionHost *h, const char *name, const char *spec, SessionRestoreResult *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        uint64_t t0 = now_ns();
        SessionRestoreResult res = {};

        /* which checkpoint, and is all of it here? (before anything changes) */
        _cleanup_(session_row_donep) SessionRow row = {};
        r = session_db_get(h->catalog, name, &row);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == -ENOENT) {
                if (!spec || strlen(spec) != ID_HEX_SIZE - 1 || id_from_hex(spec, &res.id) < 0)
                        return r; /* "session 'X' not found" */
                err_clear();
        } else {
                r = check_owner(h, &row);
                if (r < 0)
                        return r;
                r = session_checkpoint_resolve(h, row.user, name, spec, &res.id);
                if (r < 0)
                        return r;
        }
        _cleanup_(json_decrefp) json_t *m = NULL;
        r = session_checkpoint_verify(h->store, &res.id, &m);
        if (r < 0)
                return err_wrap(r, "cannot restore session '%s'", name);
        res.verify_ns = now_ns() - t0;
        const char *mu = json_string_value(json_object_get(m, "user"));
        const char *ms = json_string_value(json_object_get(m, "session"));
        if (row.name) {
                if (!mu || !ms || strcmp(mu, row.user) || strcmp(ms, name))
                        return err_set(-EINVAL, "checkpoint %s belongs to session '%s' of user '%s', not to '%s'",
                                       spec, ms ? ms : "?", mu ? mu : "?", name);
                r = restore_into(h, name, m, &res, t0);
        } else {
                r = adopt(h, name, m, &res.id, -1);
                if (r < 0)
                        return r;
                r = restore_into(h, name, m, &res, t0);
                if (r < 0)
                        r = unadopt(h, name, mu, r);
        }
        if (r < 0)
                return r;
        if (ret)
                *ret = res;
        return 0;
}

/* ---- adopt ---- */

/* What session_adopt() takes of its checkpoint. */
typedef struct Adoptee {
        const char *hex;  /* the manifest id */
        json_t *m;        /* the manifest, verified */
        const char *user; /* points into m */
        int64_t epoch, seq;
} Adoptee;

static void adoptee_done(Adoptee *a) {
        json_decref(a->m);
        *a = (Adoptee) {};
}

/* All of checkpoint id here, and for session name? (before anything changes) */
static int adopt_verify(SessionHost *h, const char *name, const char *hex, const RoamId *id, Adoptee *a) {
        *a = (Adoptee) { .hex = hex };
        int r = session_checkpoint_verify(h->store, id, &a->m);
        if (r < 0)
                return err_wrap(r, "cannot adopt session '%s'", name);
        const char *mu = json_string_value(json_object_get(a->m, "user"));
        const char *ms = json_string_value(json_object_get(a->m, "session"));
        json_t *me = json_object_get(a->m, "epoch"), *mseq = json_object_get(a->m, "seq");
        a->user = mu;
        a->epoch = json_is_integer(me) ? json_integer_value(me) : 0;
        a->seq = json_is_integer(mseq) ? json_integer_value(mseq) : 0;
        if (!mu || !ms || strcmp(ms, name))
                return err_set(-EINVAL, "checkpoint %.12s belongs to session '%s', not '%s'", hex, ms ? ms : "?",
                               name);
        if (a->seq < 0 || a->seq > SESSION_CHECKPOINT_SEQ_MAX)
                return err_set(-EBADMSG, "checkpoint %.12s has an invalid sequence number", hex);
        return 0;
}

/* Adopts a of session name, known here as row and owned elsewhere: owned
 * here at epoch, then restored; if the restore fails, the old owner keeps it. */
static int adopt_away(SessionHost *h, const char *name, const SessionRow *row, int64_t epoch, const Adoptee *a,
                      SessionRestoreResult *res, uint64_t t0) {
        if (!strcmp(row->owner, SESSION_OWNER_LOCAL))
                return err_set(-EBUSY,
                               "session '%s' is owned here already (restore it with 'roam session "
                               "restore %s %s')",
                               name, name, a->hex);
        if (strcmp(row->user, a->user))
                return err_set(-EINVAL, "checkpoint %.12s belongs to user '%s', session '%s' to '%s'", a->hex,
                               a->user, name, row->user);
        if (epoch < 0)
                epoch = MAX(row->epoch, a->epoch) + 1;
        if (epoch <= row->epoch)
                return err_set(-ESTALE, "session '%s' is at epoch %lld here; epoch %lld is stale", name,
                               (long long) row->epoch, (long long) epoch);
        int r = session_set_owner(h, name, SESSION_OWNER_LOCAL, epoch, row->epoch);
        if (r < 0)
                return r;
        r = restore_into(h, name, a->m, res, t0);
        if (r < 0) {
                /* not adopted: the old owner keeps it */
                char saved[1024];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                int k = session_set_owner(h, name, row->owner, row->epoch, epoch);
                if (k < 0)
                        return err_set(r, "%s; and giving session '%s' back to %s failed: %s", saved, name,
                                       row->owner, err_message(k));
                return err_set(r, "%s", saved);
        }
        if (a->seq > row->checkpoints)
                r = session_db_set_checkpoint(h->catalog, name, a->hex, a->seq);
        return r;
}

/* Adopts a as session name, unknown here: created from the manifest at
 * epoch, then restored; if the restore fails, nothing is left. */
static int adopt_new(SessionHost *h, const char *name, int64_t epoch, const Adoptee *a, SessionRestoreResult *res,
                     uint64_t t0) {
        if (epoch < 0)
                epoch = a->epoch + 1;
        int r = adopt(h, name, a->m, &res->id, epoch);
        if (r < 0)
                return r;
        r = restore_into(h, name, a->m, res, t0);
        if (r < 0)
                return unadopt(h, name, a->user, r);
        return 0;
}

int session_adopt(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, SessionInfo *ret) {
        int r = need_store(h);
        if (r < 0)
                return r;
        if (!name_is_valid(name))
                return err_set(-EINVAL, "session name '%s' is invalid (use " NAME_RULE ")",
                               name);
        SessionRestoreResult res = {};
        if (!checkpoint_hex || strlen(checkpoint_hex) != ID_HEX_SIZE - 1 || id_from_hex(checkpoint_hex, &res.id) < 0)
                return err_set(-EINVAL, "checkpoint '%s' is not a 64-digit id (session '%s')",
                               checkpoint_hex ? checkpoint_hex : "", name);
        uint64_t t0 = now_ns();
        _cleanup_(adoptee_done) Adoptee a = {};
        r = adopt_verify(h, name, checkpoint_hex, &res.id, &a);
        if (r < 0)
                return r;

        _cleanup_(session_row_donep) SessionRow row = {};
        r = session_db_get(h->catalog, name, &row);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0)
                r = adopt_away(h, name, &row, epoch, &a, &res, t0);
        else {
                err_clear();
                r = adopt_new(h, name, epoch, &a, &res, t0);
        }
        if (r < 0)
                return r;
        /* the adopted checkpoint is this host's latest (the parent of the next one) */
        char ref[REF_NAME_MAX_LEN + 1];
        r = session_ref(a.user, name, "latest", ref, sizeof ref);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &res.id, NULL);
        if (r < 0)
                return err_set_if_none(r, "session '%s' was adopted, but its ref '%s' was not set: %s", name, ref,
                                       strerror(-r));
        if (ret)
                return session_get(h, name, ret);
        return 0;
}
