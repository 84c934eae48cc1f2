/* SPDX-License-Identifier: MIT */
/* roam offline|online SESSION (through the laptop's daemon) and
 * roam session reclaim SESSION (on the server). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../daemon/api-fleet.h"
#include "../daemon/daemon.h"
#include "../daemon/laptop-registry.h"
#include "../session/handoff.h"
#include "../sync/remote.h"

/* How long "roam offline/online" waits for the laptop daemon without a byte:
 * longer than the daemon's own bounds (a powered-off take online allows the
 * server's log-off boot 600 s; laptop.c). */
#define HANDOFF_CLI_WAIT_S 900

static int handoff(const char *verb, int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                if (!strcmp(verb, "offline"))
                        return cli_help("offline", "[--json] SESSION [--from-file FILE]",
                                        "Takes a session offline onto this laptop: the server pauses it, sends\n"
                                        "what the background pre-copy has not yet sent, and gives it up; it\n"
                                        "resumes here and keeps running with the network cut. Needs the laptop\n"
                                        "daemon ('roam serve --role laptop --server URL'). Prints the downtime\n"
                                        "(paused there -> running here) and the bytes sent after the click.\n\n"
                                        "  --from-file FILE  no link: the grant comes in a sync file that the\n"
                                        "                    server wrote for this laptop ('roam session\n"
                                        "                    export-offline'); the master image must be here\n"
                                        "  --json            the laptop daemon's answer as it is (docs/cli-json.md)\n");
                return cli_help("online", "[--json] SESSION [--to-file FILE [--force]]",
                                "Takes a session that runs on this laptop back online: it pauses here, sends\n"
                                "what the background pre-copy has not sent, and resumes on the server,\n"
                                "which becomes its owner again. Prints the downtime and the bytes sent.\n\n"
                                "  --to-file FILE  no link: the session is checkpointed (or taken as it is,\n"
                                "                  powered off) into a sync file, signed with this laptop's\n"
                                "                  key, for 'roam session apply-sync' on the server; it does\n"
                                "                  not run here again unless the server refuses the file\n"
                                "  --force         overwrite FILE\n"
                                "  --json          the laptop daemon's answer as it is (docs/cli-json.md)\n");
        }
        bool as_json = cli_take_flag(&argc, argv, "--json");
        const char *opt = !strcmp(verb, "offline") ? "--from-file" : "--to-file";
        bool file_mode = argc >= 4 && !strcmp(argv[2], opt);
        bool force = file_mode && argc == 5 && !strcmp(argv[4], "--force") && !strcmp(verb, "online");
        if (argc != 2 && !(file_mode && (argc == 4 || force)))
                return cli_usage(verb, "expected SESSION [%s FILE]", opt);
        if (!name_is_valid(argv[1]))
                return cli_errorf("session name '%s' is invalid (use " NAME_RULE ")", argv[1]);
        if (file_mode)
                return !strcmp(verb, "offline") ? syncfile_offline_from(argv[1], argv[3])
                                                : syncfile_online_to(argv[1], argv[3], force);
        _cleanup_(remote_freep) Remote *rem = NULL;
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        /* a powered-off take online waits for the server's log-off boot: minutes */
        if (cli_local_daemon_stall(&rem, &ep, 900))
                return 1;
        /* the laptop daemon bounds its own waits for the server (a stalled
         * link, asking again, a log-off boot of minutes): wait as long */
        remote_free(TAKE_PTR(rem));
        RemoteOptions ro = { .cacert = ep->cacert, .stall_timeout_s = HANDOFF_CLI_WAIT_S };
        int k = remote_new(ep->url, ep->token, &ro, &rem);
        if (k < 0)
                return cli_error(k);
        if (!ep->role || strcmp(ep->role, "laptop"))
                return cli_errorf("the daemon of '%s' is not a laptop (start 'roam serve --role laptop --server URL')",
                                  cli_home());
        char path[64];
        snprintf(path, sizeof path, "/v1/handoff/%s", verb);
        json_t *body = json_pack("{s:s}", "session", argv[1]), *res = NULL;
        int r = cli_local_request(rem, "POST", path, body, &res);
        json_decref(body);
        if (r)
                return r;
        if (as_json)
                return cli_print_json(res);
        char a[32];
        if (json_is_true(json_object_get(res, "already"))) {
                printf("session '%s' is already offline on this laptop (epoch %lld)\n", argv[1],
                       (long long) json_integer_value(json_object_get(res, "epoch")));
                json_decref(res);
                return 0;
        }
        json_t *staged = json_object_get(res, "ram_staged");
        bool waiting = json_is_true(json_object_get(res, "qemu_waiting"));
        bool with_grant = json_is_true(json_object_get(res, "remainder_with_grant")),
             with_move_in = json_is_true(json_object_get(res, "remainder_with_move_in"));
        json_int_t paged = json_integer_value(json_object_get(res, "chunks_paged")),
                   deltas = json_integer_value(json_object_get(res, "objects_as_deltas"));
        char pages[128] = "";
        if (paged > 0)
                snprintf(pages, sizeof pages, ", %lld chunks as their changed pages", (long long) paged);
        if (deltas > 0)
                snprintf(pages + strlen(pages), sizeof pages - strlen(pages), ", %lld %s as changes to the pre-copy's",
                         (long long) deltas, deltas == 1 ? "index" : "indexes");
        printf("session '%s' is %s: downtime %lld ms, %s sent after the click%s%s (epoch %lld)%s%s\n", argv[1],
               !strcmp(verb, "offline") ? "offline on this laptop" : "online on the server",
               (long long) json_integer_value(json_object_get(res, "downtime_ms")),
               format_bytes((uint64_t) json_integer_value(json_object_get(res, "bytes_after_click")), a, sizeof a),
               with_grant ? " with the grant" : with_move_in ? " with the move-in" : "", pages,
               (long long) json_integer_value(json_object_get(res, "epoch")),
               !staged ? "" : json_is_true(staged) ? "; RAM staged ahead" : "; RAM written in full",
               waiting ? ", QEMU waiting" : "");
        /* a powered-off take online: the server logged the session off */
        const char *logoff = json_string_value(json_object_get(res, "logoff"));
        const char *policy = json_string_value(json_object_get(res, "policy"));
        if (logoff && policy)
                printf("logged off on the server: %s; policy %s%s%s\n", *logoff ? logoff : "(no log-off line)", policy,
                       json_is_true(json_object_get(res, "reset")) ? ", system disk reset to the master" : "",
                       json_is_string(json_object_get(res, "profile")) ? ", profile saved" : "");
        json_decref(res);
        return 0;
}

int verb_offline(int argc, char **argv) {
        return handoff("offline", argc, argv);
}

int verb_online(int argc, char **argv) {
        return handoff("online", argc, argv);
}

int session_reclaim_verb(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("session reclaim", "SESSION",
                                "For a lost laptop (admin, on the server): takes the session back from the\n"
                                "latest checkpoint this server holds, under a new epoch, and runs it. The\n"
                                "laptop is refused if it ever comes back; its state is then kept as a\n"
                                "separate checkpoint. Says how old the checkpoint is: the work done on the\n"
                                "laptop after it is not in the reclaimed session.\n");
        if (argc != 2)
                return cli_usage("session reclaim", "expected SESSION");
        _cleanup_free_ char *etcd = NULL, *fleet_name = NULL;
        if (api_fleet_home(cli_home(), &etcd, &fleet_name) >= 0)
                return cli_errorf("this home is fleet member '%s': reclaim session '%s' through its daemon (POST "
                                  "/v1/fleet/sessions/%s/reclaim, or the console), which takes it in etcd first",
                                  fleet_name, argv[1], argv[1]);
        err_clear();
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(true, true, &s))
                return 1;
        _cleanup_free_ char *path = cli_home_path("catalog.db");
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_(session_host_freep) SessionHost *h = NULL;
        int r = path ? catalog_open(path, &c) : -ENOMEM;
        if (r >= 0)
                r = session_host_new(cli_home(), s, c, &h);
        if (r < 0)
                return cli_error(r);
        ReclaimResult res;
        r = laptop_reclaim(c, h, argv[1], &res);
        if (r < 0)
                return cli_error(r);
        char hex[ID_HEX_SIZE];
        printf("reclaimed session '%s' from %s at epoch %lld; it runs here from checkpoint %.16s, taken %lld s ago: "
               "work done after that on %s is not in it\n",
               argv[1], res.lost_owner, (long long) res.epoch, id_to_hex(&res.checkpoint, hex),
               (long long) res.checkpoint_age, res.lost_owner);
        free(res.lost_owner);
        return 0;
}
