/* SPDX-License-Identifier: MIT */
/* roam hoard URL REF... and roam status: talk to the local daemon. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../daemon/daemon.h"
#include "../sync/remote.h"

int verb_hoard(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "token", required_argument, NULL, 't' },
                { "limit-rate", required_argument, NULL, 'l' },
                { "fingerprint", required_argument, NULL, 'f' },
                {},
        };
        const char *token_arg = NULL, *fingerprint = NULL;
        uint64_t limit = 0;
        int c;
        while ((c = getopt_long(argc, argv, "ht:l:f:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("hoard", "URL REF... [--token T] [--fingerprint FP] [--limit-rate RATE]",
                                        "Hands a pull to the local daemon ('roam serve', usually --role laptop),\n"
                                        "which keeps at it in the background across link cuts and restarts\n"
                                        "until every chunk is here. 'roam status' shows the progress.\n"
                                        "REF is a ref name (images/debian) or an image name.\n\n"
                                        "  -t, --token T        token for URL (default $ROAM_TOKEN); one from 'roam\n"
                                        "                       token create' carries the server's fingerprint\n"
                                        "  -f, --fingerprint FP pin this certificate of an https URL (sha256:HEX)\n"
                                        "  -l, --limit-rate R   bandwidth cap per connection, e.g. 2M (bytes/s)\n");
                case 't':
                        token_arg = optarg;
                        break;
                case 'l':
                        if (parse_size(optarg, &limit) < 0 || limit < 1024)
                                return cli_usage("hoard", "--limit-rate takes a rate of at least 1K (bytes/s)");
                        break;
                case 'f':
                        fingerprint = optarg;
                        break;
                default:
                        return cli_usage("hoard", "invalid option");
                }
        if (argc - optind < 2)
                return cli_usage("hoard", "expected URL and at least one REF");
        const char *url = argv[optind];
        if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
                return cli_errorf("url '%s' is invalid (use http://HOST:PORT or https://HOST:PORT)", url);
        const char *token_given = remote_token_from_env(token_arg);
        if (!token_given)
                return cli_errorf("no token for %s (use --token or set ROAM_TOKEN)", url);
        /* the daemon keeps the token with the fingerprint to pin */
        _cleanup_free_ char *token = NULL;
        if (cli_token_with_fingerprint(token_given, fingerprint, &token))
                return 1;
        _cleanup_(remote_freep) Remote *rem = NULL;
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        if (cli_local_daemon(&rem, &ep))
                return 1;
        for (int i = optind + 1; i < argc; i++) {
                char ref[300];
                if (strchr(argv[i], '/'))
                        snprintf(ref, sizeof ref, "%s", argv[i]);
                else
                        snprintf(ref, sizeof ref, "images/%s", argv[i]);
                if (!ref_name_is_valid(ref))
                        return cli_errorf("ref name '%s' is invalid (use " REF_NAME_RULE ")",
                                          argv[i]);
                json_t *body = json_pack("{s:s, s:s, s:s, s:I}", "url", url, "ref", ref, "token", token,
                                         "limit_rate", (json_int_t) limit);
                json_t *answer = NULL;
                int r = cli_local_request(rem, "POST", "/v1/hoards", body, &answer);
                json_decref(body);
                if (r)
                        return r;
                json_decref(answer);
                printf("hoarding %s from %s (see 'roam status')\n", ref, url);
        }
        return 0;
}

int verb_status(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("status", "[--json]",
                                "Shows the local daemon: its role and address, and every hoard with its\n"
                                "progress.\n\n"
                                "  --json   the daemon's answers as they are (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("status", "unexpected argument '%s'", argv[1]);
        _cleanup_(remote_freep) Remote *rem = NULL;
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        if (cli_local_daemon(&rem, &ep))
                return 1;
        json_t *info = NULL, *hoards = NULL;
        if (cli_local_request(rem, "GET", "/v1/info", NULL, &info))
                return 1;
        if (cli_local_request(rem, "GET", "/v1/hoards", NULL, &hoards)) {
                json_decref(info);
                return 1;
        }
        bool laptop = ep->role && !strcmp(ep->role, "laptop");
        if (as_json) {
                json_t *ho = NULL;
                if (laptop && cli_local_request(rem, "GET", "/v1/handoff", NULL, &ho)) {
                        json_decref(info);
                        json_decref(hoards);
                        return 1;
                }
                json_t *all = json_pack("{s:o, s:O, s:o}", "info", info, "hoards", json_object_get(hoards, "hoards"),
                                        "handoff", ho ? ho : json_null());
                json_decref(hoards);
                return cli_print_json(all);
        }
        printf("daemon:  %s (%s, pid %d)\n", ep->url, ep->role ? ep->role : "?", (int) ep->pid);
        json_t *list = json_object_get(hoards, "hoards");
        size_t i;
        json_t *h;
        printf("hoards:  %zu\n", json_array_size(list));
        json_array_foreach(list, i, h) {
                json_int_t done = json_integer_value(json_object_get(h, "chunks_done"));
                json_int_t total = json_integer_value(json_object_get(h, "chunks_total"));
                const char *err = json_string_value(json_object_get(h, "last_error"));
                char w[32];
                printf("  %-28s %-7s %5.1f%%  %lld/%lld chunks  %s on the wire  from %s%s%s\n",
                       json_string_value(json_object_get(h, "ref")), json_string_value(json_object_get(h, "state")),
                       total ? 100.0 * (double) done / (double) total : 0.0, (long long) done, (long long) total,
                       format_bytes((uint64_t) json_integer_value(json_object_get(h, "wire_bytes")), w, sizeof w),
                       json_string_value(json_object_get(h, "url")), err ? "  last error: " : "", err ? err : "");
        }
        if (laptop) {
                json_t *ho = NULL;
                if (cli_local_request(rem, "GET", "/v1/handoff", NULL, &ho) == 0) {
                        json_t *sessions = json_object_get(ho, "sessions");
                        json_t *s;
                        const char *server = json_string_value(json_object_get(ho, "server"));
                        printf("server:  %s (%s)\nsessions: %zu\n", server ? server : "none",
                               server ? (json_is_true(json_object_get(ho, "connected")) ? "connected" : "not connected")
                                      : "a hoarder: start the daemon with --server URL to pair",
                               json_array_size(sessions));
                        json_array_foreach(sessions, i, s) {
                                char r[32];
                                printf("  %-20s on server: %-8s owner %-20s offline readiness: %s to send, "
                                       "about %.1f s\n",
                                       json_string_value(json_object_get(s, "name")),
                                       json_string_value(json_object_get(s, "server_state")),
                                       json_string_value(json_object_get(s, "server_owner")),
                                       format_bytes((uint64_t) json_integer_value(
                                                            json_object_get(s, "remainder_bytes")),
                                                    r, sizeof r),
                                       json_real_value(json_object_get(s, "predicted_offline_s")));
                        }
                        json_decref(ho);
                }
        }
        json_decref(info);
        json_decref(hoards);
        return 0;
}
