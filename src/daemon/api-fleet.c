/* SPDX-License-Identifier: MIT */
#include "api-fleet.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../fleet/fleet.h"
#include "../session/host-id.h"
#include "auth.h"

struct ApiFleet {
        Daemon *d;
        SessionHost *h;
        Fleet *fleet;
        char *home;
        bool serving; /* registered: a stop fences */
};

/* ---- the fence: every QEMU of this home, at once ---- */

/* Kills the QEMU whose pid file is pidfile (only while its command line
 * names that file: a pid is not trusted beyond it). 1 killed, 0 none. */
static int kill_qemu(const char *pidfile) {
        _cleanup_free_ char *text = NULL, *cmd = NULL;
        uint64_t pid;
        if (read_full_file(pidfile, 32, &text, NULL) < 0)
                return 0;
        text[strcspn(text, "\n")] = 0;
        if (parse_u64(text, &pid) < 0 || pid < 2 || pid > INT32_MAX)
                return 0;
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/%llu/cmdline", (unsigned long long) pid);
        size_t len;
        if (read_proc_file(proc, 1 << 20, &cmd, &len) < 0 || !memmem(cmd, len, pidfile, strlen(pidfile)))
                return 0;
        return kill((pid_t) pid, SIGKILL) == 0 ? 1 : 0;
}

/* Kills the QEMU of one session (name NULL: of every session). */
static unsigned kill_sessions(const char *home, const char *only) {
        _cleanup_free_ char *dir = path_join(home, "sessions");
        DIR *d = dir ? opendir(dir) : NULL;
        if (!d)
                return 0;
        unsigned n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || (only && strcmp(only, de->d_name)))
                        continue;
                char pidfile[PATH_MAX];
                snprintf(pidfile, sizeof pidfile, "%s/%s/qemu.pid", dir, de->d_name);
                n += (unsigned) kill_qemu(pidfile);
        }
        closedir(d);
        return n;
}

static void on_fence(void *userdata, const char *why) {
        ApiFleet *a = userdata;
        unsigned n = kill_sessions(a->home, NULL);
        daemon_log(a->d, DAEMON_LOG_WARNING, "fleet: fenced (%s): stopped %u session(s) of this host", why, n);
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

/* The old host back: a QEMU here of a session the fleet gave away is ended. */
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
                if (r == -EREMOTE || r == -ESTALE || r == -EEXIST) {
                        kill_sessions(a->home, list[i].row.name);
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

static const HttpRoute routes[] = {
        { "GET", "/v1/fleet/hosts", 0, route_hosts },
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
        if (a->fleet)
                fleet_leave(a->fleet, a->serving);
        free(a->home);
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
        FleetOptions fo = { .etcd = o->etcd, .name = name, .url = url, .ttl_s = o->ttl_s, .fence = on_fence,
                            .load = on_load, .userdata = a };
        int r = fleet_join(&fo, &a->fleet);
        if (r >= 0)
                r = save_home(a->home, o->etcd, name);
        if (r >= 0)
                r = daemon_add_routes(d, routes, ELEMENTSOF(routes), a);
        if (r < 0) {
                api_fleet_free(a);
                return r;
        }
        session_host_set_guard(h, guard, a);
        a->serving = true;
        refuse_stale(a);
        daemon_log(d, DAEMON_LOG_INFO, "fleet: joined as '%s' (%s) through etcd %s", name, url, o->etcd);
        *ret = a;
        return 0;
}
