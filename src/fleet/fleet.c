/* SPDX-License-Identifier: MIT */
#include "fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "etcd.h"

struct Fleet {
        FleetOptions o;
        char *name, *url, *etcd_urls;
        unsigned ttl_s;
        EtcdClient *etcd;   /* callers' requests */
        EtcdClient *keeper; /* the keeper thread's own */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t mutex; /* lease, last_ok, fenced; cond */
        pthread_cond_t cond;
        bool stop;
        int64_t lease;     /* 0: none */
        int64_t last_ok_ns; /* when the last renewal etcd answered was sent */
        bool fenced;
        /* placement's view (fleet_place()), at most FLEET_PLACE_VIEW_MS old */
        pthread_mutex_t view_lock;
        FleetHost *view_hosts;
        unsigned *view_owned;
        size_t view_n;
        int64_t view_ns;
};

static int64_t now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t) t.tv_sec * 1000000000 + t.tv_nsec;
}

bool fleet_name_is_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > FLEET_NAME_MAX || name[0] == '-' || name[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                      (name[i] >= '0' && name[i] <= '9') || name[i] == '-' || name[i] == '_' || name[i] == '.'))
                        return false;
        return true;
}

const char *fleet_owner_laptop(const char *owner) {
        const size_t n = sizeof(FLEET_LAPTOP_OWNER_PREFIX) - 1;
        if (!owner || strncmp(owner, FLEET_LAPTOP_OWNER_PREFIX, n) || strlen(owner + n) != FLEET_LAPTOP_ID_LEN)
                return NULL;
        for (const char *c = owner + n; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                        return NULL;
        return owner + n;
}

const char *fleet_name(const Fleet *f) {
        return f->name;
}

const char *fleet_etcd(const Fleet *f) {
        return f->etcd_urls;
}

static void key_of(char *buf, size_t size, const char *kind, const char *name) {
        snprintf(buf, size, FLEET_PREFIX "%s/%s", kind, name);
}

/* the owner record, byte for byte the same every time (compared in txns) */
static void owner_value(char *buf, size_t size, const char *host, int64_t epoch) {
        snprintf(buf, size, "{\"host\":\"%s\",\"epoch\":%" PRId64 "}", host, epoch);
}

static int parse_owner(const EtcdKv *kv, char **ret_host, int64_t *ret_epoch) {
        _cleanup_(json_decrefp) json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
        const char *h = json_string_value(json_object_get(j, "host"));
        json_t *e = json_object_get(j, "epoch");
        if (!h || !(fleet_name_is_valid(h) || fleet_owner_laptop(h)) || !json_is_integer(e) ||
            json_integer_value(e) < 0)
                return err_set(-EBADMSG, "etcd key '%s' is not an owner record (fix or delete it)", kv->key);
        char *c = strdup(h);
        if (!c)
                return -ENOMEM;
        *ret_host = c;
        *ret_epoch = json_integer_value(e);
        return 0;
}

static int parse_epoch(const EtcdKv *kv, int64_t *ret) {
        char *end;
        errno = 0;
        long long v = strtoll(kv->value, &end, 10);
        if (kv->value_len == 0 || kv->value_len > 20 || *end || errno || v < 0)
                return err_set(-EBADMSG, "etcd key '%s' is not an epoch (fix or delete it)", kv->key);
        *ret = v;
        return 0;
}

/* ---- this host's record ---- */

static void meminfo(uint64_t *ret_total_mib, uint64_t *ret_avail_mib) {
        _cleanup_free_ char *text = NULL;
        *ret_total_mib = *ret_avail_mib = 0;
        if (read_proc_file("/proc/meminfo", 1 << 16, &text, NULL) < 0)
                return;
        const char *t = strstr(text, "MemTotal:"), *a = strstr(text, "MemAvailable:");
        unsigned long long kb;
        if (t && sscanf(t, "MemTotal: %llu", &kb) == 1)
                *ret_total_mib = kb / 1024;
        if (a && sscanf(a, "MemAvailable: %llu", &kb) == 1)
                *ret_avail_mib = kb / 1024;
}

static int host_record(Fleet *f, char **ret) {
        FleetLoad load = { 0 };
        if (f->o.load)
                f->o.load(f->o.userdata, &load);
        uint64_t total, avail;
        meminfo(&total, &avail);
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "name", f->name, "url", f->url, "cores",
                              (json_int_t) MAX(cores, 1L), "ram_mib", (json_int_t) total, "ram_free_mib",
                              (json_int_t) avail, "sessions", (json_int_t) load.sessions, "session_ram_mib",
                              (json_int_t) load.session_ram_mib);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* A new lease and this host's record under it; -EEXIST when a live host has
 * the name. */
static int register_host(Fleet *f, EtcdClient *c) {
        int64_t lease;
        int r = etcd_lease_grant(c, f->ttl_s, &lease);
        if (r < 0)
                return r;
        _cleanup_free_ char *rec = NULL;
        r = host_record(f, &rec);
        if (r < 0)
                return r;
        char key[128];
        key_of(key, sizeof key, "hosts", f->name);
        EtcdCmp cmp = { .key = key, .target = ETCD_CMP_VERSION, .num = 0 };
        EtcdOp put = { .kind = ETCD_OP_PUT, .key = key, .value = rec, .lease = lease };
        bool ok;
        r = etcd_txn(c, &cmp, 1, &put, 1, NULL, 0, &ok, NULL);
        if (r >= 0 && !ok)
                r = err_set(-EEXIST, "a live fleet member is called '%s' already (give this one another "
                            "--fleet-name, or wait %u s if that was this host before a crash)",
                            f->name, f->ttl_s);
        if (r < 0) {
                (void) etcd_lease_revoke(c, lease);
                return r;
        }
        pthread_mutex_lock(&f->mutex);
        f->lease = lease;
        f->fenced = false;
        pthread_mutex_unlock(&f->mutex);
        return 0;
}

/* ---- the keeper ---- */

static void fence(Fleet *f, const char *why) {
        pthread_mutex_lock(&f->mutex);
        bool already = f->fenced;
        f->fenced = true;
        pthread_mutex_unlock(&f->mutex);
        if (!already && f->o.fence)
                f->o.fence(f->o.userdata, why);
}

static void *keeper_main(void *arg) {
        Fleet *f = arg;
        int64_t ttl_ns = (int64_t) f->ttl_s * 1000000000;
        int64_t every_ns = MAX(ttl_ns / 5, (int64_t) 500000000);
        int64_t fence_after_ns = ttl_ns / 2;
        unsigned beat = 0;
        pthread_mutex_lock(&f->mutex);
        while (!f->stop) {
                int64_t lease = f->lease, last = f->last_ok_ns;
                pthread_mutex_unlock(&f->mutex);
                int64_t sent = now_ns();
                int r;
                if (lease == 0) {
                        /* lost: a new lease and record, as soon as etcd answers */
                        r = register_host(f, f->keeper);
                        if (r >= 0) {
                                pthread_mutex_lock(&f->mutex);
                                f->last_ok_ns = sent;
                                pthread_mutex_unlock(&f->mutex);
                        }
                        err_clear();
                } else {
                        int64_t ttl = 0;
                        r = etcd_lease_keepalive(f->keeper, lease, &ttl);
                        err_clear();
                        if (r >= 0 && ttl > 0) {
                                /* alive (again: a lease that never expired
                                 * kept its owner records, nobody took them) */
                                pthread_mutex_lock(&f->mutex);
                                f->last_ok_ns = sent;
                                f->fenced = false;
                                pthread_mutex_unlock(&f->mutex);
                                if (f->o.alive)
                                        f->o.alive(f->o.userdata);
                                if (++beat % 3 == 0) { /* the load, now and then */
                                        _cleanup_free_ char *rec = NULL;
                                        char key[128];
                                        key_of(key, sizeof key, "hosts", f->name);
                                        if (host_record(f, &rec) >= 0)
                                                (void) etcd_put(f->keeper, key, rec, lease);
                                        err_clear();
                                }
                        } else if (r >= 0) {
                                fence(f, "this host's etcd lease expired");
                                pthread_mutex_lock(&f->mutex);
                                f->lease = 0;
                                pthread_mutex_unlock(&f->mutex);
                        } else if (now_ns() - last >= fence_after_ns)
                                /* the lease is kept: etcd tells when it answers again */
                                fence(f, "etcd has not answered for half the lease's time");
                }
                pthread_mutex_lock(&f->mutex);
                /* the next renewal; sooner when the fence deadline comes first */
                int64_t next = sent + every_ns;
                if (f->lease && !f->fenced && f->last_ok_ns + fence_after_ns < next)
                        next = MAX(f->last_ok_ns + fence_after_ns, now_ns() + 100000000);
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                int64_t wait = MAX(next - now_ns(), (int64_t) 0);
                until.tv_sec += wait / 1000000000;
                until.tv_nsec += wait % 1000000000;
                if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                }
                if (!f->stop)
                        pthread_cond_timedwait(&f->cond, &f->mutex, &until);
        }
        pthread_mutex_unlock(&f->mutex);
        return NULL;
}

/* ---- join, leave ---- */

static void fleet_free(Fleet *f) {
        fleet_hosts_free(f->view_hosts, f->view_n);
        free(f->view_owned);
        pthread_mutex_destroy(&f->view_lock);
        etcd_client_free(f->etcd);
        etcd_client_free(f->keeper);
        pthread_mutex_destroy(&f->mutex);
        pthread_cond_destroy(&f->cond);
        free(f->name);
        free(f->url);
        free(f->etcd_urls);
        free(f);
}

int fleet_join(const FleetOptions *o, Fleet **ret) {
        if (!fleet_name_is_valid(o->name))
                return err_set(-EINVAL, "fleet name '%s' is invalid (1-%d letters, digits, '-', '_' or '.')",
                               o->name ? o->name : "", FLEET_NAME_MAX);
        if (!o->observe && (!o->url || strncmp(o->url, "http", 4) || strlen(o->url) > 256))
                return err_set(-EINVAL, "fleet URL '%s' is not http(s)://HOST:PORT", o->url ? o->url : "");
        Fleet *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->o = *o;
        f->ttl_s = o->ttl_s ? o->ttl_s : FLEET_TTL_DEFAULT_S;
        pthread_mutex_init(&f->mutex, NULL);
        pthread_mutex_init(&f->view_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&f->cond, &ca);
        pthread_condattr_destroy(&ca);
        f->name = strdup(o->name);
        f->url = strdup(o->url ? o->url : "");
        f->etcd_urls = strdup(o->etcd ? o->etcd : "");
        int r = !f->name || !f->url || !f->etcd_urls ? -ENOMEM : 0;
        if (r >= 0)
                r = etcd_client_new(o->etcd, &f->etcd);
        if (r >= 0 && !o->observe)
                r = etcd_client_new(o->etcd, &f->keeper);
        if (r >= 0 && !o->observe) {
                /* renewals must not outlast the fence deadline */
                etcd_client_set_timeouts(f->keeper, 500, 1000);
                r = register_host(f, f->etcd);
                if (r >= 0) {
                        f->last_ok_ns = now_ns();
                        if (pthread_create(&f->thread, NULL, keeper_main, f) != 0)
                                r = -EAGAIN;
                        else
                                f->thread_started = true;
                }
        }
        if (r < 0) {
                if (f->lease)
                        (void) etcd_lease_revoke(f->etcd, f->lease);
                fleet_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

void fleet_leave(Fleet *f, bool fence_first) {
        if (!f)
                return;
        pthread_mutex_lock(&f->mutex);
        f->stop = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->mutex);
        if (f->thread_started)
                pthread_join(f->thread, NULL);
        if (fence_first && !f->o.observe) {
                fence(f, "this host leaves the fleet");
                if (f->lease)
                        (void) etcd_lease_revoke(f->etcd, f->lease);
                err_clear();
        }
        fleet_free(f);
}

bool fleet_alive(Fleet *f) {
        if (f->o.observe)
                return false;
        pthread_mutex_lock(&f->mutex);
        bool alive = f->lease && !f->fenced && now_ns() - f->last_ok_ns < (int64_t) f->ttl_s * 500000000;
        pthread_mutex_unlock(&f->mutex);
        return alive;
}

static int64_t lease_of(Fleet *f) {
        pthread_mutex_lock(&f->mutex);
        int64_t l = f->fenced ? 0 : f->lease;
        pthread_mutex_unlock(&f->mutex);
        return l;
}

/* ---- members ---- */

void fleet_host_done(FleetHost *h) {
        free(h->name);
        free(h->url);
        *h = (FleetHost){ 0 };
}

void fleet_hosts_free(FleetHost *h, size_t n) {
        for (size_t i = 0; i < n; i++)
                fleet_host_done(&h[i]);
        free(h);
}

static int parse_host(const EtcdKv *kv, FleetHost *ret) {
        _cleanup_(json_decrefp) json_t *j = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
        const char *name = json_string_value(json_object_get(j, "name"));
        const char *url = json_string_value(json_object_get(j, "url"));
        json_int_t cores = json_integer_value(json_object_get(j, "cores"));
        json_int_t ram = json_integer_value(json_object_get(j, "ram_mib"));
        json_int_t avail = json_integer_value(json_object_get(j, "ram_free_mib"));
        json_int_t sessions = json_integer_value(json_object_get(j, "sessions"));
        json_int_t sram = json_integer_value(json_object_get(j, "session_ram_mib"));
        if (!name || !fleet_name_is_valid(name) || !url || strlen(url) > 256 || cores < 1 || cores > 100000 ||
            ram < 0 || avail < 0 || sessions < 0 || sessions > 1000000 || sram < 0)
                return -EBADMSG;
        FleetHost h = { .cores = (unsigned) cores, .sessions = (unsigned) sessions, .ram_mib = (uint64_t) ram,
                        .ram_free_mib = (uint64_t) avail, .session_ram_mib = (uint64_t) sram, .lease = kv->lease };
        h.name = strdup(name);
        h.url = strdup(url);
        if (!h.name || !h.url) {
                fleet_host_done(&h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

int fleet_hosts(Fleet *f, FleetHost **ret, size_t *ret_n) {
        _cleanup_(etcd_range_done) EtcdRange rg = { 0 };
        int r = etcd_get_prefix(f->etcd, FLEET_PREFIX "hosts/", &rg);
        if (r < 0)
                return r;
        FleetHost *hs = calloc(MAX(rg.n, (size_t) 1), sizeof *hs);
        if (!hs)
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < rg.n; i++)
                if (parse_host(&rg.kvs[i], &hs[n]) >= 0)
                        n++; /* a malformed record: not a member we can use */
        *ret = hs;
        *ret_n = n;
        return 0;
}

int fleet_host(Fleet *f, const char *name, FleetHost *ret) {
        if (!fleet_name_is_valid(name))
                return err_set(-EINVAL, "fleet host name '%s' is invalid", name);
        char key[128];
        key_of(key, sizeof key, "hosts", name);
        _cleanup_(etcd_range_done) EtcdRange rg = { 0 };
        int r = etcd_get(f->etcd, key, &rg);
        if (r < 0)
                return r;
        if (rg.n != 1)
                return err_set(-ENOENT, "no fleet member '%s' (see 'roam host list')", name);
        r = parse_host(&rg.kvs[0], ret);
        return r < 0 ? err_set(r, "the fleet record of host '%s' is malformed", name) : 0;
}

/* ---- ownership ---- */

static int session_key_check(const char *session) {
        /* session names are short already (session.h); bound them here too */
        if (!session || !*session || strlen(session) > 64 || strchr(session, '/'))
                return err_set(-EINVAL, "session name '%s' cannot be a fleet key", session ? session : "");
        return 0;
}

int fleet_owner(Fleet *f, const char *session, char **ret_host, int64_t *ret_epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        char okey[128], ekey[128];
        key_of(okey, sizeof okey, "owners", session);
        key_of(ekey, sizeof ekey, "epochs", session);
        /* the owner record carries its epoch; the epochs key tells the epoch
         * of a session that no host owns */
        _cleanup_(etcd_range_done) EtcdRange o = { 0 }, e = { 0 };
        r = etcd_get(f->etcd, okey, &o);
        if (r >= 0)
                r = etcd_get(f->etcd, ekey, &e);
        if (r < 0)
                return r;
        char *host = NULL;
        int64_t epoch = -1;
        if (o.n == 1) {
                r = parse_owner(&o.kvs[0], &host, &epoch);
                if (r < 0)
                        return r;
        } else if (e.n == 1) {
                r = parse_epoch(&e.kvs[0], &epoch);
                if (r < 0)
                        return r;
        }
        *ret_host = host;
        *ret_epoch = epoch;
        return 0;
}

int fleet_claim(Fleet *f, const char *session, int64_t epoch, FleetClaim how, int64_t *ret_epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        int64_t lease = lease_of(f);
        if (!lease)
                return err_set(-ENOLINK, "this host has no live etcd lease (fenced); it claims no session until "
                               "etcd answers again");
        char okey[128], ekey[128], oval[192], eold[24], enew[24];
        key_of(okey, sizeof okey, "owners", session);
        key_of(ekey, sizeof ekey, "epochs", session);
        int64_t to = epoch + (how == FLEET_CLAIM_TAKEOVER ? 1 : 0);
        owner_value(oval, sizeof oval, f->name, to);
        snprintf(eold, sizeof eold, "%" PRId64, epoch);
        snprintf(enew, sizeof enew, "%" PRId64, to);
        EtcdCmp cmp[2] = {
                { .key = ekey, .target = ETCD_CMP_VALUE, .value = eold },
                { .key = okey, .target = ETCD_CMP_VERSION, .num = 0 },
        };
        if (how == FLEET_CLAIM_NEW)
                cmp[0] = (EtcdCmp){ .key = ekey, .target = ETCD_CMP_VERSION, .num = 0 };
        EtcdOp ok[2] = {
                { .kind = ETCD_OP_PUT, .key = ekey, .value = enew },
                { .kind = ETCD_OP_PUT, .key = okey, .value = oval, .lease = lease },
        };
        bool succeeded;
        r = etcd_txn(f->etcd, cmp, 2, ok, 2, NULL, 0, &succeeded, NULL);
        if (r < 0)
                return r;
        if (!succeeded) {
                _cleanup_free_ char *host = NULL;
                int64_t e = 0;
                r = fleet_owner(f, session, &host, &e);
                if (r >= 0 && host)
                        return err_set(how == FLEET_CLAIM_NEW ? -EEXIST : -ESTALE,
                                       "session '%s' is owned by fleet host '%s' since epoch %" PRId64, session,
                                       host, e);
                if (how == FLEET_CLAIM_NEW)
                        return err_set(-EEXIST, "the fleet had a session '%s' already (epoch %" PRId64 ")", session,
                                       e);
                return err_set(-ESTALE, "session '%s' is at epoch %" PRId64 " in the fleet, not %" PRId64
                               " (this host's copy is old)",
                               session, e, epoch);
        }
        if (ret_epoch)
                *ret_epoch = to;
        return 0;
}

/* One transaction: the owner record of session goes from FROM at epoch to
 * TO at epoch + 1 (under TO's lease), and the epoch record with it, only if
 * FROM still owns it at epoch (*ret_succeeded false otherwise). */
static int owner_pass(Fleet *f, const char *session, const char *from, const char *to, int64_t epoch, int64_t lease,
                      bool *ret_succeeded) {
        char okey[128], ekey[128], oold[192], onew[192], enew[24];
        key_of(okey, sizeof okey, "owners", session);
        key_of(ekey, sizeof ekey, "epochs", session);
        owner_value(oold, sizeof oold, from, epoch);
        owner_value(onew, sizeof onew, to, epoch + 1);
        snprintf(enew, sizeof enew, "%" PRId64, epoch + 1);
        EtcdCmp cmp = { .key = okey, .target = ETCD_CMP_VALUE, .value = oold };
        EtcdOp ok[2] = {
                { .kind = ETCD_OP_PUT, .key = ekey, .value = enew },
                { .kind = ETCD_OP_PUT, .key = okey, .value = onew, .lease = lease },
        };
        return etcd_txn(f->etcd, &cmp, 1, ok, 2, NULL, 0, ret_succeeded, NULL);
}

int fleet_handover(Fleet *f, const char *session, int64_t epoch, const char *to_host, int64_t *ret_epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        FleetHost to;
        r = fleet_host(f, to_host, &to);
        if (r < 0)
                return r;
        int64_t to_lease = to.lease;
        fleet_host_done(&to);
        if (!to_lease)
                return err_set(-ENOLINK, "fleet member '%s' has no lease", to_host);
        bool succeeded;
        r = owner_pass(f, session, f->name, to_host, epoch, to_lease, &succeeded);
        if (r < 0)
                return r;
        if (!succeeded)
                return err_set(-ESTALE, "session '%s' is not owned by this host at epoch %" PRId64
                               " any more: not handed over",
                               session, epoch);
        if (ret_epoch)
                *ret_epoch = epoch + 1;
        return 0;
}

int fleet_claim_from(Fleet *f, const char *session, const char *from, int64_t epoch, int64_t *ret_epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        int64_t lease = lease_of(f);
        if (!lease)
                return err_set(-ENOLINK, "this host has no live etcd lease (fenced)");
        bool succeeded;
        r = owner_pass(f, session, from, f->name, epoch, lease, &succeeded);
        if (r < 0)
                return r;
        if (!succeeded)
                return err_set(-ESTALE, "session '%s' is not '%s''s at epoch %" PRId64 " any more", session, from,
                               epoch);
        if (ret_epoch)
                *ret_epoch = epoch + 1;
        return 0;
}

int fleet_drop(Fleet *f, const char *session, int64_t epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        char okey[128], oval[192];
        key_of(okey, sizeof okey, "owners", session);
        owner_value(oval, sizeof oval, f->name, epoch);
        EtcdCmp cmp = { .key = okey, .target = ETCD_CMP_VALUE, .value = oval };
        EtcdOp ok = { .kind = ETCD_OP_DELETE, .key = okey };
        bool succeeded;
        return etcd_txn(f->etcd, &cmp, 1, &ok, 1, NULL, 0, &succeeded, NULL);
}

int fleet_set_meta(Fleet *f, const char *session, const char *user, uint64_t ram_mib) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        char key[128];
        key_of(key, sizeof key, "meta", session);
        json_t *j = json_pack("{s:s, s:I}", "user", user, "ram_mib", (json_int_t) ram_mib);
        char *v = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (!v)
                return -ENOMEM;
        r = etcd_put(f->etcd, key, v, 0);
        free(v);
        return r;
}

int fleet_get_meta(Fleet *f, const char *session, char **ret_user, uint64_t *ret_ram_mib) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        char key[128];
        key_of(key, sizeof key, "meta", session);
        _cleanup_(etcd_range_done) EtcdRange rg = { 0 };
        r = etcd_get(f->etcd, key, &rg);
        if (r < 0)
                return r;
        if (rg.n != 1)
                return err_set(-ENOENT, "the fleet keeps nothing of session '%s'", session);
        _cleanup_(json_decrefp) json_t *j = json_loadb(rg.kvs[0].value, rg.kvs[0].value_len, 0, NULL);
        const char *u = json_string_value(json_object_get(j, "user"));
        json_int_t ram = json_integer_value(json_object_get(j, "ram_mib"));
        if (!u || ram < 0)
                return err_set(-EBADMSG, "etcd key '%s' is malformed", key);
        char *c = strdup(u);
        if (!c)
                return -ENOMEM;
        *ret_user = c;
        *ret_ram_mib = (uint64_t) ram;
        return 0;
}

int fleet_release(Fleet *f, const char *session, int64_t epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        char okey[128], ekey[128], mkey[128], oval[192];
        key_of(okey, sizeof okey, "owners", session);
        key_of(ekey, sizeof ekey, "epochs", session);
        key_of(mkey, sizeof mkey, "meta", session);
        owner_value(oval, sizeof oval, f->name, epoch);
        EtcdCmp cmp = { .key = okey, .target = ETCD_CMP_VALUE, .value = oval };
        EtcdOp ok[3] = { { .kind = ETCD_OP_DELETE, .key = okey },
                         { .kind = ETCD_OP_DELETE, .key = ekey },
                         { .kind = ETCD_OP_DELETE, .key = mkey } };
        bool succeeded;
        r = etcd_txn(f->etcd, &cmp, 1, ok, 3, NULL, 0, &succeeded, NULL);
        if (r < 0)
                return r;
        return succeeded ? 0 : err_set(-ESTALE, "session '%s' is not owned by this host at epoch %" PRId64, session,
                                       epoch);
}

int fleet_check(Fleet *f, const char *session, int64_t epoch) {
        if (!f->o.observe && !fleet_alive(f))
                return err_set(-ENOLINK, "this host has lost its etcd lease (fenced): it runs no session until "
                               "etcd answers and it owns the session again");
        _cleanup_free_ char *host = NULL;
        int64_t e;
        int r = fleet_owner(f, session, &host, &e);
        if (r < 0)
                return r;
        if (host && !strcmp(host, f->name) && e == epoch)
                return 0;
        if (host)
                return err_set(-EREMOTE, "session '%s' is owned by fleet host '%s' since epoch %" PRId64
                               " (this host has epoch %" PRId64 ")",
                               session, host, e, epoch);
        return err_set(-EREMOTE, "session '%s' has no owner in the fleet (epoch %" PRId64 "; this host has epoch "
                       "%" PRId64 ")",
                       session, e, epoch);
}

/* ---- placement ---- */

void fleet_sessions_free(FleetSessionRecord *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(s[i].name);
                free(s[i].host);
        }
        free(s);
}

static int cmp_record(const void *a, const void *b) {
        return strcmp(((const FleetSessionRecord *) a)->name, ((const FleetSessionRecord *) b)->name);
}

int fleet_sessions(Fleet *f, FleetSessionRecord **ret, size_t *ret_n) {
        _cleanup_(etcd_range_done) EtcdRange ep = { 0 }, ow = { 0 };
        int r = etcd_get_prefix(f->etcd, FLEET_PREFIX "epochs/", &ep);
        if (r >= 0)
                r = etcd_get_prefix(f->etcd, FLEET_PREFIX "owners/", &ow);
        if (r < 0)
                return r;
        FleetSessionRecord *s = calloc(MAX(ep.n, (size_t) 1), sizeof *s);
        if (!s)
                return -ENOMEM;
        size_t n = 0, plen = strlen(FLEET_PREFIX "epochs/");
        for (size_t i = 0; i < ep.n; i++) {
                int64_t e;
                if (parse_epoch(&ep.kvs[i], &e) < 0) {
                        err_clear();
                        continue;
                }
                const char *name = ep.kvs[i].key + plen;
                FleetSessionRecord *x = &s[n];
                x->epoch = e;
                if (!(x->name = strdup(name))) {
                        fleet_sessions_free(s, n);
                        return -ENOMEM;
                }
                char okey[128];
                key_of(okey, sizeof okey, "owners", name);
                for (size_t k = 0; k < ow.n; k++)
                        if (!strcmp(ow.kvs[k].key, okey)) {
                                int64_t oe;
                                if (parse_owner(&ow.kvs[k], &x->host, &oe) < 0)
                                        err_clear();
                                else
                                        x->epoch = oe;
                                break;
                        }
                n++;
        }
        qsort(s, n, sizeof *s, cmp_record);
        *ret = s;
        *ret_n = n;
        return 0;
}

int fleet_place_pick(const FleetHost *hosts, const unsigned *owned, size_t n, uint64_t ram_mib) {
        int best = -1;
        for (size_t i = 0; i < n; i++) {
                const FleetHost *h = &hosts[i];
                uint64_t need = ram_mib + FLEET_RAM_RESERVE_MIB;
                uint64_t uncommitted = h->ram_mib > h->session_ram_mib ? h->ram_mib - h->session_ram_mib : 0;
                if (uncommitted < need || h->ram_free_mib < need || h->cores == 0)
                        continue;
                if (best < 0) {
                        best = (int) i;
                        continue;
                }
                const FleetHost *b = &hosts[best];
                /* fewer sessions per core: owned[i] / cores[i] < owned[b] / cores[b] */
                uint64_t li = (uint64_t) owned[i] * b->cores, lb = (uint64_t) owned[best] * h->cores;
                if (li < lb || (li == lb && (h->ram_free_mib > b->ram_free_mib ||
                                             (h->ram_free_mib == b->ram_free_mib && strcmp(h->name, b->name) < 0))))
                        best = (int) i;
        }
        if (best < 0)
                return err_set(-ENOSPC, "no fleet member has %llu MiB of RAM free for the session (plus %u MiB "
                               "reserve); see 'roam host list'",
                               (unsigned long long) ram_mib, FLEET_RAM_RESERVE_MIB);
        return best;
}

int fleet_set_draining(Fleet *f, const char *host, bool draining) {
        if (!fleet_name_is_valid(host))
                return err_set(-EINVAL, "fleet host name '%s' is invalid", host);
        char key[128];
        key_of(key, sizeof key, "draining", host);
        return draining ? etcd_put(f->etcd, key, "1", 0) : etcd_delete(f->etcd, key);
}

/* The view placement decides on: members (without the drained), and how
 * many sessions each owns. Mutex held. */
static int place_view_refresh(Fleet *f) {
        FleetHost *hs = NULL;
        size_t n = 0;
        int r = fleet_hosts(f, &hs, &n);
        if (r < 0)
                return r;
        _cleanup_(etcd_range_done) EtcdRange dr = { 0 }, ow = { 0 };
        r = etcd_get_prefix(f->etcd, FLEET_PREFIX "draining/", &dr);
        if (r >= 0)
                r = etcd_get_prefix(f->etcd, FLEET_PREFIX "owners/", &ow);
        unsigned *owned = r >= 0 ? calloc(MAX(n, (size_t) 1), sizeof *owned) : NULL;
        if (r >= 0 && !owned)
                r = -ENOMEM;
        if (r < 0) {
                fleet_hosts_free(hs, n);
                return r;
        }
        for (size_t i = 0; i < n;) {
                char key[128];
                bool out = false;
                key_of(key, sizeof key, "draining", hs[i].name);
                for (size_t k = 0; !out && k < dr.n; k++)
                        out = !strcmp(dr.kvs[k].key, key);
                if (out) {
                        fleet_host_done(&hs[i]);
                        hs[i] = hs[--n];
                } else
                        i++;
        }
        for (size_t i = 0; i < ow.n; i++) {
                _cleanup_free_ char *host = NULL;
                int64_t e;
                if (parse_owner(&ow.kvs[i], &host, &e) < 0) {
                        err_clear();
                        continue;
                }
                for (size_t k = 0; k < n; k++)
                        if (!strcmp(host, hs[k].name))
                                owned[k]++;
        }
        fleet_hosts_free(f->view_hosts, f->view_n);
        free(f->view_owned);
        f->view_hosts = hs;
        f->view_owned = owned;
        f->view_n = n;
        f->view_ns = now_ns();
        return 0;
}

int fleet_place(Fleet *f, uint64_t ram_mib, const char *except, char **ret_host) {
        pthread_mutex_lock(&f->view_lock);
        int r = 0;
        if (!f->view_ns || now_ns() - f->view_ns >= FLEET_PLACE_VIEW_MS * 1000000LL)
                r = place_view_refresh(f);
        /* except: out of the running for this pick only */
        size_t n = f->view_n, x = n;
        for (size_t i = 0; r >= 0 && except && i < n; i++)
                if (!strcmp(f->view_hosts[i].name, except))
                        x = i;
        if (r >= 0 && x < n) {
                FleetHost t = f->view_hosts[x];
                f->view_hosts[x] = f->view_hosts[n - 1];
                f->view_hosts[n - 1] = t;
                unsigned o = f->view_owned[x];
                f->view_owned[x] = f->view_owned[n - 1];
                f->view_owned[n - 1] = o;
                n--;
        }
        if (r >= 0)
                r = n ? fleet_place_pick(f->view_hosts, f->view_owned, n, ram_mib)
                      : err_set(-ENOSPC, "the fleet has no live member to place on (see 'roam host list')");
        char *name = r >= 0 ? strdup(f->view_hosts[r].name) : NULL;
        if (r >= 0 && !name)
                r = -ENOMEM;
        if (r >= 0)
                f->view_owned[r]++; /* this pick counts until the next refresh shows it */
        pthread_mutex_unlock(&f->view_lock);
        if (r < 0)
                return r;
        *ret_host = name;
        return 0;
}

/* ---- laptops: offline grants and records ---- */

int fleet_grant_parse(const char *value, size_t len, FleetGrant *ret) {
        if (!value || len == 0 || len > 4096)
                return -EBADMSG;
        _cleanup_(json_decrefp) json_t *j = json_loadb(value, len, JSON_REJECT_DUPLICATES, NULL);
        const char *laptop = json_string_value(json_object_get(j, "laptop"));
        const char *from = json_string_value(json_object_get(j, "from"));
        json_t *e = json_object_get(j, "epoch"), *g = json_object_get(j, "granted"),
               *l = json_object_get(j, "lease_until");
        char owner[sizeof FLEET_LAPTOP_OWNER_PREFIX + FLEET_LAPTOP_ID_LEN];
        if (!laptop || strlen(laptop) != FLEET_LAPTOP_ID_LEN || !from || !fleet_name_is_valid(from) ||
            !json_is_integer(e) || json_integer_value(e) < 1 || !json_is_integer(g) || json_integer_value(g) < 0 ||
            !json_is_integer(l) || json_integer_value(l) < 0)
                return -EBADMSG;
        snprintf(owner, sizeof owner, FLEET_LAPTOP_OWNER_PREFIX "%s", laptop);
        if (!fleet_owner_laptop(owner))
                return -EBADMSG;
        FleetGrant x = { .epoch = json_integer_value(e), .granted = json_integer_value(g),
                         .lease_until = json_integer_value(l) };
        memcpy(x.laptop, laptop, FLEET_LAPTOP_ID_LEN + 1);
        snprintf(x.from, sizeof x.from, "%s", from);
        *ret = x;
        return 0;
}

static char *grant_value(const FleetGrant *g) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:s}", "laptop", g->laptop, "epoch", (json_int_t) g->epoch,
                              "granted", (json_int_t) g->granted, "lease_until", (json_int_t) g->lease_until, "from",
                              g->from);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        return s;
}

static int laptop_owner_value(char *buf, size_t size, const char *laptop, int64_t epoch) {
        char owner[sizeof FLEET_LAPTOP_OWNER_PREFIX + FLEET_LAPTOP_ID_LEN];
        snprintf(owner, sizeof owner, FLEET_LAPTOP_OWNER_PREFIX "%s", laptop ? laptop : "");
        if (!fleet_owner_laptop(owner))
                return err_set(-EINVAL, "'%s' is not a laptop id", laptop ? laptop : "");
        owner_value(buf, size, owner, epoch);
        return 0;
}

int fleet_give_laptop(Fleet *f, const char *session, int64_t epoch, const char *laptop, int64_t lease_until) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        if (!fleet_alive(f))
                return err_set(-ENOLINK, "this host has no live etcd lease (fenced): it gives no session away");
        char okey[128], ekey[128], gkey[128], oold[192], onew[192], enew[24];
        key_of(okey, sizeof okey, "owners", session);
        key_of(ekey, sizeof ekey, "epochs", session);
        key_of(gkey, sizeof gkey, "grants", session);
        owner_value(oold, sizeof oold, f->name, epoch);
        r = laptop_owner_value(onew, sizeof onew, laptop, epoch + 1);
        if (r < 0)
                return r;
        snprintf(enew, sizeof enew, "%" PRId64, epoch + 1);
        FleetGrant g = { .epoch = epoch + 1, .granted = (int64_t) time(NULL), .lease_until = lease_until };
        snprintf(g.laptop, sizeof g.laptop, "%s", laptop);
        snprintf(g.from, sizeof g.from, "%s", f->name);
        _cleanup_free_ char *gval = grant_value(&g);
        if (!gval)
                return -ENOMEM;
        /* the laptop's records have no lease: they outlive every member */
        EtcdCmp cmp = { .key = okey, .target = ETCD_CMP_VALUE, .value = oold };
        EtcdOp ok[3] = {
                { .kind = ETCD_OP_PUT, .key = ekey, .value = enew },
                { .kind = ETCD_OP_PUT, .key = okey, .value = onew },
                { .kind = ETCD_OP_PUT, .key = gkey, .value = gval },
        };
        bool succeeded;
        r = etcd_txn(f->etcd, &cmp, 1, ok, 3, NULL, 0, &succeeded, NULL);
        if (r < 0)
                return r;
        if (!succeeded)
                return err_set(-ESTALE, "session '%s' is not owned by this host at epoch %" PRId64
                               " any more: not given to the laptop",
                               session, epoch);
        return 0;
}

int fleet_grant(Fleet *f, const char *session, FleetGrant *ret) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        char gkey[128];
        key_of(gkey, sizeof gkey, "grants", session);
        _cleanup_(etcd_range_done) EtcdRange g = { 0 };
        r = etcd_get(f->etcd, gkey, &g);
        if (r < 0)
                return r;
        if (g.n != 1)
                return err_set(-ENOENT, "session '%s' is offline on no laptop in the fleet", session);
        r = fleet_grant_parse(g.kvs[0].value, g.kvs[0].value_len, ret);
        return r < 0 ? err_set(r, "etcd key '%s' is not an offline grant (fix or delete it)", gkey) : 0;
}

int fleet_grant_renew(Fleet *f, const char *session, const char *laptop, int64_t epoch, int64_t lease_until) {
        FleetGrant g;
        int r = fleet_grant(f, session, &g);
        if (r == -ENOENT || (r >= 0 && (strcmp(g.laptop, laptop) || g.epoch != epoch)))
                return err_set(-ESTALE, "session '%s' is not offline on laptop %s at epoch %" PRId64, session,
                               laptop, epoch);
        if (r < 0)
                return r;
        g.lease_until = lease_until;
        char okey[128], gkey[128], oval[192];
        key_of(okey, sizeof okey, "owners", session);
        key_of(gkey, sizeof gkey, "grants", session);
        r = laptop_owner_value(oval, sizeof oval, laptop, epoch);
        _cleanup_free_ char *gval = r >= 0 ? grant_value(&g) : NULL;
        if (r >= 0 && !gval)
                r = -ENOMEM;
        if (r < 0)
                return r;
        EtcdCmp cmp = { .key = okey, .target = ETCD_CMP_VALUE, .value = oval };
        EtcdOp ok = { .kind = ETCD_OP_PUT, .key = gkey, .value = gval };
        bool succeeded;
        r = etcd_txn(f->etcd, &cmp, 1, &ok, 1, NULL, 0, &succeeded, NULL);
        if (r < 0)
                return r;
        return succeeded ? 0 : err_set(-ESTALE, "session '%s' is not offline on laptop %s at epoch %" PRId64,
                                       session, laptop, epoch);
}

int fleet_take_from_laptop(Fleet *f, const char *session, const char *laptop, int64_t from_epoch, int64_t epoch) {
        int r = session_key_check(session);
        if (r < 0)
                return r;
        if (epoch <= from_epoch)
                return err_set(-ESTALE, "session '%s': epoch %" PRId64 " is not newer than %" PRId64, session, epoch,
                               from_epoch);
        int64_t lease = lease_of(f);
        if (!lease)
                return err_set(-ENOLINK, "this host has no live etcd lease (fenced); it takes no session until "
                               "etcd answers again");
        char okey[128], ekey[128], gkey[128], oold[192], onew[192], enew[24];
        key_of(okey, sizeof okey, "owners", session);
        key_of(ekey, sizeof ekey, "epochs", session);
        key_of(gkey, sizeof gkey, "grants", session);
        r = laptop_owner_value(oold, sizeof oold, laptop, from_epoch);
        if (r < 0)
                return r;
        owner_value(onew, sizeof onew, f->name, epoch);
        snprintf(enew, sizeof enew, "%" PRId64, epoch);
        EtcdCmp cmp = { .key = okey, .target = ETCD_CMP_VALUE, .value = oold };
        EtcdOp ok[3] = {
                { .kind = ETCD_OP_PUT, .key = ekey, .value = enew },
                { .kind = ETCD_OP_PUT, .key = okey, .value = onew, .lease = lease },
                { .kind = ETCD_OP_DELETE, .key = gkey },
        };
        bool succeeded;
        r = etcd_txn(f->etcd, &cmp, 1, ok, 3, NULL, 0, &succeeded, NULL);
        if (r < 0)
                return r;
        if (succeeded)
                return 0;
        _cleanup_free_ char *host = NULL;
        int64_t e = -1;
        if (fleet_owner(f, session, &host, &e) < 0)
                err_clear();
        return err_set(-ESTALE, "session '%s' is %s%s at epoch %" PRId64 " in the fleet, not laptop %s's at epoch "
                       "%" PRId64 ": a hand-over from there is stale",
                       session, host ? "owned by " : "owned by nobody", host ? host : "", e, laptop, from_epoch);
}

static int record_key(char *buf, size_t size, const char *kind, const char *name) {
        if (!kind || !fleet_name_is_valid(kind) || !name || !fleet_name_is_valid(name))
                return err_set(-EINVAL, "'%s' cannot be a fleet record's name", name ? name : "");
        key_of(buf, size, kind, name);
        return 0;
}

int fleet_record_get(Fleet *f, const char *kind, const char *name, char **ret) {
        char key[160];
        int r = record_key(key, sizeof key, kind, name);
        if (r < 0)
                return r;
        _cleanup_(etcd_range_done) EtcdRange rg = { 0 };
        r = etcd_get(f->etcd, key, &rg);
        if (r < 0)
                return r;
        if (rg.n != 1)
                return -ENOENT;
        char *v = strdup(rg.kvs[0].value);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

int fleet_record_list(Fleet *f, const char *kind, char ***ret, size_t *ret_n) {
        char prefix[96];
        if (!fleet_name_is_valid(kind))
                return -EINVAL;
        snprintf(prefix, sizeof prefix, FLEET_PREFIX "%s/", kind);
        _cleanup_(etcd_range_done) EtcdRange rg = { 0 };
        int r = etcd_get_prefix(f->etcd, prefix, &rg);
        if (r < 0)
                return r;
        char **v = calloc(rg.n + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < rg.n; i++)
                if (!(v[i] = strdup(rg.kvs[i].value))) {
                        fleet_record_list_free(v, i);
                        return -ENOMEM;
                }
        *ret = v;
        *ret_n = rg.n;
        return 0;
}

void fleet_record_list_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

int fleet_record_put(Fleet *f, const char *kind, const char *name, const char *old, const char *value) {
        char key[160];
        int r = record_key(key, sizeof key, kind, name);
        if (r < 0)
                return r;
        EtcdCmp cmp = old ? (EtcdCmp){ .key = key, .target = ETCD_CMP_VALUE, .value = old }
                          : (EtcdCmp){ .key = key, .target = ETCD_CMP_VERSION, .num = 0 };
        EtcdOp ok = { .kind = ETCD_OP_PUT, .key = key, .value = value };
        bool succeeded;
        r = etcd_txn(f->etcd, &cmp, 1, &ok, 1, NULL, 0, &succeeded, NULL);
        if (r < 0)
                return r;
        return succeeded ? 0 : (old ? -ESTALE : -EEXIST);
}
