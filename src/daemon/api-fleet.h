/* SPDX-License-Identifier: MIT */
#pragma once

/* 'roam serve --etcd': this daemon as a fleet member (docs/fleet.md).
 *
 * Joins the fleet (src/fleet/fleet.h) before serving, or fails: etcd that
 * does not answer at start is a one-line error. Then:
 *   - every operation on a session owned here asks the fleet first
 *     (session_host_set_guard()): a session the fleet does not know yet is
 *     claimed for this host (at its epoch), one that this host had and
 *     nobody took over meanwhile is claimed back, any other is refused;
 *   - the fence: when the lease is lost or may be, every QEMU of this home
 *     is killed (SIGKILL) before the lease can have expired in etcd;
 *   - at start, a QEMU of this home that runs a session the fleet gives to
 *     another host (or at another epoch) is killed: the old host back;
 *   - HOME/fleet.json names the etcd endpoints and this host, so CLI
 *     commands on the home ('roam host list') reach the same fleet;
 *   - every checkpoint_s a checkpoint of every session that runs here goes
 *     into the shared store; a session whose owner's lease ran out is taken
 *     over (at epoch + 1) by the member placement picks (any member after
 *     ORPHAN_ANYONE_S) and restored from its latest checkpoint; one never
 *     checkpointed is left as it is (its own member may run it again).
 *
 *   GET  /v1/fleet/sessions                 {"sessions":[{"name","host","epoch"}]}
 *   POST /v1/fleet/sessions                 create, placed (or "host"): {"name","image",
 *                                           "user","kernel":HEX,"initrd":HEX,"ram_mib",
 *                                           "cpus","append","agent","host","start"}
 *   POST /v1/fleet/sessions/NAME/ACTION     start, stop, checkpoint, move {"to":HOST}, remove:
 *                                           done by the owner, wherever it is;
 *                                           reclaim (a session a laptop has: taken
 *                                           back here from the latest checkpoint)
 *   GET  /v1/fleet/sessions/NAME/vnc        the desktop, from the member that runs it
 *                                           (admins; users: their own sessions)
 * Laptops pair with the fleet, and the session routes of api-session.h
 * answer for the whole fleet (api-fleet-laptop.c). A member's QEMUs die with
 * its process (fleet-watchdog.h).
 *   POST /v1/fleet/hosts/NAME/drain         every session of NAME moved elsewhere
 *   POST /v1/fleet/local-sessions           create here (a member placing it here)
 *   POST /v1/fleet/local-sessions/NAME/adopt  {"checkpoint","epoch"}: a move's target
 * All but the GETs take an admin (or fleet member's) token.
 *
 *   GET /v1/fleet/hosts     {"hosts":[{"name","url","cores","ram_mib",
 *                            "ram_free_mib","sessions","session_ram_mib"}],
 *                            "self": NAME}                        any token
 *
 * On a clean stop the member fences its sessions and revokes its lease
 * (their owner records go at once). */

#include "../session/session.h"
#include "api-laptop.h"
#include "daemon.h"

#define FLEET_HOME_FILE "fleet.json"

typedef struct ApiFleet ApiFleet;

typedef struct ApiFleetOptions {
        const char *etcd; /* URLs */
        const char *name; /* NULL: the home's host id */
        const char *url;  /* NULL: http:// + the listen address */
        const char *listen;
        unsigned ttl_s;   /* 0: FLEET_TTL_DEFAULT_S */
        double checkpoint_s; /* checkpoints of running sessions this often; 0: none */
        ApiLaptop *laptops;  /* the laptop routes (api-laptop.h): laptops pair with the fleet */
} ApiFleetOptions;

/* Before daemon_run(). Caller frees with api_fleet_free() after it. */
int api_fleet_register(Daemon *d, SessionHost *h, const ApiFleetOptions *o, ApiFleet **ret);
void api_fleet_free(ApiFleet *a);

/* Reads HOME/fleet.json: the etcd endpoints and this home's name in the
 * fleet. -ENOENT when the home is in no fleet. Caller frees both. */
int api_fleet_home(const char *home, char **ret_etcd, char **ret_name);
