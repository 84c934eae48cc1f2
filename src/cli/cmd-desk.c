/* SPDX-License-Identifier: MIT */
/* roam desk start|list|show|suspend|resume|logoff|exec|ps: users' desks on
 * terminal servers (src/desk/). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/macro.h"
#include "../basic/util.h"
#include "../desk/desk.h"

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

static json_t *info_json(const DeskInfo *i) {
        return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "user", i->user, "ts", i->ts, "state",
                         i->running ? "running" : "suspended", "display", (json_int_t) i->display, "uid",
                         (json_int_t) i->uid, "pid", (json_int_t) i->pid, "bytes", (json_int_t) i->bytes, "id",
                         i->id);
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
                        json_array_append_new(a, info_json(&v[i]));
                free(v);
                return cli_print_json(a);
        }
        printf("%-16s %-10s %-16s %8s %12s\n", "USER", "STATE", "TS", "DISPLAY", "CHECKPOINT");
        for (size_t i = 0; i < n; i++) {
                char b[32];
                printf("%-16s %-10s %-16s %7s%llu %12s\n", v[i].user, v[i].running ? "running" : "suspended", v[i].ts,
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
                return cli_print_json(info_json(&i));
        char b[32];
        printf("user:        %s\nstate:       %s\nts:          %s\ndisplay:     :%llu\nuid:         %llu\n", i.user,
               i.running ? "running" : "suspended", i.ts, (unsigned long long) i.display, (unsigned long long) i.uid);
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

static int desk_resume_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "on", required_argument, NULL, 'o' },
                {},
        };
        const char *on = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("desk resume", "USER [--on TS]",
                                        "Restores the suspended desk of USER on terminal server TS (default: where\n"
                                        "it was suspended), with the same process ids. Refused, changing nothing,\n"
                                        "when TS lacks a layer the desk was started with, when USER runs there\n"
                                        "already, or when the checkpoint is damaged (the stored copy is kept).\n\n"
                                        "  -o, --on TS   the terminal server to resume on\n");
                case 'o':
                        on = optarg;
                        break;
                default:
                        return cli_usage("desk resume", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("desk resume", "expected USER");
        const char *user = argv[optind];
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
        { "resume", desk_resume_verb, "USER [--on TS]", "restore the desk on its or another terminal server" },
        { "logoff", desk_logoff_verb, "USER", "end the desk" },
        { "exec", desk_exec_verb, "USER -- CMD...", "run a command in the desk as its user" },
        { "ps", desk_ps_verb, "USER", "the desk's processes, as it sees them" },
};

int verb_desk(int argc, char **argv) {
        return cli_dispatch("desk", desk_verbs, ELEMENTSOF(desk_verbs), argc, argv);
}
