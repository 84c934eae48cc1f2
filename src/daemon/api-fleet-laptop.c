/* SPDX-License-Identifier: MIT */
/* A fleet member's front door for laptops (docs/fleet.md, "Laptops in the
 * fleet"): a laptop pairs with the fleet through any member and reaches every
 * session through the member it talks to.
 *
 *   - the laptop registry lives in etcd (laptop-fleet.h);
 *   - take offline: the member that runs the session gives it to the laptop
 *     in one etcd transaction (fleet_give_laptop(), through the session
 *     layer's give hook) before its row names the laptop; the owner record
 *     "laptop:ID" has no lease, so no member takes the session over while
 *     the laptop has it;
 *   - the session routes (api-session.h) ask route() first: a session another
 *     member runs is passed on to it (one hop; a laptop's signed request is
 *     checked here, nonce included, and passed on with the member's fleet
 *     token and the laptop's id, api-laptop.h); a session a laptop holds is
 *     answered from etcd (renew, the same grant again), and handed back
 *     (stage, move-in, finalize-in) on the member it came from when that one
 *     is alive and not drained, else on the one placement picks: that member
 *     takes it from the laptop in one etcd transaction (the laptop's epoch
 *     compared) and adopts the laptop's checkpoint.
 * Nonces stay per member: a laptop gets them from the member it talks to,
 * which checks them; members trust each other's fleet tokens (etcd is the
 * fleet's trust root). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/request-sig.h"
#include "../session/handoff.h"
#include "../session/host-id.h"
#include "../session/vm.h"
#include "../store/store.h"
#include "api-fleet-internal.h"
#include "api-session.h"
#include "auth.h"
#include "laptop-fleet.h"

#define LIST_MEMBERS_MAX 64

/* ---- who asks ---- */

/* The request carries this member's own fleet token: another member calls. */
static bool is_member(const HttpRequest *req, void *userdata) {
        ApiFleet *a = userdata;
        const char *tok = http_request_bearer(req);
        if (!a->token || !tok || strlen(tok) != strlen(a->token))
                return false;
        unsigned char diff = 0;
        for (size_t i = 0; tok[i]; i++)
                diff |= (unsigned char) (tok[i] ^ a->token[i]);
        return diff == 0;
}

static const char *self(ApiFleet *a) {
        return fleet_name(a->fleet);
}

static int replied(int r) {
        return r < 0 ? r : 1;
}

/* The session's user (fleet meta; NULL when the fleet keeps none) and RAM; a
 * user token sees only its own (404 as for none). 0, or replied (1). */
static int visible(ApiFleet *a, HttpRequest *req, const char *name, char **ret_user, uint64_t *ret_ram) {
        _cleanup_free_ char *user = NULL;
        uint64_t ram = 0;
        int r = fleet_get_meta(a->fleet, name, &user, &ram);
        if (r < 0 && r != -ENOENT)
                return replied(http_reply_error(req, 503, "%s", err_message(r)));
        err_clear();
        const Auth *au = auth_of(req);
        if (au && au->role == CATALOG_ROLE_USER && (!user || !au->user || strcmp(user, au->user)))
                return replied(http_reply_error(req, 404, "session '%s' not found", name));
        *ret_user = TAKE_PTR(user);
        *ret_ram = ram;
        return 0;
}

/* A session of the fleet as GET /v1/sessions shows one, for a session this
 * member has no row of that tells the truth (offline on a laptop, or without
 * an owner now). */
static json_t *synth(ApiFleet *a, const char *name, const char *user, const char *owner, int64_t epoch,
                     const char *state, uint64_t ram) {
        json_t *laptop = laptop_holder_json(daemon_catalog(a->d), name, owner);
        err_clear();
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:n, s:I, s:I, s:I, s:n, s:b, s:n, s:n}", "name", name,
                         "user", user ? user : "", "image", "", "state", state, "owner", owner, "laptop",
                         laptop ? laptop : json_null(), "epoch", (json_int_t) epoch, "last_checkpoint",
                         "checkpoints", (json_int_t) 0, "ram_mib", (json_int_t) ram, "updated", (json_int_t) 0,
                         "agent", "profile", false, "readiness", "host");
}

/* ---- the session layer's give hook: take offline ---- */

static int give(void *userdata, const char *session, int64_t epoch, const char *holder, int64_t lease_until) {
        ApiFleet *a = userdata;
        const char *laptop = fleet_owner_laptop(holder);
        if (!laptop)
                return err_set(-EINVAL, "'%s' is not a laptop: a fleet member gives sessions to laptops only", holder);
        int r = fleet_give_laptop(a->fleet, session, epoch, laptop, lease_until);
        if (r >= 0)
                daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' given to laptop %s at epoch %lld", session,
                           laptop, (long long) epoch + 1);
        return r;
}

/* ---- the session layer's take hook: reclaim ---- */

static int take(void *userdata, const char *session, const char *holder, int64_t epoch) {
        ApiFleet *a = userdata;
        const char *laptop = fleet_owner_laptop(holder);
        if (!laptop)
                return err_set(-EREMOTE, "session '%s' is with '%s' in this host's row: the fleet decides who runs "
                               "it (see GET /v1/fleet/sessions)",
                               session, holder);
        int r = fleet_take_from_laptop(a->fleet, session, laptop, epoch, epoch + 1);
        if (r >= 0)
                daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' reclaimed from laptop %s at epoch %lld",
                           session, laptop, (long long) epoch + 1);
        return r;
}

int api_fleet_reclaim_here(ApiFleet *a, const char *name, const char *laptop, int64_t epoch, json_t **ret) {
        _cleanup_free_ char *user = NULL;
        uint64_t ram;
        int r = fleet_get_meta(a->fleet, name, &user, &ram);
        if (r < 0)
                return r;
        char ref[REF_NAME_MAX_LEN + 1], hex[ID_HEX_SIZE];
        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user, name);
        RoamId id;
        r = store_ref_get(daemon_store(a->d), ref, &id);
        if (r < 0)
                return err_set(r, "session '%s' has no checkpoint in the fleet's store to reclaim from ('%s')", name, ref);
        r = fleet_take_from_laptop(a->fleet, name, laptop, epoch, epoch + 1);
        if (r < 0)
                return r;
        id_to_hex(&id, hex);
        r = api_fleet_adopt_here(a, name, hex, epoch + 1);
        if (r < 0) {
                char saved[512];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                (void) fleet_drop(a->fleet, name, epoch + 1); /* another member restarts it from there */
                return err_set(r, "%s (the fleet has session '%s' at epoch %lld; another member restarts it)", saved,
                               name, (long long) epoch + 1);
        }
        daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' reclaimed from laptop %s at epoch %lld, from checkpoint "
                   "%.12s", name, laptop, (long long) epoch + 1, hex);
        *ret = json_pack("{s:s, s:I, s:s, s:s}", "checkpoint", hex, "epoch", (json_int_t) epoch + 1, "lost_owner",
                         laptop, "host", self(a));
        return *ret ? 0 : -ENOMEM;
}

/* ---- a session another member runs: one hop ---- */

static int forward(ApiFleet *a, HttpRequest *req, const char *name, const char *action, const char *host,
                   int64_t epoch) {
        if (api_laptop_from_member(a->laptops, req) || http_request_query(req, "hop"))
                return replied(http_reply_error(req, 409, "session '%s' is owned by fleet member '%s' now, not by "
                                                "this one (it moved meanwhile: ask again)",
                                                name, host));
        const char *laptop = NULL;
        LaptopRecord l;
        if (!strcmp(action, "offline")) {
                /* checked here (signature, nonce, revoked), passed on by id */
                int r = api_laptop_verify(a->laptops, req, &l);
                if (r == -ENOENT)
                        return replied(http_reply_error(req, 401, "take offline needs a paired laptop's signed "
                                                        "request (roam serve --role laptop pairs itself)"));
                if (r != 0)
                        return replied(r);
                laptop = l.id;
        } else if (*action && strcmp(action, "precopy") &&
                   (http_request_header(req, REQSIG_HDR_SIGNATURE) || http_request_trailer(req, REQSIG_HDR_SIGNATURE)))
                /* renew, move-in, finalize-in, stage: a laptop that does not hold it */
                return replied(http_reply_error(req, 409, "session '%s' runs on fleet member '%s' at epoch %lld, not "
                                                "on a laptop: a hand-over from a laptop is stale",
                                                name, host, (long long) epoch));
        char path[NAME_MAX_LEN + 128];
        const char *rate = http_request_query(req, "rate");
        uint64_t rv = 0;
        if (rate && parse_u64(rate, &rv) < 0)
                return replied(http_reply_error(req, 400, "rate must be a number of bytes/s"));
        snprintf(path, sizeof path, "/v1/sessions/%s%s%s?hop=1", name, *action ? "/" : "", action);
        if (rate)
                snprintf(path + strlen(path), sizeof path - strlen(path), "&rate=%llu", (unsigned long long) rv);
        size_t len;
        const char *body = http_request_body(req, &len);
        _cleanup_free_ char *copy = body && len ? strndup(body, len) : NULL;
        /* a take offline's remainder does not come through a hop with the
         * grant (its pack may be larger than a member's relayed answer): the
         * member is asked for the grant alone, the laptop then pulls the
         * remainder from this member (the same store) */
        _cleanup_(json_decrefp) json_t *j = copy ? json_loads(copy, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (json_is_object(j) && json_object_get(j, "pack")) {
                json_object_del(j, "pack");
                free(copy);
                copy = json_dumps(j, JSON_COMPACT);
                if (!copy)
                        return replied(-ENOMEM);
        }
        RemoteResponse resp = { 0 };
        err_clear();
        int r = api_fleet_peer_request(a, host, *action ? "POST" : "GET", path, copy, laptop, &resp);
        if (r < 0)
                return replied(http_reply_error(req, 502, "session '%s' runs on fleet member '%s': %s", name, host,
                                                err_message(r)));
        r = api_fleet_relay_reply(req, host, &resp);
        remote_response_done(&resp);
        return replied(r);
}

/* ---- a session a laptop holds ---- */

/* Where a session a laptop hands back lands: on the member that gave it,
 * when it is alive and not drained; else where placement puts it. */
static int landing(ApiFleet *a, const char *name, uint64_t ram, char **ret) {
        FleetGrant g;
        FleetHost h;
        _cleanup_free_ char *drained = NULL;
        if (fleet_grant(a->fleet, name, &g) >= 0 && fleet_host(a->fleet, g.from, &h) >= 0) {
                fleet_host_done(&h);
                if (fleet_record_get(a->fleet, "draining", g.from, &drained) == -ENOENT) {
                        err_clear();
                        char *s = strdup(g.from);
                        if (!s)
                                return -ENOMEM;
                        *ret = s;
                        return 0;
                }
        }
        err_clear();
        return fleet_place(a->fleet, ram ? ram : VM_RAM_MIB_DEFAULT, NULL, ret);
}

/* The same grant again (the laptop did not get the answer). */
static int offline_again(ApiFleet *a, HttpRequest *req, const char *name, const char *user, const LaptopRecord *l) {
        FleetGrant g;
        err_clear();
        int r = fleet_grant(a->fleet, name, &g);
        RoamId id;
        char ref[REF_NAME_MAX_LEN + 1], hex[ID_HEX_SIZE], server[HOST_ID_LEN + 1] = "";
        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user ? user : l->user, name);
        if (r >= 0)
                r = store_ref_get(daemon_store(a->d), ref, &id);
        if (r < 0)
                return replied(http_reply_error(req, 500, "the grant of session '%s': %s", name, err_message(r)));
        (void) host_id_get(daemon_home(a->d), server);
        err_clear();
        daemon_log(a->d, DAEMON_LOG_INFO, "session '%s' stays offline on laptop '%s' (id %s) at epoch %lld", name,
                   l->name, l->id, (long long) g.epoch);
        return replied(http_reply_json(req, 200,
                                       json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:s, s:s}", "checkpoint",
                                                 id_to_hex(&id, hex), "user", user ? user : l->user, "epoch",
                                                 (json_int_t) g.epoch, "lease_until", (json_int_t) g.lease_until,
                                                 "pause_ms", (json_int_t) 0, "again", true, "laptop", l->id,
                                                 "server_id", server)));
}

static int renew(ApiFleet *a, HttpRequest *req, const char *name, const char *laptop, int64_t epoch,
                 int64_t lease_s) {
        int64_t until = lease_s > 0 ? (int64_t) time(NULL) + lease_s : 0;
        err_clear();
        int r = fleet_grant_renew(a->fleet, name, laptop, epoch, until);
        if (r < 0)
                return replied(http_reply_error(req, api_fleet_status(r), "%s", err_message(r)));
        return replied(http_reply_json(req, 200, json_pack("{s:s, s:I, s:I}", "name", name, "epoch", (json_int_t) epoch,
                                                           "lease_until", (json_int_t) until)));
}

static int stage_here(ApiFleet *a, HttpRequest *req, const char *name) {
        size_t len;
        const void *body = http_request_body(req, &len);
        _cleanup_(json_decrefp) json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *hex = json_string_value(json_object_get(j, "checkpoint"));
        RoamId id;
        if (!json_is_object(j) || !hex || id_from_hex(hex, &id) < 0)
                return replied(http_reply_error(req, 400, "expected {\"checkpoint\": HEX}"));
        SessionStageResult st;
        err_clear();
        int r = session_stage_ram(a->h, name, &id, &st);
        if (r < 0)
                return replied(http_reply_error(req, r == -ENOENT ? 404 : 409, "%s", err_message(r)));
        return replied(http_reply_json(req, 200,
                                       json_pack("{s:s, s:b, s:I, s:I, s:s}", "name", name, "full", st.full,
                                                 "chunks_written", (json_int_t) st.chunks_written, "ms",
                                                 (json_int_t) (st.seconds * 1000), "host", self(a))));
}

/* The fleet's owner record from the laptop to this member first; then the
 * laptop's checkpoint is the session's latest (a takeover restores it if
 * this member cannot) and is adopted here. */
static int take_here(ApiFleet *a, HttpRequest *req, const char *name, const char *user, const char *laptop,
                     int64_t epoch, bool powered_off) {
        size_t len;
        const void *body = http_request_body(req, &len);
        Handover ho;
        if (parse_handover(body, len, powered_off, &ho) < 0)
                return replied(http_reply_error(req, 400, "expected {\"checkpoint\": HEX, \"epoch\": N, "
                                                          "\"from_epoch\": N}"));
        int64_t from = ho.from_epoch >= 0 ? ho.from_epoch : epoch;
        err_clear();
        int r = fleet_take_from_laptop(a->fleet, name, laptop, from, ho.epoch);
        if (r < 0)
                return replied(http_reply_error(req, api_fleet_status(r), "%s (the laptop's state is kept as checkpoint "
                                                "%.12s)",
                                                err_message(r), ho.checkpoint));
        uint64_t t0 = now_ns();
        RoamId id;
        char ref[REF_NAME_MAX_LEN + 1];
        if (user && id_from_hex(ho.checkpoint, &id) >= 0) {
                snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user, name);
                if (store_ref_set(daemon_store(a->d), ref, &id, NULL) < 0)
                        daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: ref '%s': %s", ref, err_message(-EIO));
        }
        err_clear();
        FinalizeInResult f = { 0 };
        if (powered_off) {
                r = api_fleet_mark_stale_away(a, name, ho.epoch);
                if (r >= 0)
                        r = handoff_finalize_in(a->h, name, ho.checkpoint, ho.epoch, -1, &f);
        } else
                r = api_fleet_adopt_here(a, name, ho.checkpoint, ho.epoch);
        if (r < 0) {
                char saved[768];
                snprintf(saved, sizeof saved, "%s", err_message(r));
                bool adopted = powered_off && f.adopted;
                if (!adopted)
                        (void) fleet_drop(a->fleet, name, ho.epoch); /* another member restarts it from there */
                err_clear();
                daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: session '%s' from laptop %s: %s", name, laptop, saved);
                return replied(http_reply_error(req, 500, "%s (the fleet has session '%s' at epoch %lld%s)", saved,
                                                name, (long long) ho.epoch,
                                                adopted ? "" : "; another member restarts it from the laptop's checkpoint"));
        }
        daemon_log(a->d, DAEMON_LOG_INFO, "fleet: session '%s' taken %s from laptop %s at epoch %lld (%llu ms)", name,
                   powered_off ? "online powered off" : "online", laptop, (long long) ho.epoch,
                   (unsigned long long) ((now_ns() - t0) / 1000000));
        if (!powered_off)
                return replied(http_reply_json(req, 200,
                                               json_pack("{s:s, s:s, s:I, s:I, s:b, s:b, s:s}", "name", name, "state",
                                                         "running", "epoch", (json_int_t) ho.epoch, "restore_ns",
                                                         (json_int_t) (now_ns() - t0), "ram_staged", false,
                                                         "qemu_waiting", false, "host", self(a))));
        char hex[ID_HEX_SIZE], phex[ID_HEX_SIZE];
        return replied(http_reply_json(
                req, 200,
                json_pack("{s:s, s:s, s:I, s:s, s:b, s:s, s:I, s:s, s:s?, s:s}", "name", name, "state", "stopped",
                          "epoch", (json_int_t) ho.epoch, "policy", vm_policy_to_string(f.finalize.policy), "reset",
                          f.finalize.reset, "logoff", f.finalize.logoff, "checkpoint_seq",
                          (json_int_t) f.checkpoint.seq, "checkpoint", id_to_hex(&f.checkpoint.id, hex), "profile",
                          f.finalize.profile_saved ? id_to_hex(&f.finalize.profile, phex) : NULL, "host", self(a))));
}

static int laptop_held(ApiFleet *a, HttpRequest *req, const char *name, const char *action, const char *laptop,
                       int64_t epoch, const char *user, uint64_t ram, int64_t lease_s) {
        char owner[sizeof FLEET_LAPTOP_OWNER_PREFIX + FLEET_LAPTOP_ID_LEN];
        snprintf(owner, sizeof owner, FLEET_LAPTOP_OWNER_PREFIX "%s", laptop);
        if (!*action)
                return replied(http_reply_json(req, 200, synth(a, name, user, owner, epoch, "away", ram)));
        char who[384], what[512];
        laptop_owner_describe(daemon_catalog(a->d), name, owner, false, who, sizeof who);
        err_clear();
        snprintf(what, sizeof what, "session '%s' is offline on %s", name, who);
        bool offline = !strcmp(action, "offline"), is_renew = !strcmp(action, "renew"),
             move_in = !strcmp(action, "move-in"), finalize_in = !strcmp(action, "finalize-in"),
             stage = !strcmp(action, "stage");
        if (!offline && !is_renew && !move_in && !finalize_in && !stage)
                return replied(http_reply_error(req, 409, "%s", what));
        bool member = api_laptop_from_member(a->laptops, req);
        LaptopRecord l;
        int r = api_laptop_verify(a->laptops, req, &l);
        if (r == -ENOENT)
                return replied(http_reply_error(req, offline ? 401 : 403,
                                                "%s; only that laptop hands it back (with a signed request)", what));
        if (r != 0)
                return replied(r);
        if (strcmp(l.id, laptop))
                return replied(http_reply_error(req, 409, "%s; reclaim it from the console", what));
        if (offline)
                return offline_again(a, req, name, user, &l);
        if (is_renew)
                return renew(a, req, name, laptop, epoch, lease_s);
        /* stage, move-in, finalize-in: on the member it lands on (a member
         * that passes a request on chose this one: no second hop) */
        _cleanup_free_ char *to = NULL;
        err_clear();
        r = member ? ((to = strdup(self(a))) ? 0 : -ENOMEM) : landing(a, name, ram, &to);
        if (r < 0)
                return replied(http_reply_error(req, api_fleet_status(r), "%s", err_message(r)));
        if (strcmp(to, self(a))) {
                char path[NAME_MAX_LEN + 64];
                snprintf(path, sizeof path, "/v1/sessions/%s/%s", name, action);
                size_t len;
                const char *body = http_request_body(req, &len);
                _cleanup_free_ char *copy = body && len ? strndup(body, len) : NULL;
                RemoteResponse resp = { 0 };
                r = api_fleet_peer_request(a, to, "POST", path, copy, l.id, &resp);
                if (r < 0)
                        return replied(http_reply_error(req, 502, "fleet member '%s' (where session '%s' lands): %s",
                                                        to, name, err_message(r)));
                r = api_fleet_relay_reply(req, to, &resp);
                remote_response_done(&resp);
                return replied(r);
        }
        if (stage)
                return stage_here(a, req, name);
        return take_here(a, req, name, user, laptop, epoch, finalize_in);
}

/* ---- the front door ---- */

static int route(void *userdata, HttpRequest *req, const char *name, const char *action, int64_t lease_s) {
        ApiFleet *a = userdata;
        bool get = !*action;
        if (!strcmp(action, "move-in")) {
                /* a move-in's remainder is not passed on between members: the
                 * sender pushes it first (pack/put) and moves in without it */
                size_t len;
                const char *body = http_request_body(req, &len);
                if (body && memchr(body, '\n', len))
                        return replied(http_reply_error(req, 412, "a fleet member takes the remainder of a move-in "
                                                        "on its own (push it, then move in)"));
        }
        if (get && http_request_query(req, "hop"))
                return 0; /* a member asks what this one has */
        _cleanup_free_ char *host = NULL;
        int64_t epoch;
        err_clear();
        int r = fleet_owner(a->fleet, name, &host, &epoch);
        if (r < 0) {
                if (get) {
                        err_clear();
                        return 0; /* what this member knows */
                }
                return replied(http_reply_error(req, api_fleet_status(r), "%s", err_message(r)));
        }
        if (epoch < 0 || (host && !strcmp(host, self(a))))
                return 0; /* not in the fleet (yet), or this member's own */
        _cleanup_free_ char *user = NULL;
        uint64_t ram = 0;
        r = visible(a, req, name, &user, &ram);
        if (r != 0)
                return r;
        const char *laptop = fleet_owner_laptop(host);
        if (laptop)
                return laptop_held(a, req, name, action, laptop, epoch, user, ram, lease_s);
        if (host)
                return forward(a, req, name, action, host, epoch);
        /* no owner now: its member is gone and a takeover is due */
        if (get)
                return replied(http_reply_json(req, 200, synth(a, name, user, SESSION_OWNER_LOCAL, epoch, "stopped", ram)));
        return replied(http_reply_error(req, 409, "session '%s' has no owner in the fleet now (epoch %lld; its member "
                                        "is gone and another one restarts it): try again in a few seconds",
                                        name, (long long) epoch));
}

/* ---- the list: the fleet's sessions ---- */

typedef struct MemberList {
        char host[FLEET_NAME_MAX + 1];
        json_t *sessions; /* NULL: it did not answer */
} MemberList;

static json_t *by_name(json_t *arr, const char *name) {
        size_t i;
        json_t *s;
        json_array_foreach(arr, i, s) {
                const char *n = json_string_value(json_object_get(s, "name"));
                if (n && !strcmp(n, name))
                        return s;
        }
        return NULL;
}

static json_t *member_sessions(ApiFleet *a, MemberList *m, size_t *n, const char *host) {
        for (size_t i = 0; i < *n; i++)
                if (!strcmp(m[i].host, host))
                        return m[i].sessions;
        if (*n == LIST_MEMBERS_MAX)
                return NULL;
        MemberList *x = &m[(*n)++];
        snprintf(x->host, sizeof x->host, "%s", host);
        RemoteResponse resp = { 0 };
        if (api_fleet_peer_request(a, host, "GET", "/v1/sessions?local=1", NULL, NULL, &resp) >= 0 &&
            resp.status == 200) {
                json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
                json_t *s = json_object_get(j, "sessions");
                x->sessions = json_is_array(s) ? json_incref(s) : NULL;
                json_decref(j);
        }
        err_clear();
        remote_response_done(&resp);
        return x->sessions;
}

static json_t *list(void *userdata, HttpRequest *req, json_t *local) {
        ApiFleet *a = userdata;
        FleetSessionRecord *ss = NULL;
        size_t n = 0;
        if (fleet_sessions(a->fleet, &ss, &n) < 0) {
                err_clear();
                return local; /* etcd does not answer: what this member has */
        }
        const Auth *au = auth_of(req);
        const char *only = au && au->role == CATALOG_ROLE_USER ? au->user : NULL;
        json_t *out = json_array();
        MemberList members[LIST_MEMBERS_MAX];
        size_t nm = 0;
        for (size_t i = 0; out && i < n; i++) {
                _cleanup_free_ char *user = NULL;
                uint64_t ram = 0;
                if (fleet_get_meta(a->fleet, ss[i].name, &user, &ram) < 0)
                        err_clear();
                if (only && (!user || strcmp(user, only)))
                        continue;
                const char *host = ss[i].host;
                json_t *s = NULL;
                if (host && !strcmp(host, self(a)))
                        s = json_incref(by_name(local, ss[i].name));
                else if (host && !fleet_owner_laptop(host))
                        s = json_incref(by_name(member_sessions(a, members, &nm, host), ss[i].name));
                if (!s)
                        s = synth(a, ss[i].name, user, host ? host : SESSION_OWNER_LOCAL, ss[i].epoch,
                                  fleet_owner_laptop(host) ? "away" : host ? "unknown" : "stopped", ram);
                if (s && (!host || fleet_owner_laptop(host)))
                        json_object_set_new(s, "host", json_null());
                else if (s)
                        json_object_set_new(s, "host", json_string(host));
                if (s)
                        json_array_append_new(out, s);
        }
        /* sessions of this member the fleet has no record of (yet) */
        size_t i;
        json_t *s;
        json_array_foreach(local, i, s) {
                const char *nm2 = json_string_value(json_object_get(s, "name"));
                bool known = false;
                for (size_t k = 0; nm2 && k < n && !known; k++)
                        known = !strcmp(ss[k].name, nm2);
                if (!known && out)
                        json_array_append(out, s);
        }
        for (size_t k = 0; k < nm; k++)
                json_decref(members[k].sessions);
        fleet_sessions_free(ss, n);
        if (!out)
                return local;
        json_decref(local);
        return out;
}

static const ApiSessionFleet hooks = { .route = route, .list = list };
static ApiSessionFleet hooks_bound;

void api_fleet_laptops_register(ApiFleet *a) {
        laptop_fleet_use(daemon_catalog(a->d), a->fleet);
        session_host_set_give(a->h, give, a);
        session_host_set_take(a->h, take, a);
        if (a->laptops)
                api_laptop_set_member_check(a->laptops, is_member, a);
        hooks_bound = hooks;
        hooks_bound.userdata = a;
        api_session_set_fleet(&hooks_bound);
}

void api_fleet_laptops_unregister(ApiFleet *a) {
        if (!a->fleet)
                return;
        api_session_set_fleet(NULL);
        if (a->laptops)
                api_laptop_set_member_check(a->laptops, NULL, NULL);
        if (a->h) {
                session_host_set_give(a->h, NULL, NULL);
                session_host_set_take(a->h, NULL, NULL);
        }
        laptop_fleet_use(daemon_catalog(a->d), NULL);
}
