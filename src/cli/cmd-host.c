/* SPDX-License-Identifier: MIT */
/* roam host list: the members of the fleet this home is in (docs/fleet.md) */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../daemon/api-fleet.h"
#include "../fleet/fleet.h"

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

static const Verb host_verbs[] = {
        { "list", host_list, "[--json]", "the members of this home's fleet" },
};

int verb_host(int argc, char **argv) {
        return cli_dispatch("host", host_verbs, ELEMENTSOF(host_verbs), argc, argv);
}
