/* SPDX-License-Identifier: MIT */
/* roam store init|fsck|gc|stats */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#include "../session/history.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../crypto/home-keys.h"
#include "../daemon/api-gc.h"
#include "../store/fsck.h"
#include "../sync/remote.h"

static bool want_help(int argc, char **argv) {
        return argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

static int store_init(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "chunk-size", required_argument, NULL, 'c' },
                { "zstd-level", required_argument, NULL, 'z' },
                {},
        };
        StoreOptions o = { .create = true };
        int c;
        while ((c = getopt_long(argc, argv, "hc:z:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("store init", "[--chunk-size SIZE] [--zstd-level N]",
                                        "Creates an empty store (other commands create one with the defaults).\n\n"
                                        "  --chunk-size SIZE  a power of two from 4K to 4M (default 64K)\n"
                                        "  --zstd-level N     zstd level 1..19 for new chunks (default 1); -1..-100\n"
                                        "                     trade size for speed (zstd's fast mode)\n");
                case 'c': {
                        uint64_t v;
                        if (parse_size(optarg, &v) < 0 || v < STORE_CHUNK_SIZE_MIN || v > STORE_CHUNK_SIZE_MAX ||
                            (v & (v - 1)))
                                return cli_usage("store init", "--chunk-size must be a power of two from 4K to 4M");
                        o.chunk_size = (uint32_t) v;
                        break;
                }
                case 'z': {
                        /* negative levels: zstd's fast mode, as in 'zstd --fast=N' */
                        uint64_t v;
                        bool neg = optarg[0] == '-';
                        if (parse_u64(optarg + neg, &v) < 0 || v < 1 || v > (neg ? 100 : 19))
                                return cli_usage("store init",
                                                 "--zstd-level takes a number from 1 to 19, or -1 to -100 (faster)");
                        o.zstd_level = neg ? -(int) v : (int) v;
                        break;
                }
                default:
                        return cli_usage("store init", "invalid option");
                }
        if (optind != argc)
                return cli_usage("store init", "unexpected argument '%s'", argv[optind]);
        _cleanup_free_ char *cfg = cli_home_path("store/config");
        if (cfg && access(cfg, F_OK) == 0)
                return cli_errorf("a store exists already in '%s' (its chunk size is fixed)", cli_home());
        int r = mkdir_p(cli_home(), 0755);
        if (r < 0)
                return cli_errorf("cannot create '%s': %s", cli_home(), strerror(-r));
        _cleanup_free_ char *dir = cli_home_path("store");
        Store *s;
        o.encrypted = home_keys_encrypted(cli_home());
        r = store_open(dir, &o, &s);
        if (r < 0)
                return cli_error(r);
        printf("created store in %s (chunk size %u)\n", dir, store_chunk_size(s));
        store_free(s);
        return 0;
}

/* userdata: the --json array of problems, or NULL to print them */
static void print_problem(const char *msg, void *userdata) {
        if (userdata)
                json_array_append_new(userdata, json_string(msg));
        else
                fprintf(stderr, "problem: %s\n", msg);
}

static int store_fsck_cmd(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("store fsck", "[--json]",
                                "Verifies the store: every ref, every object and every referenced chunk\n"
                                "(read, decompressed, hashed). Lists problems; exits 1 when anything\n"
                                "referenced is missing or corrupt. Unreferenced chunks are reported only\n"
                                "('roam store gc' removes them).\n\n"
                                "  --json   one JSON object with the counts and the problems (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("store fsck", "unexpected argument '%s'", argv[1]);
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(false, false, &s))
                return 1;
        FsckReport f;
        _cleanup_(json_decrefp) json_t *problems = as_json ? json_array() : NULL;
        if (as_json && !problems)
                return cli_error(-ENOMEM);
        Progress *p = progress_new("fsck (chunks)", 0);
        int r = store_fsck(s, p, print_problem, problems, &f);
        progress_free(p);
        uint64_t tmp_bytes = 0;
        if (r >= 0) /* the home's too: a converted image waits in HOME/tmp */
                r = store_stray_tmp(s, cli_home(), STORE_TMP_MIN_AGE_S, false, &f.tmp_files, &tmp_bytes);
        if (r < 0)
                return cli_error(r);
        if (as_json) {
                json_t *j = json_pack(
                        "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:O}", "ok",
                        fsck_report_ok(&f), "refs", (json_int_t) f.refs, "bad_refs", (json_int_t) f.bad_refs,
                        "objects_referenced", (json_int_t) f.objects_referenced, "bad_objects",
                        (json_int_t) f.bad_objects, "chunks_referenced", (json_int_t) f.chunks_referenced,
                        "missing_chunks", (json_int_t) f.missing_chunks, "corrupt_chunks",
                        (json_int_t) f.corrupt_chunks, "chunks_stored", (json_int_t) f.chunks_stored,
                        "unreferenced_chunks", (json_int_t) f.unreferenced_chunks, "unreferenced_objects",
                        (json_int_t) f.unreferenced_objects, "tmp_files", (json_int_t) f.tmp_files, "tmp_bytes",
                        (json_int_t) tmp_bytes, "problems", problems);
                if (cli_print_json(j))
                        return 1;
                return fsck_report_ok(&f) ? 0 : 1;
        }
        char tb[32];
        printf("refs:                 %llu (%llu malformed)\n"
               "objects referenced:   %llu (%llu missing or corrupt)\n"
               "chunks referenced:    %llu (%llu missing, %llu corrupt)\n"
               "chunks stored:        %llu (%llu unreferenced)\n"
               "objects unreferenced: %llu\n"
               "temp files:           %llu stray (%s; 'roam store gc' removes them)\n",
               (unsigned long long) f.refs, (unsigned long long) f.bad_refs,
               (unsigned long long) f.objects_referenced, (unsigned long long) f.bad_objects,
               (unsigned long long) f.chunks_referenced, (unsigned long long) f.missing_chunks,
               (unsigned long long) f.corrupt_chunks, (unsigned long long) f.chunks_stored,
               (unsigned long long) f.unreferenced_chunks, (unsigned long long) f.unreferenced_objects,
               (unsigned long long) f.tmp_files, format_bytes(tmp_bytes, tb, sizeof tb));
        if (!fsck_report_ok(&f))
                return cli_errorf("store '%s' is damaged: %llu refs, %llu objects, %llu chunks missing or corrupt "
                                  "(re-import or pull the affected images)",
                                  store_path(s), (unsigned long long) f.bad_refs, (unsigned long long) f.bad_objects,
                                  (unsigned long long) (f.missing_chunks + f.corrupt_chunks));
        printf("store is consistent\n");
        return 0;
}

static int parse_keep(const char *arg, unsigned *ret) {
        uint64_t v;
        if (parse_u64(arg, &v) < 0 || v > 100000)
                return cli_usage("store gc", "--keep-* takes a count from 0 to 100000, not '%s'", arg);
        *ret = (unsigned) v;
        return 0;
}

/* "90", "90s", "30m", "1h", "2d" -> seconds, at most max */
static int parse_seconds(const char *opt, const char *arg, unsigned max, unsigned *ret) {
        uint64_t v;
        if (parse_duration(arg, &v) < 0 || v > max)
                return cli_usage("store gc", "%s takes a time from 0 to %u days (90, 90s, 30m, 1h, 2d), not '%s'", opt,
                                 max / 86400, arg);
        *ret = (unsigned) v;
        return 0;
}

static void print_gc(const GcReport *g, unsigned grace_s) {
        char a[32];
        printf("removed %llu chunks (%s), %llu objects, %llu temp files", (unsigned long long) g->chunks_removed,
               format_bytes(g->bytes_removed, a, sizeof a), (unsigned long long) g->objects_removed,
               (unsigned long long) g->tmp_removed);
        if (g->chunks_young || g->objects_young)
                printf("; kept %llu chunks, %llu objects younger than the grace of %u s (--grace)",
                       (unsigned long long) g->chunks_young, (unsigned long long) g->objects_young, grace_s);
        putchar('\n');
}

/* gc by the daemon that serves the home (api-gc.h); 1 if it failed (printed) */
static int gc_by_daemon(DaemonEndpoint *ep, unsigned grace_s, unsigned wait_s, GcReport *ret) {
        /* the daemon bounds its wait; the sweep of a large store may take long */
        RemoteOptions ro = { .cacert = ep->cacert, .fingerprint = ep->fingerprint, .stall_timeout_s = wait_s + 24 * 3600 };
        _cleanup_(remote_freep) Remote *rem = NULL;
        int r = remote_new(ep->url, ep->token, &ro, &rem);
        if (r < 0)
                return cli_error(r);
        _cleanup_(json_decrefp) json_t *body = json_pack("{s:I, s:I}", "grace_s", (json_int_t) grace_s, "wait_s",
                                                         (json_int_t) wait_s);
        json_t *answer = NULL;
        if (!body)
                return cli_error(-ENOMEM);
        if (cli_local_request(rem, "POST", "/v1/store/gc", body, &answer))
                return 1;
        *ret = (GcReport){
                .chunks_removed = json_member_u64(answer, "chunks_removed"),
                .bytes_removed = json_member_u64(answer, "bytes_removed"),
                .objects_removed = json_member_u64(answer, "objects_removed"),
                .tmp_removed = json_member_u64(answer, "tmp_removed"),
                .chunks_young = json_member_u64(answer, "chunks_young"),
                .objects_young = json_member_u64(answer, "objects_young"),
        };
        json_decref(answer);
        return 0;
}

static int store_gc_cmd(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "keep-last", required_argument, NULL, 'l' },
                { "keep-hourly", required_argument, NULL, 'H' },
                { "keep-daily", required_argument, NULL, 'd' },
                { "grace", required_argument, NULL, 'g' },
                { "wait", required_argument, NULL, 'w' },
                {},
        };
        RetentionPolicy keep = { 0 };
        unsigned grace_s = STORE_GC_GRACE_DEFAULT_S, wait_s = API_GC_WAIT_DEFAULT_S;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("store gc", "[--grace TIME] [--wait TIME] [--keep-last N] [--keep-hourly N] "
                                        "[--keep-daily N]",
                                        "Removes every chunk and object that no ref reaches and that is older\n"
                                        "than the grace, and stray temp files anywhere under the home (ones no\n"
                                        "running roam uses). Waits for running imports and transfers to finish\n"
                                        "first. When a daemon serves the home, it runs the gc and serves on:\n"
                                        "pulls go on, writes wait for the gc.\n\n"
                                        "  --grace TIME      keep unreferenced chunks and objects written or\n"
                                        "                    found by a writer in the last TIME (default 1h;\n"
                                        "                    0 = none): a push in progress keeps its chunks\n"
                                        "  --wait TIME       give up when the daemon's writers do not let go\n"
                                        "                    within TIME (default 10m)\n\n"
                                        "Retention of the checkpoints of the sessions this host owns (without\n"
                                        "these options every checkpoint is kept): a checkpoint stays if any\n"
                                        "rule keeps it; the latest, the current parent and the branches a\n"
                                        "rollback left are always kept.\n"
                                        "  --keep-last N     the newest N of each session\n"
                                        "  --keep-hourly N   the newest of each of the last N hours\n"
                                        "  --keep-daily N    the newest of each of the last N days\n");
                case 'l':
                        if (parse_keep(optarg, &keep.keep_last))
                                return 2;
                        break;
                case 'H':
                        if (parse_keep(optarg, &keep.keep_hourly))
                                return 2;
                        break;
                case 'd':
                        if (parse_keep(optarg, &keep.keep_daily))
                                return 2;
                        break;
                case 'g':
                        if (parse_seconds("--grace", optarg, STORE_GC_GRACE_MAX_S, &grace_s))
                                return 2;
                        break;
                case 'w':
                        if (parse_seconds("--wait", optarg, API_GC_WAIT_MAX_S, &wait_s))
                                return 2;
                        break;
                default:
                        return cli_usage("store gc", "invalid option");
                }
        if (optind != argc)
                return cli_usage("store gc", "unexpected argument '%s'", argv[optind]);
        uint64_t pruned = 0;
        if (!retention_keeps_all(&keep)) {
                _cleanup_(cli_host_done) CliHost h = { 0 };
                if (cli_host_open(true, &h))
                        return 1;
                int k = session_prune(h.host, &keep, &pruned);
                if (k < 0)
                        return cli_error(k);
        }
        GcReport g = { 0 };
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        if (cli_need_home(false))
                return 1;
        int r = daemon_endpoint_read(cli_home(), &ep);
        if (r >= 0) {
                if (gc_by_daemon(ep, grace_s, wait_s, &g))
                        return 1;
        } else if (r != -ENOENT && r != -ESRCH)
                return cli_error(r);
        else {
                err_clear(); /* no daemon: gc here */
                _cleanup_(store_freep) Store *s = NULL;
                if (cli_open_store(false, false, &s))
                        return 1;
                r = store_gc(s, &(GcOptions){ .grace_s = grace_s }, &g);
                uint64_t more = 0; /* the rest of the home, with the store still held */
                if (r >= 0)
                        r = store_stray_tmp(s, cli_home(), STORE_TMP_MIN_AGE_S, true, &more, NULL);
                g.tmp_removed += more;
                if (r < 0)
                        return cli_error(r);
        }
        if (!retention_keeps_all(&keep))
                printf("retention: %llu checkpoints dropped\n", (unsigned long long) pruned);
        print_gc(&g, grace_s);
        return 0;
}

static int store_stats_cmd(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("store stats", "[--json]",
                                "Prints chunk count, bytes stored on disk, bytes referenced by refs, and\n"
                                "the dedup and compression ratios.\n\n"
                                "  --json   one JSON object (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("store stats", "unexpected argument '%s'", argv[1]);
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(false, false, &s))
                return 1;
        StatsReport st;
        int r = store_stats(s, &st);
        if (r < 0)
                return cli_error(r);
        char a[32], b[32], c[32], d[32];
        double dedup = st.unique_bytes ? (double) st.referenced_bytes / (double) st.unique_bytes : 0;
        double comp = st.stored_bytes ? (double) st.unique_bytes / (double) st.stored_bytes : 0;
        if (as_json)
                return cli_print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "refs",
                                                (json_int_t) st.refs, "chunks", (json_int_t) st.chunks,
                                                "stored_bytes", (json_int_t) st.stored_bytes, "unique_bytes",
                                                (json_int_t) st.unique_bytes, "objects", (json_int_t) st.objects,
                                                "object_bytes", (json_int_t) st.object_bytes, "blob_bytes",
                                                (json_int_t) st.blob_bytes, "referenced_bytes",
                                                (json_int_t) st.referenced_bytes, "dedup_ratio", dedup,
                                                "compression_ratio", comp));
        printf("refs:              %llu\n"
               "chunks:            %llu\n"
               "bytes stored:      %s (%llu)\n"
               "bytes unique:      %s (plain size of stored chunks)\n"
               "bytes referenced:  %s non-zero (%llu), %s logical\n"
               "dedup ratio:       %.2f\n"
               "compression ratio: %.2f\n",
               (unsigned long long) st.refs, (unsigned long long) st.chunks,
               format_bytes(st.stored_bytes, a, sizeof a), (unsigned long long) st.stored_bytes,
               format_bytes(st.unique_bytes, b, sizeof b), format_bytes(st.referenced_bytes, c, sizeof c),
               (unsigned long long) st.referenced_bytes, format_bytes(st.blob_bytes, d, sizeof d), dedup, comp);
        return 0;
}

static const Verb store_verbs[] = {
        { "init", store_init, "[--chunk-size SIZE]", "create a store with a chosen chunk size" },
        { "fsck", store_fsck_cmd, "[--json]", "verify every ref, object and chunk" },
        { "gc", store_gc_cmd, "[--grace TIME] [--keep-last N]", "remove unreferenced chunks and objects (also while serving)" },
        { "stats", store_stats_cmd, "[--json]", "chunks, bytes stored and referenced, dedup ratio" },
};

int verb_store(int argc, char **argv) {
        return cli_dispatch("store", store_verbs, ELEMENTSOF(store_verbs), argc, argv);
}
