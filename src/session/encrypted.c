/* SPDX-License-Identifier: MIT */
/* An encrypted laptop's sessions (session.h, "Encrypted homes"): what is
 * plain of a session (its overlay, device state, sidecars, serial log) lives
 * on tmpfs in ram_dir/NAME.files beside its RAM file, and reaches the disk
 * only through the encrypted store: a stopped session's disk is put away as
 * a powered-off checkpoint, and brought back from the latest checkpoint
 * when it is booted again. */
#include "session-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"

static void drop_files(const Paths *p, bool all) {
        (void) unlink(p->overlay);
        (void) unlink(p->devstate);
        (void) unlink(p->overlay_snap);
        (void) unlink(p->ram_fast);
        (void) unlink(p->overlay_fast);
        (void) unlink(p->profile); /* the user's profile disk: in the checkpoint too */
        (void) unlink(p->profile_fast);
        if (all)
                (void) rm_rf(p->secret_dir);
}

int put_away(SessionHost *h, Op *o) {
        if (!h->encrypted || !o->paths.secret_dir || access(o->paths.overlay, F_OK) < 0)
                return 0;
        if (check_owner(h, &o->row) >= 0 && o->row.state != SESSION_CRASHED) {
                int r = need_store(h);
                if (r >= 0)
                        r = checkpoint_powered_off(h, o, NULL);
                if (r < 0)
                        return err_wrap(r, "session '%s': its disk stays on tmpfs, not put away into the store",
                                        o->row.name);
        }
        err_clear();
        drop_files(&o->paths, false);
        return 0;
}

int overlay_bring_back(SessionHost *h, Op *o) {
        if (!h->encrypted || access(o->paths.overlay, F_OK) == 0)
                return 0;
        const char *name = o->row.name;
        int r = need_store(h);
        if (r < 0)
                return r;
        RoamId ck, ov_id, image_id;
        if (!o->row.last_checkpoint || id_from_hex(o->row.last_checkpoint, &ck) < 0)
                return err_set(-ENOENT, "session '%s' has no disk on this laptop and no checkpoint to take it from",
                               name);
        _cleanup_(json_decrefp) json_t *m = NULL;
        r = session_checkpoint_verify(h->store, &ck, &m);
        if (r >= 0 && (r = manifest_id(m, "overlay", &ov_id)) >= 0)
                r = manifest_id(m, "image", &image_id);
        if (r < 0)
                return err_wrap(r, "session '%s': cannot bring its disk back from the store", name);
        char image_hex[ID_HEX_SIZE];
        id_to_hex(&image_id, image_hex);
        _cleanup_free_ char *master = master_path(h, image_hex), *tmp = NULL;
        if (!master || asprintf(&tmp, "%s.restore", o->paths.overlay) < 0)
                return -ENOMEM;
        r = export_to(h->store, &ov_id, tmp, 0600);
        if (r >= 0)
                r = materialize(h, &image_id, master);
        if (r >= 0)
                r = overlay_rebase(master, tmp);
        /* the user's profile disk, when the session held it (the checkpoint carries it) */
        RoamId prof;
        bool has_prof = json_object_get(json_object_get(m, "objects"), "profile") != NULL;
        if (r >= 0 && has_prof && access(o->paths.profile, F_OK) < 0 && (r = manifest_id(m, "profile", &prof)) >= 0)
                r = export_to(h->store, &prof, o->paths.profile, 0600);
        if (r >= 0 && rename(tmp, o->paths.overlay) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return err_set_if_none(r, "session '%s': cannot bring its disk back from the store: %s", name,
                                       strerror(-r));
        }
        return 0;
}

int session_put_away(SessionHost *h, const char *name, bool all) {
        if (!h->encrypted)
                return 0;
        _cleanup_(op_done) Op o = {};
        int r = op_begin(h, name, true, &o);
        if (r < 0)
                return r;
        if (o.pid > 0)
                return err_set(-EBUSY, "session '%s' is %s (stop it first: 'roam session stop %s')", name,
                               session_state_to_string(o.row.state), name);
        r = put_away(h, &o);
        if (r >= 0 && all)
                drop_files(&o.paths, true);
        return r;
}
