/* SPDX-License-Identifier: MIT */
/* Sync files (src/daemon/sync-file.h): roam session export-offline and
 * apply-sync on the server; roam offline --from-file, roam online --to-file
 * and roam session resume --file-refused on the laptop. All run on the
 * home's store and catalog directly: the point of a sync file is that no
 * link is needed. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../daemon/sync-file.h"

static SyncCtx ctx_of(const CliHost *h) {
        return (SyncCtx) { .home = cli_home(), .store = h->store, .catalog = h->catalog, .host = h->host };
}

static void print_written(const char *what, const char *file, const SyncFileResult *res) {
        char a[32];
        printf("%s: wrote %s (%s, %llu chunks)\n", what, file, format_bytes(res->file_bytes, a, sizeof a),
               (unsigned long long) res->stats.chunks);
}

int session_export_offline_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "laptop", required_argument, NULL, 'l' },
                { "output", required_argument, NULL, 'o' },
                { "offline-days", required_argument, NULL, 'D' },
                { "force", no_argument, NULL, 'f' },
                {},
        };
        const char *laptop = NULL, *out = NULL;
        double days = 30;
        bool force = false;
        int c;
        while ((c = getopt_long(argc, argv, "hl:o:f", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session export-offline", "NAME --laptop ID -o FILE [--offline-days D]",
                                        "Takes a session offline by file (admin, on the server): pauses it, takes\n"
                                        "its final checkpoint and gives it to the laptop ID (a prefix of its id\n"
                                        "in 'roam laptop list') at the next epoch, with a lease; FILE gets the\n"
                                        "grant and the checkpoint, not the master image (the laptop hoards it or\n"
                                        "gets its bundle). On the laptop: 'roam offline NAME --from-file FILE'.\n"
                                        "Asked again for the same laptop, it writes the same grant.\n\n"
                                        "  -l, --laptop ID       the laptop (paired, of the session's user)\n"
                                        "  -o, --output FILE     the sync file to write\n"
                                        "  --offline-days D      the lease (default 30; 0 = no limit)\n"
                                        "  -f, --force           overwrite FILE\n");
                case 'l':
                        laptop = optarg;
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 'D': {
                        char *end;
                        days = strtod(optarg, &end);
                        if (*end || end == optarg || days < 0 || days > 3650)
                                return cli_usage("session export-offline",
                                                 "--offline-days takes a number of days from 0 to 3650");
                        break;
                }
                case 'f':
                        force = true;
                        break;
                default:
                        return cli_usage("session export-offline", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session export-offline", "expected NAME");
        if (!name_is_valid(argv[optind]))
                return cli_usage("session export-offline", "session name '%s' is invalid (use " NAME_RULE ")",
                                 argv[optind]);
        if (!laptop || !out)
                return cli_usage("session export-offline", "--laptop ID and -o FILE are required");
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        SyncCtx x = ctx_of(&h);
        SyncFileResult res;
        int r = sync_file_export_offline(&x, argv[optind], laptop, (int64_t) (days * 86400), out, force, &res);
        if (r < 0)
                return cli_error(r);
        print_written("take offline by file", out, &res);
        printf("session '%s' is laptop %s's at epoch %lld now; on the laptop: roam offline %s --from-file FILE\n",
               argv[optind], res.terms.laptop, (long long) res.terms.epoch, argv[optind]);
        return 0;
}

int session_apply_sync_verb(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("session apply-sync", "FILE",
                                "Takes a session online from a laptop's sync file ('roam online NAME\n"
                                "--to-file FILE' there), on the server: verifies the file as a bundle is\n"
                                "verified, checks that it comes from the laptop that holds the session at\n"
                                "the epoch it holds it (signed with that laptop's key) and was written for\n"
                                "this server, then stores it and resumes the session (a live checkpoint)\n"
                                "or logs it off and applies its policy (powered off). A file that fails a\n"
                                "check is refused with the check named, and nothing here changes.\n"
                                "A stale copy ('roam session export-stale' on a laptop that had the\n"
                                "session before a reclaim) is checked the same way (signed by a laptop of\n"
                                "the session's user, revoked or not; older than the session here) and only\n"
                                "kept, as ref sessions/USER/NAME/stale-eEPOCH-LAPTOP: the session, its owner\n"
                                "and its checkpoints stay as they are; restore it on purpose with 'roam\n"
                                "session restore NAME CHECKPOINT' once the session is stopped.\n");
        if (argc != 2)
                return cli_usage("session apply-sync", "expected FILE");
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        SyncCtx x = ctx_of(&h);
        SyncFileResult res;
        int r = sync_file_apply(&x, argv[1], NULL, &res);
        if (r < 0) {
                fprintf(stderr, "roam: %s\n", err_message(r));
                return 1;
        }
        if (res.terms.kind == SYNC_STALE_COPY)
                printf("kept the stale copy of session '%s' from laptop %s (epoch %lld, checkpoint %s) as ref '%s'; "
                       "the session is unchanged\n", res.terms.session, res.terms.laptop, (long long) res.terms.epoch,
                       res.terms.checkpoint, res.kept_ref);
        else if (res.terms.powered_off)
                printf("session '%s' is this server's at epoch %lld: logged off (%s), policy %s\n", res.terms.session,
                       (long long) res.terms.epoch + 1, res.finalize.finalize.logoff,
                       vm_policy_to_string(res.finalize.finalize.policy));
        else
                printf("session '%s' runs on this server again at epoch %lld (%llu chunks from the file)\n",
                       res.terms.session, (long long) res.terms.epoch + 1, (unsigned long long) res.stats.chunks);
        return 0;
}

int session_export_stale_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "output", required_argument, NULL, 'o' },
                { "force", no_argument, NULL, 'f' },
                {},
        };
        const char *out = NULL;
        bool force = false;
        int c;
        while ((c = getopt_long(argc, argv, "ho:f", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session export-stale", "NAME -o FILE [--force]",
                                        "On a laptop that had session NAME offline when the server reclaimed it:\n"
                                        "the copy here is stale (the laptop daemon stopped it, checkpointed, and\n"
                                        "noted why); it never runs on beside the server's and is never taken\n"
                                        "online over it. This writes its latest checkpoint to FILE (a sync file:\n"
                                        "a verified bundle whose terms are signed by this laptop's key, without\n"
                                        "the master image) for an admin, who keeps it on the server with 'roam\n"
                                        "session apply-sync FILE': beside the session, never over it. Nothing\n"
                                        "here changes; the copy stays until removed.\n\n"
                                        "  -o, --output FILE  the file to write\n"
                                        "  -f, --force        overwrite FILE\n");
                case 'o':
                        out = optarg;
                        break;
                case 'f':
                        force = true;
                        break;
                default:
                        return cli_usage("session export-stale", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session export-stale", "expected NAME");
        if (!name_is_valid(argv[optind]))
                return cli_usage("session export-stale", "session name '%s' is invalid (use " NAME_RULE ")",
                                 argv[optind]);
        if (!out)
                return cli_usage("session export-stale", "-o FILE is required");
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        SyncCtx x = ctx_of(&h);
        SyncFileResult res;
        int r = sync_file_export_stale(&x, argv[optind], out, force, &res);
        if (r < 0)
                return cli_error(r);
        print_written("stale copy", out, &res);
        printf("session '%s' at epoch %lld (%s, checkpoint %.12s); on the server an admin keeps it with: roam "
               "session apply-sync FILE\n", argv[optind], (long long) res.terms.epoch,
               res.terms.powered_off ? "powered off" : "live", res.terms.checkpoint);
        return 0;
}

int syncfile_offline_from(const char *name, const char *file) {
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        SyncCtx x = ctx_of(&h);
        SyncFileResult res;
        int r = sync_file_take_offline(&x, name, file, &res);
        if (r == -EALREADY) {
                printf("%s\n", err_message(r));
                return 0;
        }
        if (r < 0)
                return cli_error(r);
        printf("session '%s' is offline on this laptop (epoch %lld, from %s)\n", res.terms.session,
               (long long) res.terms.epoch, file);
        return 0;
}

int syncfile_online_to(const char *name, const char *file, bool force) {
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        SyncCtx x = ctx_of(&h);
        SyncFileResult res;
        int r = sync_file_take_online(&x, name, file, force, &res);
        if (r < 0)
                return cli_error(r);
        print_written("take online by file", file, &res);
        printf("session '%s' is handed in (%s): it stays stopped here; on the server: roam session apply-sync "
               "FILE; if the server refuses it: roam session resume %s --file-refused\n",
               name, res.terms.powered_off ? "powered off" : "live", name);
        return 0;
}

int syncfile_resume_refused(const char *name) {
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        SyncCtx x = ctx_of(&h);
        int r = sync_file_resume_refused(&x, name);
        if (r < 0)
                return cli_error(r);
        printf("session '%s' is this laptop's again, from the checkpoint it was handed in with\n", name);
        return 0;
}
