/* SPDX-License-Identifier: MIT */
/* roam info URL: what a roam daemon says about itself and the token. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../sync/remote.h"

#define INFO_MAX_RESPONSE (64 * 1024)

int verb_info(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "token", required_argument, NULL, 't' },
                { "cacert", required_argument, NULL, 'c' },
                { "fingerprint", required_argument, NULL, 'f' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        const char *token_arg = NULL, *cacert = NULL, *fingerprint = NULL;
        bool as_json = false;
        int c;
        while ((c = getopt_long(argc, argv, "ht:c:f:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("info", "URL [--token T] [--fingerprint FP | --cacert FILE] [--json]",
                                        "Asks the roam daemon at URL about itself (GET /v1/info): its version,\n"
                                        "role (server or laptop) and chunk size, and what the token is (role,\n"
                                        "user), and the fingerprint of its TLS certificate. A quick check that\n"
                                        "a URL, a certificate and a token work.\n\n"
                                        "  -t, --token T       access token (default $ROAM_TOKEN); one from 'roam\n"
                                        "                      token create' carries the server's fingerprint\n"
                                        "  -f, --fingerprint FP  pin this server certificate (sha256:HEX)\n"
                                        "  -c, --cacert FILE   trust this PEM CA certificate for https when\n"
                                        "                      nothing is pinned\n"
                                        "      --json          the daemon's answer and the URL (docs/cli-json.md)\n");
                case 't':
                        token_arg = optarg;
                        break;
                case 'c':
                        cacert = optarg;
                        break;
                case 'f':
                        fingerprint = optarg;
                        break;
                case 'j':
                        as_json = true;
                        break;
                default:
                        return cli_usage("info", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("info", "expected one URL");
        const char *url = argv[optind];
        const char *token = remote_token_from_env(token_arg);
        if (!token)
                return cli_errorf("no token for %s (use --token or set ROAM_TOKEN; 'roam token create' on the server)",
                                  url);
        RemoteOptions ro = { .cacert = cacert, .fingerprint = fingerprint };
        _cleanup_(remote_freep) Remote *rem = NULL;
        int r = remote_new(url, token, &ro, &rem);
        if (r < 0)
                return cli_error(r);
        _cleanup_(remote_conn_freep) RemoteConn *conn = remote_conn_new(rem);
        if (!conn)
                return cli_error(-ENOMEM);
        RemoteResponse resp;
        r = remote_request(conn, "GET", "/v1/info", NULL, 0, NULL, INFO_MAX_RESPONSE, &resp);
        if (r < 0)
                return cli_error(r);
        if (resp.status != 200) {
                r = remote_status_error(rem, &resp, "/v1/info");
                remote_response_done(&resp);
                return cli_error(r);
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        if (!json_is_object(j) || !json_is_string(json_object_get(j, "version"))) {
                json_decref(j);
                return cli_errorf("%s sent a malformed answer to /v1/info (is it a roam daemon?)", url);
        }
        json_object_set_new(j, "url", json_string(remote_url(rem)));
        if (as_json)
                return cli_print_json(j);
        const char *user = json_string_value(json_object_get(j, "user"));
        printf("url:         %s\nversion:     %s\nrole:        %s\nchunk size:  %lld\ntoken:       %s%s%s\n",
               remote_url(rem), json_string_value(json_object_get(j, "version")),
               json_string_value(json_object_get(j, "role")),
               (long long) json_integer_value(json_object_get(j, "chunk_size")),
               json_string_value(json_object_get(j, "token_role")), user ? ", user " : "", user ? user : "");
        const char *fp = json_string_value(json_object_get(j, "tls_fingerprint"));
        printf("tls:         %s%s\n", fp ? fp : "none (plain HTTP)", fp && remote_pinned(rem, NULL) ? " (pinned)" : "");
        json_decref(j);
        return 0;
}
