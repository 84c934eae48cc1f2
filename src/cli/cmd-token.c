/* SPDX-License-Identifier: MIT */
/* roam token create|list|revoke */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../crypto/fingerprint.h"
#include "../crypto/tls-cert.h"
#include "../daemon/daemon.h"

static bool want_help(int argc, char **argv) {
        return argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

/* The fingerprint the clients of this home's daemon pin: the running
 * daemon's (none when it serves plain HTTP), else the home's own
 * certificate, made now if missing (roam serve uses it unless told
 * otherwise). 1 with one, 0 without. Prints errors (-1). */
static int home_fingerprint(Fingerprint *ret) {
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        int r = daemon_endpoint_read(cli_home(), &ep);
        if (r >= 0) {
                if (!ep->fingerprint)
                        return 0;
                return fingerprint_parse(ep->fingerprint, ret) < 0 ? -1 : 1;
        }
        err_clear();
        const char *insecure = getenv("ROAM_INSECURE_HTTP");
        if (insecure && (!strcmp(insecure, "1") || !strcmp(insecure, "true") || !strcmp(insecure, "yes")))
                return 0; /* roam serve here would serve plain HTTP */
        r = tls_home_cert_ensure(cli_home(), NULL, NULL, ret, NULL);
        if (r < 0) {
                cli_error(r);
                return -1;
        }
        return 1;
}

static int token_create(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "role", required_argument, NULL, 'r' },
                { "user", required_argument, NULL, 'u' },
                { "label", required_argument, NULL, 'l' },
                { "ttl", required_argument, NULL, 't' },
                { "fingerprint", required_argument, NULL, 'f' },
                { "no-fingerprint", no_argument, NULL, 'n' },
                {},
        };
        int role = -1;
        const char *user = NULL, *label = NULL, *fingerprint = NULL;
        bool bare = false;
        uint64_t ttl = 0;
        int c;
        while ((c = getopt_long(argc, argv, "hr:u:l:t:f:n", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("token create", "--role admin|user|host [--user NAME] [--label TEXT] [--ttl D]",
                                        "Creates an API token for 'roam serve' and prints it on stdout; only its\n"
                                        "hash is kept, so store it now. Clients send it as\n"
                                        "'Authorization: Bearer TOKEN'. For a daemon serving HTTPS it is printed as\n"
                                        "a pairing token, TOKEN@sha256:HEX: the fingerprint of the daemon's\n"
                                        "certificate, which every roam client given the token pins (a server with\n"
                                        "another certificate is refused). The fingerprint is the running daemon's,\n"
                                        "else that of the home's own certificate ($ROAM_HOME/tls, made now if\n"
                                        "missing, as 'roam serve' would), or none when $ROAM_INSECURE_HTTP=1 says\n"
                                        "that 'roam serve' serves plain HTTP.\n\n"
                                        "  --role admin  everything\n"
                                        "  --role host   another roam server or laptop: every ref, chunk and object\n"
                                        "  --role user   needs --user NAME: reads images/..., reads and writes\n"
                                        "                sessions/NAME/...; other refs look absent\n"
                                        "  --user NAME   the user of a user token\n"
                                        "  --label TEXT  what the token is for, shown by 'roam token list'\n"
                                        "                (" CATALOG_TOKEN_LABEL_RULE ")\n"
                                        "  --ttl D       it expires after D: seconds, or with a unit (90s, 30m,\n"
                                        "                12h, 30d); from then on it is refused like a revoked one\n"
                                        "                (also by open event streams and desktops)\n"
                                        "  --fingerprint FP   carry this fingerprint instead (sha256:HEX; for a\n"
                                        "                daemon started with another --tls-cert)\n"
                                        "  --no-fingerprint   print the token alone (plain HTTP, or pinned otherwise)\n");
                case 'r':
                        role = catalog_role_from_string(optarg);
                        if (role < 0)
                                return cli_usage("token create", "--role takes admin, user or host, not '%s'", optarg);
                        break;
                case 'u':
                        if (!name_is_valid(optarg))
                                return cli_usage("token create",
                                                 "user name '%s' is invalid (use " NAME_RULE ")",
                                                 optarg);
                        user = optarg;
                        break;
                case 'l':
                        if (!catalog_token_label_is_valid(optarg))
                                return cli_usage("token create", "token label '%s' is invalid (use " CATALOG_TOKEN_LABEL_RULE ")",
                                                 optarg);
                        label = optarg;
                        break;
                case 't':
                        if (parse_duration(optarg, &ttl) < 0 || ttl < 1 || ttl > 100ull * 365 * 86400)
                                return cli_usage("token create",
                                                 "--ttl takes a duration from 1s to 100 years (90s, 30m, 12h, 30d), not '%s'",
                                                 optarg);
                        break;
                case 'f':
                        fingerprint = optarg;
                        break;
                case 'n':
                        bare = true;
                        break;
                default:
                        return cli_usage("token create", "invalid option");
                }
        if (optind != argc)
                return cli_usage("token create", "unexpected argument '%s'", argv[optind]);
        if (role < 0)
                return cli_usage("token create", "--role is required");
        if (role == CATALOG_ROLE_USER && !user)
                return cli_usage("token create", "a user token needs --user NAME");
        if (role != CATALOG_ROLE_USER && user)
                return cli_usage("token create", "--user goes only with --role user");

        if (bare && fingerprint)
                return cli_usage("token create", "--fingerprint and --no-fingerprint exclude each other");
        Fingerprint fp;
        if (fingerprint && fingerprint_parse(fingerprint, &fp) < 0)
                return cli_usage("token create", "fingerprint '%.100s' is malformed (expected sha256: and 64 hex "
                                 "digits, as 'roam serve' prints it)", fingerprint);

        _cleanup_(catalog_freep) Catalog *cat = NULL;
        if (cli_open_catalog(true, &cat))
                return 1;
        int have = bare ? 0 : fingerprint ? 1 : home_fingerprint(&fp);
        if (have < 0)
                return 1;
        _cleanup_free_ char *token = NULL, *pairing = NULL;
        int r = catalog_token_create_labeled(cat, (CatalogRole) role, user, label,
                                             ttl ? (int64_t) time(NULL) + (int64_t) ttl : 0, &token);
        if (r >= 0 && have)
                r = pairing_token_join(token, &fp, &pairing);
        if (r < 0)
                return cli_error(r);
        printf("%s\n", pairing ? pairing : token);
        explicit_bzero(token, strlen(token));
        if (pairing)
                explicit_bzero(pairing, strlen(pairing));
        return 0;
}

static int token_list(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("token list", "[--json]",
                                "Lists the tokens: id (a hash of the token, give a prefix of it to\n"
                                "'roam token revoke'), role, user, creation and expiry time (UTC; an\n"
                                "expired token is marked so) and label.\n\n"
                                "  --json   one JSON object {\"tokens\": [...]} (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("token list", "unexpected argument '%s'", argv[1]);
        _cleanup_(catalog_freep) Catalog *cat = NULL;
        if (cli_open_catalog(false, &cat))
                return 1;
        CatalogToken *list;
        size_t n;
        int r = catalog_token_list(cat, &list, &n);
        if (r < 0)
                return cli_error(r);
        json_t *arr = as_json ? json_array() : NULL;
        if (!as_json)
                printf("%-16s %-6s %-20s %-20s %-20s %s\n", "ID", "ROLE", "USER", "CREATED", "EXPIRES", "LABEL");
        for (size_t i = 0; i < n; i++) {
                CatalogToken *t = &list[i];
                if (arr) {
                        json_array_append_new(arr, json_pack("{s:s, s:s, s:s?, s:s?, s:I, s:I}", "id", t->id, "role",
                                                             catalog_role_to_string(t->role), "user", t->user,
                                                             "label", t->label, "created", (json_int_t) t->created,
                                                             "expires", (json_int_t) t->expires));
                        continue;
                }
                char when[UTC_BUF_SIZE], until[UTC_BUF_SIZE + 10];
                format_utc(t->created, true, when, sizeof when);
                format_utc(t->expires, true, until, sizeof until);
                if (t->expires > 0 && t->expires <= (int64_t) time(NULL))
                        strcat(until, " (expired)");
                printf("%-16.16s %-6s %-20s %-20s %-20s %s\n", t->id, catalog_role_to_string(t->role),
                       t->user ? t->user : "-", when, until, t->label ? t->label : "-");
        }
        catalog_token_list_free(list, n);
        return arr ? cli_print_json(json_pack("{s:o}", "tokens", arr)) : 0;
}

static int token_revoke(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("token revoke", "ID",
                                "Revokes the token whose id starts with ID (at least 4 hex digits, from\n"
                                "'roam token list'). A running daemon refuses it from the next request on.\n");
        if (argc != 2)
                return cli_usage("token revoke", "expected one token ID");
        _cleanup_(catalog_freep) Catalog *cat = NULL;
        if (cli_open_catalog(false, &cat))
                return 1;
        char id[ID_HEX_SIZE];
        int r = catalog_token_revoke(cat, argv[1], id);
        if (r == -EINVAL)
                return cli_usage("token revoke", "%s", err_message(r));
        if (r < 0)
                return cli_error(r);
        printf("revoked token %.16s\n", id);
        return 0;
}

static const Verb token_verbs[] = {
        { "create", token_create, "--role ROLE [--user NAME] [--label TEXT]", "create an API token and print it" },
        { "list", token_list, "[--json]", "list tokens (ids, roles, users, labels)" },
        { "revoke", token_revoke, "ID", "revoke a token by id prefix" },
};

int verb_token(int argc, char **argv) {
        return cli_dispatch("token", token_verbs, ELEMENTSOF(token_verbs), argc, argv);
}
