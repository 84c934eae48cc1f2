/* SPDX-License-Identifier: MIT */
/* roam: makes a user's live desktop session portable. Entry point and the
 * top-level verb table; each verb group lives in its own cmd-*.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"

#include "../basic/interrupt.h"
#include "../basic/progress.h"
#include "../daemon/daemon.h"

static const Verb verbs[] = {
        { "image", verb_image, "COMMAND ...", "import, export, list and remove master disk images" },
        { "store", verb_store, "COMMAND ...", "check, clean and measure the content-addressed store" },
        { "session", verb_session, "COMMAND ...", "create, run, checkpoint and restore users' session VMs" },
        { "bundle", verb_bundle, "COMMAND ...", "carry images and deltas in one file (USB stick)" },
        { "serve", verb_serve, "[--listen ADDR:PORT] ...", "serve the store to other hosts over HTTP(S)" },
        { "token", verb_token, "COMMAND ...", "create, list and revoke API tokens for 'roam serve'" },
        { "laptop", verb_laptop, "COMMAND ...", "list and revoke the laptops paired with this server" },
        { "pull", verb_pull, "URL REF...", "fetch refs and their chunks from a roam daemon" },
        { "push", verb_push, "URL REF...", "send refs and their chunks to a roam daemon" },
        { "hoard", verb_hoard, "URL REF...", "let the local daemon pull refs in the background" },
        { "info", verb_info, "URL", "what a roam daemon says about itself and the token" },
        { "status", verb_status, "[--json]", "the local daemon: role, hoards and their progress" },
        { "offline", verb_offline, "[--json] SESSION", "take a session offline onto this laptop" },
        { "online", verb_online, "[--json] SESSION", "take a session on this laptop back online" },
};

static void usage(FILE *f) {
        fprintf(f,
                "usage: roam [--home DIR] [--quiet] [--log-level LEVEL] COMMAND [ARGS...]\n"
                "\n"
                "roam makes a user's live desktop session portable: master images and session\n"
                "state live in a content-addressed store and move between servers and laptops.\n"
                "\n"
                "Options:\n"
                "  --home DIR   state directory (default $ROAM_HOME, else /var/lib/roam as root,\n"
                "               else ~/.local/share/roam)\n"
                "  -q, --quiet  no progress output\n"
                "  --log-level LEVEL\n"
                "               what the daemon logs: debug, info (default), warning or error\n"
                "               (default $ROAM_LOG)\n"
                "  -h, --help   this help\n"
                "  --version    print the version\n"
                "\n");
        cli_print_verbs(f, NULL, verbs, sizeof verbs / sizeof verbs[0]);
        fprintf(f, "\nRun 'roam COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "home", required_argument, NULL, 'H' },
                { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "log-level", required_argument, NULL, 'L' },
                {},
        };
        int c;
        /* '+': stop at the first verb; its options are its own */
        while ((c = getopt_long(argc, argv, "+qh", opts, NULL)) >= 0) {
                switch (c) {
                case 'H':
                        arg_home = optarg;
                        break;
                case 'q':
                        arg_quiet = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'L':
                        if (daemon_log_level_from_string(optarg) < 0) {
                                fprintf(stderr, "roam: --log-level takes " DAEMON_LOG_LEVELS ", not '%s' (see 'roam --help')\n",
                                        optarg);
                                return 2;
                        }
                        arg_log_level = optarg;
                        break;
                case 'V':
                        printf("roam %s\n", ROAM_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "roam: see 'roam --help'\n");
                        return 2;
                }
        }
        progress_set_quiet(arg_quiet);
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        interrupt_install();
        int rc = cli_dispatch(NULL, verbs, sizeof verbs / sizeof verbs[0], argc - optind, argv + optind);
        /* a command that finished anyway did its work: its exit code stands */
        return rc != 0 && interrupt_requested() ? cli_interrupted() : rc;
}
