/* SPDX-License-Identifier: MIT */
#include "api-fleet.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../fleet/etcd.h"
#include "../fleet/fleet.h"
#include "../session/host-id.h"
#include "../store/blob.h"
#include "../store/index.h"
#include "../basic/relay.h"
#include "../http/websocket.h"
#include "../sync/remote-stream.h"
#include "../sync/remote.h"
#include "api-console.h"
#include "api-fleet-internal.h"
#include "fleet-watchdog.h"
#include "auth.h"

#define FLEET_TOKEN_FILE "fleet.token"

/* ---- the fence: every QEMU of this home, at once ---- */

static void on_fence(void *userdata, const char *why) {
        ApiFleet *a = userdata;
        unsigned n = fleet_kill_qemus(a->home, NULL);
        daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: fenced (%s): stopped %u session(s) of this host", why, n);
}

static void on_alive(void *userdata) {
        ApiFleet *a = userdata;
        fleet_watchdog_beat(a->watchdog);
}

static void on_load(void *userdata, FleetLoad *ret) {
        ApiFleet *a = userdata;
        SessionInfo *list = NULL;
        size_t n = 0;
        *ret = (FleetLoad){ 0 };
        if (session_list(a->h, &list, &n) < 0) {
                err_clear();
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (list[i].pid > 0) {
                        ret->sessions++;
                        ret->session_ram_mib += list[i].config.ram_mib;
                }
        session_info_list_free(list, n);
}

/* ---- the guard ---- */

static int guard(void *userdata, const char *session, int64_t epoch) {
        ApiFleet *a = userdata;
        int r = fleet_check(a->fleet, session, epoch);
        if (r != -EREMOTE)
                return r;
        _cleanup_free_ char *host = NULL;
        int64_t e;
        int k = fleet_owner(a->fleet, session, &host, &e);
        if (k < 0 || host)
                return r; /* another host's: refused with fleet_check()'s detail */
        err_clear();
        if (e < 0)
                k = fleet_claim(a->fleet, session, epoch, FLEET_CLAIM_NEW, NULL);
        else if (e == epoch)
                k = fleet_claim(a->fleet, session, epoch, FLEET_CLAIM_BACK, NULL);
        else
                return err_set(-EREMOTE, "session '%s' is at epoch %lld in the fleet, this host has epoch %lld: "
                               "it runs elsewhere now",
                               session, (long long) e, (long long) epoch);
        if (k >= 0)
                daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' claimed for this host at epoch %lld",
                           session, (long long) epoch);
        return k;
}

/* The old host back: a QEMU here of a session the fleet gave away is ended;
 * also every 10 s (takeover_worker()), and then a QEMU that runs while this
 * host is fenced too (one started by a restore that began before the fence). */
static void refuse_stale(ApiFleet *a) {
        SessionInfo *list = NULL;
        size_t n = 0;
        if (session_list(a->h, &list, &n) < 0) {
                err_clear();
                return;
        }
        for (size_t i = 0; i < n; i++) {
                if (list[i].pid <= 0 || strcmp(list[i].row.owner, SESSION_OWNER_LOCAL))
                        continue;
                int r = guard(a, list[i].row.name, list[i].row.epoch);
                if (r == -EREMOTE || r == -ESTALE || r == -EEXIST || r == -ENOLINK) {
                        fleet_kill_qemus(a->home, list[i].row.name);
                        daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: stopped session '%s' here: %s",
                                   list[i].row.name, err_message(r));
                }
                err_clear();
        }
        session_info_list_free(list, n);
}

/* ---- routes ---- */

static int route_hosts(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        FleetHost *hs = NULL;
        size_t n = 0;
        err_clear();
        int r = fleet_hosts(a->fleet, &hs, &n);
        if (r < 0)
                return http_reply_error(req, 503, "%s", err_message(r));
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
                json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "name", hs[i].name,
                                                     "url", hs[i].url, "cores", (json_int_t) hs[i].cores,
                                                     "ram_mib", (json_int_t) hs[i].ram_mib, "ram_free_mib",
                                                     (json_int_t) hs[i].ram_free_mib, "sessions",
                                                     (json_int_t) hs[i].sessions, "session_ram_mib",
                                                     (json_int_t) hs[i].session_ram_mib));
        fleet_hosts_free(hs, n);
        return http_reply_json(req, 200,
                               json_pack("{s:o, s:s, s:b}", "hosts", arr ? arr : json_array(), "self",
                                         fleet_name(a->fleet), "alive", fleet_alive(a->fleet)));
}

/* ---- members calling each other ---- */

static bool is_admin_or_host(const HttpRequest *req) {
        const Auth *au = auth_of(req);
        return !au || au->role == CATALOG_ROLE_ADMIN || au->role == CATALOG_ROLE_HOST;
}

/* This home's token for the other members: an admin token labeled "fleet",
 * made once (HOME/fleet.token) and published in etcd for them
 * (/roam/tokens/NAME: etcd is the fleet's trust root). */
static int publish_token(ApiFleet *a) {
        _cleanup_free_ char *path = path_join(a->home, FLEET_TOKEN_FILE), *tok = NULL;
        if (!path)
                return -ENOMEM;
        size_t len;
        int r = read_full_file(path, 256, &tok, &len);
        if (r >= 0) {
                tok[strcspn(tok, "\n")] = 0;
                CatalogRole role;
                if (catalog_token_check(daemon_catalog(a->d), tok, &role, NULL) < 0 || role != CATALOG_ROLE_ADMIN) {
                        err_clear();
                        r = -ENOENT; /* revoked: a new one */
                }
        }
        if (r == -ENOENT) {
                free(tok);
                tok = NULL;
                r = catalog_token_create_labeled(daemon_catalog(a->d), CATALOG_ROLE_ADMIN, NULL, "fleet", 0, &tok);
                if (r >= 0)
                        r = write_file_atomic(path, tok, strlen(tok), 0600);
        }
        if (r < 0)
                return err_set_if_none(r, "cannot make this host's fleet token '%s': %s", path, strerror(-r));
        free(a->token);
        if (!(a->token = strdup(tok)))
                return -ENOMEM;
        _cleanup_(etcd_client_freep) EtcdClient *c = NULL;
        r = etcd_client_new(a->etcd_urls, &c);
        if (r < 0)
                return r;
        char key[128];
        snprintf(key, sizeof key, FLEET_PREFIX "tokens/%s", fleet_name(a->fleet));
        return etcd_put(c, key, tok, 0);
}

/* The token member host published for the others. Caller frees. */
static int peer_token(ApiFleet *a, const char *host, char **ret) {
        _cleanup_(etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(etcd_range_done) EtcdRange tok = { 0 };
        char key[128];
        snprintf(key, sizeof key, FLEET_PREFIX "tokens/%s", host);
        int r = etcd_client_new(a->etcd_urls, &c);
        if (r >= 0)
                r = etcd_get(c, key, &tok);
        if (r < 0)
                return r;
        if (tok.n != 1)
                return err_set(-ENOKEY, "fleet member '%s' published no token", host);
        char *t = strdup(tok.kvs[0].value);
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

/* The header that passes a verified laptop request on (api-laptop.h). */
static int attest_cb(void *userdata, const char *method, const char *path, const void *body, size_t len,
                     char **ret) {
        *ret = NULL;
        return asprintf(ret, API_LAPTOP_FLEET_HEADER ": %s", (const char *) userdata) < 0 ? -ENOMEM : 0;
}

int api_fleet_peer_request(ApiFleet *a, const char *host, const char *method, const char *path, const char *body,
                           const char *laptop, RemoteResponse *ret) {
        FleetHost h;
        int r = fleet_host(a->fleet, host, &h);
        if (r < 0)
                return r;
        _cleanup_free_ char *tok = NULL;
        r = peer_token(a, host, &tok);
        _cleanup_(remote_freep) Remote *rem = NULL;
        RemoteSigner attest = { .sign = attest_cb, .userdata = (void *) laptop };
        if (r >= 0)
                r = remote_new(h.url, tok,
                               &(RemoteOptions){ .connect_timeout_s = 5, .stall_timeout_s = 300,
                                                 .signer = laptop ? &attest : NULL },
                               &rem);
        fleet_host_done(&h);
        if (r < 0)
                return r;
        _cleanup_(remote_conn_freep) RemoteConn *conn = remote_conn_new(rem);
        if (!conn)
                return -ENOMEM;
        return remote_request(conn, method, path, body, body ? strlen(body) : 0, body ? "application/json" : NULL,
                              FLEET_PEER_MAX_RESPONSE, ret);
}

static int peer_request(ApiFleet *a, const char *host, const char *method, const char *path, const char *body,
                        RemoteResponse *ret) {
        return api_fleet_peer_request(a, host, method, path, body, NULL, ret);
}

/* Passes a member's answer on as this one's. */
int api_fleet_relay_reply(HttpRequest *req, const char *host, const RemoteResponse *resp) {
        json_t *j = json_loadb((const char *) resp->body, resp->len, 0, NULL);
        if (!j)
                return http_reply_error(req, 502, "fleet member '%s' answered %ld without JSON", host, resp->status);
        return http_reply_json(req, (unsigned) resp->status, j);
}

/* ---- sessions in the fleet ---- */

static int route_sessions(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        FleetSessionRecord *ss = NULL;
        size_t n = 0;
        err_clear();
        int r = fleet_sessions(a->fleet, &ss, &n);
        if (r < 0)
                return http_reply_error(req, 503, "%s", err_message(r));
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
                json_array_append_new(arr, json_pack("{s:s, s:s?, s:I}", "name", ss[i].name, "host", ss[i].host,
                                                     "epoch", (json_int_t) ss[i].epoch));
        fleet_sessions_free(ss, n);
        return http_reply_json(req, 200, json_pack("{s:o}", "sessions", arr ? arr : json_array()));
}

typedef struct CreateReq {
        const char *name, *image, *user, *kernel, *initrd, *append, *host;
        json_int_t ram_mib, cpus;
        int agent, start;
} CreateReq;

static int parse_create(const void *body, size_t len, json_t **ret_j, CreateReq *ret) {
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        CreateReq c = { .ram_mib = 0, .cpus = 0 };
        if (!j || json_unpack(j, "{s:s, s:s, s:s, s:s, s?s, s?s, s?s, s?I, s?I, s?b, s?b}", "name", &c.name, "image",
                              &c.image, "user", &c.user, "kernel", &c.kernel, "initrd", &c.initrd, "append", &c.append,
                              "host", &c.host, "ram_mib", &c.ram_mib, "cpus", &c.cpus, "agent", &c.agent, "start",
                              &c.start) < 0 ||
            !name_is_valid(c.name) || !name_is_valid(c.user) || c.ram_mib < 0 || c.ram_mib > (1 << 24) || c.cpus < 0 ||
            c.cpus > 256) {
                json_decref(j);
                return -EINVAL;
        }
        RoamId id;
        if (id_from_hex(c.kernel, &id) < 0 || (c.initrd && id_from_hex(c.initrd, &id) < 0)) {
                json_decref(j);
                return -EINVAL;
        }
        *ret_j = j;
        *ret = c;
        return 0;
}
#define CREATE_SHAPE "{\"name\", \"image\", \"user\", \"kernel\": HEX, \"initrd\": HEX, \"ram_mib\", \"cpus\", \"host\", \"start\"}"

/* A blob of the shared store as a file of this host's (its boot files come
 * from the store again: the import is a dedup hit). */
static int export_blob(ApiFleet *a, const char *hex, char **ret_path) {
        RoamId id;
        int r = id_from_hex(hex, &id);
        if (r < 0)
                return err_set(-EINVAL, "'%s' is not a blob id", hex);
        _cleanup_(index_freep) Index *x = NULL;
        r = blob_load_index(daemon_store(a->d), &id, &x);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = path_join(a->home, "tmp"), *tmp = NULL;
        if (!dir)
                return -ENOMEM;
        r = mkdir_p(dir, 0700);
        int fd = r < 0 ? r : tmpfile_create(dir, &tmp);
        if (fd < 0)
                return fd;
        r = blob_export_fd(daemon_store(a->d), x, fd, &(BlobOptions){ .threads = 1 }, NULL);
        close(fd);
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        *ret_path = TAKE_PTR(tmp);
        return 0;
}

/* Creates the session here, owned here in the fleet (claimed new). */
static int create_here(ApiFleet *a, const CreateReq *c, int64_t *ret_epoch) {
        _cleanup_free_ char *kernel = NULL, *initrd = NULL;
        int r = export_blob(a, c->kernel, &kernel);
        if (r >= 0 && c->initrd)
                r = export_blob(a, c->initrd, &initrd);
        SessionCreate sc = { .name = c->name, .user = c->user, .image = c->image, .kernel = kernel,
                             .initrd = initrd, .append = c->append, .ram_mib = (uint64_t) c->ram_mib,
                             .cpus = (unsigned) c->cpus, .agent = c->agent };
        SessionInfo info = { 0 };
        if (r >= 0)
                r = session_create(a->h, &sc, &info);
        if (kernel)
                unlink(kernel);
        if (initrd)
                unlink(initrd);
        if (r < 0)
                return r;
        int64_t epoch = info.row.epoch;
        uint64_t ram = info.config.ram_mib;
        session_info_done(&info);
        r = fleet_claim(a->fleet, c->name, epoch, FLEET_CLAIM_NEW, NULL);
        if (r >= 0)
                r = fleet_set_meta(a->fleet, c->name, c->user, ram);
        if (r < 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", err_message(r));
                (void) session_remove(a->h, c->name);
                return err_set(r, "%s", msg);
        }
        if (c->start) {
                r = session_start(a->h, c->name);
                if (r < 0)
                        return r;
        }
        *ret_epoch = epoch;
        return 0;
}

unsigned api_fleet_status(int r) {
        switch (-r) {
        case EEXIST:
        case ESTALE:
        case EREMOTE:
        case EBUSY:
                return 409;
        case EINVAL:
                return 400;
        case ENOENT:
                return 404;
        case ENOSPC:
        case ENOMEM:
                return 507;
        case EHOSTUNREACH:
        case ENOLINK:
                return 503;
        default:
                return http_status_from_errno(r);
        }
}

static int route_create_here(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        if (!is_admin_or_host(req))
                return http_reply_error(req, 403, "only an admin or a fleet member creates sessions");
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = NULL;
        CreateReq c;
        if (parse_create(body, len, &j, &c) < 0)
                return http_reply_error(req, 400, "expected " CREATE_SHAPE);
        int64_t epoch = 0;
        err_clear();
        int r = create_here(a, &c, &epoch);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' created here at epoch %lld", c.name, (long long) epoch);
        return http_reply_json(req, 200, json_pack("{s:s, s:s, s:I, s:b}", "name", c.name, "host",
                                                   fleet_name(a->fleet), "epoch", (json_int_t) epoch, "started",
                                                   c.start));
}

static int route_create(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        if (!is_admin_or_host(req))
                return http_reply_error(req, 403, "only an admin creates sessions in the fleet");
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = NULL;
        CreateReq c;
        if (parse_create(body, len, &j, &c) < 0)
                return http_reply_error(req, 400, "expected " CREATE_SHAPE);
        _cleanup_free_ char *host = NULL;
        err_clear();
        int r = 0;
        if (c.host) {
                FleetHost h;
                r = fleet_host(a->fleet, c.host, &h);
                if (r >= 0)
                        fleet_host_done(&h);
                host = r >= 0 ? strdup(c.host) : NULL;
                if (r >= 0 && !host)
                        r = -ENOMEM;
        } else
                r = fleet_place(a->fleet, (uint64_t) (c.ram_mib ? c.ram_mib : VM_RAM_MIB_DEFAULT), NULL, &host);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        if (!strcmp(host, fleet_name(a->fleet)))
                return route_create_here(req, userdata);
        json_object_del(j, "host");
        _cleanup_free_ char *fwd = json_dumps(j, JSON_COMPACT);
        RemoteResponse resp = { 0 };
        r = fwd ? peer_request(a, host, "POST", "/v1/fleet/local-sessions", fwd, &resp) : -ENOMEM;
        if (r < 0)
                return http_reply_error(req, 502, "fleet member '%s': %s", host, err_message(r));
        r = api_fleet_relay_reply(req, host, &resp);
        remote_response_done(&resp);
        return r;
}

/* ---- moves through the shared store ---- */

static uint64_t mono_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

/* A row here that says "local" for a session the fleet gave to another host
 * at a newer epoch (this host was fenced, or it crashed) is marked away, so
 * that the session can be adopted here again later. Its QEMU, if any, is
 * stale: ended first. */
int api_fleet_mark_stale_away(ApiFleet *a, const char *name, int64_t new_epoch) {
        SessionInfo i;
        int r = session_get(a->h, name, &i);
        if (r == -ENOENT) {
                err_clear();
                return 0;
        }
        if (r < 0)
                return r;
        bool local = !strcmp(i.row.owner, SESSION_OWNER_LOCAL);
        int64_t e = i.row.epoch;
        session_info_done(&i);
        if (!local || e >= new_epoch)
                return 0;
        fleet_kill_qemus(a->home, name);
        return session_set_owner(a->h, name, "fleet:elsewhere", e, e);
}

/* This host owns session name at epoch in the fleet now: restore checkpoint
 * hex here and resume it. */
int api_fleet_adopt_here(ApiFleet *a, const char *name, const char *hex, int64_t epoch) {
        _cleanup_free_ char *host = NULL;
        int64_t e;
        int r = fleet_owner(a->fleet, name, &host, &e);
        if (r < 0)
                return r;
        if (!host || strcmp(host, fleet_name(a->fleet)) || e != epoch)
                return err_set(-ESTALE, "session '%s' is not this member's at epoch %lld in the fleet", name,
                               (long long) epoch);
        r = api_fleet_mark_stale_away(a, name, epoch);
        if (r < 0)
                return r;
        r = session_adopt(a->h, name, hex, epoch, NULL);
        if (r < 0)
                return r;
        /* the restore took time: if the lease went meanwhile, it must not run */
        r = fleet_check(a->fleet, name, epoch);
        if (r < 0) {
                char saved[512];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                fleet_kill_qemus(a->home, name);
                return err_set(r, "session '%s' was restored but stopped again: %s", name, saved);
        }
        return 0;
}

static int route_adopt(HttpRequest *req, ApiFleet *a, const char *name, const char *body) {
        _cleanup_(json_decrefp) json_t *j = body ? json_loads(body, JSON_REJECT_DUPLICATES, NULL) : NULL;
        const char *hex = json_string_value(json_object_get(j, "checkpoint"));
        json_t *ep = json_object_get(j, "epoch");
        if (!hex || !json_is_integer(ep))
                return http_reply_error(req, 400, "expected {\"checkpoint\": HEX, \"epoch\": N}");
        uint64_t t0 = mono_ns();
        err_clear();
        int r = api_fleet_adopt_here(a, name, hex, json_integer_value(ep));
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' adopted here at epoch %lld", name,
                   (long long) json_integer_value(ep));
        return http_reply_json(req, 200, json_pack("{s:s, s:s, s:I}", "name", name, "host", fleet_name(a->fleet),
                                                   "restore_ms", (json_int_t) ((mono_ns() - t0) / 1000000)));
}

typedef struct MoveResult {
        int64_t epoch;
        uint64_t downtime_ms, precopy_ms, total_ms;
        char checkpoint[ID_HEX_SIZE];
} MoveResult;

/* Moves session name (owned and run here) to member to: a checkpoint while
 * it runs (the pre-copy: most chunks reach the shared store), the final
 * checkpoint with QEMU ended (only the remainder), the fleet's owner record
 * handed over at epoch + 1, the target adopts it. If the target fails, the
 * session comes back here at epoch + 2 from the same final checkpoint. */
static int move_to(ApiFleet *a, const char *name, const char *to, MoveResult *ret) {
        if (!strcmp(to, fleet_name(a->fleet)))
                return err_set(-EINVAL, "session '%s' is on '%s' already", name, to);
        FleetHost th;
        int r = fleet_host(a->fleet, to, &th);
        if (r < 0)
                return r;
        fleet_host_done(&th);
        SessionInfo i;
        r = session_get(a->h, name, &i);
        if (r < 0)
                return r;
        int64_t epoch = i.row.epoch;
        bool running = i.pid > 0;
        session_info_done(&i);
        uint64_t t0 = mono_ns();
        SessionCheckpointResult ck;
        if (running) {
                r = session_checkpoint(a->h, name, 0, &ck); /* the pre-copy */
                if (r < 0)
                        return r;
        }
        if (running) {
                /* the target writes the pre-copy's RAM now, while the guest runs:
                 * its restore then writes only what changed (session_stage_ram()) */
                char path[NAME_MAX_LEN + 64], body[128], pre[ID_HEX_SIZE];
                snprintf(path, sizeof path, "/v1/fleet/local-sessions/%s/stage", name);
                snprintf(body, sizeof body, "{\"checkpoint\":\"%s\"}", id_to_hex(&ck.id, pre));
                RemoteResponse resp = { 0 };
                if (peer_request(a, to, "POST", path, body, &resp) < 0 || resp.status != 200)
                        daemon_log(a->d, DAEMON_LOG_INFO, "fleet: '%s' did not stage session '%s' (%ld): the move "
                                   "goes on without",
                                   to, name, resp.status);
                err_clear();
                remote_response_done(&resp);
        }
        uint64_t t1 = mono_ns();
        r = session_checkpoint(a->h, name, running ? SESSION_CHECKPOINT_QUIT : 0, &ck);
        if (r < 0)
                return r;
        char hex[ID_HEX_SIZE];
        id_to_hex(&ck.id, hex);
        int64_t new_epoch;
        r = fleet_handover(a->fleet, name, epoch, to, &new_epoch);
        if (r < 0) {
                char saved[512];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                if (running && session_restore(a->h, name, hex, NULL) < 0)
                        return err_set(r, "%s; and resuming it here failed: %s", saved, err_message(-EIO));
                return err_set(r, "%s (it runs here again)", saved);
        }
        char owner[FLEET_NAME_MAX + 8];
        snprintf(owner, sizeof owner, "fleet:%s", to);
        r = session_set_owner(a->h, name, owner, new_epoch, epoch);
        if (r < 0)
                daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: session '%s' handed to '%s' but its row here: %s", name,
                           to, err_message(r));
        char path[NAME_MAX_LEN + 64];
        snprintf(path, sizeof path, "/v1/fleet/local-sessions/%s/adopt", name);
        _cleanup_free_ char *body = NULL;
        if (asprintf(&body, "{\"checkpoint\":\"%s\",\"epoch\":%lld}", hex, (long long) new_epoch) < 0)
                return -ENOMEM;
        RemoteResponse resp = { 0 };
        r = peer_request(a, to, "POST", path, body, &resp);
        if (r >= 0 && (resp.status < 200 || resp.status > 299)) {
                _cleanup_(json_decrefp) json_t *e = json_loadb((const char *) resp.body, resp.len, 0, NULL);
                const char *msg = json_string_value(json_object_get(e, "error"));
                r = err_set(-EPROTO, "member '%s' did not adopt it: %s", to, msg ? msg : "no reason given");
        }
        remote_response_done(&resp);
        if (r < 0) {
                /* back here: the owner record from the target to this host, epoch + 2 */
                char saved[512];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                int64_t back;
                int k = fleet_claim_from(a->fleet, name, to, new_epoch, &back);
                if (k >= 0)
                        k = session_set_owner(a->h, name, SESSION_OWNER_LOCAL, back, new_epoch);
                if (k >= 0 && running)
                        k = session_restore(a->h, name, hex, NULL);
                if (k < 0)
                        return err_set(r, "%s; and taking it back failed: %s", saved, err_message(k));
                return err_set(r, "%s (it runs here again, epoch %lld)", saved, (long long) back);
        }
        uint64_t t2 = mono_ns();
        *ret = (MoveResult){ .epoch = new_epoch, .downtime_ms = (t2 - t1) / 1000000, .precopy_ms = (t1 - t0) / 1000000,
                             .total_ms = (t2 - t0) / 1000000 };
        memcpy(ret->checkpoint, hex, sizeof hex);
        daemon_log(a->d, DAEMON_LOG_INFO,
                   "fleet: session '%s' moved to '%s' at epoch %lld: pre-copy %llu ms, downtime %llu ms", name, to,
                   (long long) new_epoch, (unsigned long long) ret->precopy_ms, (unsigned long long) ret->downtime_ms);
        return 0;
}

/* ---- high availability ---- */

/* Every checkpoint_s, a checkpoint of every session that runs here (into the
 * shared store: what a takeover restores). */
static void checkpoint_worker(DaemonWorker *w, void *userdata) {
        ApiFleet *a = userdata;
        while (daemon_worker_sleep(w, a->checkpoint_s)) {
                if (!fleet_alive(a->fleet))
                        continue;
                SessionInfo *list = NULL;
                size_t n = 0;
                if (session_list(a->h, &list, &n) < 0) {
                        err_clear();
                        continue;
                }
                for (size_t i = 0; i < n && !daemon_worker_stopping(w); i++) {
                        if (list[i].pid <= 0 || strcmp(list[i].row.owner, SESSION_OWNER_LOCAL))
                                continue;
                        SessionCheckpointResult res;
                        err_clear();
                        int r = session_checkpoint(a->h, list[i].row.name, 0, &res);
                        if (r < 0)
                                daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: checkpoint of session '%s': %s",
                                           list[i].row.name, err_message(r));
                        else
                                daemon_log(a->d, DAEMON_LOG_DEBUG, "fleet: checkpoint %lld of session '%s' (pause %llu ms)",
                                           (long long) res.seq, list[i].row.name,
                                           (unsigned long long) (res.pause_ns / 1000000));
                }
                session_info_list_free(list, n);
        }
}

#define ORPHANS_MAX 1024
#define ORPHAN_ANYONE_S 10 /* past this, any member tries, not only the one placement picks */

typedef struct Orphan {
        char name[NAME_MAX_LEN + 1];
        uint64_t since_ns;
        bool seen;
} Orphan;

/* Takes over session name at epoch (no owner now): this host at epoch + 1,
 * restored from its latest checkpoint in the shared store. */
static int take_over(ApiFleet *a, const char *name, int64_t epoch, const char *user) {
        int64_t e;
        uint64_t t0 = mono_ns();
        /* a session never checkpointed stays as it is: its epoch too, so that
         * its own member, back, may run it again */
        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user, name);
        RoamId id;
        int r = store_ref_get(daemon_store(a->d), ref, &id);
        if (r == -ENOENT)
                return -ENODATA;
        if (r < 0)
                return r;
        r = fleet_claim(a->fleet, name, epoch, FLEET_CLAIM_TAKEOVER, &e);
        if (r < 0)
                return r;
        /* the newest one now that nobody else can write it */
        r = store_ref_get(daemon_store(a->d), ref, &id);
        char hex[ID_HEX_SIZE];
        if (r >= 0)
                r = api_fleet_adopt_here(a, name, id_to_hex(&id, hex), e);
        if (r < 0) {
                char saved[512];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                (void) fleet_drop(a->fleet, name, e);
                return err_set(r, "%s", saved);
        }
        daemon_log(a->d, DAEMON_LOG_INFO,
                   "fleet: took over session '%s' at epoch %lld from its last checkpoint %.12s (%llu ms)", name,
                   (long long) e, hex, (unsigned long long) ((mono_ns() - t0) / 1000000));
        return 0;
}

static void takeover_worker(DaemonWorker *w, void *userdata) {
        ApiFleet *a = userdata;
        static Orphan orphans[ORPHANS_MAX];
        size_t n_orphans = 0;
        unsigned round = 0;
        while (daemon_worker_sleep(w, 2)) {
                int wk = fleet_watchdog_check(a->watchdog);
                if (wk != 0)
                        daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: the watchdog of this home's QEMUs %s",
                                   wk > 0 ? "had died: started again" : err_message(wk));
                err_clear();
                if (++round % 5 == 0)
                        refuse_stale(a);
                if (!fleet_alive(a->fleet))
                        continue;
                FleetSessionRecord *ss = NULL;
                size_t n = 0;
                if (fleet_sessions(a->fleet, &ss, &n) < 0) {
                        err_clear();
                        continue;
                }
                for (size_t k = 0; k < n_orphans; k++)
                        orphans[k].seen = false;
                for (size_t i = 0; i < n && !daemon_worker_stopping(w); i++) {
                        if (ss[i].host || strlen(ss[i].name) > NAME_MAX_LEN)
                                continue;
                        size_t k = 0;
                        while (k < n_orphans && strcmp(orphans[k].name, ss[i].name))
                                k++;
                        if (k == n_orphans) {
                                if (n_orphans == ORPHANS_MAX)
                                        continue;
                                snprintf(orphans[k].name, sizeof orphans[k].name, "%s", ss[i].name);
                                orphans[k].since_ns = mono_ns();
                                n_orphans++;
                        }
                        orphans[k].seen = true;
                        _cleanup_free_ char *user = NULL, *pick = NULL;
                        uint64_t ram;
                        err_clear();
                        if (fleet_get_meta(a->fleet, ss[i].name, &user, &ram) < 0)
                                continue; /* not made by a fleet member: nothing to restore it from */
                        bool anyone = mono_ns() - orphans[k].since_ns > (uint64_t) ORPHAN_ANYONE_S * 1000000000u;
                        if (!anyone && (fleet_place(a->fleet, ram, NULL, &pick) < 0 || strcmp(pick, fleet_name(a->fleet))))
                                continue;
                        int r = take_over(a, ss[i].name, ss[i].epoch, user);
                        if (r < 0 && r != -ESTALE && r != -ENODATA)
                                daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: takeover of session '%s': %s",
                                           ss[i].name, err_message(r));
                }
                fleet_sessions_free(ss, n);
                /* forget the ones that have an owner again */
                for (size_t k = 0; k < n_orphans;)
                        if (!orphans[k].seen)
                                orphans[k] = orphans[--n_orphans];
                        else
                                k++;
        }
}

/* An action on a session this member owns. */
static int fleet_local_action(ApiFleet *a, HttpRequest *req, const char *name, const char *action, const char *body) {
        json_t *detail = NULL;
        int r;
        err_clear();
        if (!strcmp(action, "start"))
                r = session_start(a->h, name);
        else if (!strcmp(action, "stop")) {
                bool forced = false;
                r = session_stop(a->h, name, SESSION_STOP_TIMEOUT_S_DEFAULT, &forced);
                if (r >= 0)
                        detail = json_pack("{s:b}", "forced", forced);
        } else if (!strcmp(action, "checkpoint")) {
                SessionCheckpointResult res;
                r = session_checkpoint(a->h, name, 0, &res);
                if (r >= 0) {
                        char hex[ID_HEX_SIZE];
                        detail = json_pack("{s:s, s:I, s:I}", "checkpoint", id_to_hex(&res.id, hex), "seq",
                                           (json_int_t) res.seq, "pause_ms", (json_int_t) (res.pause_ns / 1000000));
                }
        } else if (!strcmp(action, "remove")) {
                SessionInfo i;
                r = session_get(a->h, name, &i);
                int64_t epoch = r >= 0 ? i.row.epoch : 0;
                if (r >= 0)
                        session_info_done(&i);
                if (r >= 0)
                        r = session_remove(a->h, name);
                if (r >= 0)
                        r = fleet_release(a->fleet, name, epoch);
        } else if (!strcmp(action, "move")) {
                _cleanup_(json_decrefp) json_t *j = body ? json_loads(body, JSON_REJECT_DUPLICATES, NULL) : NULL;
                const char *to = json_string_value(json_object_get(j, "to"));
                if (!to || !fleet_name_is_valid(to))
                        return http_reply_error(req, 400, "expected {\"to\": HOST}");
                MoveResult m;
                r = move_to(a, name, to, &m);
                if (r >= 0)
                        detail = json_pack("{s:s, s:I, s:s, s:I, s:I, s:I}", "to", to, "epoch", (json_int_t) m.epoch,
                                           "checkpoint", m.checkpoint, "downtime_ms", (json_int_t) m.downtime_ms,
                                           "precopy_ms", (json_int_t) m.precopy_ms, "total_ms",
                                           (json_int_t) m.total_ms);
        } else
                return http_reply_error(req, 404,
                                        "unknown fleet session action '%s' (start, stop, checkpoint, move, remove)",
                                        action);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        json_t *j = json_pack("{s:s, s:s, s:s}", "name", name, "action", action, "host", fleet_name(a->fleet));
        if (j && detail)
                json_object_update(j, detail);
        json_decref(detail);
        return http_reply_json(req, 200, j);
}

/* POST /v1/fleet/sessions/NAME/ACTION: on the owner, wherever it is */
static int route_action(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        if (!is_admin_or_host(req))
                return http_reply_error(req, 403, "only an admin acts on sessions through the fleet");
        const char *rest = http_request_rest(req), *slash = strchr(rest, '/');
        char name[NAME_MAX_LEN + 1];
        if (!slash || (size_t) (slash - rest) > NAME_MAX_LEN)
                return http_reply_error(req, 404, "expected /v1/fleet/sessions/NAME/ACTION");
        memcpy(name, rest, (size_t) (slash - rest));
        name[slash - rest] = 0;
        const char *action = slash + 1;
        if (!name_is_valid(name))
                return http_reply_error(req, 404, "session name '%s' is invalid", name);
        _cleanup_free_ char *host = NULL;
        int64_t epoch;
        err_clear();
        int r = fleet_owner(a->fleet, name, &host, &epoch);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        if (!host)
                return http_reply_error(req, 409, "session '%s' has no owner in the fleet now (epoch %lld)", name,
                                        (long long) epoch);
        if (fleet_owner_laptop(host) && !strcmp(action, "reclaim")) {
                /* a lost laptop's: taken back here from the fleet's latest checkpoint */
                json_t *j = NULL;
                err_clear();
                r = api_fleet_reclaim_here(a, name, fleet_owner_laptop(host), epoch, &j);
                if (r < 0)
                        return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
                json_object_set_new(j, "name", json_string(name));
                json_object_set_new(j, "action", json_string(action));
                return http_reply_json(req, 200, j);
        }
        if (fleet_owner_laptop(host))
                return http_reply_error(req, 409, "session '%s' is offline on %s since epoch %lld (the laptop takes "
                                        "it online; an admin may reclaim it)",
                                        name, host, (long long) epoch);
        size_t len;
        const char *body = http_request_body(req, &len);
        _cleanup_free_ char *copy = body && len ? strndup(body, len) : NULL;
        if (strcmp(host, fleet_name(a->fleet))) {
                /* one hop: a member asked by another acts or refuses */
                if (http_request_query(req, "hop"))
                        return http_reply_error(req, 409, "session '%s' is owned by '%s', not this member", name, host);
                char path[NAME_MAX_LEN + 96];
                snprintf(path, sizeof path, "/v1/fleet/sessions/%s/%s?hop=1", name, action);
                RemoteResponse resp = { 0 };
                r = peer_request(a, host, "POST", path, copy, &resp);
                if (r < 0)
                        return http_reply_error(req, 502, "fleet member '%s': %s", host, err_message(r));
                r = api_fleet_relay_reply(req, host, &resp);
                remote_response_done(&resp);
                return r;
        }
        return fleet_local_action(a, req, name, action, copy);
}

/* POST /v1/fleet/hosts/NAME/drain[?undo=1]: NAME gets no new sessions, and
 * every session it owns moves to the member placement picks, one by one. */
static int route_drain(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        if (!is_admin_or_host(req))
                return http_reply_error(req, 403, "only an admin drains fleet members");
        const char *rest = http_request_rest(req), *slash = strchr(rest, '/');
        char host[FLEET_NAME_MAX + 1];
        if (!slash || (size_t) (slash - rest) > FLEET_NAME_MAX || strcmp(slash + 1, "drain"))
                return http_reply_error(req, 404, "expected /v1/fleet/hosts/NAME/drain");
        memcpy(host, rest, (size_t) (slash - rest));
        host[slash - rest] = 0;
        err_clear();
        if (!fleet_name_is_valid(host))
                return http_reply_error(req, 404, "fleet host name '%s' is invalid", host);
        bool undo = http_request_query(req, "undo") != NULL;
        int r = fleet_set_draining(a->fleet, host, !undo);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        if (undo)
                return http_reply_json(req, 200, json_pack("{s:s, s:b}", "host", host, "draining", false));
        FleetSessionRecord *ss = NULL;
        size_t n = 0;
        r = fleet_sessions(a->fleet, &ss, &n);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        json_t *moved = json_array(), *failed = json_array();
        for (size_t i = 0; i < n; i++) {
                if (!ss[i].host || strcmp(ss[i].host, host))
                        continue;
                _cleanup_free_ char *user = NULL, *to = NULL;
                uint64_t ram = VM_RAM_MIB_DEFAULT;
                if (fleet_get_meta(a->fleet, ss[i].name, &user, &ram) < 0)
                        err_clear();
                err_clear();
                r = fleet_place(a->fleet, ram, host, &to);
                if (r >= 0) {
                        char path[NAME_MAX_LEN + 64], body[128];
                        snprintf(path, sizeof path, "/v1/fleet/sessions/%s/move%s", ss[i].name,
                                 strcmp(host, fleet_name(a->fleet)) ? "?hop=1" : "");
                        snprintf(body, sizeof body, "{\"to\":\"%s\"}", to);
                        RemoteResponse resp = { 0 };
                        r = peer_request(a, host, "POST", path, body, &resp);
                        if (r >= 0 && resp.status != 200) {
                                _cleanup_(json_decrefp) json_t *e = json_loadb((const char *) resp.body, resp.len, 0, NULL);
                                const char *msg = json_string_value(json_object_get(e, "error"));
                                r = err_set(-EPROTO, "%s", msg ? msg : "the member refused");
                        }
                        remote_response_done(&resp);
                }
                if (r >= 0)
                        json_array_append_new(moved, json_pack("{s:s, s:s}", "name", ss[i].name, "to", to));
                else
                        json_array_append_new(failed, json_pack("{s:s, s:s}", "name", ss[i].name, "error",
                                                                err_message(r)));
        }
        fleet_sessions_free(ss, n);
        size_t nfailed = json_array_size(failed);
        daemon_log(a->d, DAEMON_LOG_INFO, "fleet: drained '%s': %zu moved, %zu failed", host, json_array_size(moved),
                   nfailed);
        json_t *j = json_pack("{s:s, s:b, s:o, s:o}", "host", host, "draining", true, "moved", moved, "failed",
                              failed);
        if (j && nfailed) {
                char msg[600];
                snprintf(msg, sizeof msg, "%zu session(s) of '%s' did not move; first: %s: %s", nfailed, host,
                         json_string_value(json_object_get(json_array_get(failed, 0), "name")),
                         json_string_value(json_object_get(json_array_get(failed, 0), "error")));
                json_object_set_new(j, "error", json_string(msg));
        }
        return http_reply_json(req, nfailed ? 409 : 200, j);
}

/* ---- the broker: a desktop through any member ---- */

typedef struct Proxy {
        RemoteStream *up; /* the owner's desktop, raw */
        bool raw;         /* the client speaks raw too (else WebSocket) */
        HttpServer *server;
} Proxy;

static void proxy_free(void *p) {
        Proxy *x = p;
        remote_stream_free(x->up);
        free(x);
}

static bool proxy_stop(void *userdata) {
        Proxy *x = userdata;
        return x->server && http_server_stopping(x->server);
}

typedef struct Pump {
        RemoteStream *up;
        int fd;
        Proxy *x;
} Pump;

static void *pump_main(void *arg) {
        Pump *p = arg;
        RelayEnd local = { .fd = p->fd },
                 up = { .fd = remote_stream_fd(p->up), .read = remote_stream_read, .write = remote_stream_write,
                        .userdata = p->up };
        (void) relay_run(&local, &up, NULL, 0, proxy_stop, p->x);
        shutdown(p->fd, SHUT_RDWR);
        return NULL;
}

static void proxy_bridge(HttpServer *srv, int fd, const void *extra, size_t extra_len, void *userdata) {
        Proxy *x = userdata;
        x->server = srv;
        RelayEnd up = { .fd = remote_stream_fd(x->up), .read = remote_stream_read, .write = remote_stream_write,
                        .userdata = x->up };
        if (x->raw) {
                RelayEnd client = { .fd = fd };
                (void) relay_run(&client, &up, extra, extra_len, proxy_stop, x);
                return;
        }
        /* WebSocket: the frames are undone by ws_bridge() into a socket pair
         * whose other end a thread pumps to the owner */
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                return;
        Pump p = { .up = x->up, .fd = sp[1], .x = x };
        pthread_t t;
        if (pthread_create(&t, NULL, pump_main, &p) != 0) {
                close(sp[0]);
                close(sp[1]);
                return;
        }
        (void) ws_bridge(fd, extra, extra_len, sp[0], proxy_stop, x);
        shutdown(sp[0], SHUT_RDWR);
        pthread_join(t, NULL);
        close(sp[0]);
        close(sp[1]);
}

static bool lists(const char *value, const char *token) {
        size_t n = strlen(token);
        for (const char *p = value; p && *p;) {
                p += strspn(p, " ,\t");
                const char *end = p + strcspn(p, ","), *e = end;
                while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                if ((size_t) (e - p) == n && !strncasecmp(p, token, n))
                        return true;
                p = end;
        }
        return false;
}

/* GET /v1/fleet/sessions/NAME/vnc: the session's desktop, proxied from the
 * member that runs it (a WebSocket for noVNC, or raw for 'roam session
 * connect'); the member asks the owner's console route with its fleet token. */
static int route_vnc(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        const char *rest = http_request_rest(req), *slash = strchr(rest, '/');
        char name[NAME_MAX_LEN + 1];
        if (!slash || (size_t) (slash - rest) > NAME_MAX_LEN || strcmp(slash + 1, "vnc"))
                return http_reply_error(req, 404, "expected /v1/fleet/sessions/NAME/vnc");
        memcpy(name, rest, (size_t) (slash - rest));
        name[slash - rest] = 0;
        if (!name_is_valid(name))
                return http_reply_error(req, 404, "session name '%s' is invalid", name);
        if (!is_admin_or_host(req)) {
                /* a user opens the desktops of their own sessions (the fleet's record says whose) */
                const Auth *au = auth_of(req);
                _cleanup_free_ char *user = NULL;
                uint64_t ram;
                if (fleet_get_meta(a->fleet, name, &user, &ram) < 0 || !au->user || strcmp(user, au->user)) {
                        err_clear();
                        return http_reply_error(req, 404, "session '%s' not found", name);
                }
        }
        const char *upgrade = http_request_header(req, "Upgrade");
        const char *connection = http_request_header(req, "Connection");
        const char *version = http_request_header(req, "Sec-WebSocket-Version");
        const char *key = http_request_header(req, "Sec-WebSocket-Key");
        bool raw = upgrade && lists(upgrade, VNC_RAW_PROTOCOL) && lists(connection, "upgrade");
        char accept[WS_ACCEPT_SIZE];
        if (!raw && (!upgrade || !lists(upgrade, "websocket") || !lists(connection, "upgrade") || !version ||
                     strcmp(version, "13") || ws_accept_key(key, accept) < 0))
                return http_reply_error(req, 400, "this route is a WebSocket (version 13) or a raw byte stream "
                                                  "(Upgrade: " VNC_RAW_PROTOCOL ")");
        _cleanup_free_ char *host = NULL;
        int64_t epoch;
        err_clear();
        int r = fleet_owner(a->fleet, name, &host, &epoch);
        if (r < 0)
                return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
        if (!host)
                return http_reply_error(req, 409, "session '%s' runs nowhere in the fleet now", name);
        if (fleet_owner_laptop(host))
                return http_reply_error(req, 409, "session '%s' is offline on %s: its desktop is there", name, host);
        FleetHost h;
        r = fleet_host(a->fleet, host, &h);
        if (r < 0)
                return http_reply_error(req, 502, "%s", err_message(r));
        _cleanup_free_ char *url = h.url;
        h.url = NULL;
        fleet_host_done(&h);
        _cleanup_free_ char *tok = NULL;
        r = peer_token(a, host, &tok);
        char path[NAME_MAX_LEN + 64];
        snprintf(path, sizeof path, "/v1/console/sessions/%s/vnc", name);
        Proxy *x = r >= 0 ? calloc(1, sizeof *x) : NULL;
        if (r >= 0 && !x)
                r = -ENOMEM;
        if (r >= 0)
                r = remote_stream_open(url, tok, NULL, path, VNC_RAW_PROTOCOL, &x->up);
        if (r < 0) {
                free(x);
                return http_reply_error(req, r == -ENOENT || r == -ESTALE ? 409 : 502,
                                        "the desktop of session '%s' on '%s': %s", name, host, err_message(r));
        }
        x->raw = raw;
        const char *protocols = http_request_header(req, "Sec-WebSocket-Protocol");
        const char *raw_headers[] = { "Upgrade", VNC_RAW_PROTOCOL, NULL };
        const char *ws_headers[] = { "Upgrade", "websocket", "Sec-WebSocket-Accept", accept,
                                     protocols && lists(protocols, "binary") ? "Sec-WebSocket-Protocol" : NULL,
                                     "binary", NULL };
        daemon_log(a->d, DAEMON_LOG_DEBUG, "fleet: desktop of session '%s' proxied from '%s'", name, host);
        return http_reply_upgrade(req, raw ? raw_headers : ws_headers, proxy_bridge, x, proxy_free);
}

/* POST /v1/fleet/local-sessions/NAME/adopt: a member hands a session here */
static int route_local_action(HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        if (!is_admin_or_host(req))
                return http_reply_error(req, 403, "only a fleet member hands sessions over");
        const char *rest = http_request_rest(req), *slash = strchr(rest, '/');
        char name[NAME_MAX_LEN + 1];
        if (!slash || (size_t) (slash - rest) > NAME_MAX_LEN || (strcmp(slash + 1, "adopt") && strcmp(slash + 1, "stage")))
                return http_reply_error(req, 404, "expected /v1/fleet/local-sessions/NAME/adopt or .../stage");
        memcpy(name, rest, (size_t) (slash - rest));
        name[slash - rest] = 0;
        if (!name_is_valid(name))
                return http_reply_error(req, 404, "session name '%s' is invalid", name);
        size_t len;
        const char *body = http_request_body(req, &len);
        _cleanup_free_ char *copy = body && len ? strndup(body, len) : NULL;
        if (!strcmp(slash + 1, "stage")) {
                _cleanup_(json_decrefp) json_t *j = copy ? json_loads(copy, JSON_REJECT_DUPLICATES, NULL) : NULL;
                const char *hex = json_string_value(json_object_get(j, "checkpoint"));
                RoamId id;
                if (!hex || id_from_hex(hex, &id) < 0)
                        return http_reply_error(req, 400, "expected {\"checkpoint\": HEX}");
                SessionStageResult st;
                err_clear();
                int r = session_stage_ram(a->h, name, &id, &st);
                if (r < 0)
                        return http_reply_error(req, api_fleet_status(r), "%s", err_message(r));
                return http_reply_json(req, 200, json_pack("{s:s, s:b, s:I}", "name", name, "full", st.full,
                                                           "chunks_written", (json_int_t) st.chunks_written));
        }
        return route_adopt(req, a, name, copy);
}

static const HttpRoute routes[] = {
        { "GET", "/v1/fleet/hosts", 0, route_hosts },
        { "GET", "/v1/fleet/sessions", 0, route_sessions },
        { "POST", "/v1/fleet/sessions", 64 * 1024, route_create },
        { "POST", "/v1/fleet/local-sessions", 64 * 1024, route_create_here },
        { "POST", "/v1/fleet/sessions/*", 64 * 1024, route_action },
        { "POST", "/v1/fleet/local-sessions/*", 64 * 1024, route_local_action },
        { "POST", "/v1/fleet/hosts/*", 0, route_drain },
        { "GET", "/v1/fleet/sessions/*", 0, route_vnc, HTTP_ROUTE_QUERY_TOKEN },
};

/* ---- the home's record ---- */

static int save_home(const char *home, const char *etcd, const char *name) {
        _cleanup_free_ char *path = path_join(home, FLEET_HOME_FILE);
        json_t *j = json_pack("{s:s, s:s}", "etcd", etcd, "name", name);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!path || !text) {
                free(text);
                return -ENOMEM;
        }
        int r = write_file_atomic(path, text, strlen(text), 0644);
        free(text);
        return r < 0 ? err_set(r, "cannot write '%s': %s", path, strerror(-r)) : 0;
}

int api_fleet_home(const char *home, char **ret_etcd, char **ret_name) {
        _cleanup_free_ char *path = path_join(home, FLEET_HOME_FILE), *text = NULL;
        if (!path)
                return -ENOMEM;
        size_t len;
        int r = read_full_file(path, 8192, &text, &len);
        if (r == -ENOENT)
                return err_set(r, "this home is in no fleet (start 'roam serve --etcd URL' on it first)");
        if (r < 0)
                return err_set(r, "cannot read '%s': %s", path, strerror(-r));
        _cleanup_(json_decrefp) json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        const char *etcd = json_string_value(json_object_get(j, "etcd"));
        const char *name = json_string_value(json_object_get(j, "name"));
        if (!etcd || !name || !fleet_name_is_valid(name))
                return err_set(-EBADMSG, "'%s' is malformed (remove it; 'roam serve --etcd' writes it again)", path);
        char *e = strdup(etcd), *n = strdup(name);
        if (!e || !n) {
                free(e);
                free(n);
                return -ENOMEM;
        }
        *ret_etcd = e;
        *ret_name = n;
        return 0;
}

/* ---- register ---- */

void api_fleet_free(ApiFleet *a) {
        if (!a)
                return;
        api_fleet_laptops_unregister(a);
        if (a->fleet)
                fleet_leave(a->fleet, a->serving);
        fleet_watchdog_stop(a->watchdog);
        free(a->token);
        free(a->home);
        free(a->etcd_urls);
        free(a);
}

int api_fleet_register(Daemon *d, SessionHost *h, const ApiFleetOptions *o, ApiFleet **ret) {
        char id[HOST_ID_LEN + 1];
        const char *name = o->name;
        if (!name) {
                int r = host_id_get(daemon_home(d), id);
                if (r < 0)
                        return r;
                name = id;
        }
        char url[300];
        if (o->url)
                snprintf(url, sizeof url, "%s", o->url);
        else {
                const char *l = o->listen ? o->listen : DAEMON_LISTEN_DEFAULT;
                if (!strncmp(l, "0.0.0.0:", 8) || !strncmp(l, "[::]:", 5))
                        return err_set(-EINVAL, "listening on '%s', this host needs --fleet-url URL: where the other "
                                       "members reach it",
                                       l);
                snprintf(url, sizeof url, "http://%s", l);
        }
        ApiFleet *a = calloc(1, sizeof *a);
        if (!a || !(a->home = strdup(daemon_home(d)))) {
                free(a);
                return -ENOMEM;
        }
        a->d = d;
        a->h = h;
        a->laptops = o->laptops;
        /* first: from here on this home's QEMUs die with this process */
        int rw = fleet_watchdog_start(a->home, (o->ttl_s ? o->ttl_s : FLEET_TTL_DEFAULT_S) * 500, &a->watchdog);
        if (rw < 0) {
                api_fleet_free(a);
                return rw;
        }
        FleetOptions fo = { .etcd = o->etcd, .name = name, .url = url, .ttl_s = o->ttl_s, .fence = on_fence, .alive = on_alive,
                            .load = on_load, .userdata = a };
        int r = (a->etcd_urls = strdup(o->etcd)) ? 0 : -ENOMEM;
        if (r >= 0)
                r = fleet_join(&fo, &a->fleet);
        if (r >= 0)
                r = save_home(a->home, o->etcd, name);
        if (r >= 0)
                r = publish_token(a);
        if (r >= 0)
                r = daemon_add_routes(d, routes, ELEMENTSOF(routes), a);
        a->checkpoint_s = o->checkpoint_s;
        if (r >= 0 && a->checkpoint_s > 0)
                r = daemon_add_worker(d, "fleet-checkpoint", checkpoint_worker, a, NULL);
        if (r >= 0)
                r = daemon_add_worker(d, "fleet-takeover", takeover_worker, a, NULL);
        if (r < 0) {
                api_fleet_free(a);
                return r;
        }
        session_host_set_guard(h, guard, a);
        api_fleet_laptops_register(a);
        a->serving = true;
        refuse_stale(a);
        daemon_log(d, DAEMON_LOG_INFO, "fleet: joined as '%s' (%s) through etcd %s", name, url, o->etcd);
        *ret = a;
        return 0;
}
