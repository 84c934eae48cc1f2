/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/manifest.h"
#include "host-id.h"

/* ---- profile disks ---- */

/* mke2fs from $ROAM_MKE2FS, PATH, or the sbin directories a user's PATH may lack. */
static const char *mke2fs_binary(void) {
        const char *e = getenv("ROAM_MKE2FS");
        if (e && *e)
                return e;
        static const char *const paths[] = { "/usr/sbin/mke2fs", "/sbin/mke2fs" };
        const char *path = getenv("PATH");
        if (path) {
                _cleanup_free_ char *copy = strdup(path);
                char *save = NULL;
                for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
                        char p[PATH_MAX];
                        snprintf(p, sizeof p, "%s/mke2fs", d);
                        if (access(p, X_OK) == 0)
                                return "mke2fs";
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return "mke2fs";
}

/* Where this host keeps its copies of profile disks: HOME/profiles, or on an
 * encrypted laptop ram_dir/profiles (plain user data never reaches its disk;
 * the holds stay in HOME/profiles). Caller frees. */
static char *disks_dir(SessionHost *h) {
        return path_join(h->encrypted ? h->ram_dir : h->home, "profiles");
}

int session_profile_disk(SessionHost *h, const char *user, char **ret) {
        if (!name_is_valid(user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")",
                               user ? user : "");
        _cleanup_free_ char *dir = disks_dir(h), *path = NULL;
        if (!dir || asprintf(&path, "%s/%s.img", dir, user) < 0)
                return -ENOMEM;
        struct stat st;
        if (stat(path, &st) == 0) {
                if (!S_ISREG(st.st_mode))
                        return err_set(-EINVAL, "profile disk '%s' of user '%s' is not a regular file (move it away)",
                                       path, user);
                *ret = TAKE_PTR(path);
                return 0;
        }
        if (errno != ENOENT && errno != ENOTDIR)
                return err_set(-errno, "cannot use the profile disk '%s' of user '%s': %s", path, user,
                               strerror(errno));
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the profile disk of user '%s': directory '%s': %s (make it a "
                               "writable directory)",
                               user, dir, strerror(-r));
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot create the profile disk of user '%s' in '%s': %s", user, dir,
                               strerror(-fd));
        if (ftruncate(fd, (off_t) SESSION_PROFILE_MIB << 20) < 0)
                r = err_set(-errno, "cannot size the profile disk '%s': %s", tmp, strerror(errno));
        if (r >= 0) {
                char *argv[] = { (char *) mke2fs_binary(), "-t", "ext4", "-q", "-F", "-m", "0", "-L", "roam-profile",
                                 tmp, NULL };
                r = run_tool_hint(argv, "making the profile disk's file system",
                                  "apt-get install e2fsprogs, or set ROAM_MKE2FS");
        }
        if (r >= 0 && (fchmod(fd, 0600) < 0 || fsync(fd) < 0))
                r = err_set(-errno, "cannot write the profile disk '%s': %s", tmp, strerror(errno));
        /* link, not rename: a disk another process made meanwhile wins, never replaced */
        if (r >= 0 && link(tmp, path) < 0 && errno != EEXIST)
                r = err_set(-errno, "cannot create the profile disk '%s': %s", path, strerror(errno));
        (void) unlink(tmp);
        if (r < 0)
                return err_set_if_none(r, "cannot create the profile disk of user '%s': %s", user, strerror(-r));
        (void) fsync_dir(dir);
        *ret = TAKE_PTR(path);
        return 0;
}

/* ---- profiles in the store: check-out, check-in, holds ---- */

int session_profile_hold_parse(const char *text, size_t len, char session[static NAME_MAX_LEN + 1],
                               int64_t *ret_since) {
        /* "SESSION SINCE\n": one short line */
        if (len == 0 || len > NAME_MAX_LEN + 32 || text[len - 1] != '\n')
                return -EBADMSG;
        size_t sp = 0;
        while (sp < len && text[sp] != ' ')
                sp++;
        if (sp == 0 || sp > NAME_MAX_LEN || sp >= len)
                return -EBADMSG;
        char name[NAME_MAX_LEN + 1];
        memcpy(name, text, sp);
        name[sp] = 0;
        if (!name_is_valid(name))
                return -EBADMSG;
        char num[32];
        size_t nl = len - sp - 2;
        if (nl == 0 || nl >= sizeof num)
                return -EBADMSG;
        memcpy(num, text + sp + 1, nl);
        num[nl] = 0;
        uint64_t since;
        if (parse_u64(num, &since) < 0 || since > INT64_MAX)
                return -EBADMSG;
        memcpy(session, name, sp + 1);
        *ret_since = (int64_t) since;
        return 0;
}

static int profile_file(SessionHost *h, const char *user, const char *suffix, char **ret) {
        if (!name_is_valid(user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")", user ? user : "");
        /* the disk and its id where the disks are, the hold in the home */
        const char *base = h->encrypted && !strncmp(suffix, ".img", 4) ? h->ram_dir : h->home;
        return asprintf(ret, "%s/profiles/%s%s", base, user, suffix) < 0 ? -ENOMEM : 0;
}

int session_profile_hold(SessionHost *h, const char *user, char session[static NAME_MAX_LEN + 1],
                         int64_t *ret_since) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len;
        int r = profile_file(h, user, ".hold", &path);
        if (r < 0)
                return r;
        r = read_full_file(path, 256, &text, &len);
        if (r < 0)
                return r; /* -ENOENT: not held */
        int64_t since;
        if (session_profile_hold_parse(text, len, session, &since) < 0)
                return err_set(-EBADMSG, "the profile hold '%s' is malformed (remove it if no session of user '%s' "
                                         "runs)",
                               path, user);
        if (ret_since)
                *ret_since = since;
        return 0;
}

/* Why session holder has user's profile, for a refusal. */
static void describe_holder(SessionHost *h, const char *holder, char *buf, size_t size) {
        SessionRow row = {};
        if (session_db_get(h->catalog, holder, &row) < 0) {
                err_clear();
                snprintf(buf, size, "session '%s'", holder);
                return;
        }
        if (strcmp(row.owner, SESSION_OWNER_LOCAL)) {
                char who[384];
                if (h->describe_owner)
                        h->describe_owner(h->describe_userdata, row.name, row.owner, who, sizeof who);
                else
                        snprintf(who, sizeof who, "%s", row.owner);
                snprintf(buf, size, "session '%s', owned by %s since epoch %lld", holder, who, (long long) row.epoch);
        } else
                snprintf(buf, size, "session '%s' (%s here)", holder, session_state_to_string(row.state));
        session_row_done(&row);
}

/* Makes session name the holder of user's profile: 0 when it is (already,
 * or now); -EBUSY naming the holder when another session that exists holds
 * it. A hold whose session is gone (removed) is taken over. */
static int hold_claim(SessionHost *h, const char *user, const char *name) {
        _cleanup_free_ char *path = NULL, *dir = NULL, *tmp = NULL;
        int r = profile_file(h, user, ".hold", &path);
        if (r < 0)
                return r;
        dir = path_join(h->home, "profiles");
        if (!dir)
                return -ENOMEM;
        r = mkdir_p(dir, 0700);
        if (r < 0)
                return err_set(r, "cannot create the profile disk of user '%s': directory '%s': %s (make it a "
                               "writable directory)",
                               user, dir, strerror(-r));
        for (int attempt = 0; attempt < 3; attempt++) {
                char holder[NAME_MAX_LEN + 1];
                r = session_profile_hold(h, user, holder, NULL);
                if (r >= 0) {
                        if (!strcmp(holder, name))
                                return 0;
                        SessionRow row = {};
                        if (session_db_get(h->catalog, holder, &row) >= 0) {
                                session_row_done(&row);
                                char who[512];
                                describe_holder(h, holder, who, sizeof who);
                                return err_set(-EBUSY,
                                               "the profile of user '%s' is attached to %s: one session at a time "
                                               "(log that one off first: 'roam session finalize %s')",
                                               user, who, holder);
                        }
                        err_clear();
                        (void) unlink(path); /* its session is gone */
                        continue;
                }
                if (r != -ENOENT)
                        return r;
                err_clear();
                /* link, not rename: of two claims at once exactly one wins */
                _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
                if (fd < 0)
                        return err_set(fd, "cannot write a profile hold in '%s': %s", dir, strerror(-fd));
                char line[128];
                int n = snprintf(line, sizeof line, "%s %lld\n", name, (long long) time(NULL));
                if (loop_write(fd, line, (size_t) n) < 0 || fsync(fd) < 0) {
                        r = -errno;
                        (void) unlink(tmp);
                        return err_set(r, "cannot write a profile hold in '%s': %s", dir, strerror(-r));
                }
                int k = link(tmp, path);
                int e = errno;
                (void) unlink(tmp);
                free(TAKE_PTR(tmp));
                if (k == 0) {
                        (void) fsync_dir(dir);
                        return 0;
                }
                if (e != EEXIST)
                        return err_set(-e, "cannot write the profile hold '%s': %s", path, strerror(e));
        }
        return err_set(-EBUSY, "the profile of user '%s' is being taken by another session", user);
}

/* Releases user's profile if session name holds it. */
static void hold_release(SessionHost *h, const char *user, const char *name) {
        char holder[NAME_MAX_LEN + 1];
        _cleanup_free_ char *path = NULL;
        if (profile_file(h, user, ".hold", &path) >= 0 && session_profile_hold(h, user, holder, NULL) >= 0 &&
            !strcmp(holder, name)) {
                (void) unlink(path);
                (void) fsync_parent(path);
        }
        err_clear();
}

/* The latest profile of user in the store: its manifest (*ret_id) and disk.
 * -ENOENT when there is none. */
static int profile_latest(SessionHost *h, const char *user, RoamId *ret_id, RoamId *ret_disk) {
        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "users/%s/profile", user);
        RoamId id;
        int r = store_ref_get(h->store, ref, &id);
        if (r < 0)
                return r;
        _cleanup_free_ void *data = NULL;
        size_t len;
        _cleanup_(json_decrefp) json_t *m = NULL;
        r = store_object_get(h->store, &id, MANIFEST_JSON_MAX + 64, &data, &len);
        if (r >= 0)
                r = manifest_parse(data, len, &m);
        const char *kind = m ? json_string_value(json_object_get(m, "kind")) : NULL;
        if (r >= 0 && (!kind || strcmp(kind, "profile")))
                r = -EBADMSG;
        if (r >= 0)
                r = manifest_id(m, "disk", ret_disk);
        if (r < 0)
                return err_set(r == -ENOENT ? -EIO : r,
                               "the profile of user '%s' ('%s') is damaged or missing in the store (run 'roam store "
                               "fsck')",
                               user, ref);
        *ret_id = id;
        return 0;
}

/* The id recorded beside this host's copy of a profile ("" if none). */
static void host_copy_id(const char *idfile, char hex[static ID_HEX_SIZE]) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        hex[0] = 0;
        RoamId id;
        if (read_full_file(idfile, 128, &text, &len) >= 0) {
                text[strcspn(text, "\n")] = 0;
                if (id_from_hex(text, &id) >= 0)
                        id_to_hex(&id, hex);
        }
        err_clear();
}

int profile_checkout(SessionHost *h, Op *o) {
        const char *user = o->row.user, *name = o->row.name;
        int r = need_store(h);
        if (r < 0)
                return r;
        r = hold_claim(h, user, name);
        if (r < 0)
                return r;
        if (access(o->paths.profile, F_OK) == 0)
                return 0; /* the session has it: from its last boot, a checkpoint, a move */
        _cleanup_free_ char *copy = NULL, *idfile = NULL;
        r = profile_file(h, user, ".img", &copy);
        if (r >= 0)
                r = profile_file(h, user, ".img.id", &idfile);
        if (r < 0)
                return r;
        RoamId latest, disk;
        r = profile_latest(h, user, &latest, &disk);
        if (r < 0 && r != -ENOENT)
                goto fail;
        err_clear();
        bool in_store = r >= 0;
        char want[ID_HEX_SIZE] = "", have[ID_HEX_SIZE];
        if (in_store)
                id_to_hex(&latest, want);
        host_copy_id(idfile, have);
        if (in_store && strcmp(want, have)) {
                /* this host's copy (if any) is older than the store's: take the store's */
                r = export_to(h->store, &disk, o->paths.profile, 0600);
                if (r < 0)
                        goto fail;
                (void) fsync_parent(o->paths.profile);
                return 0;
        }
        /* this host's copy is the latest (or there is none anywhere: a new, empty one) */
        if (!in_store) {
                _cleanup_free_ char *made = NULL;
                r = session_profile_disk(h, user, &made);
                if (r < 0)
                        goto fail;
        }
        if (rename(copy, o->paths.profile) < 0) {
                r = err_set(-errno, "cannot take the profile disk '%s' of user '%s': %s", copy, user, strerror(errno));
                goto fail;
        }
        (void) unlink(idfile);
        (void) fsync_parent(copy);
        (void) fsync_parent(o->paths.profile);
        return 0;
fail:
        hold_release(h, user, name);
        return r;
}

int profile_claim(SessionHost *h, Op *o) {
        return hold_claim(h, o->row.user, o->row.name);
}

int profile_checkin(SessionHost *h, Op *o, RoamId *ret) {
        const char *user = o->row.user, *name = o->row.name;
        int r = need_store(h);
        if (r < 0)
                return r;
        if (access(o->paths.profile, F_OK) < 0) {
                hold_release(h, user, name);
                return 0;
        }
        RoamId disk;
        r = import_file(h->store, o->paths.profile, &disk, NULL);
        if (r < 0)
                return err_wrap(r, "cannot save the profile of user '%s' (session '%s')", user, name);
        RoamId old, id;
        bool has_old = profile_latest(h, user, &old, &(RoamId) {}) >= 0;
        err_clear();
        char dh[ID_HEX_SIZE], oh[ID_HEX_SIZE], host[HOST_ID_LEN + 1] = "", ref[REF_NAME_MAX_LEN + 1];
        (void) host_id_get(h->home, host);
        err_clear();
        _cleanup_(json_decrefp) json_t *m = json_pack(
                "{s:s, s:s, s:{s:s}, s:s, s:I, s:s, s:I, s:s?}", "kind", "profile", "user", user, "objects", "disk",
                id_to_hex(&disk, dh), "session", name, "epoch", (json_int_t) o->row.epoch, "host", host, "created",
                (json_int_t) time(NULL), "parent", has_old ? id_to_hex(&old, oh) : NULL);
        if (!m)
                return -ENOMEM;
        r = put_manifest(h->store, m, &id);
        snprintf(ref, sizeof ref, "users/%s/profile", user);
        if (r >= 0)
                r = store_ref_set(h->store, ref, &id, has_old ? &old : &ID_NULL);
        if (r < 0)
                return err_set_if_none(r, "cannot save the profile of user '%s' (session '%s') as '%s': %s", user,
                                       name, ref, strerror(-r));
        /* this host keeps it as its copy of the latest */
        _cleanup_free_ char *copy = NULL, *idfile = NULL;
        if (profile_file(h, user, ".img", &copy) >= 0 && profile_file(h, user, ".img.id", &idfile) >= 0) {
                char hex[ID_HEX_SIZE + 1];
                id_to_hex(&id, hex);
                strcat(hex, "\n");
                (void) unlink(idfile);
                if (rename(o->paths.profile, copy) >= 0)
                        (void) write_file_atomic(idfile, hex, strlen(hex), 0600);
                else
                        (void) unlink(o->paths.profile);
                (void) fsync_parent(copy);
        }
        (void) unlink(o->paths.profile_fast);
        hold_release(h, user, name);
        err_clear();
        if (ret)
                *ret = id;
        return 0;
}

void profile_drop(SessionHost *h, Op *o) {
        hold_release(h, o->row.user, o->row.name);
}
