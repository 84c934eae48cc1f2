/* SPDX-License-Identifier: MIT */
#pragma once

/* A fleet: roam servers that share a store (Ceph RADOS) and keep membership
 * and session ownership in etcd (docs/fleet.md).
 *
 * Keys (etcd v3, one cluster per fleet):
 *
 *   /roam/hosts/<host>       {"name","url","cores","ram_mib","ram_free_mib",
 *                            "sessions","session_ram_mib"}: a member, under
 *                            its lease (gone when the host is)
 *   /roam/owners/<session>   {"host":H,"epoch":E}: who runs a session, under
 *                            the owner's lease
 *   /roam/epochs/<session>   "E": the session's epoch, no lease (outlives
 *                            every owner, so an old owner is told apart)
 *   /roam/owners/<session>   {"host":"laptop:ID","epoch":E}: a session offline
 *                            on a laptop, no lease (it outlives every member)
 *   /roam/grants/<session>   {"laptop","epoch","granted","lease_until","from"}:
 *                            that laptop's offline grant, no lease
 *   /roam/laptops/<id>       a paired laptop (src/daemon/laptop-fleet.c)
 *
 * Every change of owner is one etcd transaction that compares the epoch (and
 * the old owner record) and writes epoch + 1 and the new owner together, so
 * exactly one host owns a session at an epoch. An owner record dies with its
 * host's lease; only then may another host take the session over (at epoch +
 * 1), and a host stops ("fences") its own sessions before its lease can have
 * expired: the keeper renews the lease every FLEET_TTL/5 s and fences once
 * the last renewal that etcd answered was sent FLEET_TTL/2 s ago. When etcd
 * answers again and the lease is still alive, nothing was lost (no other host
 * could take over): the host is alive again with its owner records. A host
 * whose lease expired gets a new one but none of its old owner records: the
 * sessions it had are refused here (fleet_check()) unless nobody took them
 * over meanwhile, at their old epoch.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLEET_TTL_DEFAULT_S 10
#define FLEET_NAME_MAX 63
#define FLEET_PREFIX "/roam/"

typedef struct Fleet Fleet;

typedef struct FleetLoad {
        unsigned sessions;        /* sessions that run here */
        uint64_t session_ram_mib; /* the RAM they were given */
} FleetLoad;

typedef struct FleetOptions {
        const char *etcd; /* client URLs, comma-separated */
        const char *name; /* this host's name (fleet_name_is_valid()) */
        const char *url;  /* where the members reach its API */
        unsigned ttl_s;   /* 0: FLEET_TTL_DEFAULT_S */
        /* observe only: no lease, no keeper, no host record (a CLI command
         * on a member's home reading the fleet) */
        bool observe;
        /* Called from the keeper thread when the lease is lost or may be:
         * must stop every session of this host before it returns. */
        void (*fence)(void *userdata, const char *why);
        /* Called from the keeper thread after each renewal etcd answered
         * with the lease alive (may be NULL; must not block). */
        void (*alive)(void *userdata);
        /* This host's load for its record (keeper thread). */
        void (*load)(void *userdata, FleetLoad *ret);
        void *userdata;
} FleetOptions;

typedef struct FleetHost {
        char *name, *url;
        unsigned cores, sessions;
        uint64_t ram_mib, ram_free_mib, session_ram_mib;
        int64_t lease;
} FleetHost;

bool fleet_name_is_valid(const char *name);

/* A session offline on a laptop is owned by "laptop:ID" (ID: the laptop's
 * key fingerprint, FLEET_LAPTOP_ID_LEN lowercase hex digits), the owner
 * string of the session layer. The ID, or NULL for any other owner. */
#define FLEET_LAPTOP_OWNER_PREFIX "laptop:"
#define FLEET_LAPTOP_ID_LEN 32
const char *fleet_owner_laptop(const char *owner);

/* Joins: checks that etcd answers (-EHOSTUNREACH with detail otherwise),
 * takes a lease, registers this host (-EEXIST when a live host has the
 * name) and starts the keeper thread. Caller frees with fleet_leave(). */
int fleet_join(const FleetOptions *o, Fleet **ret);
/* Stops the keeper; when fence_first, calls fence() and then revokes the
 * lease (the owner records go at once); else the lease just runs out. */
void fleet_leave(Fleet *f, bool fence_first);
static inline void fleet_leavep(Fleet **f) {
        if (*f)
                fleet_leave(*f, false);
}

const char *fleet_name(const Fleet *f);
const char *fleet_etcd(const Fleet *f);
/* True while this host's lease is known alive (not fenced). */
bool fleet_alive(Fleet *f);

/* Every member, sorted by name. Caller frees with fleet_hosts_free(). */
int fleet_hosts(Fleet *f, FleetHost **ret, size_t *ret_n);
void fleet_hosts_free(FleetHost *h, size_t n);
/* One member; -ENOENT (with detail) when there is none of that name. */
int fleet_host(Fleet *f, const char *name, FleetHost *ret);
void fleet_host_done(FleetHost *h);

/* Who owns session: *ret_host (caller frees; NULL when no host does: a new
 * session, or its owner's lease ran out; "laptop:ID" when a laptop holds it) and the epoch (-1: the fleet has
 * no record of the session). */
int fleet_owner(Fleet *f, const char *session, char **ret_host, int64_t *ret_epoch);

typedef enum FleetClaim {
        FLEET_CLAIM_NEW,      /* a session the fleet has no record of (-EEXIST otherwise), at epoch */
        FLEET_CLAIM_BACK,     /* this host's own session, at epoch, which no host owns now
                               * (its lease lapsed and nobody took it over) */
        FLEET_CLAIM_TAKEOVER, /* a session at epoch that no host owns now, at epoch + 1 */
} FleetClaim;

/* Makes this host the owner of session (see FleetClaim); -ESTALE (with
 * detail) when another host owns it or its epoch is not epoch. *ret_epoch
 * (may be NULL): the epoch it is owned at now. */
int fleet_claim(Fleet *f, const char *session, int64_t epoch, FleetClaim how, int64_t *ret_epoch);
/* Hands session (owned here at epoch) to member to_host at epoch + 1 under
 * that host's lease. -ESTALE when this host is not the owner at epoch. */
int fleet_handover(Fleet *f, const char *session, int64_t epoch, const char *to_host, int64_t *ret_epoch);
/* Takes session back from member from, which owns it at epoch (a move whose
 * target failed): this host owns it at epoch + 1. -ESTALE otherwise. */
int fleet_claim_from(Fleet *f, const char *session, const char *from, int64_t epoch, int64_t *ret_epoch);
/* Gives up this host's ownership at epoch and keeps the epoch (a takeover
 * whose restore failed: another member may try). */
int fleet_drop(Fleet *f, const char *session, int64_t epoch);
/* What the fleet keeps of a session for a takeover, without a lease:
 * /roam/meta/<session> {"user":U,"ram_mib":N}. */
int fleet_set_meta(Fleet *f, const char *session, const char *user, uint64_t ram_mib);
/* *ret_user (caller frees); -ENOENT when there is none. */
int fleet_get_meta(Fleet *f, const char *session, char **ret_user, uint64_t *ret_ram_mib);
/* Forgets session (removed; owned here at epoch): its owner record, epoch
 * and meta, in one transaction. */
int fleet_release(Fleet *f, const char *session, int64_t epoch);
/* 0 when this host owns session at epoch and its lease is alive; -EREMOTE
 * (with detail naming the owner) otherwise; -EHOSTUNREACH when etcd does
 * not answer; -ENOLINK when this host is fenced. An observer checks the
 * record alone. */
int fleet_check(Fleet *f, const char *session, int64_t epoch);

/* ---- laptops ---- */

typedef struct FleetGrant {
        char laptop[FLEET_LAPTOP_ID_LEN + 1];
        int64_t epoch;       /* the laptop's */
        int64_t granted;     /* unix time */
        int64_t lease_until; /* unix time, 0 = none */
        char from[FLEET_NAME_MAX + 1]; /* the member that gave it */
} FleetGrant;

/* Gives session (owned here at epoch) to laptop at epoch + 1, with its grant,
 * in one transaction: take offline. -ESTALE when this host is not the owner
 * at epoch, -ENOLINK when it is fenced. */
int fleet_give_laptop(Fleet *f, const char *session, int64_t epoch, const char *laptop, int64_t lease_until);
/* The offline grant of session; -ENOENT when no laptop holds it. */
int fleet_grant(Fleet *f, const char *session, FleetGrant *ret);
/* A new lease end; -ESTALE unless laptop holds session at epoch. */
int fleet_grant_renew(Fleet *f, const char *session, const char *laptop, int64_t epoch, int64_t lease_until);
/* Take online: this host owns session at epoch (> from_epoch) if laptop
 * holds it at from_epoch, and the grant goes, in one transaction; -ESTALE
 * (naming the owner) otherwise. */
int fleet_take_from_laptop(Fleet *f, const char *session, const char *laptop, int64_t from_epoch, int64_t epoch);
/* Pure (fuzzed by fuzz-etcd): a grant record's value. -EBADMSG. */
int fleet_grant_parse(const char *value, size_t len, FleetGrant *ret);

/* Records without a lease under /roam/KIND/NAME (KIND and NAME per
 * fleet_name_is_valid()): get (-ENOENT; caller frees), list (every value,
 * caller frees with fleet_record_list_free()), and put, which creates
 * (old NULL: -EEXIST when there is one) or replaces the value old (-ESTALE
 * when it changed meanwhile). */
int fleet_record_get(Fleet *f, const char *kind, const char *name, char **ret);
int fleet_record_list(Fleet *f, const char *kind, char ***ret, size_t *ret_n);
void fleet_record_list_free(char **v, size_t n);
int fleet_record_put(Fleet *f, const char *kind, const char *name, const char *old, const char *value);

/* ---- placement ---- */

typedef struct FleetSessionRecord {
        char *name;
        char *host; /* NULL: no owner now (its host's lease ran out); "laptop:ID": offline */
        int64_t epoch;
} FleetSessionRecord;

/* Every session the fleet knows, sorted by name. Caller frees with
 * fleet_sessions_free(). */
int fleet_sessions(Fleet *f, FleetSessionRecord **ret, size_t *ret_n);
void fleet_sessions_free(FleetSessionRecord *s, size_t n);

/* Picks a member for a new session of ram_mib (pure: the members and how
 * many sessions each owns, counted from the owner records). A member fits
 * when the RAM not given to its sessions yet, and its MemAvailable, both hold
 * ram_mib plus FLEET_RAM_RESERVE_MIB; among those the one with the fewest
 * sessions per core wins, then the most free RAM, then the name. -ENOSPC
 * (with detail) when none fits. Returns the index. */
#define FLEET_RAM_RESERVE_MIB 256
int fleet_place_pick(const FleetHost *hosts, const unsigned *owned, size_t n, uint64_t ram_mib);
/* fleet_place_pick() over the fleet as etcd had it at most
 * FLEET_PLACE_VIEW_MS ago (one range of the owner records then, not one per
 * pick; this member's own picks since count at once), without the members
 * being drained and without except (may be NULL); *ret_host (caller frees)
 * the member's name. */
#define FLEET_PLACE_VIEW_MS 1000
int fleet_place(Fleet *f, uint64_t ram_mib, const char *except, char **ret_host);
/* A member being drained gets no new sessions: /roam/draining/<host>, no
 * lease (it outlives a restart), until undone. */
int fleet_set_draining(Fleet *f, const char *host, bool draining);
