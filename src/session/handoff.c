/* SPDX-License-Identifier: MIT */
#include "handoff.h"
#include "session-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/manifest.h"
#include "../sync/remote.h"

/* Imports path incrementally from the base in the sidecar DIR/SIDECAR and
 * writes the next sidecar: the same sidecars as session_checkpoint()'s
 * (checkpoint.c), so a checkpoint after a pre-copy hashes only what changed
 * since it. map: a RAM file (read through mmap). */
static int import_path(SessionHost *h, const char *path, const char *dir, const char *sidecar, bool map,
                       RoamId *ret, BlobStats *st) {
        Store *s = session_host_store(h);
        _cleanup_free_ char *side = path_join(dir, sidecar);
        if (!side)
                return -ENOMEM;
        _cleanup_(blob_base_freep) BlobBase *base = NULL;
        int r = blob_base_load(s, side, &base);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot read '%s': %s", path, strerror(errno));
        struct stat sb;
        if (fstat(fd, &sb) < 0)
                return -errno;
        /* a RAM file (mapped) gets its page index: a hand-over's remainder
         * then goes as the pages that changed since (src/sync/pages.h) */
        BlobOptions o = { .map = map, .page_index = map };
        RamMap *rm = map ? ram_map_lend(h, path, fd, &o) : NULL;
        _cleanup_(blob_fast_freep) BlobFast *fast = NULL;
        r = blob_import_fd_base(s, fd, (uint64_t) sb.st_size, &o, base, ret, st, &fast);
        ram_map_put(h, rm);
        if (r < 0)
                return r;
        if (blob_fast_save(fast, side) < 0) {
                (void) unlink(side); /* costs the next import its base, nothing else */
                err_clear();
        }
        if (map) /* a RAM file's page indexes: the last few only */
                ram_pages_keep(s, side, ret);
        return 0;
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
        RoamId ram, ov, prof;
        BlobStats a = { 0 }, b = { 0 }, c = { 0 };
        r = import_path(h, i.ram, i.dir, "ram.fast", true, &ram, &a);
        if (r >= 0)
                r = import_path(h, i.overlay, i.dir, "overlay.fast", false, &ov, &b);
        /* the user's profile disk, when the session holds one, goes along */
        _cleanup_free_ char *profile = path_join(i.dir, "profile.img");
        bool has_prof = profile && access(profile, F_OK) == 0;
        if (r >= 0 && has_prof)
                r = import_path(h, profile, i.dir, "profile.fast", false, &prof, &c);
        if (r < 0) {
                session_info_done(&i);
                return r;
        }
        failpoint("precopy:after-import");
        char rh[ID_HEX_SIZE], oh[ID_HEX_SIZE], ref[REF_NAME_MAX_LEN + 1];
        json_t *objects = json_pack("{s:s, s:s, s:s, s:s}", "ram", id_to_hex(&ram, rh), "overlay",
                                    id_to_hex(&ov, oh), "image", i.row.image_id, "kernel", i.config.kernel_id);
        if (objects && i.config.initrd_id)
                json_object_set_new(objects, "initrd", json_string(i.config.initrd_id));
        char ph[ID_HEX_SIZE];
        if (objects && has_prof)
                json_object_set_new(objects, "profile", json_string(id_to_hex(&prof, ph)));
        /* config and image as in a checkpoint: a receiver starts its QEMU from them (warm.c) */
        json_t *config = NULL;
        if (objects && vm_config_to_json(&i.config, &config) < 0) {
                json_decref(objects);
                objects = NULL;
        }
        json_t *m = objects ? json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:I}", "kind", "precopy", "session",
                                        name, "user", i.row.user, "image", i.row.image_id, "objects", objects,
                                        "config", config, "epoch", (json_int_t) i.row.epoch, "created",
                                        (json_int_t) time(NULL))
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
        res.chunks = a.chunks + b.chunks + c.chunks;
        res.new_chunks = a.new_chunks + b.new_chunks + c.new_chunks;
        res.new_stored = a.stored_bytes + b.stored_bytes + c.stored_bytes;
        res.ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

static int grant_offline(SessionHost *h, const char *name, const char *holder, int64_t lease_s, OfflineGrant *ret);

int handoff_grant_offline(SessionHost *h, const char *name, const char *holder, int64_t lease_s,
                          OfflineGrant *ret) {
        handoff_busy_begin(h, name);
        int r = grant_offline(h, name, holder, lease_s, ret);
        handoff_busy_end(h, name);
        return r;
}

static int grant_offline(SessionHost *h, const char *name, const char *holder, int64_t lease_s, OfflineGrant *ret) {
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
        char hex[ID_HEX_SIZE];
        r = handoff_mark(h, name, "grant", holder, NULL, epoch + 1, NULL);
        if (r < 0)
                return r;
        r = session_checkpoint(h, name, SESSION_CHECKPOINT_QUIT, &ck);
        if (r < 0) {
                (void) handoff_unmark(h, name);
                return r;
        }
        /* a crash from here on resumes this checkpoint here (handoff_recover) */
        r = handoff_mark(h, name, "grant", holder, NULL, epoch + 1, id_to_hex(&ck.id, hex));
        failpoint("offline-grant:after-checkpoint");
        int64_t lease_until = lease_s > 0 ? (int64_t) time(NULL) + lease_s : 0;
        /* in a fleet, its transaction is the step that moves ownership */
        if (r >= 0 && h->give)
                r = h->give(h->give_userdata, name, epoch, holder, lease_until);
        /* the one step that moves ownership (here) */
        if (r >= 0)
                r = session_set_owner(h, name, holder, epoch + 1, epoch);
        if (r < 0) {
                (void) session_restore(h, name, hex, NULL);
                (void) handoff_unmark(h, name);
                return r;
        }
        (void) handoff_unmark(h, name);
        failpoint("offline-grant:after-owner");
        g.checkpoint = ck.id;
        g.epoch = epoch + 1;
        g.lease_until = lease_until;
        g.pause_ns = now_ns() - t0;
        g.ck = ck;
        *ret = g;
        return 0;
}

int handoff_finalize_in(SessionHost *h, const char *name, const char *ckhex, int64_t epoch, int64_t from_epoch,
                        FinalizeInResult *ret) {
        *ret = (FinalizeInResult) { 0 };
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        int64_t known = r >= 0 ? i.row.epoch : -1;
        session_info_done(&i);
        bool unknown = r == -ENOENT && from_epoch < 0;
        if (unknown)
                err_clear();
        else if (r < 0)
                return r;
        if (from_epoch >= 0 && (known != from_epoch || epoch <= known))
                return err_set(-ESTALE,
                               "session '%s' is at epoch %lld here; a hand-over from epoch %lld is stale (its state "
                               "is kept as checkpoint %s)",
                               name, (long long) known, (long long) from_epoch, ckhex);
        handoff_busy_begin(h, name);
        /* from here a crash leaves the log-off to handoff_recover() (a session
         * new here has its marker once it is adopted) */
        r = unknown ? 0 : handoff_mark(h, name, "finalize", NULL, NULL, epoch, ckhex);
        if (r >= 0)
                r = session_adopt(h, name, ckhex, epoch, NULL);
        if (r >= 0 && unknown)
                r = handoff_mark(h, name, "finalize", NULL, NULL, epoch, ckhex);
        ret->adopted = r >= 0;
        failpoint("finalize-in:after-adopt");
        if (r >= 0)
                r = session_finalize(h, name, &ret->finalize);
        failpoint("finalize-in:after-finalize");
        if (r >= 0)
                r = session_checkpoint(h, name, 0, &ret->checkpoint);
        failpoint("finalize-in:after-checkpoint");
        /* settled either way: a failed log-off is not retried behind the admin's back */
        (void) handoff_unmark(h, name);
        handoff_busy_end(h, name);
        if (r < 0 && ret->adopted) {
                char why[768];
                snprintf(why, sizeof why, "%s", err_message(r));
                return err_set(r, "%s (the session is this server's now, stopped, with the laptop's disk)", why);
        }
        return r;
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
        /* in a fleet, its transaction moves the ownership first */
        if (h->take) {
                r = h->take(h->take_userdata, name, owner, epoch);
                if (r < 0)
                        return r;
        }
        /* the marker first: owned here and not running, a crash would leave it nowhere */
        r = handoff_mark(h, name, "in", NULL, NULL, epoch + 1, last);
        if (r >= 0)
                r = session_set_owner(h, name, SESSION_OWNER_LOCAL, epoch + 1, epoch);
        if (r < 0) {
                (void) handoff_unmark(h, name);
                return r;
        }
        failpoint("reclaim:after-owner");
        r = session_restore(h, name, last, NULL);
        if (r < 0)
                return r;
        (void) handoff_unmark(h, name);
        res.lost_owner = TAKE_PTR(owner);
        *ret = res;
        return 0;
}

/* $ROAM_HOME/sessions/NAME/LEAF of a known session. */
static int session_file(SessionHost *h, const char *name, const char *leaf, char **ret) {
        SessionInfo i = { 0 };
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        *ret = path_join(i.dir, leaf);
        session_info_done(&i);
        return *ret ? 0 : -ENOMEM;
}

/* Writes $ROAM_HOME/sessions/NAME/LEAF crash-safely, or removes it (text NULL). */
static int session_file_write(SessionHost *h, const char *name, const char *leaf, const char *text, mode_t mode) {
        _cleanup_free_ char *p = NULL;
        int r = session_file(h, name, leaf, &p);
        if (r < 0)
                return r;
        if (!text)
                return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
        return write_file_atomic(p, text, strlen(text), mode);
}

/* The text of $ROAM_HOME/sessions/NAME/LEAF (at most max bytes, NUL-ended)
 * of a known session: 1, or 0 when the file is not there (*ret_text NULL).
 * *ret_path (may be NULL): its path. */
static int session_file_read(SessionHost *h, const char *name, const char *leaf, size_t max, char **ret_text,
                             size_t *ret_len, char **ret_path) {
        _cleanup_free_ char *p = NULL;
        *ret_text = NULL;
        int r = session_file(h, name, leaf, &p);
        if (r < 0)
                return r;
        r = read_full_file(p, max, ret_text, ret_len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (ret_path)
                *ret_path = TAKE_PTR(p);
        return 1;
}

int handoff_lease_set(SessionHost *h, const char *name, int64_t until) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld\n", (long long) until);
        return session_file_write(h, name, "lease", until > 0 ? buf : NULL, 0644);
}

/* A note of session name: sessions/NAME/LEAF, written by format(), read
 * back by parse() (handoff-files.c); WHAT names it in errors. */
typedef int (*NoteFormat)(const void *note, char **ret);
typedef int (*NoteParse)(const char *text, size_t len, void *ret);

static int note_set(SessionHost *h, const char *name, const char *leaf, NoteFormat format, const void *note) {
        _cleanup_free_ char *text = NULL;
        int r = format(note, &text);
        return r < 0 ? r : session_file_write(h, name, leaf, text, 0600);
}

static int note_get(SessionHost *h, const char *name, const char *leaf, const char *what, NoteParse parse,
                    void *ret) {
        _cleanup_free_ char *p = NULL, *text = NULL;
        size_t len;
        int r = session_file_read(h, name, leaf, 4096, &text, &len, &p);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        if (parse(text, len, ret) < 0)
                return err_set(-EBADMSG, "the %s of session '%s' is malformed (%s)", what, name, p);
        return 0;
}

/* the notes' formats and parsers with the types note_set()/note_get() call */
static int grant_format(const void *note, char **ret) {
        return grant_note_format(note, ret);
}
static int grant_parse(const char *text, size_t len, void *ret) {
        return grant_note_parse(text, len, ret);
}
static int stale_format(const void *note, char **ret) {
        return stale_note_format(note, ret);
}
static int stale_parse(const char *text, size_t len, void *ret) {
        return stale_note_parse(text, len, ret);
}

int handoff_grant_note_set(SessionHost *h, const char *name, const GrantNote *g) {
        return note_set(h, name, "grant", grant_format, g);
}

int handoff_grant_note_get(SessionHost *h, const char *name, GrantNote *ret) {
        return note_get(h, name, "grant", "grant note", grant_parse, ret);
}

int handoff_stale_note_set(SessionHost *h, const char *name, const StaleNote *n) {
        return note_set(h, name, "stale", stale_format, n);
}

int handoff_stale_note_get(SessionHost *h, const char *name, StaleNote *ret) {
        return note_get(h, name, "stale", "stale note", stale_parse, ret);
}

int handoff_handed_in_set(SessionHost *h, const char *name, const char *file) {
        char buf[4200];
        int n = snprintf(buf, sizeof buf, "%lld %s\n", (long long) time(NULL), file);
        if (n < 0 || (size_t) n >= sizeof buf)
                return -ENAMETOOLONG;
        return session_file_write(h, name, "handed-in", buf, 0600);
}

int handoff_handed_in_clear(SessionHost *h, const char *name) {
        return session_file_write(h, name, "handed-in", NULL, 0);
}

/* -EREMOTE when the session was handed in by file. */
static int handed_in_check(SessionHost *h, const char *name) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = session_file_read(h, name, "handed-in", 8192, &text, &len, NULL);
        if (r <= 0)
                return r;
        int64_t when;
        char file[4096];
        handed_in_parse(text, len, &when, file, sizeof file);
        char day[UTC_BUF_SIZE];
        format_utc(when, false, day, sizeof day);
        return err_set(-EREMOTE,
                       "session '%s' was handed in by file ('%s', %s): it runs again here only if the server "
                       "refused that file ('roam session resume %s --file-refused')",
                       name, file, day, name);
}

int handoff_lease_check(SessionHost *h, const char *name) {
        _cleanup_free_ char *p = NULL, *text = NULL;
        int r = handed_in_check(h, name);
        if (r < 0)
                return r;
        size_t len;
        r = session_file_read(h, name, "lease", 64, &text, &len, &p);
        if (r <= 0)
                return r;
        uint64_t until;
        if (lease_parse(text, len, &until) < 0)
                return err_set(-EBADMSG, "the offline lease of session '%s' is malformed (%s)", name, p);
        int64_t now = (int64_t) time(NULL);
        if (now > (int64_t) until) {
                char when[UTC_BUF_SIZE];
                format_utc((int64_t) until, false, when, sizeof when);
                return err_set(-EKEYEXPIRED,
                               "session '%s' has been offline longer than its policy allows (lease ended %s): "
                               "connect to the server and take it online",
                               name, when);
        }
        return 0;
}

/* ---- hand-overs in doubt ---- */

/* The start time of process pid, or 0 if there is none. */
static uint64_t process_start(pid_t pid) {
        uint64_t start;
        return proc_pid_stat(pid, NULL, &start) < 0 ? 0 : start;
}

int handoff_mark(SessionHost *h, const char *name, const char *kind, const char *peer, const char *token,
                 int64_t epoch, const char *checkpoint_hex) {
        _cleanup_free_ char *p = NULL;
        int r = session_file(h, name, "handover", &p);
        if (r < 0)
                return r;
        /* the writer: while it runs, the hand-over is in progress, not in doubt */
        HandoverMarker m = { .peer = (char *) peer, .token = (char *) token, .epoch = epoch, .pid = getpid(),
                             .pid_start = (int64_t) process_start(getpid()) };
        if (strlen(kind) >= sizeof m.kind || (checkpoint_hex && strlen(checkpoint_hex) >= sizeof m.checkpoint))
                return -EINVAL;
        snprintf(m.kind, sizeof m.kind, "%s", kind);
        snprintf(m.checkpoint, sizeof m.checkpoint, "%s", checkpoint_hex ? checkpoint_hex : "");
        _cleanup_free_ char *text = NULL;
        r = handover_marker_format(&m, &text);
        return r < 0 ? r : write_file_atomic(p, text, strlen(text), 0600);
}

int handoff_unmark(SessionHost *h, const char *name) {
        _cleanup_free_ char *p = NULL;
        int r = session_file(h, name, "handover", &p);
        if (r < 0)
                return r;
        if (unlink(p) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int handoff_peer_owns(const char *peer, const char *token, const char *name, int64_t epoch) {
        RemoteOptions ro = { .connect_timeout_s = 5, .stall_timeout_s = 10 };
        _cleanup_(remote_freep) Remote *r = NULL;
        int k = remote_new(peer, token, &ro, &r);
        if (k < 0)
                return k;
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        if (!c)
                return -ENOMEM;
        char path[256];
        snprintf(path, sizeof path, "/v1/sessions/%s", name);
        RemoteResponse resp;
        k = remote_request(c, "GET", path, NULL, 0, NULL, 1 << 20, &resp);
        if (k < 0)
                return k;
        if (resp.status == 404) {
                remote_response_done(&resp);
                return 0;
        }
        if (resp.status != 200) {
                remote_response_done(&resp);
                return -EAGAIN;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        const char *owner = json_string_value(json_object_get(j, "owner"));
        json_int_t e = json_integer_value(json_object_get(j, "epoch"));
        k = owner && !strcmp(owner, SESSION_OWNER_LOCAL) && e >= epoch ? 1 : 0;
        json_decref(j);
        return k;
}

int handoff_ask_peer(const char *peer, const char *token, const char *name, int64_t epoch) {
        int owns = -EAGAIN;
        for (int attempt = 0; attempt < 5 && owns < 0; attempt++) {
                owns = handoff_peer_owns(peer, token, name, epoch);
                if (owns < 0 && attempt < 4)
                        sleep(1);
        }
        return owns;
}

/* ---- hand-overs running in this process ---- */

#define BUSY_MAX 64
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        const SessionHost *h;
        char name[NAME_MAX_LEN + 1];
        unsigned count;
} busy[BUSY_MAX];

void handoff_busy_begin(SessionHost *h, const char *name) {
        pthread_mutex_lock(&busy_lock);
        int free_slot = -1;
        for (int i = 0; i < BUSY_MAX; i++) {
                if (busy[i].count && busy[i].h == h && !strcmp(busy[i].name, name)) {
                        busy[i].count++;
                        pthread_mutex_unlock(&busy_lock);
                        return;
                }
                if (!busy[i].count && free_slot < 0)
                        free_slot = i;
        }
        if (free_slot >= 0) { /* full: recovery may then act early, as before this registry */
                busy[free_slot].h = h;
                snprintf(busy[free_slot].name, sizeof busy[free_slot].name, "%s", name);
                busy[free_slot].count = 1;
        }
        pthread_mutex_unlock(&busy_lock);
}

void handoff_busy_end(SessionHost *h, const char *name) {
        pthread_mutex_lock(&busy_lock);
        for (int i = 0; i < BUSY_MAX; i++)
                if (busy[i].count && busy[i].h == h && !strcmp(busy[i].name, name)) {
                        busy[i].count--;
                        break;
                }
        pthread_mutex_unlock(&busy_lock);
}

static bool is_busy(const SessionHost *h, const char *name) {
        bool b = false;
        pthread_mutex_lock(&busy_lock);
        for (int i = 0; i < BUSY_MAX && !b; i++)
                b = busy[i].count && busy[i].h == h && !strcmp(busy[i].name, name);
        pthread_mutex_unlock(&busy_lock);
        return b;
}

static void say(HandoffLogFn log, void *userdata, const char *fmt, ...) _printf_(3, 4);
static void say(HandoffLogFn log, void *userdata, const char *fmt, ...) {
        if (!log)
                return;
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        log(buf, userdata);
}

/* Returns 1 when still in doubt. */
static int recover_marker(SessionHost *h, const SessionInfo *s, HandoffLogFn log, void *userdata) {
        const char *name = s->row.name;
        _cleanup_free_ char *p = path_join(s->dir, "handover"), *text = NULL;
        size_t len;
        if (!p || read_full_file(p, 64 * 1024, &text, &len) < 0)
                return 0;
        HandoverMarker m = {};
        int pr = handover_marker_parse(text, len, &m);
        if (pr == -ENOMEM)
                return 1; /* in doubt until there is memory to read it */
        const char *kind = pr >= 0 ? m.kind : NULL;
        const char *peer = m.peer, *token = m.token;
        const char *ck = m.checkpoint[0] ? m.checkpoint : NULL;
        int64_t epoch = m.epoch;
        /* a marker written before its final checkpoint: a stopped session
         * stopped after that checkpoint was recorded (checkpoint.c publishes
         * before QEMU ends), which is the row's latest */
        if (!ck && kind && strcmp(kind, "finalize"))
                ck = s->row.last_checkpoint;
        bool here = !strcmp(s->row.owner, SESSION_OWNER_LOCAL);
        bool runs = s->row.state == SESSION_RUNNING || s->row.state == SESSION_PAUSED;
        int doubt = 0, k = 0;
        err_clear();
        int64_t pid = m.pid, pid_start = m.pid_start;
        bool in_progress = pid == getpid() ? is_busy(h, name)
                                           : pid > 0 && pid <= INT32_MAX && pid_start > 0 &&
                                                     process_start((pid_t) pid) == (uint64_t) pid_start;
        if (in_progress) {
                handover_marker_done(&m);
                return 0; /* its hand-over still runs (here, or in a 'roam' command) */
        }
        if (!kind) {
                say(log, userdata, "session '%s': malformed hand-over marker removed", name);
        } else if (!strcmp(kind, "grant") || !strcmp(kind, "in")) {
                if (here && !runs && ck) {
                        k = session_restore(h, name, ck, NULL);
                        say(log, userdata, "session '%s': interrupted hand-over (%s): %s", name, kind,
                            k >= 0 ? "resumed here from its checkpoint" : err_message(k));
                        /* a fleet's refusal (the guard): the fleet gave it on, nothing to resume here */
                        if (k == -EREMOTE && h->guard)
                                k = 0;
                }
        } else if (!strcmp(kind, "finalize") && here) {
                SessionFinalizeResult f;
                SessionCheckpointResult c;
                if (runs) {
                        doubt = 1; /* its log-off boot outlived the daemon: when it ends */
                        say(log, userdata, "session '%s': interrupted log-off; waiting for its boot to end", name);
                } else if (ck) {
                        /* from the laptop's disk delta again: a half-done log-off or reset is not trusted */
                        k = session_restore(h, name, ck, NULL);
                        if (k >= 0)
                                k = session_finalize(h, name, &f);
                        if (k >= 0)
                                k = session_checkpoint(h, name, 0, &c);
                        say(log, userdata, "session '%s': interrupted log-off: %s", name,
                            k >= 0 ? "logged off again from the laptop's disk" : err_message(k));
                }
        } else if (!strcmp(kind, "out") && here && !runs) {
                int owns = peer ? handoff_peer_owns(peer, token, name, epoch) : 0;
                if (owns > 0) {
                        k = session_set_owner(h, name, peer, epoch, s->row.epoch);
                        say(log, userdata, "session '%s': %s runs it at epoch %lld: %s", name, peer,
                            (long long) epoch, k >= 0 ? "recorded" : err_message(k));
                } else if (owns == 0 && ck) {
                        k = session_restore(h, name, ck, NULL);
                        say(log, userdata, "session '%s': %s does not run it: %s", name, peer ? peer : "?",
                            k >= 0 ? "resumed here" : err_message(k));
                } else {
                        doubt = 1;
                        say(log, userdata, "session '%s': hand-over to %s in doubt (%s); asking again later", name,
                            peer, err_message(owns));
                }
        }
        /* a failed log-off is not tried again and again: the session stays
         * here, stopped, with its disk (the error is in the log) */
        bool settled = !doubt && (k >= 0 || (kind && !strcmp(kind, "finalize")));
        handover_marker_done(&m);
        if (settled)
                (void) unlink(p);
        return !settled;
}

/* A QEMU operation a crash cut short first (a paused guest, a half-started
 * QEMU), then the hand-over marker, with the session as it is after that. */
static int recover_one(SessionHost *h, const SessionInfo *s, HandoffLogFn log, void *userdata) {
        char what[256];
        int q = session_recover_qemu_op(h, s->row.name, what, sizeof what);
        if (q != 0)
                say(log, userdata, "session '%s': %s", s->row.name, q > 0 ? what : err_message(q));
        if (q <= 0)
                return recover_marker(h, s, log, userdata);
        SessionInfo now = { 0 };
        if (session_get(h, s->row.name, &now) < 0)
                return 1;
        int r = recover_marker(h, &now, log, userdata);
        session_info_done(&now);
        return r;
}

int handoff_recover(SessionHost *h, HandoffLogFn log, void *userdata) {
        SessionInfo *list = NULL;
        size_t n = 0;
        int r = session_list(h, &list, &n);
        if (r < 0)
                return r;
        int doubt = 0;
        for (size_t i = 0; i < n; i++)
                doubt += recover_one(h, &list[i], log, userdata);
        session_info_list_free(list, n);
        return doubt;
}
