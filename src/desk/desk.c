/* SPDX-License-Identifier: MIT */
#include "desk.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/index.h"
#include "../store/manifest.h"
#include "../store/page-index.h"

void desk_ids(const char *user, uint64_t *ret_uid, uint64_t *ret_display) {
        uint32_t x = 2166136261u; /* FNV-1a */
        for (const char *c = user; *c; c++)
                x = (x ^ (uint8_t) *c) * 16777619u;
        *ret_uid = 2000 + x % 58000;
        *ret_display = 1 + (x >> 8) % 800;
}

static int check_user(const char *user) {
        if (!name_is_valid(user) || !strcmp(user, "root") || strlen(user) > 32 || user[0] < 'a' || user[0] > 'z')
                return err_set(-EINVAL, "user name '%s' is invalid for a desk (a-z first, then a-z 0-9 _ -, at most "
                                        "32, not root)",
                               user ? user : "");
        for (const char *c = user; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
                        return err_set(-EINVAL, "user name '%s' is invalid for a desk (a-z 0-9 _ -)", user);
        return 0;
}

/* ---- the helper ---- */

/* Runs the helper on terminal server ts with args; a helper that says
 * "error=..." fails with its reason (-EIO), "what" saying what was asked. */
static int helper(SessionHost *h, const char *ts, char **args, unsigned timeout_s, const char *what,
                  DeskAnswer *ret) {
        char *argv[16] = { (char *) DESK_HELPER };
        size_t n = 1;
        for (; args[n - 1] && n < ELEMENTSOF(argv) - 1; n++)
                argv[n] = args[n - 1];
        argv[n] = NULL;
        SessionExec e = { .argv = argv, .timeout_s = timeout_s };
        _cleanup_(session_exec_result_done) SessionExecResult x = {};
        int r = session_exec(h, ts, &e, &x);
        if (r < 0)
                return err_set_if_none(r, "%s: terminal server '%s': %s", what, ts, strerror(-r));
        if (x.exit_code == 127 || (x.out_len == 0 && x.exit_code != 0))
                return err_set(-ENOEXEC,
                               "%s: terminal server '%s' has no desk helper (exit %d; its image needs the "
                               "terminal-server layer: make desktop-layer)",
                               what, ts, x.exit_code);
        DeskAnswer a = {};
        r = desk_answer_parse(x.out, x.out_len, &a);
        if (r < 0) {
                char detail[256];
                snprintf(detail, sizeof detail, "%s", err_message(r));
                return err_set(r, "%s: terminal server '%s': %s", what, ts, detail);
        }
        if (!a.ok) {
                r = err_set(-EIO, "%s: %s", what, a.error ? a.error : "the helper failed");
                desk_answer_done(&a);
                return r;
        }
        *ret = a;
        return 0;
}

/* ts is a terminal server here, running unless may_be_stopped; its master
 * chain into *ret_layers (may be NULL). */
static int check_ts_as(SessionHost *h, const char *ts, bool may_be_stopped, char ***ret_layers) {
        if (!name_is_valid(ts))
                return err_set(-EINVAL, "terminal server name '%s' is invalid", ts ? ts : "");
        _cleanup_(session_info_done) SessionInfo i = {};
        int r = session_get(h, ts, &i);
        if (r < 0)
                return r;
        if (!i.config.terminal_server)
                return err_set(-EINVAL, "session '%s' is not a terminal server (made without --terminal-server)", ts);
        if (i.row.state != SESSION_RUNNING && !may_be_stopped)
                return err_set(-ESRCH, "terminal server '%s' is %s, not running (roam session start %s)", ts,
                               session_state_to_string(i.row.state), ts);
        if (!ret_layers)
                return 0;
        RoamId disk;
        if (id_from_hex(i.row.image_id, &disk) < 0)
                return -EBADMSG;
        return session_master_chain(h, &disk, ret_layers);
}

static int check_ts(SessionHost *h, const char *ts, char ***ret_layers) {
        return check_ts_as(h, ts, false, ret_layers);
}

/* ---- the ref ---- */

typedef struct Desk {
        RoamId id; /* ID_NULL: no desk */
        json_t *m;
} Desk;

static void desk_done(Desk *d) {
        json_decref(d->m);
        *d = (Desk) {};
}

static void ref_name(const char *user, char *buf, size_t size) {
        snprintf(buf, size, "desks/%s", user);
}

bool desk_at_char_ok(char c) {
        return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
}

/* An away desk's "at": 1 to DESK_AT_MAX characters desk_at_char_ok() takes. */
static bool at_is_valid(const char *at) {
        size_t n = strlen(at);
        if (n == 0 || n > DESK_AT_MAX)
                return false;
        for (const char *c = at; *c; c++)
                if (!desk_at_char_ok(*c))
                        return false;
        return true;
}

/* The desk manifest id of user into *ret (not there: -EBADMSG naming it). */
static int desk_load_id(Store *s, const char *user, const RoamId *id, Desk *ret) {
        char hex[ID_HEX_SIZE];
        Desk d = { .id = *id };
        int r;
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = store_object_get(s, &d.id, MANIFEST_JSON_MAX + 64, &data, &len);
        if (r >= 0)
                r = manifest_parse(data, len, &d.m);
        if (r < 0)
                return err_set_if_none(r, "the desk of '%s' (%.12s) is damaged (run 'roam store fsck')", user,
                                       id_to_hex(&d.id, hex));
        const char *kind = json_string_value(json_object_get(d.m, "kind")),
                   *u = json_string_value(json_object_get(d.m, "user")),
                   *st = json_string_value(json_object_get(d.m, "state")),
                   *ts = json_string_value(json_object_get(d.m, "ts"));
        const char *at = json_string_value(json_object_get(d.m, "at"));
        if (!kind || strcmp(kind, "desk") || !u || strcmp(u, user) || !st ||
            (strcmp(st, "running") && strcmp(st, "suspended") && strcmp(st, "away")) ||
            (!strcmp(st, "away") && (!at || !at_is_valid(at))) || !ts || !name_is_valid(ts) ||
            !json_is_integer(json_object_get(d.m, "uid")) || !json_is_integer(json_object_get(d.m, "display"))) {
                desk_done(&d);
                return err_set(-EBADMSG, "the desk of '%s' (%.12s) is not a desk manifest", user,
                               id_to_hex(&d.id, hex));
        }
        *ret = d;
        return 0;
}

/* The desk of user (no desk: ret->m NULL). */
static int desk_load(Store *s, const char *user, Desk *ret) {
        char ref[REF_NAME_MAX_LEN + 1];
        ref_name(user, ref, sizeof ref);
        RoamId id;
        int r = store_ref_get(s, ref, &id);
        if (r == -ENOENT) {
                err_clear();
                *ret = (Desk) { .id = ID_NULL };
                return 0;
        }
        if (r < 0)
                return r;
        return desk_load_id(s, user, &id, ret);
}

/* The desk of a valid user name that has one (-ENOENT with detail when not). */
static int desk_find(SessionHost *h, const char *user, Desk *ret) {
        int r = check_user(user);
        if (r < 0)
                return r;
        Desk d = {};
        r = desk_load(session_host_store(h), user, &d);
        if (r < 0)
                return r;
        if (!d.m)
                return err_set(-ENOENT, "no desk of '%s'", user);
        *ret = d;
        return 0;
}

static const char *desk_state(const Desk *d) {
        return json_string_value(json_object_get(d->m, "state"));
}
static const char *desk_ts(const Desk *d) {
        return json_string_value(json_object_get(d->m, "ts"));
}
static bool desk_running(const Desk *d) {
        return !strcmp(desk_state(d), "running");
}
static bool desk_away(const Desk *d) {
        return !strcmp(desk_state(d), "away");
}
static const char *desk_at(const Desk *d) {
        return json_string_value(json_object_get(d->m, "at"));
}

/* -EREMOTE "the desk of USER is at WHERE" for an away desk, else 0. */
static int refuse_away(const Desk *d, const char *user, const char *what) {
        if (!desk_away(d))
                return 0;
        return err_set(-EREMOTE, "cannot %s the desk of '%s': it was moved to %s (it runs or waits there; bring it "
                                 "back from there, or once it is logged off there: 'roam desk forget %s' here)",
                       what, user, desk_at(d), user);
}

/* desk_find() of a desk that is here (not away: refused naming where it is,
 * "cannot WHAT the desk of ..."). */
static int desk_find_here(SessionHost *h, const char *user, const char *what, Desk *ret) {
        Desk d = {};
        int r = desk_find(h, user, &d);
        if (r >= 0)
                r = refuse_away(&d, user, what);
        if (r < 0) {
                json_decref(d.m);
                return r;
        }
        *ret = d;
        return 0;
}

/* Writes manifest m as desks/USER, expected the id it replaces (ID_NULL: none). */
static int desk_store(Store *s, const char *user, json_t *m, const RoamId *expected, RoamId *ret) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        RoamId id;
        int r = manifest_serialize(m, &data, &len);
        if (r >= 0)
                r = store_object_put(s, data, len, &id);
        if (r >= 0)
                r = store_commit(s);
        if (r < 0)
                return r;
        char ref[REF_NAME_MAX_LEN + 1];
        ref_name(user, ref, sizeof ref);
        r = store_ref_set(s, ref, &id, expected);
        if (r == -EAGAIN || r == -ESTALE)
                return err_set(-EBUSY, "the desk of '%s' changed meanwhile: try again", user);
        if (r < 0)
                return r;
        if (ret)
                *ret = id;
        return 0;
}

/* The manifest that follows desk d: a copy in state, with objects (taken;
 * NULL: {"last": d}), d as its parent, made now; NULL when out of memory. */
static json_t *desk_successor(const Desk *d, const char *state, json_t *objects) {
        char hex[ID_HEX_SIZE];
        id_to_hex(&d->id, hex);
        if (!objects)
                objects = json_pack("{s:s}", "last", hex);
        json_t *m = json_deep_copy(d->m);
        if (!m || !objects) {
                json_decref(m);
                json_decref(objects);
                return NULL;
        }
        if (json_object_set_new(m, "state", json_string(state)) < 0 ||
            json_object_set_new(m, "objects", objects) < 0 || json_object_set_new(m, "parent", json_string(hex)) < 0 ||
            json_object_set_new(m, "created", json_integer((json_int_t) time(NULL))) < 0) {
                json_decref(m);
                return NULL;
        }
        return m;
}

static json_t *layers_json(char **layers) {
        json_t *a = json_array();
        for (size_t i = 0; a && layers && layers[i]; i++)
                json_array_append_new(a, json_string(layers[i]));
        return a;
}

static void info_from(const char *user, const Desk *d, DeskInfo *ret) {
        DeskInfo i = {};
        snprintf(i.user, sizeof i.user, "%s", user);
        snprintf(i.ts, sizeof i.ts, "%s", desk_ts(d));
        i.running = desk_running(d);
        i.away = desk_away(d);
        if (i.away)
                snprintf(i.at, sizeof i.at, "%s", desk_at(d));
        i.uid = (uint64_t) json_integer_value(json_object_get(d->m, "uid"));
        i.display = (uint64_t) json_integer_value(json_object_get(d->m, "display"));
        json_t *b = json_object_get(d->m, "bytes");
        i.bytes = json_is_integer(b) ? (uint64_t) json_integer_value(b) : 0;
        i.created = json_integer_value(json_object_get(d->m, "created"));
        id_to_hex(&d->id, i.id);
        json_t *l = json_object_get(d->m, "layers"), *v;
        size_t k;
        json_array_foreach(l, k, v) {
                const char *hex = json_string_value(v);
                if (hex && strlen(hex) == ID_HEX_SIZE - 1 && i.n_layers < DESK_LAYERS_MAX)
                        memcpy(i.layers[i.n_layers++], hex, ID_HEX_SIZE);
        }
        *ret = i;
}

const char *desk_info_state(const DeskInfo *i) {
        return i->running ? "running" : i->away ? "away" : "suspended";
}

json_t *desk_info_json(const DeskInfo *i) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "user", i->user, "ts", i->ts, "state",
                              desk_info_state(i), "display", (json_int_t) i->display, "uid", (json_int_t) i->uid,
                              "pid", (json_int_t) i->pid, "bytes", (json_int_t) i->bytes, "id", i->id);
        json_t *l = json_array();
        for (size_t k = 0; l && k < i->n_layers; k++)
                json_array_append_new(l, json_string(i->layers[k]));
        if (!j || !l || json_object_set_new(j, "layers", l) < 0 ||
            json_object_set_new(j, "at", i->away ? json_string(i->at) : json_null()) < 0) {
                json_decref(j);
                return NULL;
        }
        return j;
}

/* ---- start, show, list ---- */

int desk_start(SessionHost *h, const char *ts, const char *user, DeskInfo *ret) {
        int r = check_user(user);
        if (r < 0)
                return r;
        Store *s = session_host_store(h);
        if (!s)
                return -EINVAL;
        _cleanup_(desk_done) Desk d = {};
        r = desk_load(s, user, &d);
        if (r < 0)
                return r;
        if (d.m && desk_running(&d))
                return err_set(-EEXIST, "the desk of '%s' runs on terminal server '%s' already", user, desk_ts(&d));
        if (d.m && (r = refuse_away(&d, user, "start")) < 0)
                return r;
        if (d.m)
                return err_set(-EEXIST, "the desk of '%s' is suspended (from '%s'): resume it ('roam desk resume %s')",
                               user, desk_ts(&d), user);
        char **layers = NULL;
        r = check_ts(h, ts, &layers);
        if (r < 0)
                return r;
        uint64_t uid, display;
        desk_ids(user, &uid, &display);
        char su[24], sd[24];
        snprintf(su, sizeof su, "%llu", (unsigned long long) uid);
        snprintf(sd, sizeof sd, "%llu", (unsigned long long) display);
        char what[128];
        snprintf(what, sizeof what, "cannot start the desk of '%s' on '%s'", user, ts);
        _cleanup_(desk_answer_done) DeskAnswer a = {};
        r = helper(h, ts, (char *[]) { "start", (char *) user, su, sd, NULL }, DESK_START_TIMEOUT_S, what, &a);
        if (r < 0) {
                strv_free(layers);
                return r;
        }
        json_t *m = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:I, s:{}}", "kind", "desk", "user", user, "uid",
                              (json_int_t) uid, "display", (json_int_t) display, "state", "running", "ts", ts,
                              "layers", layers_json(layers), "created", (json_int_t) time(NULL), "objects");
        strv_free(layers);
        if (!m)
                return -ENOMEM;
        RoamId id;
        r = desk_store(s, user, m, &ID_NULL, &id);
        json_decref(m);
        if (r < 0) {
                /* the ref decides: undo the desk we made */
                _cleanup_(desk_answer_done) DeskAnswer k = {};
                (void) helper(h, ts, (char *[]) { "kill", (char *) user, NULL }, 60, "undo", &k);
                err_clear();
                return err_set_if_none(r, "cannot record the desk of '%s': %s", user, strerror(-r));
        }
        if (ret) {
                r = desk_get(h, user, ret);
                err_clear();
        }
        return 0;
}

int desk_get(SessionHost *h, const char *user, DeskInfo *ret) {
        int r = check_user(user);
        if (r < 0)
                return r;
        _cleanup_(desk_done) Desk d = {};
        r = desk_load(session_host_store(h), user, &d);
        if (r < 0)
                return r;
        if (!d.m)
                return err_set(-ENOENT, "no desk of '%s' (roam desk start TS %s)", user, user);
        info_from(user, &d, ret);
        if (ret->running) {
                _cleanup_(desk_answer_done) DeskAnswer a = {};
                if (helper(h, ret->ts, (char *[]) { "show", (char *) user, NULL }, 30, "show", &a) >= 0)
                        (void) desk_answer_u64(&a, "pid", &ret->pid);
                err_clear();
        }
        return 0;
}

typedef struct ListCtx {
        Store *s;
        const char *ts;
        DeskInfo *v;
        size_t n;
} ListCtx;

static int list_cb(const char *name, const RoamId *id, void *userdata) {
        ListCtx *c = userdata;
        const char *user = name + strlen("desks/");
        if (!id || strchr(user, '/') || check_user(user) < 0) {
                err_clear();
                return 0;
        }
        _cleanup_(desk_done) Desk d = {};
        if (desk_load(c->s, user, &d) < 0 || !d.m) {
                err_clear();
                return 0;
        }
        if (c->ts && strcmp(desk_ts(&d), c->ts))
                return 0;
        DeskInfo *nv = realloc(c->v, (c->n + 1) * sizeof *nv);
        if (!nv)
                return -ENOMEM;
        c->v = nv;
        info_from(user, &d, &c->v[c->n++]);
        return 0;
}

int desk_list(SessionHost *h, const char *ts, DeskInfo **ret, size_t *ret_n) {
        ListCtx c = { .s = session_host_store(h), .ts = ts };
        int r = store_ref_foreach(c.s, "desks/", list_cb, &c);
        if (r < 0) {
                free(c.v);
                return r;
        }
        *ret = c.v;
        *ret_n = c.n;
        return 0;
}

/* ---- suspend: the tar on the transfer disk into the store ---- */

static bool member_name_ok(const char *name) {
        if (!strcmp(name, "home.tar"))
                return true;
        if (strncmp(name, "img/", 4) || !name[4])
                return false;
        for (const char *c = name + 4; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
                      *c == '_' || *c == '-'))
                        return false;
        return strcmp(name + 4, ".") && strcmp(name + 4, "..");
}

/* A CRIU image of memory pages: 4 KiB pages in the order of the dumped
 * mappings, which a restore and the next dump may shift against 64 KiB
 * chunks. Its blob gets a page index, so that the next move sends its
 * changed chunks as page references into this one (sync.h, pages.h). */
static bool is_pages(const char *name) {
        return !strncmp(name, "img/pages-", strlen("img/pages-"));
}

/* The page indexes of a checkpoint's page images that came from another
 * host (bases for the next move's page references); after its resume: not
 * in the pause. Best effort. */
static void index_pages(Store *s, json_t *m) {
        const char *name;
        json_t *v;
        json_object_foreach(json_object_get(m, "objects"), name, v) {
                RoamId id;
                _cleanup_(page_index_unrefp) PageIndex *x = NULL;
                if (is_pages(name) && id_from_hex(json_string_value(v), &id) >= 0 &&
                    page_index_get(s, &id, UINT64_MAX, &x) < 0)
                        err_clear();
        }
}

/* Copies len bytes at off of fd into a new temp file in dir and imports it
 * (with a page index when pages). */
static int import_range(Store *s, int fd, uint64_t off, uint64_t len, const char *dir, bool pages, RoamId *ret,
                        BlobStats *ret_stats) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int t = tmpfile_create(dir, &tmp);
        if (t < 0)
                return err_set(t, "cannot create a temp file in '%s': %s", dir, strerror(-t));
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        int r = buf ? 0 : -ENOMEM;
        for (uint64_t done = 0; r >= 0 && done < len;) {
                size_t n = len - done < (1 << 20) ? (size_t) (len - done) : (1 << 20);
                ssize_t k = loop_pread(fd, buf, n, off + done);
                if (k < 0)
                        r = (int) k;
                else if ((size_t) k != n)
                        r = err_set(-EBADMSG, "the desk's tar is cut short on the transfer disk");
                else
                        r = loop_write(t, buf, n);
                done += n;
        }
        if (r >= 0) {
                _cleanup_close_ int rfd = open(tmp, O_RDONLY | O_CLOEXEC);
                BlobOptions o = { .page_index = pages };
                r = rfd < 0 ? -errno : blob_import_fd(s, rfd, len, &o, ret, ret_stats);
        }
        (void) unlink(tmp);
        return r;
}

/* The members of the tar of bytes at the start of the transfer disk xfer
 * into the store, as objects of manifest m ("img/...", "home.tar"). */
static int import_tar(Store *s, const char *xfer, uint64_t bytes, json_t *objects, DeskMoveStats *st) {
        _cleanup_close_ int fd = open(xfer, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0)
                return err_set(-errno, "cannot open the transfer disk '%s': %s", xfer, strerror(errno));
        if (bytes > (uint64_t) sb.st_size || bytes % DESK_TAR_BLOCK)
                return err_set(-EBADMSG, "the helper wrote %llu bytes, the transfer disk holds %llu",
                               (unsigned long long) bytes, (unsigned long long) sb.st_size);
        _cleanup_free_ char *dir = strdup(xfer);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        uint64_t off = 0;
        size_t files = 0;
        bool home = false;
        for (;;) {
                uint8_t block[DESK_TAR_BLOCK];
                if (off + DESK_TAR_BLOCK > bytes)
                        return err_set(-EBADMSG, "the desk's tar has no end within %llu bytes",
                                       (unsigned long long) bytes);
                if (loop_pread(fd, block, sizeof block, off) != (ssize_t) sizeof block)
                        return err_set(-EIO, "cannot read the transfer disk '%s'", xfer);
                off += DESK_TAR_BLOCK;
                DeskTarEntry e;
                char why[256];
                int r = desk_tar_header_parse(block, &e, why, sizeof why);
                if (r < 0)
                        return err_set(r, "the desk's tar is malformed: %s", why);
                if (r == 1)
                        break;
                if (e.dir) {
                        if (strcmp(e.name, "img/") && strcmp(e.name, "img"))
                                return err_set(-EBADMSG, "the desk's tar has an unexpected directory '%s'", e.name);
                        continue;
                }
                if (!member_name_ok(e.name))
                        return err_set(-EBADMSG, "the desk's tar has an unexpected member '%s'", e.name);
                if (e.size > bytes - off)
                        return err_set(-EBADMSG, "tar member '%s' runs past the end of the desk's tar", e.name);
                if (++files > MANIFEST_MAX_OBJECTS - 8)
                        return err_set(-E2BIG, "the desk's tar has more than %d files", MANIFEST_MAX_OBJECTS - 8);
                if (json_object_get(objects, e.name))
                        return err_set(-EBADMSG, "the desk's tar has '%s' twice", e.name);
                RoamId id;
                BlobStats bs = {};
                r = import_range(s, fd, off, e.size, dir, is_pages(e.name), &id, &bs);
                if (r < 0)
                        return err_set_if_none(r, "cannot store '%s' of the desk: %s", e.name, strerror(-r));
                st->new_chunks += bs.new_chunks;
                st->stored_bytes += bs.stored_bytes;
                char hex[ID_HEX_SIZE];
                if (json_object_set_new(objects, e.name, json_string(id_to_hex(&id, hex))) < 0)
                        return -ENOMEM;
                home |= !strcmp(e.name, "home.tar");
                off += desk_tar_padded(e.size);
        }
        if (!home || files < 2)
                return err_set(-EBADMSG, "the desk's tar lacks its CRIU images or its home");
        return 0;
}

int desk_suspend(SessionHost *h, const char *user, DeskMoveStats *ret) {
        uint64_t t0 = now_ms();
        DeskMoveStats st = {};
        Store *s = session_host_store(h);
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find_here(h, user, "suspend", &d);
        if (r < 0)
                return r;
        if (!desk_running(&d))
                return err_set(-EALREADY, "the desk of '%s' is suspended already", user);
        const char *ts = desk_ts(&d);
        r = check_ts(h, ts, NULL);
        if (r < 0)
                return r;
        char what[128];
        snprintf(what, sizeof what, "cannot suspend the desk of '%s'", user);
        _cleanup_(desk_answer_done) DeskAnswer a = {};
        r = helper(h, ts, (char *[]) { "dump", (char *) user, (char *) DESK_XFER_DEV, NULL }, DESK_DUMP_TIMEOUT_S,
                   what, &a);
        if (r < 0)
                return r;
        if (desk_answer_u64(&a, "bytes", &st.bytes) < 0)
                return err_set(-EBADMSG, "%s: the helper did not say how many bytes it wrote", what);
        (void) desk_answer_u64(&a, "dump_ms", &st.dump_ms);
        (void) desk_answer_u64(&a, "write_ms", &st.write_ms);
        /* the processes are gone now: from here on the checkpoint must land */
        uint64_t t1 = now_ms();
        _cleanup_free_ char *xfer = session_xfer_path(h, ts);
        if (!xfer)
                return -ENOMEM;
        json_t *objects = json_object();
        if (!objects)
                return -ENOMEM;
        r = import_tar(s, xfer, st.bytes, objects, &st);
        if (r >= 0)
                r = store_commit(s);
        st.import_ms = now_ms() - t1;
        if (r < 0) {
                json_decref(objects);
                return err_set_if_none(r, "%s: its checkpoint did not reach the store: %s (it is still on the "
                                          "transfer disk of '%s')",
                                       what, strerror(-r), ts);
        }
        json_t *m = desk_successor(&d, "suspended", objects);
        if (!m || json_object_set_new(m, "bytes", json_integer((json_int_t) st.bytes)) < 0) {
                json_decref(m);
                return -ENOMEM;
        }
        r = desk_store(s, user, m, &d.id, NULL);
        json_decref(m);
        if (r < 0)
                return r;
        /* stored: the server forgets the desk (its home is in the checkpoint) */
        _cleanup_(desk_answer_done) DeskAnswer f = {};
        if (helper(h, ts, (char *[]) { "forget", (char *) user, NULL }, 60, "forget", &f) < 0)
                err_clear();
        st.total_ms = now_ms() - t0;
        if (ret)
                *ret = st;
        return 0;
}

/* ---- resume: the store into a tar on the transfer disk ---- */

typedef struct TarOut {
        Store *s;
        int fd;
        uint64_t off;
        const char *dir;
        int error;
} TarOut;

static int write_member(TarOut *t, const char *name, const RoamId *id) {
        _cleanup_(index_freep) Index *x = NULL;
        char hex[ID_HEX_SIZE];
        int r = blob_load_index(t->s, id, &x);
        if (r < 0)
                return err_set_if_none(r, "the desk's checkpoint lacks '%s' (%.12s): %s", name, id_to_hex(id, hex),
                                       strerror(-r));
        uint8_t block[DESK_TAR_BLOCK];
        r = desk_tar_header_build(name, x->blob_size, 0600, block);
        if (r < 0)
                return err_set(r, "the desk's file '%s' cannot go into a tar", name);
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(t->dir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot create a temp file in '%s': %s", t->dir, strerror(-fd));
        BlobOptions o = {};
        r = blob_export_fd(t->s, x, fd, &o, NULL);
        _cleanup_close_ int rfd = r >= 0 ? open(tmp, O_RDONLY | O_CLOEXEC) : -1;
        if (r >= 0 && rfd < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return err_set_if_none(r, "the desk's checkpoint is damaged: '%s' (%.12s) cannot be read: %s", name,
                                       id_to_hex(id, hex), strerror(-r));
        }
        r = loop_pwrite(t->fd, block, sizeof block, t->off);
        t->off += DESK_TAR_BLOCK;
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        if (!buf)
                r = -ENOMEM;
        for (uint64_t done = 0; r >= 0 && done < x->blob_size;) {
                size_t n = x->blob_size - done < (1 << 20) ? (size_t) (x->blob_size - done) : (1 << 20);
                ssize_t k = loop_pread(rfd, buf, n, done);
                if (k != (ssize_t) n)
                        r = k < 0 ? (int) k : -EIO;
                else
                        r = loop_pwrite(t->fd, buf, n, t->off + done);
                done += n;
        }
        (void) unlink(tmp);
        if (r < 0)
                return err_set_if_none(r, "cannot write '%s' to the transfer disk: %s", name, strerror(-r));
        uint64_t pad = desk_tar_padded(x->blob_size) - x->blob_size;
        static const uint8_t zeros[DESK_TAR_BLOCK];
        if (pad)
                r = loop_pwrite(t->fd, zeros, pad, t->off + x->blob_size);
        t->off += desk_tar_padded(x->blob_size);
        return r;
}

int desk_check_layers(SessionHost *h, const char *user, json_t *want, const char *ts) {
        char **layers = NULL;
        int r = check_ts_as(h, ts, true, &layers); /* the layers first: a refusal names what is missing */
        if (r < 0)
                return r;
        json_t *v;
        size_t k;
        json_array_foreach(want, k, v) {
                const char *hex = json_string_value(v);
                bool found = false;
                for (size_t i = 0; hex && layers[i]; i++)
                        found |= !strcmp(layers[i], hex);
                if (!found) {
                        strv_free(layers);
                        return err_set(-ENOENT,
                                       "cannot resume the desk of '%s' on '%s': it was started on layer %.12s, which "
                                       "'%s' does not run (its image lacks that layer; nothing was changed)",
                                       user, ts, hex ? hex : "?", ts);
                }
        }
        strv_free(layers);
        return 0;
}

/* desk_resume(); *ret_uncertain (may be NULL) says, on failure, whether the
 * restore may have happened after all (the helper gave no answer). */
static int resume(SessionHost *h, const char *user, const char *to, DeskMoveStats *ret, bool *ret_uncertain) {
        uint64_t t0 = now_ms();
        if (ret_uncertain)
                *ret_uncertain = false;
        DeskMoveStats st = {};
        Store *s = session_host_store(h);
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find_here(h, user, "resume", &d);
        if (r < 0)
                return r;
        if (desk_running(&d))
                return err_set(-EALREADY, "the desk of '%s' runs on terminal server '%s' (suspend it first)", user,
                               desk_ts(&d));
        const char *ts = to ? to : desk_ts(&d);
        r = desk_check_layers(h, user, json_object_get(d.m, "layers"), ts);
        if (r < 0)
                return r;
        r = check_ts(h, ts, NULL);
        if (r < 0)
                return r;
        /* the checkpoint into a tar on ts's transfer disk */
        uint64_t t1 = now_ms();
        _cleanup_free_ char *xfer = session_xfer_path(h, ts);
        if (!xfer)
                return -ENOMEM;
        _cleanup_free_ char *dir = strdup(xfer);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        _cleanup_close_ int fd = open(xfer, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open the transfer disk '%s': %s", xfer, strerror(errno));
        struct stat sb;
        if (fstat(fd, &sb) < 0)
                return -errno;
        TarOut t = { .s = s, .fd = fd, .dir = dir };
        json_t *objects = json_object_get(d.m, "objects"), *v;
        const char *name;
        size_t files = 0;
        json_object_foreach(objects, name, v) {
                RoamId id;
                if (!member_name_ok(name) || id_from_hex(json_string_value(v), &id) < 0)
                        return err_set(-EBADMSG, "the desk of '%s' names a bad file '%s'", user, name);
                r = write_member(&t, name, &id);
                if (r < 0)
                        return err_set_if_none(r, "cannot resume the desk of '%s': %s", user, strerror(-r));
                files++;
        }
        if (files < 2 || !json_object_get(objects, "home.tar"))
                return err_set(-EBADMSG, "cannot resume the desk of '%s': its checkpoint lacks its files", user);
        static const uint8_t zeros[2 * DESK_TAR_BLOCK];
        r = loop_pwrite(fd, zeros, sizeof zeros, t.off);
        t.off += sizeof zeros;
        if (r >= 0 && t.off > (uint64_t) sb.st_size)
                r = err_set(-EFBIG, "the desk of '%s' (%llu bytes) does not fit the transfer disk of '%s'", user,
                            (unsigned long long) t.off, ts);
        if (r >= 0 && fdatasync(fd) < 0)
                r = -errno;
        if (r < 0)
                return err_set_if_none(r, "cannot write the desk to the transfer disk: %s", strerror(-r));
        st.export_ms = now_ms() - t1;
        st.bytes = t.off;
        char su[24], sd[24], sb2[24], what[160];
        snprintf(su, sizeof su, "%lld", (long long) json_integer_value(json_object_get(d.m, "uid")));
        snprintf(sd, sizeof sd, "%lld", (long long) json_integer_value(json_object_get(d.m, "display")));
        snprintf(sb2, sizeof sb2, "%llu", (unsigned long long) t.off);
        snprintf(what, sizeof what, "cannot resume the desk of '%s' on '%s' (its checkpoint is kept)", user, ts);
        _cleanup_(desk_answer_done) DeskAnswer a = {};
        r = helper(h, ts, (char *[]) { "restore", (char *) user, su, sd, (char *) DESK_XFER_DEV, sb2, NULL },
                   DESK_DUMP_TIMEOUT_S, what, &a);
        if (r < 0) {
                if (ret_uncertain)
                        *ret_uncertain = r != -EIO && r != -ENOEXEC; /* the helper said no: it did not */
                return r;
        }
        (void) desk_answer_u64(&a, "pid", &st.pid);
        (void) desk_answer_u64(&a, "read_ms", &st.read_ms);
        (void) desk_answer_u64(&a, "restore_ms", &st.restore_ms);
        /* running on ts; the checkpoint stays reachable as "last" */
        json_t *m = desk_successor(&d, "running", NULL);
        char **now_layers = NULL;
        if (check_ts(h, ts, &now_layers) < 0)
                err_clear();
        if (!m || json_object_set_new(m, "ts", json_string(ts)) < 0 ||
            (now_layers && json_object_set_new(m, "layers", layers_json(now_layers)) < 0)) {
                strv_free(now_layers);
                json_decref(m);
                return -ENOMEM;
        }
        strv_free(now_layers);
        r = desk_store(s, user, m, &d.id, NULL);
        json_decref(m);
        if (r < 0)
                return r;
        st.total_ms = now_ms() - t0;
        if (ret)
                *ret = st;
        return 0;
}

int desk_resume(SessionHost *h, const char *user, const char *to, DeskMoveStats *ret) {
        return resume(h, user, to, ret, NULL);
}

int desk_logoff(SessionHost *h, const char *user) {
        Store *s = session_host_store(h);
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find_here(h, user, "log off", &d);
        if (r < 0)
                return r;
        _cleanup_(desk_answer_done) DeskAnswer shown = {};
        bool runs = desk_running(&d) && helper(h, desk_ts(&d), (char *[]) { "show", (char *) user, NULL }, 30, "show",
                                               &shown) >= 0;
        err_clear();
        if (runs) {
                char what[128];
                snprintf(what, sizeof what, "cannot log off the desk of '%s'", user);
                _cleanup_(desk_answer_done) DeskAnswer a = {};
                r = helper(h, desk_ts(&d), (char *[]) { "kill", (char *) user, NULL }, 60, what, &a);
                if (r < 0)
                        return r;
        }
        char ref[REF_NAME_MAX_LEN + 1];
        ref_name(user, ref, sizeof ref);
        return store_ref_delete(s, ref);
}

int desk_vnc_open(SessionHost *h, const char *user, DeskVnc *ret) {
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find_here(h, user, "show", &d);
        if (r < 0)
                return r;
        if (!desk_running(&d))
                return err_set(-ESRCH, "the desk of '%s' is suspended (resume it first)", user);
        const char *ts = desk_ts(&d);
        _cleanup_free_ char *xfer = session_xfer_path(h, ts);
        if (!xfer)
                return -ENOMEM;
        /* a free port: its lock, held as long as the viewer */
        for (unsigned k = 0; k < VM_DESK_VNC_PORTS; k++) {
                _cleanup_free_ char *lpath = vm_desk_vnc_path(xfer, k, "lock"),
                                    *path = vm_desk_vnc_path(xfer, k, "sock");
                if (!lpath || !path)
                        return -ENOMEM;
                _cleanup_close_ int lock = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                if (lock < 0)
                        return err_set(-errno, "cannot open '%s': %s", lpath, strerror(errno));
                if (flock(lock, LOCK_EX | LOCK_NB) < 0)
                        continue;
                _cleanup_close_ int fd = unix_connect(path);
                if (fd < 0)
                        return err_set(fd, "terminal server '%s' has no display port %u (started before roam had "
                                           "them? restart it): %s",
                                       ts, k, strerror(-fd));
                char port[8], what[128];
                snprintf(port, sizeof port, "%u", k);
                snprintf(what, sizeof what, "cannot show the desk of '%s'", user);
                _cleanup_(desk_answer_done) DeskAnswer a = {};
                r = helper(h, ts, (char *[]) { "vnc", (char *) user, port, NULL }, 60, what, &a);
                if (r < 0)
                        return r;
                *ret = (DeskVnc) { .fd = TAKE_FD(fd), .lock = TAKE_FD(lock) };
                return 0;
        }
        return err_set(-EBUSY, "all %d display ports of terminal server '%s' are in use: close a viewer", VM_DESK_VNC_PORTS,
                       ts);
}

void desk_vnc_close(DeskVnc *v) {
        if (v->fd >= 0)
                close(v->fd);
        if (v->lock >= 0)
                close(v->lock);
        v->fd = v->lock = -1;
}

int desk_forget(SessionHost *h, const char *user) {
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find(h, user, &d);
        if (r < 0)
                return r;
        if (!desk_away(&d))
                return err_set(-EALREADY, "the desk of '%s' is here (%s on '%s'): 'roam desk logoff %s' ends it", user,
                               desk_state(&d), desk_ts(&d), user);
        char ref[REF_NAME_MAX_LEN + 1];
        ref_name(user, ref, sizeof ref);
        return store_ref_delete(session_host_store(h), ref);
}

int desk_exec(SessionHost *h, const char *user, char **argv, unsigned timeout_s, SessionExecResult *ret) {
        int r = check_user(user);
        if (r < 0)
                return r;
        _cleanup_(desk_done) Desk d = {};
        r = desk_load(session_host_store(h), user, &d);
        if (r < 0)
                return r;
        if (!d.m || !desk_running(&d))
                return err_set(-ESRCH, "the desk of '%s' does not run", user);
        char *v[GUEST_EXEC_ARGS_MAX];
        size_t n = 0;
        v[n++] = (char *) DESK_HELPER;
        bool ps = argv && argv[0] && !strcmp(argv[0], "--ps");
        v[n++] = ps ? "ps" : "exec";
        v[n++] = (char *) user;
        for (size_t i = ps ? 1 : 0; argv && argv[i] && n < ELEMENTSOF(v) - 1; i++)
                v[n++] = argv[i];
        v[n] = NULL;
        SessionExec e = { .argv = v, .timeout_s = timeout_s };
        return session_exec(h, desk_ts(&d), &e, ret);
}

/* ---- between hosts ---- */

void desk_in_ref(const char *user, char *buf, size_t size) {
        snprintf(buf, size, "desk-in/%s", user);
}

/* The checkpoint an away desk left with (objects.last). */
static int last_of(const Desk *d, RoamId *ret) {
        const char *hex = json_string_value(json_object_get(json_object_get(d->m, "objects"), "last"));
        if (!hex || id_from_hex(hex, ret) < 0)
                return err_set(-EBADMSG, "the away desk of '%s' names no checkpoint",
                               json_string_value(json_object_get(d->m, "user")));
        return 0;
}

int desk_base_checkpoint(SessionHost *h, const char *user, const RoamId *checkpoint, RoamId *ret) {
        Store *s = session_host_store(h);
        _cleanup_(desk_done) Desk d = {};
        int r = checkpoint ? desk_load_id(s, user, checkpoint, &d) : desk_load(s, user, &d);
        if (r >= 0 && !d.m)
                r = -ENOENT;
        if (r >= 0 && checkpoint) {
                /* the suspended checkpoint's parent is the running desk, whose
                 * last is the checkpoint it was resumed from */
                RoamId parent;
                const char *hex = json_string_value(json_object_get(d.m, "parent"));
                r = hex && id_from_hex(hex, &parent) >= 0 ? 0 : -ENOENT;
                desk_done(&d);
                if (r >= 0)
                        r = desk_load_id(s, user, &parent, &d);
                if (r >= 0 && !desk_running(&d))
                        r = -ENOENT;
        } else if (r >= 0 && !desk_away(&d))
                r = -ENOENT;
        if (r >= 0)
                r = last_of(&d, ret);
        err_clear();
        return r;
}

int desk_lend(SessionHost *h, const char *user, const char *to, RoamId *ret_checkpoint, DeskMoveStats *ret_suspend,
              bool *ret_suspended) {
        *ret_suspended = false;
        if (!to || !at_is_valid(to))
                return err_set(-EINVAL, "where the desk of '%s' goes ('%.64s') is invalid (printable, at most %d "
                                        "characters, no quotes)",
                               user, to ? to : "", DESK_AT_MAX);
        Store *s = session_host_store(h);
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find(h, user, &d);
        if (r < 0)
                return r;
        if (desk_away(&d)) {
                if (strcmp(desk_at(&d), to))
                        return refuse_away(&d, user, "move");
                return last_of(&d, ret_checkpoint); /* lent there already: a retry */
        }
        if (desk_running(&d)) {
                r = desk_suspend(h, user, ret_suspend);
                if (r < 0)
                        return r;
                *ret_suspended = true;
                desk_done(&d);
                r = desk_find(h, user, &d);
                if (r < 0)
                        return r;
                if (desk_running(&d) || desk_away(&d))
                        return err_set(-EBUSY, "the desk of '%s' changed meanwhile: try again", user);
        }
        json_t *m = desk_successor(&d, "away", NULL);
        if (!m || json_object_set_new(m, "at", json_string(to)) < 0) {
                json_decref(m);
                return -ENOMEM;
        }
        r = desk_store(s, user, m, &d.id, NULL);
        json_decref(m);
        if (r < 0)
                return r;
        *ret_checkpoint = d.id;
        return 0;
}

int desk_unlend(SessionHost *h, const char *user, const RoamId *checkpoint) {
        _cleanup_(desk_done) Desk d = {};
        int r = desk_find(h, user, &d);
        if (r < 0)
                return r;
        RoamId last;
        if (!desk_away(&d) || last_of(&d, &last) < 0 || !id_equal(&last, checkpoint))
                return err_set(-ESTALE, "the desk of '%s' is no longer the one lent (it changed meanwhile)", user);
        char ref[REF_NAME_MAX_LEN + 1];
        ref_name(user, ref, sizeof ref);
        r = store_ref_set(session_host_store(h), ref, checkpoint, &d.id);
        if (r == -EAGAIN || r == -ESTALE)
                return err_set(-EBUSY, "the desk of '%s' changed meanwhile: try again", user);
        return r;
}

int desk_receive(SessionHost *h, const char *user, const RoamId *checkpoint, const char *on, DeskMoveStats *ret,
                 char ret_ts[static NAME_MAX_LEN + 1]) {
        int r = check_user(user);
        if (r < 0)
                return r;
        if (on && !name_is_valid(on))
                return err_set(-EINVAL, "terminal server name '%s' is invalid", on);
        Store *s = session_host_store(h);
        char in[REF_NAME_MAX_LEN + 1], ref[REF_NAME_MAX_LEN + 1], hex[ID_HEX_SIZE], got_hex[ID_HEX_SIZE];
        desk_in_ref(user, in, sizeof in);
        ref_name(user, ref, sizeof ref);
        RoamId got;
        r = store_ref_get(s, in, &got);
        if (r == -ENOENT) {
                err_clear();
                return err_set(-ENOENT, "no checkpoint of the desk of '%s' arrived here (push it as %s first)", user,
                               in);
        }
        if (r < 0)
                return r;
        if (!id_equal(&got, checkpoint))
                return err_set(-ESTALE, "the desk of '%s' that arrived (%.12s) is not the one named (%.12s)", user,
                               id_to_hex(&got, got_hex), id_to_hex(checkpoint, hex));
        _cleanup_(desk_done) Desk c = {};
        r = desk_load_id(s, user, checkpoint, &c);
        uint64_t uid, display;
        desk_ids(user, &uid, &display);
        if (r >= 0 && (strcmp(desk_state(&c), "suspended") ||
                       json_integer_value(json_object_get(c.m, "uid")) != (json_int_t) uid ||
                       json_integer_value(json_object_get(c.m, "display")) != (json_int_t) display))
                r = err_set(-EBADMSG, "the desk of '%s' that arrived (%.12s) is not a suspended desk of that user",
                            user, id_to_hex(checkpoint, hex));
        _cleanup_(desk_done) Desk d = {};
        if (r >= 0)
                r = desk_load(s, user, &d);
        bool same = r >= 0 && d.m && id_equal(&d.id, checkpoint); /* received already: a retry */
        const char *parent = r >= 0 && d.m ? json_string_value(json_object_get(d.m, "parent")) : NULL;
        if (r >= 0 && d.m && desk_running(&d) && parent && !strcmp(parent, id_to_hex(checkpoint, hex))) {
                /* received and resumed already: a retry whose answer was lost */
                (void) store_ref_delete(s, in);
                err_clear();
                if (ret)
                        *ret = (DeskMoveStats) {};
                if (ret_ts)
                        snprintf(ret_ts, NAME_MAX_LEN + 1, "%s", desk_ts(&d));
                return 0;
        }
        if (r >= 0 && d.m && !same && !desk_away(&d))
                r = err_set(-EEXIST, "the desk of '%s' is here already (%s on '%s'); nothing was changed", user,
                            desk_state(&d), desk_ts(&d));
        /* where it resumes: as asked, else where it left from when it comes back */
        char ts[NAME_MAX_LEN + 1] = "";
        if (on)
                snprintf(ts, sizeof ts, "%s", on);
        else if (r >= 0 && d.m && desk_away(&d))
                snprintf(ts, sizeof ts, "%s", desk_ts(&d));
        if (r >= 0 && *ts) {
                int k = desk_check_layers(h, user, json_object_get(c.m, "layers"), ts);
                if (k < 0 && on)
                        r = k;
                else if (k < 0) {
                        err_clear(); /* the server it left from is gone: received, not resumed */
                        *ts = 0;
                }
        }
        if (r >= 0 && !same) {
                r = store_ref_set(s, ref, checkpoint, d.m ? &d.id : &ID_NULL);
                if (r == -EAGAIN || r == -ESTALE)
                        r = err_set(-EBUSY, "the desk of '%s' changed meanwhile: try again", user);
        }
        if (r < 0) {
                if (r != -ESTALE)
                        (void) store_ref_delete(s, in);
                return r;
        }
        if (store_ref_delete(s, in) < 0)
                err_clear();
        if (!*ts) {
                index_pages(s, c.m);
                return 2;
        }
        DeskMoveStats st = {};
        bool uncertain;
        r = resume(h, user, ts, &st, &uncertain);
        if (r >= 0)
                index_pages(s, c.m);
        if (r < 0 && !same && !uncertain) {
                /* it does not run here: as if it never came (the sender takes it back) */
                char why[768];
                snprintf(why, sizeof why, "%s", err_message(r));
                err_clear();
                int k = d.m ? store_ref_set(s, ref, &d.id, checkpoint) : store_ref_delete(s, ref);
                if (k >= 0)
                        return err_set(r, "%s; nothing was changed here", why);
                err_clear();
                (void) err_set(r, "%s", why);
        }
        if (r < 0)
                return 1;
        if (ret)
                *ret = st;
        if (ret_ts)
                snprintf(ret_ts, NAME_MAX_LEN + 1, "%s", ts);
        return 0;
}
