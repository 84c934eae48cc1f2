/* SPDX-License-Identifier: MIT */
/* roam pull|push URL REF... */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../sync/sync.h"

/* "debian" is short for "images/debian". */
static void full_ref(const char *arg, char *buf, size_t size) {
        if (strchr(arg, '/'))
                snprintf(buf, size, "%s", arg);
        else
                snprintf(buf, size, "images/%s", arg);
}

typedef struct SyncArgs {
        const char *token;
        const char *as;
        const char *cacert;
        const char *fingerprint;
        uint64_t limit_rate;
        unsigned parallel;
        bool json;
} SyncArgs;

static int parse_sync_args(const char *cmd, int argc, char **argv, SyncArgs *a) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "token", required_argument, NULL, 't' },
                { "limit-rate", required_argument, NULL, 'l' },
                { "parallel", required_argument, NULL, 'p' },
                { "as", required_argument, NULL, 'a' },
                { "cacert", required_argument, NULL, 'c' },
                { "fingerprint", required_argument, NULL, 'f' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "ht:l:p:a:c:f:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        printf("usage: roam %s URL REF... [--token T] [--limit-rate RATE] [--parallel N] [--json]\n\n", cmd);
                        if (!strcmp(cmd, "pull"))
                                printf("Fetches refs (and every chunk they need) from a roam daemon into the local\n"
                                       "store. Only chunks the local store lacks are transferred; every chunk is\n"
                                       "verified; the local ref moves only when all of its chunks are stored.\n"
                                       "Interrupted, it resumes where it stopped when run again.\n\n");
                        else
                                printf("Sends refs (and every chunk the daemon lacks) to a roam daemon, then moves\n"
                                       "the remote ref (compare-and-swap). Interrupted, it resumes when run again.\n\n");
                        printf("REF is a ref name (images/debian, sessions/alice/s1) or an image name.\n\n"
                               "  -t, --token T        access token (default $ROAM_TOKEN); the one 'roam token\n"
                               "                       create' prints for an https server carries its\n"
                               "                       certificate's fingerprint, which is pinned\n"
                               "  -l, --limit-rate R   bandwidth cap per connection, e.g. 5M (bytes/s)\n"
                               "  -p, --parallel N     requests in flight (default 4)\n"
                               "  -a, --as REF         name of the ref on the receiving side (one REF only)\n"
                               "  -f, --fingerprint FP pin this server certificate (sha256:HEX, as 'roam serve'\n"
                               "                       prints it) instead of the token's\n"
                               "  -c, --cacert FILE    trust this PEM CA certificate for https when nothing\n"
                               "                       is pinned\n"
                               "      --json           the results as one JSON object {\"refs\": [...]}\n"
                               "                       (docs/cli-json.md)\n");
                        return 0;
                case 't':
                        a->token = optarg;
                        break;
                case 'l':
                        if (parse_size(optarg, &a->limit_rate) < 0 || a->limit_rate < 1024)
                                return cli_usage(cmd, "--limit-rate takes a rate of at least 1K (bytes/s)");
                        break;
                case 'p': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > 32)
                                return cli_usage(cmd, "--parallel takes a number from 1 to 32");
                        a->parallel = (unsigned) v;
                        break;
                }
                case 'a':
                        a->as = optarg;
                        break;
                case 'c':
                        a->cacert = optarg;
                        break;
                case 'f':
                        a->fingerprint = optarg;
                        break;
                case 'j':
                        a->json = true;
                        break;
                default:
                        return cli_usage(cmd, "invalid option");
                }
        if (argc - optind < 2)
                return cli_usage(cmd, "expected URL and at least one REF");
        if (a->as && argc - optind != 2)
                return cli_usage(cmd, "--as takes exactly one REF");
        return -1;
}

static int run_sync(const char *cmd, int argc, char **argv, bool pull) {
        SyncArgs a = { 0 };
        int k = parse_sync_args(cmd, argc, argv, &a);
        if (k >= 0)
                return k;
        const char *url = argv[optind];
        const char *token = remote_token_from_env(a.token);
        if (!token)
                return cli_errorf("no token for %s (use --token or set ROAM_TOKEN; 'roam token create' on the server)",
                                  url);
        RemoteOptions ro = { .limit_rate = a.limit_rate, .cacert = a.cacert, .fingerprint = a.fingerprint };
        _cleanup_(remote_freep) Remote *r = NULL;
        k = remote_new(url, token, &ro, &r);
        if (k < 0)
                return cli_error(k);
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(pull, true, &s))
                return 1;
        _cleanup_(json_decrefp) json_t *results = a.json ? json_array() : NULL;
        if (a.json && !results)
                return cli_error(-ENOMEM);
        cli_interrupt_note(pull ? "the chunks fetched so far are kept: run the same command again to resume"
                                : "the chunks sent so far are kept: run the same command again to resume");
        for (int i = optind + 1; i < argc; i++) {
                char ref[300], as[300];
                full_ref(argv[i], ref, sizeof ref);
                if (a.as)
                        full_ref(a.as, as, sizeof as);
                if (!ref_name_is_valid(ref) || (a.as && !ref_name_is_valid(as)))
                        return cli_errorf("ref name '%s' is invalid (use " REF_NAME_RULE ")",
                                          ref_name_is_valid(ref) ? a.as : argv[i]);
                Progress *p = progress_new(ref, 0);
                SyncOptions so = { .parallel = a.parallel, .progress = p, .cancel = interrupt_flag() };
                SyncStats st;
                err_clear();
                k = pull ? sync_pull(s, r, ref, a.as ? as : NULL, &so, &st)
                         : sync_push(s, r, ref, a.as ? as : NULL, &so, &st);
                progress_free(p);
                if (k < 0)
                        return cli_error(k);
                char w[32], hex[ID_HEX_SIZE];
                fprintf(stderr, "%s %s: %llu of %llu chunks transferred, %s on the wire, %.2fs\n",
                        pull ? "pulled" : "pushed", ref, (unsigned long long) st.chunks_sent,
                        (unsigned long long) st.chunks_total, format_bytes(st.wire_bytes, w, sizeof w), st.seconds);
                if (pull && (st.chunks_paged || st.chunks_page_fallback))
                        fprintf(stderr, "  %llu chunks rebuilt here from %llu page references, %llu fetched whole "
                                "instead\n",
                                (unsigned long long) st.chunks_paged, (unsigned long long) st.pages_referenced,
                                (unsigned long long) st.chunks_page_fallback);
                else if (!pull && (st.chunks_paged || st.chunks_page_fallback))
                        fprintf(stderr, "  %llu chunks sent as page references and rebuilt there, %llu sent whole "
                                "instead\n",
                                (unsigned long long) st.chunks_paged, (unsigned long long) st.chunks_page_fallback);
                if (results)
                        json_array_append_new(results,
                                              json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I}",
                                                        "ref", ref, "as", a.as ? as : ref, "id",
                                                        id_to_hex(&st.id, hex), "chunks_total",
                                                        (json_int_t) st.chunks_total, "chunks_sent",
                                                        (json_int_t) st.chunks_sent, "objects_sent",
                                                        (json_int_t) st.objects_sent, "wire_bytes",
                                                        (json_int_t) st.wire_bytes, "seconds", st.seconds,
                                                        "chunks_paged", (json_int_t) st.chunks_paged,
                                                        "pages_referenced", (json_int_t) st.pages_referenced,
                                                        "chunks_page_fallback",
                                                        (json_int_t) st.chunks_page_fallback));
                else
                        printf("%s %s\n", ref, id_to_hex(&st.id, hex));
        }
        return results ? cli_print_json(json_pack("{s:s, s:s, s:O}", "direction", pull ? "pull" : "push", "url", url,
                                                  "refs", results))
                       : 0;
}

int verb_pull(int argc, char **argv) {
        return run_sync("pull", argc, argv, true);
}

int verb_push(int argc, char **argv) {
        return run_sync("push", argc, argv, false);
}
