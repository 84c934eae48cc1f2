/* SPDX-License-Identifier: MIT */
#include "sync-file.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/request-sig.h"
#include "../session/move.h"
#include "laptop-identity.h"
#include "laptop-registry.h"

#define SYNC_FORMAT 1
#define MESSAGE_TAG "roam-sync-v1"

static const char *const kind_names[] = {
        [SYNC_TAKE_OFFLINE] = "take-offline",
        [SYNC_TAKE_ONLINE] = "take-online",
        [SYNC_STALE_COPY] = "stale-copy",
};

/* ---- terms ---- */

static int copy_field(json_t *j, const char *key, char *buf, size_t size, bool (*valid)(const char *)) {
        const char *v = json_string_value(json_object_get(j, key));
        if (!v || strlen(v) >= size || !valid(v))
                return err_set(-EBADMSG, "sync file terms: '%s' is missing or malformed", key);
        memcpy(buf, v, strlen(v) + 1);
        return 0;
}

static bool host_id_ok(const char *s) {
        return hex_is_exact(s, HOST_ID_LEN);
}
static bool laptop_id_ok(const char *s) {
        return hex_is_exact(s, SIGN_KEY_ID_LEN);
}
static bool checkpoint_ok(const char *s) {
        return hex_is_exact(s, ID_HEX_SIZE - 1);
}

static int int_field(json_t *j, const char *key, int64_t min, int64_t *ret) {
        json_t *v = json_object_get(j, key);
        if (!json_is_integer(v) || json_integer_value(v) < min)
                return err_set(-EBADMSG, "sync file terms: '%s' is missing or malformed", key);
        *ret = (int64_t) json_integer_value(v);
        return 0;
}

int sync_terms_parse(const char *text, SyncTerms *ret) {
        _cleanup_(json_decrefp) json_t *j = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (!json_is_object(j))
                return err_set(-EBADMSG, "sync file terms are not a JSON object");
        if (json_integer_value(json_object_get(j, "roam_sync")) != SYNC_FORMAT)
                return err_set(-EPROTONOSUPPORT, "sync file of an unknown format (update roam)");
        SyncTerms t = { 0 };
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (kind && !strcmp(kind, kind_names[SYNC_TAKE_OFFLINE]))
                t.kind = SYNC_TAKE_OFFLINE;
        else if (kind && !strcmp(kind, kind_names[SYNC_TAKE_ONLINE]))
                t.kind = SYNC_TAKE_ONLINE;
        else if (kind && !strcmp(kind, kind_names[SYNC_STALE_COPY]))
                t.kind = SYNC_STALE_COPY;
        else
                return err_set(-EBADMSG, "sync file terms: 'kind' is missing or unknown");
        json_t *po = json_object_get(j, "powered_off");
        int r = 0;
        if (r >= 0)
                r = copy_field(j, "session", t.session, sizeof t.session, name_is_valid);
        if (r >= 0)
                r = copy_field(j, "user", t.user, sizeof t.user, name_is_valid);
        if (r >= 0)
                r = copy_field(j, "server", t.server, sizeof t.server, host_id_ok);
        if (r >= 0)
                r = copy_field(j, "laptop", t.laptop, sizeof t.laptop, laptop_id_ok);
        if (r >= 0)
                r = copy_field(j, "checkpoint", t.checkpoint, sizeof t.checkpoint, checkpoint_ok);
        if (r >= 0)
                r = int_field(j, "epoch", t.kind != SYNC_TAKE_ONLINE ? 1 : 0, &t.epoch);
        if (r >= 0)
                r = int_field(j, "lease_until", 0, &t.lease_until);
        if (r >= 0)
                r = int_field(j, "created", 0, &t.created);
        if (r >= 0 && !json_is_boolean(po))
                r = err_set(-EBADMSG, "sync file terms: 'powered_off' is missing or malformed");
        if (r < 0)
                return r;
        t.powered_off = json_is_true(po);
        json_t *sig = json_object_get(j, "signature");
        if (sig && base64url_decode_exact(json_string_value(sig), t.signature, sizeof t.signature) < 0)
                return err_set(-EBADMSG, "sync file terms: 'signature' is malformed");
        t.signed_ = sig != NULL;
        if (t.kind != SYNC_TAKE_OFFLINE && !t.signed_)
                return err_set(-EBADMSG, "sync file terms: a %s file must be signed by its laptop", kind);
        *ret = t;
        return 0;
}

char *sync_terms_format(const SyncTerms *t) {
        char sig[BASE64URL_LEN(SIGN_SIGNATURE_SIZE) + 1];
        if (t->signed_)
                base64url_encode(t->signature, sizeof t->signature, sig);
        json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:b, s:I, s:I}", "roam_sync", SYNC_FORMAT,
                              "kind", kind_names[t->kind], "session", t->session, "user", t->user, "server", t->server,
                              "laptop", t->laptop, "epoch", (json_int_t) t->epoch, "checkpoint", t->checkpoint,
                              "powered_off", t->powered_off, "lease_until", (json_int_t) t->lease_until, "created",
                              (json_int_t) t->created);
        if (j && t->signed_)
                json_object_set_new(j, "signature", json_string(sig));
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return text;
}

int sync_terms_message(const SyncTerms *t, char **ret, size_t *ret_len) {
        int n = asprintf(ret, MESSAGE_TAG "\n%s\n%s\n%s\n%s\n%s\n%lld\n%s\n%d\n%lld", kind_names[t->kind], t->session,
                         t->user, t->server, t->laptop, (long long) t->epoch, t->checkpoint, t->powered_off,
                         (long long) t->created);
        if (n < 0)
                return -ENOMEM;
        *ret_len = (size_t) n;
        return 0;
}

/* ---- shared pieces ---- */

/* sessions/USER/NAME/LEAF */
static void session_ref(char buf[static REF_NAME_MAX_LEN + 1], const char *user, const char *name, const char *leaf) {
        snprintf(buf, REF_NAME_MAX_LEN + 1, "sessions/%s/%s/%s", user, name, leaf);
}

/* Every ref of the file lies below sessions/USER/NAME/ and one of them keeps
 * the checkpoint of the terms. */
static int check_refs(const SyncTerms *t, const BundleRef *refs, size_t n) {
        char prefix[REF_NAME_MAX_LEN + 1];
        session_ref(prefix, t->user, t->session, "");
        bool kept = false;
        for (size_t i = 0; i < n; i++) {
                if (strncmp(refs[i].name, prefix, strlen(prefix)))
                        return err_set(-EPERM, "the sync file sets ref '%s', outside session '%s'", refs[i].name,
                                       t->session);
                char hex[ID_HEX_SIZE];
                kept = kept || !strcmp(id_to_hex(&refs[i].id, hex), t->checkpoint);
        }
        return kept ? 0 : err_set(-EBADMSG, "the sync file does not carry its checkpoint %.16s", t->checkpoint);
}

typedef struct Check {
        const SyncCtx *x;
        SyncKind want;
        const char *path;
        const char *name;    /* take offline: the session asked for, or NULL */
        const char *as_user; /* apply: a user token's user, or NULL */
        int64_t older_here;  /* take offline: the epoch of an older copy owned here, else -1 */
        SyncTerms terms;
} Check;

/* The envelope is there, parses, and is of the kind wanted here. */
static int read_terms(Check *k, const char *envelope) {
        if (!envelope)
                return err_set(-EBADMSG, "'%s' is a plain bundle, not a sync file (use 'roam bundle apply')", k->path);
        int r = sync_terms_parse(envelope, &k->terms);
        if (r < 0)
                return r;
        /* the server takes both kinds the laptop writes */
        if (k->want == SYNC_TAKE_ONLINE && k->terms.kind == SYNC_STALE_COPY)
                return 0;
        if (k->terms.kind != k->want)
                return err_set(-EINVAL, "'%s' is a %s file: %s", k->path, kind_names[k->terms.kind],
                               k->terms.kind == SYNC_TAKE_OFFLINE
                                       ? "apply it on the laptop ('roam offline SESSION --from-file FILE')"
                                       : "apply it on the server ('roam session apply-sync FILE')");
        return 0;
}

static int my_laptop_key(const SyncCtx *x, SignKey **ret_key, char ret_id[static SIGN_KEY_ID_LEN + 1]) {
        _cleanup_free_ char *path = path_join(x->home, LAPTOP_KEY_FILE);
        if (!path)
                return -ENOMEM;
        int r = sign_key_load(path, ret_key);
        if (r == -ENOENT)
                return err_set(r, "'%s' has no laptop key (run 'roam laptop init' there first)", x->home);
        if (r < 0)
                return r;
        uint8_t pub[SIGN_PUBLIC_SIZE];
        sign_key_public(*ret_key, pub);
        sign_key_id(pub, ret_id);
        return 0;
}

static int write_file(const SyncCtx *x, const SyncTerms *t, char **refs, size_t n_refs, char **since,
                      size_t n_since, const char *path, bool overwrite, SyncFileResult *ret) {
        _cleanup_free_ char *envelope = sync_terms_format(t);
        if (!envelope)
                return -ENOMEM;
        BundleSpec spec = { .refs = refs, .n_refs = n_refs, .since = since, .n_since = n_since,
                            .envelope = envelope };
        int r = bundle_write_file(x->store, &spec, path, overwrite, NULL, &ret->stats);
        if (r < 0)
                return r;
        struct stat st;
        ret->file_bytes = stat(path, &st) == 0 ? (uint64_t) st.st_size : 0;
        ret->terms = *t;
        return 0;
}

/* ---- server: export-offline ---- */

int sync_file_export_offline(const SyncCtx *x, const char *name, const char *laptop, int64_t lease_s,
                             const char *path, bool overwrite, SyncFileResult *ret) {
        *ret = (SyncFileResult) { 0 };
        char id[ID_HEX_SIZE];
        int r = catalog_find_prefix(x->catalog, "laptops", "laptop", "roam laptop list", laptop, id, sizeof id);
        LaptopRecord l;
        if (r >= 0)
                r = laptop_get(x->catalog, id, &l);
        if (r < 0)
                return r;
        if (l.revoked)
                return err_set(-EKEYREVOKED, "laptop '%s' (id %s) was revoked", l.name, l.id);
        SessionInfo i = { 0 };
        r = session_get(x->host, name, &i);
        SyncTerms t = { .kind = SYNC_TAKE_OFFLINE, .created = (int64_t) time(NULL) };
        if (r >= 0) {
                snprintf(t.session, sizeof t.session, "%s", name);
                snprintf(t.user, sizeof t.user, "%s", i.row.user);
        }
        _cleanup_free_ char *image = r >= 0 ? strdup(i.row.image) : NULL;
        session_info_done(&i);
        if (r < 0)
                return r;
        if (strcmp(l.user, t.user))
                return err_set(-EPERM, "laptop '%s' (id %s) is user '%s''s; session '%s' is user '%s''s", l.name, l.id,
                               l.user, name, t.user);
        memcpy(t.laptop, l.id, sizeof t.laptop);
        r = host_id_get(x->home, t.server);
        if (r < 0)
                return r;
        char holder[sizeof LAPTOP_HOLDER_PREFIX + SIGN_KEY_ID_LEN];
        snprintf(holder, sizeof holder, LAPTOP_HOLDER_PREFIX "%s", l.id);
        OfflineGrant g;
        r = handoff_grant_offline(x->host, name, holder, lease_s, &g);
        if (r < 0)
                return r;
        LaptopGrant old;
        if (g.again && laptop_grant_get(x->catalog, name, &old) >= 0 && old.epoch == g.epoch)
                g.lease_until = old.lease_until; /* the same grant again */
        r = laptop_grant_set(x->catalog, name, l.id, g.epoch, g.lease_until);
        if (r < 0)
                return r;
        t.epoch = g.epoch;
        t.lease_until = g.lease_until;
        id_to_hex(&g.checkpoint, t.checkpoint);
        char ref[REF_NAME_MAX_LEN + 1], base[REF_NAME_MAX_LEN + 1], leaf[32];
        snprintf(leaf, sizeof leaf, "grant-e%lld", (long long) g.epoch);
        session_ref(ref, t.user, name, leaf);
        snprintf(base, sizeof base, "images/%s", image ? image : "");
        r = store_ref_set(x->store, ref, &g.checkpoint, NULL);
        RoamId dummy;
        bool has_base = image && store_ref_get(x->store, base, &dummy) >= 0;
        err_clear();
        char *refs[] = { ref }, *since[] = { base };
        if (r >= 0)
                r = write_file(x, &t, refs, 1, since, has_base, path, overwrite, ret);
        if (r < 0) {
                char why[768];
                snprintf(why, sizeof why, "%s", err_message(r));
                return err_set(r, "%s (session '%s' is granted to laptop %s all the same: export it again to write "
                               "the same grant)", why, name, l.id);
        }
        return 0;
}

/* ---- server: apply a take-online file (or keep a stale copy) ---- */

/* sessions/USER/NAME/stale-eEPOCH-LAPTOP12: where a stale copy is kept */
static void stale_ref(char buf[static REF_NAME_MAX_LEN + 1], const SyncTerms *t) {
        char leaf[64];
        snprintf(leaf, sizeof leaf, "stale-e%lld-%.12s", (long long) t->epoch, t->laptop);
        session_ref(buf, t->user, t->session, leaf);
}

/* A stale copy sets its one ref and no other */
static int check_stale_refs(const SyncTerms *t, const BundleRef *refs, size_t n) {
        char want[REF_NAME_MAX_LEN + 1];
        stale_ref(want, t);
        for (size_t i = 0; i < n; i++)
                if (strcmp(refs[i].name, want))
                        return err_set(-EPERM, "the stale copy sets ref '%s'; it may set '%s' only", refs[i].name,
                                       want);
        return check_refs(t, refs, n);
}

static int check_online(void *userdata, const char *envelope, const BundleRef *refs, size_t n) {
        Check *k = userdata;
        const SyncCtx *x = k->x;
        int r = read_terms(k, envelope);
        if (r < 0)
                return r;
        const SyncTerms *t = &k->terms;
        char me[HOST_ID_LEN + 1];
        r = host_id_get(x->home, me);
        if (r < 0)
                return r;
        if (strcmp(t->server, me))
                return err_set(-EXDEV, "'%s' was written for another server (host %s; this is %s)", k->path,
                               t->server, me);
        SessionInfo i = { 0 };
        r = session_get(x->host, t->session, &i);
        if (r >= 0 && k->as_user && strcmp(i.row.user, k->as_user))
                r = err_set(-ENOENT, "session '%s' not found", t->session);
        _cleanup_free_ char *owner = r >= 0 ? strdup(i.row.owner) : NULL;
        _cleanup_free_ char *user = r >= 0 ? strdup(i.row.user) : NULL;
        int64_t epoch = i.row.epoch;
        session_info_done(&i);
        if (r < 0)
                return r;
        if (!owner || !user)
                return -ENOMEM;
        if (strcmp(user, t->user))
                return err_set(-EPERM, "'%s' is for user '%s''s session '%s'; that session is user '%s''s here",
                               k->path, t->user, t->session, user);
        const char *holder = laptop_holder_id(owner);
        if (t->kind == SYNC_STALE_COPY) {
                /* kept beside the session, which stays as it is: the laptop
                 * must be stale indeed (an older epoch), not the holder */
                if (holder && !strcmp(holder, t->laptop) && epoch == t->epoch)
                        return err_set(-EINVAL, "'%s' is not stale: session '%s' is offline on laptop %s at epoch "
                                       "%lld (take it online: 'roam online %s --to-file FILE' there); nothing was "
                                       "changed", k->path, t->session, t->laptop, (long long) epoch, t->session);
                if (t->epoch >= epoch)
                        return err_set(-EINVAL, "'%s' is from epoch %lld, not older than session '%s''s %lld here; "
                                       "nothing was changed", k->path, (long long) t->epoch, t->session,
                                       (long long) epoch);
        } else if (!holder || strcmp(holder, t->laptop)) {
                char who[384];
                laptop_owner_describe(x->catalog, t->session, owner, false, who, sizeof who);
                return err_set(-ESTALE,
                               "'%s' is stale: session '%s' is with %s at epoch %lld here, not offline on laptop %s "
                               "(applied already, or reclaimed); nothing was changed",
                               k->path, t->session, !strcmp(owner, "local") ? "this server" : who, (long long) epoch,
                               t->laptop);
        }
        if (t->kind == SYNC_TAKE_ONLINE && epoch != t->epoch)
                return err_set(-ESTALE, "'%s' is stale: it is from epoch %lld, session '%s' is at epoch %lld here",
                               k->path, (long long) t->epoch, t->session, (long long) epoch);
        LaptopRecord l;
        r = laptop_get(x->catalog, t->laptop, &l);
        if (r == -ENOENT)
                return err_set(r, "'%s' comes from laptop %s, which never paired with this server", k->path,
                               t->laptop);
        if (r < 0)
                return r;
        if (strcmp(l.user, t->user))
                return err_set(-EPERM, "'%s' comes from laptop '%s' (id %s), which is user '%s''s, not '%s''s",
                               k->path, l.name, l.id, l.user, t->user);
        /* a revoked laptop's stale copy is kept all the same: that is what it is for */
        if (l.revoked && t->kind == SYNC_TAKE_ONLINE)
                return err_set(-EKEYREVOKED, "'%s' comes from laptop '%s' (id %s), which was revoked", k->path, l.name,
                               l.id);
        _cleanup_free_ char *msg = NULL;
        size_t len;
        r = sync_terms_message(t, &msg, &len);
        if (r < 0)
                return r;
        if (sign_verify(l.public_key, msg, len, t->signature) < 0)
                return err_set(-EPERM, "'%s' is not signed by laptop '%s' (id %s): the signature does not match",
                               k->path, l.name, l.id);
        return t->kind == SYNC_STALE_COPY ? check_stale_refs(t, refs, n) : check_refs(t, refs, n);
}

int sync_file_apply(const SyncCtx *x, const char *path, const char *as_user, SyncFileResult *ret) {
        *ret = (SyncFileResult) { 0 };
        Check k = { .x = x, .want = SYNC_TAKE_ONLINE, .path = path, .as_user = as_user };
        BundleApplyOptions o = { .check = check_online, .userdata = &k };
        int r = bundle_apply(x->store, path, &o, NULL, &ret->stats);
        if (r < 0)
                return r;
        const SyncTerms *t = &k.terms;
        ret->terms = *t;
        if (t->kind == SYNC_STALE_COPY) {
                stale_ref(ret->kept_ref, t); /* bundle_apply() set it: that is all */
                return 0;
        }
        if (t->powered_off)
                r = handoff_finalize_in(x->host, t->session, t->checkpoint, t->epoch + 1, t->epoch, &ret->finalize);
        else
                r = session_move_in(x->host, t->session, t->checkpoint, t->epoch + 1, t->epoch, NULL);
        if (r >= 0 || ret->finalize.adopted)
                (void) laptop_grant_drop(x->catalog, t->session);
        return r;
}

/* ---- laptop: take offline from a file ---- */

static int check_offline(void *userdata, const char *envelope, const BundleRef *refs, size_t n) {
        Check *k = userdata;
        int r = read_terms(k, envelope);
        if (r < 0)
                return r;
        const SyncTerms *t = &k->terms;
        _cleanup_(sign_key_freep) SignKey *key = NULL;
        char me[SIGN_KEY_ID_LEN + 1];
        r = my_laptop_key(k->x, &key, me);
        if (r < 0)
                return r;
        if (strcmp(t->laptop, me))
                return err_set(-EPERM, "'%s' grants session '%s' to laptop %s; this laptop is %s", k->path,
                               t->session, t->laptop, me);
        if (k->name && strcmp(k->name, t->session))
                return err_set(-EINVAL, "'%s' is for session '%s', not '%s'", k->path, t->session, k->name);
        if (t->lease_until > 0 && t->lease_until < (int64_t) time(NULL)) {
                char when[UTC_BUF_SIZE];
                return err_set(-EKEYEXPIRED, "the grant in '%s' expired on %s (ask for a new one)", k->path,
                               format_utc(t->lease_until, false, when, sizeof when));
        }
        SessionInfo i = { 0 };
        r = session_get(k->x->host, t->session, &i);
        bool local = r >= 0 && !strcmp(i.row.owner, SESSION_OWNER_LOCAL);
        bool runs = i.row.state == SESSION_RUNNING || i.row.state == SESSION_PAUSED;
        int64_t epoch = i.row.epoch;
        session_info_done(&i);
        err_clear();
        if (local && epoch >= t->epoch)
                return err_set(-EALREADY, "session '%s' is already offline on this laptop (epoch %lld)", t->session,
                               (long long) epoch);
        /* an older copy here (handed in, or stale after a reclaim) gives way, but not while it runs */
        if (local && runs)
                return err_set(-EBUSY, "session '%s' runs here at epoch %lld, older than the grant's %lld: hand it in "
                               "or stop it first (its state stays here as checkpoints)",
                               t->session, (long long) epoch, (long long) t->epoch);
        k->older_here = local ? epoch : -1;
        return check_refs(t, refs, n);
}

int sync_file_take_offline(const SyncCtx *x, const char *name, const char *path, SyncFileResult *ret) {
        *ret = (SyncFileResult) { 0 };
        Check k = { .x = x, .want = SYNC_TAKE_OFFLINE, .path = path, .name = name };
        BundleApplyOptions o = { .check = check_offline, .userdata = &k };
        int r = bundle_apply(x->store, path, &o, NULL, &ret->stats);
        if (r < 0)
                return r;
        const SyncTerms *t = &k.terms;
        ret->terms = *t;
        if (k.older_here >= 0) {
                /* the server took it back since (the grant proves it): the old copy is the server's */
                char owner[sizeof "host:" + HOST_ID_LEN];
                snprintf(owner, sizeof owner, "host:%s", t->server);
                r = session_set_owner(x->host, t->session, owner, k.older_here, k.older_here);
                if (r < 0)
                        return r;
        }
        r = session_move_in(x->host, t->session, t->checkpoint, t->epoch, -1, NULL);
        if (r < 0)
                return r;
        GrantNote g = { .epoch = t->epoch };
        snprintf(g.server, sizeof g.server, "%s", t->server);
        memcpy(g.checkpoint, t->checkpoint, sizeof g.checkpoint);
        char ref[REF_NAME_MAX_LEN + 1];
        session_ref(ref, t->user, t->session, "server-has");
        RoamId ck;
        (void) id_from_hex(t->checkpoint, &ck);
        r = handoff_lease_set(x->host, t->session, t->lease_until);
        if (r >= 0)
                r = handoff_grant_note_set(x->host, t->session, &g);
        if (r >= 0)
                r = store_ref_set(x->store, ref, &ck, NULL);
        if (r >= 0)
                r = handoff_handed_in_clear(x->host, t->session);
        return r;
}

/* ---- laptop: take online into a file ---- */

int sync_file_take_online(const SyncCtx *x, const char *name, const char *path, bool overwrite,
                          SyncFileResult *ret) {
        *ret = (SyncFileResult) { 0 };
        SyncTerms t = { .kind = SYNC_TAKE_ONLINE, .created = (int64_t) time(NULL), .signed_ = true };
        _cleanup_(sign_key_freep) SignKey *key = NULL;
        int r = my_laptop_key(x, &key, t.laptop);
        if (r < 0)
                return r;
        SessionInfo i = { 0 };
        r = session_get(x->host, name, &i);
        bool mine = r >= 0 && !strcmp(i.row.owner, SESSION_OWNER_LOCAL);
        SessionState state = i.row.state;
        int64_t epoch = i.row.epoch;
        if (r >= 0)
                snprintf(t.user, sizeof t.user, "%s", i.row.user);
        session_info_done(&i);
        if (r < 0)
                return r;
        if (!mine)
                return err_set(-EINVAL, "session '%s' is not offline on this laptop", name);
        GrantNote g;
        r = handoff_grant_note_get(x->host, name, &g);
        if (r == -ENOENT)
                return err_set(r, "session '%s' has no record of its grant here (take it online over the network)",
                               name);
        if (r < 0)
                return r;
        if (g.epoch != epoch)
                return err_set(-ESTALE, "the grant of session '%s' here is from epoch %lld, the session is at %lld",
                               name, (long long) g.epoch, (long long) epoch);
        r = handoff_lease_check(x->host, name);
        if (r == -EREMOTE)
                return r; /* handed in already */
        bool live = state == SESSION_RUNNING || state == SESSION_PAUSED;
        if (!live && state != SESSION_STOPPED)
                return err_set(-EINVAL, "session '%s' is %s here (restore or stop it first)", name,
                               session_state_to_string(state));
        if (!hex_is_exact(g.server, HOST_ID_LEN))
                return err_set(-EBADMSG, "the grant of session '%s' here names no server id (take it online over "
                               "the network)", name);
        snprintf(t.session, sizeof t.session, "%s", name);
        memcpy(t.server, g.server, sizeof t.server);
        t.epoch = epoch;
        handoff_busy_begin(x->host, name);
        SessionCheckpointResult ck;
        r = session_checkpoint(x->host, name, live ? SESSION_CHECKPOINT_QUIT : 0, &ck);
        if (r < 0) {
                handoff_busy_end(x->host, name);
                return r;
        }
        t.powered_off = ck.powered_off;
        id_to_hex(&ck.id, t.checkpoint);
        _cleanup_free_ char *msg = NULL;
        size_t len;
        r = sync_terms_message(&t, &msg, &len);
        if (r >= 0)
                r = sign_key_sign(key, msg, len, t.signature);
        char ref[REF_NAME_MAX_LEN + 1], leaf[32], has[REF_NAME_MAX_LEN + 1], pre[REF_NAME_MAX_LEN + 1];
        snprintf(leaf, sizeof leaf, "in-e%lld", (long long) (epoch + 1));
        session_ref(ref, t.user, name, leaf);
        session_ref(has, t.user, name, "server-has");
        session_ref(pre, t.user, name, "precopy");
        char *refs[] = { ref }, *since[2];
        size_t n_since = 0;
        RoamId id;
        if (store_ref_get(x->store, has, &id) >= 0)
                since[n_since++] = has;
        if (store_ref_get(x->store, pre, &id) >= 0)
                since[n_since++] = pre;
        err_clear();
        /* marked before the file exists: a crash never leaves a file out and the session runnable here */
        if (r >= 0)
                r = store_ref_set(x->store, ref, &ck.id, NULL);
        if (r >= 0)
                r = handoff_handed_in_set(x->host, name, path);
        if (r >= 0)
                r = write_file(x, &t, refs, 1, since, n_since, path, overwrite, ret);
        if (r < 0) {
                /* nothing went out: the session is as it was */
                char why[768];
                snprintf(why, sizeof why, "%s", err_message(r));
                (void) handoff_handed_in_clear(x->host, name);
                if (live)
                        (void) session_restore(x->host, name, t.checkpoint, NULL);
                handoff_busy_end(x->host, name);
                return err_set(r, "%s; session '%s' %s here", why, name, live ? "runs again" : "stays");
        }
        handoff_busy_end(x->host, name);
        return 0;
}

/* ---- laptop: a stale copy into a file ---- */

int sync_file_export_stale(const SyncCtx *x, const char *name, const char *path, bool overwrite,
                           SyncFileResult *ret) {
        *ret = (SyncFileResult) { 0 };
        SyncTerms t = { .kind = SYNC_STALE_COPY, .created = (int64_t) time(NULL), .signed_ = true };
        _cleanup_(sign_key_freep) SignKey *key = NULL;
        int r = my_laptop_key(x, &key, t.laptop);
        if (r < 0)
                return r;
        SessionInfo i = { 0 };
        r = session_get(x->host, name, &i);
        SessionState state = i.row.state;
        int64_t epoch = i.row.epoch;
        if (r >= 0)
                snprintf(t.user, sizeof t.user, "%s", i.row.user);
        _cleanup_free_ char *image = r >= 0 ? strdup(i.row.image) : NULL;
        session_info_done(&i);
        if (r < 0)
                return r;
        StaleNote note;
        r = handoff_stale_note_get(x->host, name, &note);
        if (r == -ENOENT)
                return err_set(r, "session '%s' is not known to be stale here (the laptop daemon notes it when the "
                               "server has given it to another owner; to hand a current session in: 'roam online "
                               "%s --to-file FILE')", name, name);
        if (r < 0)
                return r;
        if (note.epoch != epoch)
                return err_set(-ESTALE, "session '%s' is at epoch %lld here, not the stale epoch %lld noted (take it "
                               "online instead)", name, (long long) epoch, (long long) note.epoch);
        if (state == SESSION_RUNNING || state == SESSION_PAUSED)
                return err_set(-EBUSY, "the stale copy of session '%s' runs here: stop it first ('roam session stop "
                               "%s'; its state is checkpointed)", name, name);
        GrantNote g;
        r = handoff_grant_note_get(x->host, name, &g);
        if (r == -ENOENT)
                return err_set(r, "session '%s' has no record of the server it came from here", name);
        if (r < 0)
                return r;
        if (!hex_is_exact(g.server, HOST_ID_LEN))
                return err_set(-EBADMSG, "the grant of session '%s' here names no server id", name);
        RoamId ck;
        r = session_checkpoint_resolve(x->host, t.user, name, "latest", &ck);
        if (r < 0)
                return r;
        json_t *manifest = NULL;
        r = session_checkpoint_verify(x->store, &ck, &manifest);
        if (r < 0)
                return r;
        t.powered_off = json_is_true(json_object_get(manifest, "powered_off"));
        json_decref(manifest);
        snprintf(t.session, sizeof t.session, "%s", name);
        memcpy(t.server, g.server, sizeof t.server);
        t.epoch = epoch;
        id_to_hex(&ck, t.checkpoint);
        _cleanup_free_ char *msg = NULL;
        size_t len;
        r = sync_terms_message(&t, &msg, &len);
        if (r >= 0)
                r = sign_key_sign(key, msg, len, t.signature);
        if (r < 0)
                return r;
        /* the ref the server keeps it under, here too: what the bundle carries */
        char ref[REF_NAME_MAX_LEN + 1], base[REF_NAME_MAX_LEN + 1];
        stale_ref(ref, &t);
        r = store_ref_set(x->store, ref, &ck, NULL);
        if (r < 0)
                return r;
        snprintf(base, sizeof base, "images/%s", image ? image : "");
        RoamId dummy;
        bool has_base = image && store_ref_get(x->store, base, &dummy) >= 0;
        err_clear();
        char *refs[] = { ref }, *since[] = { base };
        r = write_file(x, &t, refs, 1, since, has_base, path, overwrite, ret);
        if (r >= 0)
                snprintf(ret->kept_ref, sizeof ret->kept_ref, "%s", ref);
        return r;
}

int sync_file_resume_refused(const SyncCtx *x, const char *name) {
        int r = handoff_lease_check(x->host, name);
        if (r != -EREMOTE)
                return r < 0 ? r : err_set(-EINVAL, "session '%s' was not handed in by file", name);
        r = handoff_handed_in_clear(x->host, name);
        if (r < 0)
                return r;
        return session_restore(x->host, name, NULL, NULL);
}

/* ---- plain bundles ---- */

int sync_check_plain_refs(const SyncCtx *x, const BundleRef *refs, size_t n, bool force, char **ret_forced) {
        _cleanup_free_ char *forced = NULL;
        for (size_t i = 0; i < n; i++) {
                const char *ref = refs[i].name;
                char why[512] = "";
                if (!strncmp(ref, "users/", 6))
                        snprintf(why, sizeof why, "ref '%s' is a user's profile (profiles move with their sessions)",
                                 ref);
                else if (!strncmp(ref, "sessions/", 9)) {
                        char user[NAME_MAX_LEN + 1] = "", name[NAME_MAX_LEN + 1] = "";
                        if (sscanf(ref, "sessions/%64[^/]/%64[^/]", user, name) != 2)
                                continue;
                        SessionInfo s = { 0 };
                        if (session_get(x->host, name, &s) >= 0) {
                                char who[384];
                                laptop_owner_describe(x->catalog, name, s.row.owner, false, who, sizeof who);
                                if (strcmp(s.row.user, user))
                                        snprintf(why, sizeof why, "ref '%s' names user '%s', but session '%s' is "
                                                 "user '%s''s here", ref, user, name, s.row.user);
                                else if (strcmp(s.row.owner, SESSION_OWNER_LOCAL))
                                        snprintf(why, sizeof why, "ref '%s' belongs to session '%s', which %s holds "
                                                 "(epoch %lld), not this host", ref, name, who,
                                                 (long long) s.row.epoch);
                        }
                        session_info_done(&s);
                        err_clear();
                }
                if (!why[0])
                        continue;
                if (!force)
                        return err_set(-EPERM, "%s: nothing was applied (a session comes by sync file; an admin "
                                       "may force it with --force)", why);
                char *more = NULL;
                if (asprintf(&more, "%s%s%s", forced ? forced : "", forced ? "; " : "", why) < 0)
                        return -ENOMEM;
                free(forced);
                forced = more;
        }
        if (ret_forced)
                *ret_forced = TAKE_PTR(forced);
        return 0;
}
