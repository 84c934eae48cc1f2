/* SPDX-License-Identifier: MIT */
/* roam desk start|list|show|suspend|resume|logoff|exec|ps: users' desks on
 * terminal servers (src/desk/). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#include "../basic/macro.h"
#include "../basic/util.h"
#include "../desk/desk-remote.h"
#include "../desk/desk.h"
#include "../sync/remote.h"

static bool want_help(int argc, char **argv) {
        return argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

static int open_host(CliHost *ctx) {
        return cli_host_open(true, ctx);
}

static int desk_start_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("desk start", "TS USER",
                                "Starts a desk for USER on terminal server TS (a running session made with\n"
                                "'roam session create TS --terminal-server'): a process tree in its own\n"
                                "namespaces with its own Xvnc display and Xfce session. One desk per user.\n");
        if (argc != 3)
                return cli_usage("desk start", "expected TS and USER");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        DeskInfo i;
        int r = desk_start(ctx.host, argv[1], argv[2], &i);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "started the desk of '%s' on '%s': display :%llu, uid %llu, pid %llu\n", argv[2], argv[1],
                (unsigned long long) i.display, (unsigned long long) i.uid, (unsigned long long) i.pid);
        return 0;
}

static int desk_list_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("desk list", "[--json] [TS]",
                                "Lists the desks (of terminal server TS): user, state, where.\n\n"
                                "  --json   one JSON array\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 2)
                return cli_usage("desk list", "expected at most TS");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        DeskInfo *v = NULL;
        size_t n = 0;
        int r = desk_list(ctx.host, argc == 2 ? argv[1] : NULL, &v, &n);
        if (r < 0)
                return cli_error(r);
        if (as_json) {
                json_t *a = json_array();
                for (size_t i = 0; a && i < n; i++)
                        json_array_append_new(a, desk_info_json(&v[i]));
                free(v);
                return cli_print_json(a);
        }
        printf("%-16s %-10s %-16s %8s %12s\n", "USER", "STATE", "TS", "DISPLAY", "CHECKPOINT");
        for (size_t i = 0; i < n; i++) {
                char b[32];
                printf("%-16s %-10s %-16s %7s%llu %12s\n", v[i].user, desk_info_state(&v[i]), v[i].ts,
                       ":", (unsigned long long) v[i].display,
                       v[i].bytes ? format_bytes(v[i].bytes, b, sizeof b) : "-");
        }
        free(v);
        return 0;
}

static int desk_show_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("desk show", "[--json] USER", "Shows the desk of USER.\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc != 2)
                return cli_usage("desk show", "expected USER");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        DeskInfo i;
        int r = desk_get(ctx.host, argv[1], &i);
        if (r < 0)
                return cli_error(r);
        if (as_json)
                return cli_print_json(desk_info_json(&i));
        char b[32];
        printf("user:        %s\nstate:       %s\nts:          %s\ndisplay:     :%llu\nuid:         %llu\n", i.user,
               desk_info_state(&i), i.ts, (unsigned long long) i.display, (unsigned long long) i.uid);
        if (i.away)
                printf("at:          %s\n", i.at);
        if (i.running)
                printf("pid:         %llu\n", (unsigned long long) i.pid);
        printf("checkpoint:  %s\nid:          %s\n", i.bytes ? format_bytes(i.bytes, b, sizeof b) : "-", i.id);
        return 0;
}

static int desk_suspend_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("desk suspend", "USER",
                                "Checkpoints the desk of USER into the store (CRIU in the terminal server,\n"
                                "its images and home as chunks) and ends its processes. A desk CRIU cannot\n"
                                "dump keeps running and the error gives CRIU's reason.\n");
        if (argc != 2)
                return cli_usage("desk suspend", "expected USER");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        DeskMoveStats st;
        int r = desk_suspend(ctx.host, argv[1], &st);
        if (r < 0)
                return cli_error(r);
        char a[32], b[32];
        fprintf(stderr,
                "suspended the desk of '%s': %s checkpoint, %llu new chunks (%s stored); dump %llu ms, to the "
                "transfer disk %llu ms, into the store %llu ms, total %llu ms\n",
                argv[1], format_bytes(st.bytes, a, sizeof a), (unsigned long long) st.new_chunks,
                format_bytes(st.stored_bytes, b, sizeof b), (unsigned long long) st.dump_ms,
                (unsigned long long) st.write_ms, (unsigned long long) st.import_ms, (unsigned long long) st.total_ms);
        return 0;
}

#define REMOTE_HELP                                                                                     \
        "  -t, --token T    a token of that daemon (default $ROAM_TOKEN): host or admin,\n"             \
        "                   or USER's own\n"                                                             \
        "  --fingerprint FP pin its certificate (sha256:HEX; default: the one a pairing\n"               \
        "                   token carries)\n"                                                            \
        "  --cacert FILE    trust this PEM CA certificate for https when nothing is pinned\n"

/* The options of a verb that reaches another roam daemon. */
typedef struct DeskArgs {
        const char *on, *url, *token, *fingerprint, *cacert;
        const char *user;
} DeskArgs;

/* Parses USER and the options; url_opt names the option that takes the URL
 * ("to", "from"; NULL: --to, optional). Returns -1 to go on, else an exit code. */
static int desk_args(const char *verb, const char *args, const char *help, const char *url_opt, bool url_required,
                     int argc, char **argv, DeskArgs *ret) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },          { "on", required_argument, NULL, 'o' },
                { "to", required_argument, NULL, 'u' },      { "from", required_argument, NULL, 'U' },
                { "token", required_argument, NULL, 't' },   { "fingerprint", required_argument, NULL, 'f' },
                { "cacert", required_argument, NULL, 'c' },  {},
        };
        DeskArgs a = {};
        int c;
        while ((c = getopt_long(argc, argv, "ho:t:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help(verb, args, help);
                case 'o':
                        a.on = optarg;
                        break;
                case 'u':
                case 'U':
                        if (strcmp(c == 'u' ? "to" : "from", url_opt))
                                return cli_usage(verb, "invalid option --%s", c == 'u' ? "to" : "from");
                        a.url = optarg;
                        break;
                case 't':
                        a.token = optarg;
                        break;
                case 'f':
                        a.fingerprint = optarg;
                        break;
                case 'c':
                        a.cacert = optarg;
                        break;
                default:
                        return cli_usage(verb, "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage(verb, "expected USER");
        if (url_required && !a.url)
                return cli_usage(verb, "--%s URL is required", url_opt);
        if (!a.url && (a.token || a.fingerprint || a.cacert))
                return cli_usage(verb, "--token, --fingerprint and --cacert go with --%s URL", url_opt);
        a.user = argv[optind];
        *ret = a;
        return -1;
}

/* A client for the daemon a verb reaches; its answers may take minutes (a
 * desk's dump or restore under TCG). Prints errors; 0 or 1. */
static int desk_remote(const DeskArgs *a, Remote **ret) {
        const char *token_given = remote_token_from_env(a->token);
        if (!token_given)
                return cli_errorf("no token for %s (use --token or set ROAM_TOKEN)", a->url);
        _cleanup_free_ char *token = NULL;
        if (cli_token_with_fingerprint(token_given, a->fingerprint, &token))
                return 1;
        RemoteOptions ro = { .cacert = a->cacert, .stall_timeout_s = 3 * DESK_DUMP_TIMEOUT_S };
        int k = remote_new(a->url, token, &ro, ret);
        return k < 0 ? cli_error(k) : 0;
}

/* What a move between hosts did, on stderr. */
static void print_transfer(const char *user, const char *how, const DeskTransfer *t) {
        char a[32], b[32];
        if (t->suspended)
                fprintf(stderr, "suspended the desk of '%s' first (%s checkpoint, %llu ms)\n", user,
                        format_bytes(t->suspend.bytes, a, sizeof a), (unsigned long long) t->suspend.total_ms);
        fprintf(stderr, "%s the desk of '%s': %llu of %llu chunks had to move, %s on the wire, %llu ms\n", how, user,
                (unsigned long long) t->chunks_sent, (unsigned long long) t->chunks_total,
                format_bytes(t->wire_bytes, b, sizeof b), (unsigned long long) t->sync_ms);
        if (t->resumed)
                fprintf(stderr, "resumed on '%s': pid %llu, restore %llu ms; total %llu ms\n", t->ts,
                        (unsigned long long) t->pid, (unsigned long long) t->resume_ms,
                        (unsigned long long) t->total_ms);
        else if (t->resume_error[0])
                fprintf(stderr, "it is suspended on the far side: its resume%s%s failed: %s\n",
                        t->ts[0] ? " on " : "", t->ts, t->resume_error);
        else
                fprintf(stderr, "it is suspended on the far side (no terminal server named: resume it there with "
                                "'roam desk resume %s --on TS')\n",
                        user);
}

/* Runs a move between hosts: with label, this host takes the desk
 * (desk_fetch()), else it sends it (desk_send()); prints what happened. */
static int transfer(const DeskArgs *da, const char *how, const char *label) {
        _cleanup_(remote_freep) Remote *rem = NULL;
        if (desk_remote(da, &rem))
                return 1;
        _cleanup_(cli_host_done) CliHost hc = {};
        if (open_host(&hc))
                return 1;
        DeskTransfer t;
        int k = label ? desk_fetch(hc.host, da->user, rem, label, da->on, &t)
                      : desk_send(hc.host, da->user, rem, da->on, &t);
        if (k < 0)
                return cli_error(k);
        print_transfer(da->user, how, &t);
        /* received there but not resumed: an error, said by print_transfer() */
        return t.resumed || !t.resume_error[0] ? 0 : 1;
}

static int desk_resume_verb(int argc, char **argv) {
        DeskArgs da;
        int e = desk_args("desk resume", "USER [--on TS] [--to URL [--token T]]",
                          "Restores the suspended desk of USER on terminal server TS (default: where\n"
                          "it was suspended), with the same process ids. Refused, changing nothing,\n"
                          "when TS lacks a layer the desk was started with, when USER runs there\n"
                          "already, or when the checkpoint is damaged (the stored copy is kept).\n\n"
                          "With --to URL the desk goes to the roam daemon at URL (another host) and\n"
                          "resumes on its terminal server TS: a running desk is suspended first, the\n"
                          "checkpoint sent as what that host lacks, and this host keeps it as moved\n"
                          "there. A refusal there leaves it suspended here.\n\n"
                          "  -o, --on TS      the terminal server to resume on\n"
                          "  --to URL         the roam daemon of another host\n" REMOTE_HELP,
                          "to", false, argc, argv, &da);
        if (e >= 0)
                return e;
        const char *on = da.on, *user = da.user;
        if (da.url) {
                if (!on)
                        return cli_usage("desk resume", "--to URL needs --on TS (a terminal server there)");
                return transfer(&da, "sent", NULL);
        }
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        DeskMoveStats st;
        int r = desk_resume(ctx.host, user, on, &st);
        if (r < 0)
                return cli_error(r);
        char a[32];
        fprintf(stderr,
                "resumed the desk of '%s': %s checkpoint, out of the store %llu ms, from the transfer disk %llu ms, "
                "restore %llu ms, total %llu ms; pid %llu\n",
                user, format_bytes(st.bytes, a, sizeof a), (unsigned long long) st.export_ms,
                (unsigned long long) st.read_ms, (unsigned long long) st.restore_ms, (unsigned long long) st.total_ms,
                (unsigned long long) st.pid);
        return 0;
}

static int desk_offline_verb(int argc, char **argv) {
        DeskArgs da;
        int e = desk_args("desk offline", "USER --from URL [--token T] [--on TS]",
                          "Takes the desk of USER offline onto this laptop: the server at URL\n"
                          "suspends it (when it runs) and marks it as lent here, this laptop pulls the\n"
                          "checkpoint (what it lacks) and resumes it in its local terminal server\n"
                          "(a session of the same image, made with --terminal-server), with the\n"
                          "same process ids. Checked before the server gives it up: the desk is not\n"
                          "here already and TS runs every layer it was started with.\n\n"
                          "  --from URL       the server's roam daemon (required)\n"
                          "  -o, --on TS      the local terminal server (default: the only running one)\n" REMOTE_HELP,
                          "from", true, argc, argv, &da);
        if (e >= 0)
                return e;
        char host[64] = "", label[128];
        if (gethostname(host, sizeof host - 1) < 0 || !*host)
                snprintf(host, sizeof host, "?");
        snprintf(label, sizeof label, "laptop %s (%s)", host, cli_home());
        for (char *c = label; *c; c++)
                if (!desk_at_char_ok(*c))
                        *c = '_';
        return transfer(&da, "took offline", label);
}

static int desk_online_verb(int argc, char **argv) {
        DeskArgs da;
        int e = desk_args("desk online", "USER --to URL [--token T] [--on TS]",
                          "Takes the desk of USER on this laptop back online: it is suspended here\n"
                          "(when it runs), its checkpoint pushed to the server at URL (what the server\n"
                          "lacks) and resumed there on terminal server TS (default: the one it left\n"
                          "from). A refusal there leaves it suspended here.\n\n"
                          "  --to URL         the server's roam daemon (required)\n"
                          "  -o, --on TS      the terminal server there\n" REMOTE_HELP,
                          "to", true, argc, argv, &da);
        if (e >= 0)
                return e;
        return transfer(&da, "took online", NULL);
}

static int desk_logoff_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("desk logoff", "USER",
                                "Ends the desk of USER: its processes end (a suspended desk's checkpoint is\n"
                                "dropped) and the user has no desk any more.\n");
        if (argc != 2)
                return cli_usage("desk logoff", "expected USER");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        int r = desk_logoff(ctx.host, argv[1]);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "logged off the desk of '%s'\n", argv[1]);
        return 0;
}

static int desk_forget_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("desk forget", "USER",
                                "Drops this host's record of the desk of USER that was moved to another host\n"
                                "(roam desk show: state away), once it was logged off there or that host is\n"
                                "gone; USER may then start a desk here again. A desk that is here is refused.\n");
        if (argc != 2)
                return cli_usage("desk forget", "expected USER");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 1;
        int r = desk_forget(ctx.host, argv[1]);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "forgot the desk of '%s' (it was away)\n", argv[1]);
        return 0;
}

/* exec USER [--timeout S] -- CMD... ; ps USER */
static int run_in_desk(const char *verb, int argc, char **argv, bool ps) {
        unsigned timeout = 60;
        int i = 1;
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                if (ps)
                        return cli_help("desk ps", "USER", "The processes of the desk of USER, with the ids it sees.\n");
                return cli_help("desk exec", "USER [--timeout S] -- CMD...",
                                "Runs CMD in the desk of USER as that user (its display set), prints its\n"
                                "output and exits with its code; roam's own errors exit 2.\n");
        }
        if (argc < 2) {
                cli_usage(verb, "expected USER");
                return 2;
        }
        const char *user = argv[i++];
        if (!ps) {
                if (i + 1 < argc && !strcmp(argv[i], "--timeout")) {
                        uint64_t v;
                        if (parse_u64(argv[i + 1], &v) < 0 || v < 1 || v > 86400) {
                                cli_usage(verb, "--timeout takes 1 to 86400 seconds");
                                return 2;
                        }
                        timeout = (unsigned) v;
                        i += 2;
                }
                if (i < argc && !strcmp(argv[i], "--"))
                        i++;
                if (i >= argc) {
                        cli_usage(verb, "expected a command after USER --");
                        return 2;
                }
        } else if (argc != 2) {
                cli_usage(verb, "expected USER");
                return 2;
        }
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (open_host(&ctx))
                return 2;
        char *psargv[] = { "--ps", NULL };
        SessionExecResult res;
        int r = desk_exec(ctx.host, user, ps ? psargv : argv + i, timeout, &res);
        if (r < 0) {
                cli_error(r);
                return 2;
        }
        fwrite(res.out, 1, res.out_len, stdout);
        fwrite(res.err, 1, res.err_len, stderr);
        fflush(stdout);
        int code = res.exit_code;
        session_exec_result_done(&res);
        return code;
}

static int desk_exec_verb(int argc, char **argv) {
        return run_in_desk("desk exec", argc, argv, false);
}

static int desk_ps_verb(int argc, char **argv) {
        return run_in_desk("desk ps", argc, argv, true);
}

static const Verb desk_verbs[] = {
        { "start", desk_start_verb, "TS USER", "start a desk for USER on terminal server TS" },
        { "list", desk_list_verb, "[--json] [TS]", "the desks, of one terminal server or all" },
        { "show", desk_show_verb, "[--json] USER", "the desk of USER" },
        { "suspend", desk_suspend_verb, "USER", "checkpoint the desk into the store (CRIU); its processes end" },
        { "resume", desk_resume_verb, "USER [--on TS] [--to URL]",
          "restore the desk on its or another terminal server (of this or another host)" },
        { "offline", desk_offline_verb, "USER --from URL", "take a desk offline into this laptop's terminal server" },
        { "online", desk_online_verb, "USER --to URL", "take a desk on this laptop back to a server" },
        { "logoff", desk_logoff_verb, "USER", "end the desk" },
        { "forget", desk_forget_verb, "USER", "drop the record of a desk that moved to another host" },
        { "exec", desk_exec_verb, "USER -- CMD...", "run a command in the desk as its user" },
        { "ps", desk_ps_verb, "USER", "the desk's processes, as it sees them" },
};

int verb_desk(int argc, char **argv) {
        return cli_dispatch("desk", desk_verbs, ELEMENTSOF(desk_verbs), argc, argv);
}
