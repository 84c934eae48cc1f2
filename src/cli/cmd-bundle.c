/* SPDX-License-Identifier: MIT */
/* roam bundle create|apply */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../daemon/sync-file.h"
#include "../store/bundle.h"

#define MAX_ARGS_REFS 256

/* "debian" is short for "images/debian" when no ref of that name exists. */
static char *resolve_ref(Store *s, const char *arg) {
        RoamId id;
        if (strchr(arg, '/') || store_ref_get(s, arg, &id) == 0)
                return strdup(arg);
        char buf[300];
        snprintf(buf, sizeof buf, "images/%s", arg);
        return strdup(buf);
}

static int bundle_create_cmd(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "output", required_argument, NULL, 'o' },
                { "since", required_argument, NULL, 's' },
                { "force", no_argument, NULL, 'f' },
                {},
        };
        const char *out = NULL;
        char *since_arg[MAX_ARGS_REFS];
        size_t n_since = 0;
        bool force = false;
        int c;
        while ((c = getopt_long(argc, argv, "ho:s:f", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("bundle create", "-o FILE REF... [--since REF]",
                                        "Writes one file with the refs and every chunk they need, for a USB\n"
                                        "stick. REF is a ref name (images/debian) or an image name (debian).\n\n"
                                        "  -o, --output FILE  the bundle to write (required)\n"
                                        "  -s, --since REF    leave out what REF already has (repeatable)\n"
                                        "  -f, --force        overwrite FILE\n");
                case 'o':
                        out = optarg;
                        break;
                case 's':
                        if (n_since >= MAX_ARGS_REFS)
                                return cli_usage("bundle create", "too many --since refs");
                        since_arg[n_since++] = optarg;
                        break;
                case 'f':
                        force = true;
                        break;
                default:
                        return cli_usage("bundle create", "invalid option");
                }
        if (!out)
                return cli_usage("bundle create", "-o FILE is required");
        if (optind >= argc)
                return cli_usage("bundle create", "expected at least one REF");
        if (argc - optind > MAX_ARGS_REFS)
                return cli_usage("bundle create", "too many refs");
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(false, false, &s))
                return 1;
        char *refs[MAX_ARGS_REFS], *since[MAX_ARGS_REFS];
        size_t n_refs = 0;
        int ret = 1;
        for (int i = optind; i < argc; i++)
                refs[n_refs++] = resolve_ref(s, argv[i]);
        for (size_t i = 0; i < n_since; i++)
                since[i] = resolve_ref(s, since_arg[i]);
        Progress *p = progress_new("bundle", 0);
        BundleStats bs;
        BundleSpec spec = { .refs = refs, .n_refs = n_refs, .since = since, .n_since = n_since };
        int r = bundle_write_file(s, &spec, out, force, p, &bs);
        progress_free(p);
        if (r < 0) {
                cli_error(r);
                goto done;
        }
        char a[32];
        printf("wrote %s: %llu refs, %llu objects, %llu chunks, %s\n", out, (unsigned long long) bs.refs,
               (unsigned long long) bs.objects, (unsigned long long) bs.chunks, format_bytes(bs.bytes, a, sizeof a));
        ret = 0;
done:
        for (size_t i = 0; i < n_refs; i++)
                free(refs[i]);
        for (size_t i = 0; i < n_since; i++)
                free(since[i]);
        return ret;
}

typedef struct PlainRefs {
        SyncCtx x;
        bool force;
} PlainRefs;

/* A plain bundle sets the refs of a session only where this host holds it
 * (sync-file.h); --force lets an admin through, and says what it forced. */
static int check_plain(void *userdata, const char *envelope, const BundleRef *refs, size_t n) {
        PlainRefs *p = userdata;
        if (envelope)
                return err_set(-EINVAL, "this is a sync file, not a plain bundle (apply it with 'roam session "
                               "apply-sync FILE' on a server, 'roam offline SESSION --from-file FILE' on a laptop)");
        _cleanup_free_ char *forced = NULL;
        int r = sync_check_plain_refs(&p->x, refs, n, p->force, &forced);
        if (r >= 0 && forced)
                fprintf(stderr, "roam: --force: %s\n", forced);
        return r;
}

static int bundle_apply_cmd(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "force", no_argument, NULL, 'f' },
                {},
        };
        bool force = false;
        int c;
        while ((c = getopt_long(argc, argv, "hf", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("bundle apply", "FILE [--force]",
                                        "Verifies a bundle (checksum of the whole file, then every object and\n"
                                        "chunk) and stores its contents; sets its refs only when all is well.\n"
                                        "Refs of a session that another host or a laptop holds, and users'\n"
                                        "profile refs, are refused: sessions move by hand-over or sync file.\n\n"
                                        "  -f, --force   an admin's override: apply them anyway (said on stderr)\n");
                case 'f':
                        force = true;
                        break;
                default:
                        return cli_usage("bundle apply", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("bundle apply", "expected FILE");
        const char *file = argv[optind];
        struct stat st;
        if (stat(file, &st) < 0)
                return cli_errorf("cannot open bundle '%s': %s", file, strerror(errno));
        if (S_ISDIR(st.st_mode))
                return cli_errorf("'%s' is a directory (give a bundle file)", file);
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        PlainRefs pr = { .x = { .home = cli_home(), .store = h.store, .catalog = h.catalog, .host = h.host },
                         .force = force };
        BundleApplyOptions o = { .check = check_plain, .userdata = &pr };
        Progress *p = progress_new("apply", (uint64_t) st.st_size);
        BundleStats bs;
        int r = bundle_apply(h.store, file, &o, p, &bs);
        progress_free(p);
        if (r < 0) {
                fprintf(stderr, "roam: %s; no ref was changed\n", err_message(r));
                return 1;
        }
        printf("applied %s: %llu refs, %llu objects, %llu chunks (%llu new)\n", file, (unsigned long long) bs.refs,
               (unsigned long long) bs.objects, (unsigned long long) bs.chunks, (unsigned long long) bs.chunks_new);
        return 0;
}

static const Verb bundle_verbs[] = {
        { "create", bundle_create_cmd, "-o FILE REF...", "write refs and their chunks to one file" },
        { "apply", bundle_apply_cmd, "FILE", "verify a bundle and store its contents" },
};

int verb_bundle(int argc, char **argv) {
        return cli_dispatch("bundle", bundle_verbs, ELEMENTSOF(bundle_verbs), argc, argv);
}
