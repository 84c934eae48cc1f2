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
#include "../basic/macro.h"
#include "../basic/progress.h"
#include "../daemon/daemon.h"
#include "../daemon/fleet-watchdog.h"

static const Verb verbs[] = {
        { "image", verb_image, "COMMAND ...", "import, export, list and remove master disk images", true },
        { "store", verb_store, "COMMAND ...", "check, clean and measure the content-addressed store", true },
        { "session", verb_session, "COMMAND ...", "create, run, checkpoint and restore users' session VMs", true },
        { "desk", verb_desk, "COMMAND ...", "users' desks on terminal servers: start, suspend, resume", true },
        { "bundle", verb_bundle, "COMMAND ...", "carry images and deltas in one file (USB stick)", true },
        { "serve", verb_serve, "[--listen ADDR:PORT] ...", "serve the store to other hosts over HTTP(S)" },
        { "token", verb_token, "COMMAND ...", "create, list and revoke API tokens for 'roam serve'", true },
        { "host", verb_host, "COMMAND ...", "the servers of a fleet (etcd + a shared store)", true },
        { "laptop", verb_laptop, "COMMAND ...", "list and revoke the laptops paired with this server", true },
        { "pull", verb_pull, "URL REF...", "fetch refs and their chunks from a roam daemon" },
        { "push", verb_push, "URL REF...", "send refs and their chunks to a roam daemon" },
        { "hoard", verb_hoard, "URL REF...", "let the local daemon pull refs in the background" },
        { "info", verb_info, "URL", "what a roam daemon says about itself and the token" },
        { "status", verb_status, "[--json]", "the local daemon: role, hoards and their progress" },
        { "offline", verb_offline, "[--json] SESSION", "take a session offline onto this laptop" },
        { "online", verb_online, "[--json] SESSION", "take a session on this laptop back online" },
        { "unlock", verb_unlock, "[--passphrase-file FILE]", "unlock this encrypted laptop with its passphrase" },
        { "lock", verb_lock, "", "lock this encrypted laptop: its key leaves memory" },
};

static const char about[] =
        "roam makes a user's live desktop session portable: master images and session\n"
        "state live in a content-addressed store and move between servers and laptops.\n";
static const char options[] =
        "  --home DIR   state directory (default $ROAM_HOME, else /var/lib/roam as root,\n"
        "               else ~/.local/share/roam)\n"
        "  -q, --quiet  no progress output\n"
        "  --log-level LEVEL\n"
        "               what the daemon logs: debug, info (default), warning or error\n"
        "               (default $ROAM_LOG)\n"
        "  -h, --help   this help\n"
        "  --version    print the version\n";
#define SYNOPSIS "roam [--home DIR] [--quiet] [--log-level LEVEL] COMMAND [ARGS...]"

static void usage(FILE *f) {
        fprintf(f, "usage: " SYNOPSIS "\n\n%s\nOptions:\n%s\n", about, options);
        cli_print_verbs(f, NULL, verbs, ELEMENTSOF(verbs));
        fprintf(f, "\nRun 'roam COMMAND --help' for a command's options.\n");
}

/* roam --help-man [GROUP] (hidden): roam.1, or roam-GROUP.1, on stdout. */
static int man_page(const char *group) {
        const Verb *g = NULL;
        for (size_t i = 0; group && i < ELEMENTSOF(verbs); i++)
                if (verbs[i].group && !strcmp(verbs[i].name, group))
                        g = &verbs[i];
        if (group && !g) {
                fprintf(stderr, "roam: no verb group '%s' (see 'roam --help')\n", group);
                return 2;
        }
        if (g) {
                char page[64];
                snprintf(page, sizeof page, "roam-%s", g->name);
                cli_man_header(page, page, g->summary);
                printf(".SH SYNOPSIS\n.B roam %s\n.I COMMAND\n[ARGS...]\n.PP\n"
                       ".B roam %s\n.I COMMAND\n\\-\\-help\n", g->name, g->name);
                char *argv[] = { (char *) g->name, "--help-man", NULL };
                int rc = g->run(2, argv);
                if (rc)
                        return rc;
                printf(".SH SEE ALSO\n.BR roam (1)\n");
                return 0;
        }
        cli_man_header("roam", "roam", "portable desktop sessions: QEMU VMs over a content-addressed store");
        printf(".SH SYNOPSIS\n.B roam\n[\\-\\-home DIR] [\\-\\-quiet] [\\-\\-log\\-level LEVEL]\n"
               ".I COMMAND\n[ARGS...]\n.SH DESCRIPTION\n%s.SH OPTIONS\n.nf\n", about);
        for (const char *p = options; *p; p++)
                fputs(*p == '-' ? "\\-" : (char[]){ *p, 0 }, stdout);
        printf(".fi\n.SH COMMANDS\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                if (!verbs[i].group) {
                        if (cli_man_verb("", &verbs[i]))
                                return 1;
                        continue;
                }
                printf(".SS \"roam %s COMMAND ...\"\n%s: see\n.BR roam\\-%s (1).\n", verbs[i].name,
                       verbs[i].summary, verbs[i].name);
        }
        printf(".SH ENVIRONMENT\n"
               ".TP\n.B ROAM_HOME\nthe state directory (\\-\\-home wins)\n"
               ".TP\n.B ROAM_TOKEN\nthe token for another daemon (\\-\\-token wins)\n"
               ".TP\n.B ROAM_LOG\nthe daemon's log level (\\-\\-log\\-level wins)\n"
               ".SH FILES\n"
               ".TP\n.I /etc/roam/roam.conf\nsettings of roam serve, or $ROAM_HOME/roam.conf when the home "
               "is chosen (roam serve \\-\\-help, \\-\\-print\\-config)\n"
               ".TP\n.I /var/lib/roam\nthe state directory of root: store, catalog, sessions\n"
               ".SH SEE ALSO\n");
        for (size_t i = 0, first = 1; i < ELEMENTSOF(verbs); i++)
                if (verbs[i].group) {
                        printf("%s.BR roam\\-%s (1)", first ? "" : ",\n", verbs[i].name);
                        first = 0;
                }
        printf("\n");
        return 0;
}

int main(int argc, char **argv) {
        /* hidden: the helper 'roam serve --etcd' starts (fleet-watchdog.h) */
        if (argc >= 2 && !strcmp(argv[1], FLEET_WATCHDOG_VERB))
                return fleet_watchdog_main(argc, argv);
        static const struct option opts[] = {
                { "home", required_argument, NULL, 'H' },
                { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "log-level", required_argument, NULL, 'L' },
                { "help-man", no_argument, NULL, 'M' },
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
                case 'M':
                        return man_page(optind < argc ? argv[optind] : NULL);
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
        int rc = cli_dispatch(NULL, verbs, ELEMENTSOF(verbs), argc - optind, argv + optind);
        /* a command that finished anyway did its work: its exit code stands */
        return rc != 0 && interrupt_requested() ? cli_interrupted() : rc;
}
