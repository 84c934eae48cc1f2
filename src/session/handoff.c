/* SPDX-License-Identifier: MIT */
#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/manifest.h"

static int import_path(Store *s, const char *path, RoamId *ret, BlobStats *st) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot read '%s': %s", path, strerror(errno));
        struct stat sb;
        if (fstat(fd, &sb) < 0)
                return -errno;
        return blob_import_fd(s, fd, (uint64_t) sb.st_size, NULL, ret, st);
}

int handoff_precopy(SessionHost *h, const char *name, PrecopyResult *ret) {
        Store *s = session_host_store(h);
        if (!s)
                return -EINVAL;
        uint64_t t0 = now_ns();
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        if (i.row.state != SESSION_RUNNING && i.row.state != SESSION_PAUSED) {
                r = err_set(-EINVAL, "session '%s' is %s: pre-copy needs a running session", name,
                            session_state_to_string(i.row.state));
                session_info_done(&i);
                return r;
        }
        PrecopyResult res = { 0 };
        RoamId ram, ov;
        BlobStats a = { 0 }, b = { 0 };
        r = import_path(s, i.ram, &ram, &a);
        if (r >= 0)
                r = import_path(s, i.overlay, &ov, &b);
        if (r < 0) {
                session_info_done(&i);
                return r;
        }
        char rh[ID_HEX_SIZE], oh[ID_HEX_SIZE], ref[REF_NAME_MAX_LEN + 1];
        json_t *objects = json_pack("{s:s, s:s, s:s, s:s}", "ram", id_to_hex(&ram, rh), "overlay",
                                    id_to_hex(&ov, oh), "image", i.row.image_id, "kernel", i.config.kernel_id);
        if (objects && i.config.initrd_id)
                json_object_set_new(objects, "initrd", json_string(i.config.initrd_id));
        json_t *m = objects ? json_pack("{s:s, s:s, s:s, s:o, s:I, s:I}", "kind", "precopy", "session", name, "user",
                                        i.row.user, "objects", objects, "epoch", (json_int_t) i.row.epoch,
                                        "created", (json_int_t) time(NULL))
                            : NULL;
        snprintf(ref, sizeof ref, "sessions/%s/%s/precopy", i.row.user, name);
        session_info_done(&i);
        if (!m)
                return -ENOMEM;
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = manifest_serialize(m, &data, &len);
        json_decref(m);
        if (r >= 0)
                r = store_object_put(s, data, len, &res.id);
        if (r >= 0)
                r = store_ref_set(s, ref, &res.id, NULL);
        if (r < 0)
                return r;
        res.chunks = a.chunks + b.chunks;
        res.new_chunks = a.new_chunks + b.new_chunks;
        res.new_stored = a.stored_bytes + b.stored_bytes;
        res.ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

int handoff_grant_offline(SessionHost *h, const char *name, const char *holder, int64_t lease_s,
                          OfflineGrant *ret) {
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        int64_t epoch = i.row.epoch;
        bool local = !strcmp(i.row.owner, SESSION_OWNER_LOCAL);
        bool same_holder = !strcmp(i.row.owner, holder);
        SessionState state = i.row.state;
        _cleanup_free_ char *owner = strdup(i.row.owner);
        _cleanup_free_ char *last = i.row.last_checkpoint ? strdup(i.row.last_checkpoint) : NULL;
        session_info_done(&i);
        OfflineGrant g = { .epoch = epoch };
        if (same_holder) {
                /* asked again (the answer was lost): the same grant */
                if (!last || id_from_hex(last, &g.checkpoint) < 0)
                        return err_set(-EIO, "session '%s' is with %s but has no checkpoint", name, holder);
                g.again = true;
                *ret = g;
                return 0;
        }
        if (!local)
                return err_set(-EBUSY, "session '%s' is owned by %s since epoch %lld, not by this server", name,
                               owner ? owner : "?", (long long) epoch);
        if (state != SESSION_RUNNING && state != SESSION_PAUSED)
                return err_set(-EINVAL, "session '%s' is %s here (start it first)", name,
                               session_state_to_string(state));
        uint64_t t0 = now_ns();
        SessionCheckpointResult ck;
        r = session_checkpoint(h, name, SESSION_CHECKPOINT_QUIT, &ck);
        if (r < 0)
                return r;
        /* the one step that moves ownership */
        r = session_set_owner(h, name, holder, epoch + 1, epoch);
        if (r < 0) {
                char hex[ID_HEX_SIZE];
                (void) session_restore(h, name, id_to_hex(&ck.id, hex), NULL);
                return r;
        }
        g.checkpoint = ck.id;
        g.epoch = epoch + 1;
        g.lease_until = lease_s > 0 ? (int64_t) time(NULL) + lease_s : 0;
        g.pause_ns = now_ns() - t0;
        *ret = g;
        return 0;
}

int handoff_reclaim(SessionHost *h, const char *name, ReclaimResult *ret) {
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        int64_t epoch = i.row.epoch;
        _cleanup_free_ char *owner = strdup(i.row.owner);
        _cleanup_free_ char *last = i.row.last_checkpoint ? strdup(i.row.last_checkpoint) : NULL;
        session_info_done(&i);
        if (!owner)
                return -ENOMEM;
        if (!strcmp(owner, SESSION_OWNER_LOCAL))
                return err_set(-EINVAL, "session '%s' is owned here already: nothing to reclaim", name);
        if (!last)
                return err_set(-ENOENT, "session '%s' has no checkpoint here to reclaim from", name);
        ReclaimResult res = { .epoch = epoch + 1 };
        if (id_from_hex(last, &res.checkpoint) < 0)
                return -EINVAL;
        json_t *m = NULL;
        r = session_checkpoint_verify(session_host_store(h), &res.checkpoint, &m);
        if (r < 0)
                return r;
        json_t *created = json_object_get(m, "created");
        res.checkpoint_age = json_is_integer(created) ? (int64_t) time(NULL) - json_integer_value(created) : -1;
        json_decref(m);
        r = session_set_owner(h, name, SESSION_OWNER_LOCAL, epoch + 1, epoch);
        if (r < 0)
                return r;
        r = session_restore(h, name, last, NULL);
        if (r < 0)
                return r;
        res.lost_owner = TAKE_PTR(owner);
        *ret = res;
        return 0;
}

static int lease_path(SessionHost *h, const char *name, char **ret) {
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        *ret = path_join(i.dir, "lease");
        session_info_done(&i);
        return *ret ? 0 : -ENOMEM;
}

int handoff_lease_set(SessionHost *h, const char *name, int64_t until) {
        _cleanup_free_ char *p = NULL;
        int r = lease_path(h, name, &p);
        if (r < 0)
                return r;
        if (until <= 0)
                return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%lld\n", (long long) until);
        return write_file_atomic(p, buf, (size_t) n, 0644);
}

int handoff_lease_check(SessionHost *h, const char *name) {
        _cleanup_free_ char *p = NULL, *text = NULL;
        int r = lease_path(h, name, &p);
        if (r < 0)
                return r;
        r = read_full_file(p, 64, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        char *nl = strchr(text, '\n');
        if (nl)
                *nl = 0;
        uint64_t until;
        if (parse_u64(text, &until) < 0)
                return err_set(-EBADMSG, "the offline lease of session '%s' is malformed (%s)", name, p);
        int64_t now = (int64_t) time(NULL);
        if (now > (int64_t) until) {
                char when[64];
                time_t t = (time_t) until;
                struct tm tm;
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
                return err_set(-EKEYEXPIRED,
                               "session '%s' has been offline longer than its policy allows (lease ended %s): "
                               "connect to the server and take it online",
                               name, when);
        }
        return 0;
}
