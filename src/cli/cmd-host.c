/* SPDX-License-Identifier: MIT */
/* roam host list: the members of the fleet this home is in (docs/fleet.md) */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../daemon/daemon.h"
#include "../daemon/api-fleet.h"
#include "../fleet/fleet.h"
#include "../session/session.h"
#include "../store/blob.h"
#include "../sync/remote.h"

/* The fleet of the home, as an observer (no lease). Prints the error itself. */
static int open_fleet(Fleet **ret) {
        if (cli_need_home(false))
                return 1;
        _cleanup_free_ char *etcd = NULL, *name = NULL;
        int r = api_fleet_home(cli_home(), &etcd, &name);
        if (r >= 0)
                r = fleet_join(&(FleetOptions){ .etcd = etcd, .name = name, .observe = true }, ret);
        return r < 0 ? cli_error(r) : 0;
}

static int host_list(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("host list", "[--json]",
                                "Lists the members of the fleet this home is in (the etcd endpoints that\n"
                                "'roam serve --etcd' recorded in the home): name, URL, cores, RAM, free\n"
                                "RAM, sessions running. A member whose lease ran out is not listed.\n\n"
                                "  --json   {\"self\": NAME, \"hosts\": [...]} (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("host list", "unexpected argument '%s'", argv[1]);
        _cleanup_(fleet_leavep) Fleet *f = NULL;
        if (open_fleet(&f))
                return 1;
        FleetHost *hs = NULL;
        size_t n = 0;
        int r = fleet_hosts(f, &hs, &n);
        if (r < 0)
                return cli_error(r);
        if (as_json) {
                json_t *arr = json_array();
                for (size_t i = 0; arr && i < n; i++)
                        json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "name",
                                                             hs[i].name, "url", hs[i].url, "cores",
                                                             (json_int_t) hs[i].cores, "ram_mib",
                                                             (json_int_t) hs[i].ram_mib, "ram_free_mib",
                                                             (json_int_t) hs[i].ram_free_mib, "sessions",
                                                             (json_int_t) hs[i].sessions, "session_ram_mib",
                                                             (json_int_t) hs[i].session_ram_mib));
                fleet_hosts_free(hs, n);
                return cli_print_json(json_pack("{s:s, s:o}", "self", fleet_name(f), "hosts",
                                                arr ? arr : json_array()));
        }
        printf("%-20s %-28s %5s %10s %10s %8s\n", "NAME", "URL", "CORES", "RAM MiB", "FREE MiB", "SESSIONS");
        for (size_t i = 0; i < n; i++)
                printf("%-20s %-28s %5u %10llu %10llu %8u%s\n", hs[i].name, hs[i].url, hs[i].cores,
                       (unsigned long long) hs[i].ram_mib, (unsigned long long) hs[i].ram_free_mib, hs[i].sessions,
                       strcmp(hs[i].name, fleet_name(f)) ? "" : "  (this home)");
        fleet_hosts_free(hs, n);
        return 0;
}

/* A file into the store as a blob; its index id. */
static int import_boot(Store *s, const char *what, const char *path, char hex[static ID_HEX_SIZE]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return err_set(fd < 0 ? -errno : -EINVAL, "%s '%s' is not a readable file", what, path);
        RoamId id;
        int r = blob_import_fd(s, fd, (uint64_t) st.st_size, &(BlobOptions){ 0 }, &id, NULL);
        if (r < 0)
                return err_set_if_none(r, "cannot import %s '%s': %s", what, path, strerror(-r));
        id_to_hex(&id, hex);
        return 0;
}

int cli_fleet_create(const SessionCreate *a, const char *on_host) {
        _cleanup_free_ char *etcd = NULL, *self = NULL;
        if (api_fleet_home(cli_home(), &etcd, &self) < 0) {
                err_clear();
                if (on_host)
                        return cli_errorf("--host: this home is in no fleet (start 'roam serve --etcd URL' on it)");
                return -1;
        }
        if (a->profile_disk || a->accel || a->policy)
                return cli_usage("session create", "--profile-disk, --accel and --policy are not for fleet "
                                 "sessions yet");
        char kernel[ID_HEX_SIZE], initrd[ID_HEX_SIZE];
        {
                _cleanup_(store_freep) Store *s = NULL;
                if (cli_open_store(true, true, &s))
                        return 1;
                int r = import_boot(s, "kernel", a->kernel, kernel);
                if (r >= 0 && a->initrd)
                        r = import_boot(s, "initrd", a->initrd, initrd);
                if (r < 0)
                        return cli_error(r);
        }
        _cleanup_(remote_freep) Remote *rem = NULL;
        DaemonEndpoint *ep = NULL;
        if (cli_local_daemon(&rem, &ep))
                return 1;
        daemon_endpoint_free(ep);
        _cleanup_(json_decrefp) json_t *body =
                json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b}", "name", a->name, "image", a->image, "user", a->user,
                          "kernel", kernel, "ram_mib", (json_int_t) a->ram_mib, "cpus", (json_int_t) a->cpus, "agent",
                          a->agent);
        if (!body || (a->initrd && json_object_set_new(body, "initrd", json_string(initrd)) < 0) ||
            (a->append && json_object_set_new(body, "append", json_string(a->append)) < 0) ||
            (on_host && json_object_set_new(body, "host", json_string(on_host)) < 0))
                return cli_error(-ENOMEM);
        _cleanup_(json_decrefp) json_t *resp = NULL;
        if (cli_local_request(rem, "POST", "/v1/fleet/sessions", body, &resp))
                return 1;
        fprintf(stderr, "created session '%s' of image '%s' for user '%s' on fleet host '%s' (epoch %lld)\n",
                a->name, a->image, a->user, json_string_value(json_object_get(resp, "host")),
                (long long) json_integer_value(json_object_get(resp, "epoch")));
        return 0;
}

/* The local daemon of a fleet member's home. Prints errors itself. */
/* The home's daemon; its answer may take as long as moves take (a drain
 * moves its sessions one by one: minutes on a busy host). */
#define FLEET_DAEMON_STALL_S 900
static int fleet_daemon(Remote **ret) {
        _cleanup_free_ char *etcd = NULL, *self = NULL;
        int r = api_fleet_home(cli_home(), &etcd, &self);
        if (r < 0)
                return cli_error(r);
        DaemonEndpoint *ep = NULL;
        if (cli_local_daemon_stall(ret, &ep, FLEET_DAEMON_STALL_S))
                return 1;
        daemon_endpoint_free(ep);
        return 0;
}

int cli_fleet_move(const char *name, const char *to_host) {
        if (!name_is_valid(name))
                return cli_errorf("session name '%s' is invalid (use " NAME_RULE ")", name);
        if (!fleet_name_is_valid(to_host))
                return cli_errorf("fleet host name '%s' is invalid", to_host);
        _cleanup_(remote_freep) Remote *rem = NULL;
        if (fleet_daemon(&rem))
                return 1;
        char path[NAME_MAX_LEN + 48];
        snprintf(path, sizeof path, "/v1/fleet/sessions/%s/move", name);
        _cleanup_(json_decrefp) json_t *body = json_pack("{s:s}", "to", to_host), *resp = NULL;
        if (!body)
                return cli_error(-ENOMEM);
        if (cli_local_request(rem, "POST", path, body, &resp))
                return 1;
        fprintf(stderr, "moved session '%s' to fleet host '%s' at epoch %lld: downtime %lld ms (pre-copy %lld ms, "
                "%lld ms in all)\n",
                name, to_host, (long long) json_integer_value(json_object_get(resp, "epoch")),
                (long long) json_integer_value(json_object_get(resp, "downtime_ms")),
                (long long) json_integer_value(json_object_get(resp, "precopy_ms")),
                (long long) json_integer_value(json_object_get(resp, "total_ms")));
        return 0;
}

static int host_drain(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("host drain", "HOST [--undo]",
                                "Moves every session of fleet member HOST to the members placement picks\n"
                                "(through the shared store, one by one), and places no new session on HOST\n"
                                "until 'roam host drain HOST --undo'. Exits 1 when a session could not move.\n");
        bool undo = cli_take_flag(&argc, argv, "--undo");
        if (argc != 2)
                return cli_usage("host drain", "expected HOST");
        if (!fleet_name_is_valid(argv[1]))
                return cli_errorf("fleet host name '%s' is invalid", argv[1]);
        _cleanup_(remote_freep) Remote *rem = NULL;
        if (fleet_daemon(&rem))
                return 1;
        char path[FLEET_NAME_MAX + 48];
        snprintf(path, sizeof path, "/v1/fleet/hosts/%s/drain%s", argv[1], undo ? "?undo=1" : "");
        _cleanup_(json_decrefp) json_t *resp = NULL;
        if (cli_local_request(rem, "POST", path, NULL, &resp))
                return 1;
        if (undo) {
                fprintf(stderr, "fleet host '%s' takes new sessions again\n", argv[1]);
                return 0;
        }
        json_t *m = json_object_get(resp, "moved");
        size_t i;
        json_t *v;
        json_array_foreach(m, i, v)
                printf("%s -> %s\n", json_string_value(json_object_get(v, "name")),
                       json_string_value(json_object_get(v, "to")));
        fprintf(stderr, "drained fleet host '%s': %zu session(s) moved\n", argv[1], json_array_size(m));
        return 0;
}

static const Verb host_verbs[] = {
        { "list", host_list, "[--json]", "the members of this home's fleet" },
        { "drain", host_drain, "HOST [--undo]", "move every session off a fleet member" },
};

int verb_host(int argc, char **argv) {
        return cli_dispatch("host", host_verbs, ELEMENTSOF(host_verbs), argc, argv);
}
