/* SPDX-License-Identifier: MIT */
#pragma once

/* What api-fleet.c (membership, moves, takeover, the broker) and
 * api-fleet-laptop.c (the fleet's front door for laptops) share. Private to
 * src/daemon/. */

#include <stdbool.h>
#include <jansson.h>
#include <stdint.h>

#include "../fleet/fleet.h"
#include "../sync/remote.h"
#include "api-fleet.h"
#include "api-laptop.h"

#define FLEET_PEER_MAX_RESPONSE (1u << 20)

struct ApiFleet {
        Daemon *d;
        SessionHost *h;
        Fleet *fleet;
        ApiLaptop *laptops; /* NULL: no laptop routes */
        char *home;
        char *etcd_urls;
        char *token;         /* this member's fleet token (what the others call it with) */
        double checkpoint_s; /* 0: no periodic checkpoints */
        bool serving;        /* registered: a stop fences */
        struct FleetWatchdog *watchdog; /* kills this home's QEMUs when this process ends */
};

/* One request to member host with the token it published: *ret (caller
 * frees) its answer, whatever the status. laptop (may be NULL): the id of a
 * laptop whose signed request this member verified, passed on in
 * API_LAPTOP_FLEET_HEADER. */
int api_fleet_peer_request(ApiFleet *a, const char *host, const char *method, const char *path, const char *body,
                           const char *laptop, RemoteResponse *ret);
/* Passes a member's answer on as this one's. */
int api_fleet_relay_reply(HttpRequest *req, const char *host, const RemoteResponse *resp);
/* The HTTP status of a fleet operation's errno. */
unsigned api_fleet_status(int r);
/* This member owns session name at epoch in the fleet now: restore
 * checkpoint hex here and resume it (the owner record checked before and
 * after). */
int api_fleet_adopt_here(ApiFleet *a, const char *name, const char *hex, int64_t epoch);
/* A row here that says "local" for a session the fleet has at new_epoch
 * elsewhere is marked away (its QEMU ended first). */
int api_fleet_mark_stale_away(ApiFleet *a, const char *name, int64_t new_epoch);

/* api-fleet-laptop.c: the laptop registry in etcd, offline grants as the
 * fleet's owner records, and the session routes' front door
 * (api_session_set_fleet()). */
void api_fleet_laptops_register(ApiFleet *a);
/* An admin takes session name back from laptop (its owner at epoch in the
 * fleet): this member owns it at epoch + 1 and runs its latest checkpoint in
 * the shared store. *ret (caller frees): {"checkpoint","epoch","lost_owner",
 * "host"}. */
int api_fleet_reclaim_here(ApiFleet *a, const char *name, const char *laptop, int64_t epoch, json_t **ret);
void api_fleet_laptops_unregister(ApiFleet *a);
