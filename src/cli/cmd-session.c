/* SPDX-License-Identifier: MIT */
/* roam session create|start|stop|pause|resume|list|show|log|rm|checkpoint|restore|adopt|finalize|move */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../crypto/home-keys.h"
#include "../daemon/api-session.h"
#include "../daemon/laptop-registry.h"
#include "../session/handoff.h"
#include "../session/move.h"
#include "../session/session.h"
#include "../sync/remote.h"

static bool want_help(int argc, char **argv) {
        return argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

static double ms(uint64_t ns) {
        return (double) ns / 1e6;
}

/* ---- create ---- */

static int session_create_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "image", required_argument, NULL, 'i' },
                { "user", required_argument, NULL, 'u' },
                { "ram", required_argument, NULL, 'm' },
                { "cpus", required_argument, NULL, 'c' },
                { "kernel", required_argument, NULL, 'k' },
                { "initrd", required_argument, NULL, 'r' },
                { "append", required_argument, NULL, 'a' },
                { "profile-disk", required_argument, NULL, 'p' },
                { "accel", required_argument, NULL, 'A' },
                { "policy", required_argument, NULL, 'P' },
                { "agent", no_argument, NULL, 'G' },
                { "host", required_argument, NULL, 'H' },
                { "terminal-server", no_argument, NULL, 'T' },
                {},
        };
        SessionCreate a = {};
        const char *on_host = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "hi:u:m:c:k:r:a:p:A:P:GH:T", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help(
                                "session create", "NAME --image IMG --user USER [OPTIONS]",
                                "Creates a session of image IMG for USER: a copy-on-write overlay over the\n"
                                "image's master (exported once per host to $ROAM_HOME/masters, read-only).\n"
                                "Nothing runs until 'roam session start NAME'.\n\n"
                                "  -i, --image IMG          master image (see 'roam image list')\n"
                                "  -u, --user USER          the user the session belongs to\n"
                                "  -m, --ram SIZE           guest RAM, e.g. 512M, 2G (default 512M)\n"
                                "  -c, --cpus N             virtual CPUs (default 1)\n"
                                "  -k, --kernel FILE        guest kernel (default: the image's own, from 'roam\n"
                                "                           image import --kernel'; else $ROAM_GUEST_DIR/vmlinux)\n"
                                "  -r, --initrd FILE        guest initrd (default: the image's, or\n"
                                "                           $ROAM_GUEST_DIR/initrd.img)\n"
                                "  -a, --append ARGS        kernel command line (default: the image's plus\n"
                                "                           roam.user=USER, else '" SESSION_APPEND_DEFAULT "')\n"
                                "  -p, --profile-disk FILE  a raw disk attached as the second virtio disk\n"
                                "  -A, --accel ACCEL        auto, kvm or tcg (default auto: kvm if a probe boot\n"
                                "                           works; $ROAM_ACCEL overrides)\n"
                                "  -P, --policy POLICY      what 'roam session finalize' does with the disk delta\n"
                                "                           after the log-off: persistent (default) keeps it,\n"
                                "                           pooled resets the session to the master image\n"
                                "  -G, --agent              a virtio-serial port for qemu-guest-agent in the\n"
                                "                           guest ('roam session exec'; the image must run it)\n"
                                "  -H, --host HOST          in a fleet: create it on member HOST (default: the\n"
                                "                           member with the fewest sessions per core that has\n"
                                "                           the RAM; docs/fleet.md)\n"
                                "  -T, --terminal-server    a terminal server of desks ('roam desk'): the\n"
                                "                           transfer disk and roam.ts=1; the image needs the\n"
                                "                           terminal-server layer (make desktop-layer). --user\n"
                                "                           defaults to 'ts'\n");
                case 'i':
                        a.image = optarg;
                        break;
                case 'T':
                        a.terminal_server = true;
                        break;
                case 'u':
                        a.user = optarg;
                        break;
                case 'm': {
                        uint64_t v;
                        if (parse_size(optarg, &v) < 0)
                                return cli_usage("session create", "--ram takes a size such as 512M or 2G");
                        if (v < 1024 * 1024 && v > 0 && !strpbrk(optarg, "kKmMgGtT"))
                                v <<= 20; /* a bare number is MiB */
                        if (v % (1024 * 1024))
                                return cli_usage("session create", "--ram must be a whole number of MiB");
                        a.ram_mib = v >> 20;
                        if (a.ram_mib == 0)
                                return cli_usage("session create", "--ram must be at least %d MiB",
                                                 VM_RAM_MIB_MIN);
                        break;
                }
                case 'c': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > VM_CPUS_MAX)
                                return cli_usage("session create", "--cpus takes a number from 1 to %d",
                                                 VM_CPUS_MAX);
                        a.cpus = (unsigned) v;
                        break;
                }
                case 'k':
                        a.kernel = optarg;
                        break;
                case 'r':
                        a.initrd = optarg;
                        break;
                case 'a':
                        a.append = optarg;
                        break;
                case 'p':
                        a.profile_disk = optarg;
                        break;
                case 'A':
                        a.accel = optarg;
                        break;
                case 'P': {
                        int p = vm_policy_from_string(optarg);
                        if (p < 0)
                                return cli_usage("session create", "--policy takes persistent or pooled");
                        a.policy = (VmPolicy) p;
                        break;
                }
                case 'G':
                        a.agent = true;
                        break;
                case 'H':
                        on_host = optarg;
                        break;
                default:
                        return cli_usage("session create", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session create", "expected NAME");
        a.name = argv[optind];
        if (!name_is_valid(a.name)) /* before the options that depend on the host */
                return cli_errorf("session name '%s' is invalid (use " NAME_RULE ")", a.name);
        if (!a.image)
                return cli_usage("session create", "--image IMG is required");
        if (!a.user && a.terminal_server)
                a.user = "ts";
        if (!a.user)
                return cli_usage("session create", "--user USER is required");
        /* no --kernel: the image's own boot files, else $ROAM_GUEST_DIR's */
        _cleanup_free_ char *kernel = NULL, *initrd = NULL;
        const char *gd = getenv("ROAM_GUEST_DIR");
        if (!a.kernel && gd && *gd) {
                kernel = path_join(gd, "vmlinux");
                initrd = path_join(gd, "initrd.img");
                if (!kernel || !initrd)
                        return cli_error(-ENOMEM);
                a.default_kernel = kernel;
                a.default_initrd = initrd;
        }

        int fleet = cli_fleet_create(&a, on_host);
        if (fleet >= 0)
                return fleet; /* a fleet member's home: placed in the fleet */

        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(true, &ctx))
                return 1;
        SessionInfo info = {};
        int r = session_create(ctx.host, &a, &info);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "created session '%s' of image '%s' for user '%s' (%llu MiB RAM, %u cpus, %s)\n", a.name,
                info.row.image, info.row.user, (unsigned long long) info.config.ram_mib, info.config.cpus,
                vm_policy_to_string(info.config.policy));
        session_info_done(&info);
        return 0;
}

/* ---- simple verbs: NAME only ---- */

typedef int (*NameOp)(CliHost *c, const char *name);

static int name_verb(int argc, char **argv, const char *cmd, const char *help, bool with_store, NameOp op) {
        if (want_help(argc, argv))
                return cli_help(cmd, "NAME", help);
        if (argc < 2)
                return cli_usage(cmd, "expected NAME");
        if (argc > 2)
                return cli_usage(cmd, "unexpected argument '%s'", argv[2]);
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(with_store, &ctx))
                return 1;
        int r = op(&ctx, argv[1]);
        return r < 0 ? cli_error(r) : 0;
}

static int op_start(CliHost *c, const char *name) {
        /* an offline session past its lease stays off until it goes online */
        int r = handoff_lease_check(c->host, name);
        return r < 0 ? r : session_start(c->host, name);
}
static int session_start_verb(int argc, char **argv) {
        return name_verb(argc, argv, "session start",
                         "Boots the session's VM from its disk (QEMU runs detached; watch it with\n"
                         "'roam session log NAME'). To continue from a checkpoint use 'roam session restore'.\n",
                         true, op_start);
}

static int op_pause(CliHost *c, const char *name) {
        return session_pause(c->host, name);
}
static int session_pause_verb(int argc, char **argv) {
        return name_verb(argc, argv, "session pause", "Pauses the guest's CPUs (its state stays in memory).\n",
                         false, op_pause);
}

static int op_resume(CliHost *c, const char *name) {
        return session_resume(c->host, name);
}
static int session_resume_verb(int argc, char **argv) {
        /* a laptop whose sync file the server refused runs the session again */
        if (argc == 3 && !strcmp(argv[2], "--file-refused"))
                return syncfile_resume_refused(argv[1]);
        if (want_help(argc, argv))
                return cli_help("session resume", "NAME [--file-refused]",
                                "Resumes a paused guest.\n\n"
                                "  --file-refused  on a laptop, for a session handed in by file ('roam online\n"
                                "                  NAME --to-file') that the server refused: it runs here again\n"
                                "                  from the checkpoint it was handed in with\n");
        return name_verb(argc, argv, "session resume", "Resumes a paused guest.\n", false, op_resume);
}

static int session_exec_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "user", required_argument, NULL, 'u' },
                { "timeout", required_argument, NULL, 't' },
                {},
        };
        SessionExec e = {};
        int c;
        /* roam's options before "--" (on either side of NAME), the guest's command after it;
         * without "--" roam's options end at NAME */
        int dashdash = 0;
        for (int i = 1; i < argc && !dashdash; i++)
                if (!strcmp(argv[i], "--"))
                        dashdash = i;
        int roam_argc = dashdash ? dashdash : argc;
        while ((c = getopt_long(roam_argc, argv, dashdash ? "hu:t:" : "+hu:t:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session exec", "NAME [--user USER] [--timeout S] -- CMD [ARG...]",
                                        "Runs CMD in the running guest through its guest agent (qemu-guest-agent\n"
                                        "on the session's virtio-serial port; see 'session create --agent'),\n"
                                        "prints its output and exits with its exit code (128+N when signal N\n"
                                        "ended it). roam's own errors exit 2: a stopped session, one without an\n"
                                        "agent, an agent that does not answer (bounded), a command past the\n"
                                        "timeout (it keeps running in the guest).\n\n"
                                        "  -u, --user USER  run as USER with DISPLAY=:0 (through runuser), as the\n"
                                        "                   user's desktop applications run; default: as root\n"
                                        "  -t, --timeout S  seconds to wait for CMD (default 60)\n");
                case 'u':
                        e.user = optarg;
                        break;
                case 't': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > 86400) {
                                cli_usage("session exec", "--timeout takes 1 to 86400 seconds");
                                return 2;
                        }
                        e.timeout_s = (unsigned) v;
                        break;
                }
                default:
                        cli_usage("session exec", "invalid option");
                        return 2;
                }
        if (optind >= roam_argc) {
                cli_usage("session exec", "expected NAME -- CMD");
                return 2;
        }
        const char *name = argv[optind++];
        if (dashdash) {
                if (optind < dashdash) {
                        cli_usage("session exec", "unexpected argument '%s' before '--'", argv[optind]);
                        return 2;
                }
                optind = dashdash + 1;
        }
        if (optind >= argc) {
                cli_usage("session exec", "expected a command after NAME -- ");
                return 2;
        }
        e.argv = argv + optind;
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(false, &ctx))
                return 2;
        SessionExecResult res;
        int r = session_exec(ctx.host, name, &e, &res);
        if (r < 0) {
                cli_error(r);
                return 2;
        }
        fwrite(res.out, 1, res.out_len, stdout);
        fwrite(res.err, 1, res.err_len, stderr);
        fflush(stdout);
        if (res.truncated)
                fprintf(stderr, "roam: the guest agent cut the command's output short (its limit is 16 MiB)\n");
        int code = res.exit_code;
        session_exec_result_done(&res);
        return code;
}

static int session_screenshot_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session screenshot", "NAME FILE.png",
                                "Writes the running session's display (what its VNC desktop shows) as a PNG\n"
                                "file, through QEMU's screendump. Works on the server and on a laptop. FILE\n"
                                "is replaced whole or not at all.\n");
        if (argc != 3)
                return cli_usage("session screenshot", argc < 3 ? "expected NAME and FILE.png"
                                                                 : "unexpected argument '%s'", argv[3]);
        struct stat st;
        if (stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))
                return cli_errorf("'%s' is a directory (give the name of the PNG file to write)", argv[2]);
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(false, &ctx))
                return 1;
        int r = session_screenshot(ctx.host, argv[1], argv[2]);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "wrote the display of session '%s' to %s\n", argv[1], argv[2]);
        return 0;
}

static int op_rm(CliHost *c, const char *name) {
        return session_remove(c->host, name);
}
static int session_rm_verb(int argc, char **argv) {
        return name_verb(argc, argv, "session rm",
                         "Removes a session that does not run: its overlay, RAM file, catalog row and\n"
                         "checkpoint refs. Chunks stay in the store until 'roam store gc'.\n",
                         true, op_rm);
}

static int session_stop_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "timeout", required_argument, NULL, 't' },
                {},
        };
        int timeout = SESSION_STOP_TIMEOUT_S_DEFAULT, c;
        while ((c = getopt_long(argc, argv, "ht:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session stop", "[--timeout S] NAME",
                                        "Presses the guest's power button (ACPI) and waits for a clean power-off;\n"
                                        "after the timeout QEMU is ended hard.\n\n"
                                        "  -t, --timeout S  seconds to wait (default 60)\n");
                case 't': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > 3600)
                                return cli_usage("session stop", "--timeout takes 1 to 3600 seconds");
                        timeout = (int) v;
                        break;
                }
                default:
                        return cli_usage("session stop", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session stop", "expected NAME");
        const char *name = argv[optind];
        _cleanup_(cli_host_done) CliHost ctx = {};
        /* an encrypted laptop puts the stopped session's disk into the store */
        if (cli_host_open(home_keys_encrypted(cli_home()), &ctx))
                return 1;
        bool forced = false;
        int r = session_stop(ctx.host, name, timeout, &forced);
        if (r < 0)
                return cli_error(r);
        if (forced)
                fprintf(stderr, "roam: session '%s' did not power off within %d s; its VM was ended hard\n", name,
                        timeout);
        return 0;
}

/* ---- list, show, log ---- */

static int session_list_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session list", "[--json]",
                                "Lists the sessions on this host: name, user, image, state, RAM, owner.\n\n"
                                "  --json   {\"sessions\": [...]}, each as in the daemon's GET /v1/sessions\n"
                                "           (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("session list", "unexpected argument '%s'", argv[1]);
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(false, &ctx))
                return 1;
        SessionInfo *list = NULL;
        size_t n = 0;
        int r = session_list(ctx.host, &list, &n);
        if (r < 0)
                return cli_error(r);
        if (as_json) {
                json_t *arr = json_array();
                for (size_t i = 0; arr && i < n; i++)
                        json_array_append_new(arr, session_api_json(ctx.catalog, &list[i]));
                session_info_list_free(list, n);
                return cli_print_json(json_pack("{s:o}", "sessions", arr));
        }
        printf("%-20s %-12s %-16s %-8s %8s  %s\n", "NAME", "USER", "IMAGE", "STATE", "RAM", "OWNER");
        for (size_t i = 0; i < n; i++) {
                char ram[16];
                snprintf(ram, sizeof ram, "%lluM", (unsigned long long) list[i].config.ram_mib);
                char owner[384];
                laptop_owner_describe(ctx.catalog, list[i].row.name, list[i].row.owner, false, owner, sizeof owner);
                printf("%-20s %-12s %-16s %-8s %8s  %s\n", list[i].row.name, list[i].row.user, list[i].row.image,
                       session_state_to_string(list[i].row.state), ram, owner);
        }
        session_info_list_free(list, n);
        return 0;
}

/* session_api_json() and what 'session show' adds (docs/cli-json.md) */
static json_t *session_show_json(Catalog *cat, const SessionInfo *i) {
        json_t *j = session_api_json(cat, i);
        json_t *more = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:I, s:I, s:s, s:s, s:s, "
                                 "s:s, s:s, s:s}",
                                 "pid", (json_int_t) i->pid, "cpus", (json_int_t) i->config.cpus, "machine",
                                 i->config.machine, "cpu", i->config.cpu, "accel", i->config.accel, "policy",
                                 vm_policy_to_string(i->config.policy), "kernel_id", i->config.kernel_id,
                                 "initrd_id", i->config.initrd_id, "append", i->config.append, "profile_disk",
                                 i->config.profile_disk, "ram_bytes", (json_int_t) i->ram_bytes, "overlay_bytes",
                                 (json_int_t) i->overlay_bytes, "image_id", i->row.image_id, "overlay", i->overlay,
                                 "master", i->master, "serial", i->serial, "vnc", i->vnc, "ram", i->ram);
        if (!j || !more || json_object_update(j, more) < 0 ||
            json_object_set_new(j, "created", json_integer((json_int_t) i->row.created)) < 0) {
                json_decref(more);
                json_decref(j);
                return NULL;
        }
        json_decref(more);
        return j;
}

static int session_show_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session show", "[--json] NAME",
                                "Shows a session: state, owner, VM config, files, checkpoints.\n\n"
                                "  --json   the session as in 'session list --json', with the VM config\n"
                                "           and the files (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc != 2)
                return cli_usage("session show", "expected NAME");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(false, &ctx))
                return 1;
        /* the agent, asked now (bounded: GUEST_AGENT_PING_MS) */
        (void) session_agent_probe(ctx.host, argv[1], 0, NULL);
        err_clear();
        SessionInfo i = {};
        int r = session_get(ctx.host, argv[1], &i);
        if (r < 0)
                return cli_error(r);
        if (as_json) {
                int k = cli_print_json(session_show_json(ctx.catalog, &i));
                session_info_done(&i);
                return k;
        }
        char a[32], b[32], created[32], updated[32];
        time_t tc = (time_t) i.row.created, tu = (time_t) i.row.updated;
        strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S", localtime(&tc));
        strftime(updated, sizeof updated, "%Y-%m-%d %H:%M:%S", localtime(&tu));
        printf("name:        %s\nuser:        %s\nimage:       %s (%.16s)\nstate:       %s\n", i.row.name,
               i.row.user, i.row.image, i.row.image_id, session_state_to_string(i.row.state));
        if (i.pid > 0)
                printf("pid:         %d\n", (int) i.pid);
        char owner[384];
        laptop_owner_describe(ctx.catalog, i.row.name, i.row.owner, true, owner, sizeof owner);
        printf("owner:       %s (epoch %lld)\n", owner, (long long) i.row.epoch);
        printf("ram:         %llu MiB (%s resident in %s)\ncpus:        %u\nmachine:     %s, cpu %s, accel %s\n",
               (unsigned long long) i.config.ram_mib, format_bytes(i.ram_bytes, a, sizeof a), i.ram,
               i.config.cpus, i.config.machine, i.config.cpu, i.config.accel);
        printf("policy:      %s\n", vm_policy_to_string(i.config.policy));
        printf("kernel:      %.16s%s%.16s\nappend:      %s\n", i.config.kernel_id,
               i.config.initrd_id ? ", initrd " : "", i.config.initrd_id ? i.config.initrd_id : "",
               i.config.append ? i.config.append : "");
        if (i.config.profile_disk)
                printf("profile:     %s\n", i.config.profile_disk);
        char holder[NAME_MAX_LEN + 1] = "";
        if (session_profile_hold(ctx.host, i.row.user, holder, NULL) < 0)
                holder[0] = 0;
        err_clear();
        if (i.config.profile || i.has_profile || holder[0])
                printf("profile:     users/%s/profile%s%s%s%s\n", i.row.user,
                       i.config.profile ? ", attached at every boot" : ", attached for the log-off",
                       !holder[0] ? "" : !strcmp(holder, i.row.name) ? "; held by this session" : "; held by session '",
                       holder[0] && strcmp(holder, i.row.name) ? holder : "",
                       holder[0] && strcmp(holder, i.row.name) ? "'" : "");
        if (i.config.agent) {
                const SessionAgentStatus *ag = &i.agent;
                if (ag->state == SESSION_AGENT_ANSWERING)
                        printf("agent:       answering (%llu ms)\n", (unsigned long long) ag->ping_ms);
                else if (ag->state == SESSION_AGENT_SILENT)
                        printf("agent:       silent (%s)\n", ag->error);
                else
                        printf("agent:       %s\n", ag->checked ? session_agent_state_to_string(ag->state) : "unknown");
        }
        printf("overlay:     %s (%s)\nmaster:      %s\nconsole:     %s\nvnc:         %s\n", i.overlay,
               format_bytes(i.overlay_bytes, b, sizeof b), i.master, i.serial, i.vnc);
        printf("checkpoints: %lld%s%s\ncreated:     %s\nupdated:     %s\n", (long long) i.row.checkpoints,
               i.row.last_checkpoint ? ", last " : "", i.row.last_checkpoint ? i.row.last_checkpoint : "", created,
               updated);
        session_info_done(&i);
        return 0;
}

static int session_log_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session log", "NAME", "Prints the session's serial console log (all runs).\n");
        if (argc != 2)
                return cli_usage("session log", "expected NAME");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(false, &ctx))
                return 1;
        _cleanup_free_ char *path = NULL;
        int r = session_log_path(ctx.host, argv[1], &path);
        if (r < 0)
                return cli_error(r);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0; /* never started: no output yet */
                return cli_errorf("cannot read '%s': %s", path, strerror(errno));
        }
        char buf[65536], out[65536];
        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return cli_errorf("cannot read '%s': %s", path, strerror(errno));
                if (n == 0)
                        break;
                size_t k = 0;
                for (ssize_t j = 0; j < n; j++)
                        if (buf[j] != '\r')
                                out[k++] = buf[j];
                if (fwrite(out, 1, k, stdout) != k)
                        return 1;
        }
        return 0;
}

/* ---- checkpoint, restore ---- */

static int session_checkpoint_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session checkpoint", "NAME",
                                "Saves the running (or paused) session into the store: RAM, disk overlay,\n"
                                "device state, kernel, initrd and image, under refs\n"
                                "sessions/USER/NAME/latest and sessions/USER/NAME/<number>. The guest pauses\n"
                                "only while the device state is saved and RAM and overlay are copied; only\n"
                                "chunks the store lacks are added. Of a stopped session it saves a powered-off\n"
                                "checkpoint: the disk overlay alone (no RAM, no device state). Prints the\n"
                                "checkpoint's id.\n");
        if (argc != 2)
                return cli_usage("session checkpoint", "expected NAME");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(true, &ctx))
                return 1;
        SessionCheckpointResult res;
        int r = session_checkpoint(ctx.host, argv[1], 0, &res);
        if (r < 0)
                return cli_error(r);
        char hex[ID_HEX_SIZE], a[32], b[32];
        if (res.powered_off)
                fprintf(stderr,
                        "checkpoint %06lld of '%s' (powered off): disk only, total %.0f ms; %llu of %llu chunks new, "
                        "%s new, %s stored\n",
                        (long long) res.seq, argv[1], ms(res.total_ns), (unsigned long long) res.new_chunks,
                        (unsigned long long) res.chunks, format_bytes(res.new_bytes, a, sizeof a),
                        format_bytes(res.stored_bytes, b, sizeof b));
        else
                fprintf(stderr,
                        "checkpoint %06lld of '%s': pause %.0f ms (device state %.0f ms, changed chunks %.0f ms), total %.0f "
                        "ms; %llu of %llu chunks new (ram %llu, overlay %llu), %s new, %s stored\n",
                        (long long) res.seq, argv[1], ms(res.pause_ns), ms(res.devstate_ns), ms(res.copy_ns),
                        ms(res.total_ns), (unsigned long long) res.new_chunks, (unsigned long long) res.chunks,
                        (unsigned long long) res.ram_new_chunks, (unsigned long long) res.overlay_new_chunks,
                        format_bytes(res.new_bytes, a, sizeof a), format_bytes(res.stored_bytes, b, sizeof b));
        printf("%s\n", id_to_hex(&res.id, hex));
        return 0;
}

static int session_restore_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session restore", "NAME [CHECKPOINT]",
                                "Resumes a session from a checkpoint: 'latest' (default), its number, or its\n"
                                "64-digit id. The session must not be running. A checkpoint whose chunks are\n"
                                "not all in the store is refused before anything changes. Given an id of a\n"
                                "checkpoint that arrived from elsewhere, an unknown session NAME is adopted.\n"
                                "A powered-off checkpoint replaces the disk only and leaves the session\n"
                                "stopped ('roam session start' boots it, 'roam session finalize' logs it off).\n");
        if (argc < 2 || argc > 3)
                return cli_usage("session restore", "expected NAME [CHECKPOINT]");
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(true, &ctx))
                return 1;
        SessionRestoreResult res;
        int r = handoff_lease_check(ctx.host, argv[1]);
        if (r == -ENOENT)
                r = 0; /* no such session here: restore says so, or adopts */
        if (r >= 0)
                r = session_restore(ctx.host, argv[1], argc == 3 ? argv[2] : NULL, &res);
        if (r < 0)
                return cli_error(r);
        char hex[ID_HEX_SIZE];
        if (res.powered_off)
                fprintf(stderr, "restored '%s' from powered-off checkpoint %.16s in %.0f ms (stopped)\n", argv[1],
                        id_to_hex(&res.id, hex), ms(res.total_ns));
        else
                fprintf(stderr, "restored '%s' from %.16s in %.0f ms (files %.0f ms, qemu %.0f ms)\n", argv[1],
                        id_to_hex(&res.id, hex), ms(res.total_ns), ms(res.export_ns), ms(res.qemu_ns));
        return 0;
}

static int session_adopt_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "epoch", required_argument, NULL, 'e' },
                {},
        };
        int64_t epoch = -1;
        int c;
        while ((c = getopt_long(argc, argv, "he:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session adopt", "NAME CHECKPOINT [--epoch N]",
                                        "Makes this host the owner of session NAME from CHECKPOINT (a 64-digit id\n"
                                        "already in the store, e.g. from 'roam bundle apply' or a push): an\n"
                                        "unknown NAME is created from the checkpoint; a NAME owned by another host\n"
                                        "is taken over at a newer epoch. A powered-off checkpoint leaves the session\n"
                                        "stopped; a running one resumes it. The checkpoint becomes the session's\n"
                                        "'latest'.\n\n"
                                        "  -e, --epoch N    the new ownership epoch (default: one more than both the\n"
                                        "                   checkpoint's and this host's)\n");
                case 'e': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > INT64_MAX / 2)
                                return cli_usage("session adopt", "--epoch takes a number >= 1");
                        epoch = (int64_t) v;
                        break;
                }
                default:
                        return cli_usage("session adopt", "invalid option");
                }
        if (argc - optind != 2)
                return cli_usage("session adopt", "expected NAME CHECKPOINT");
        const char *name = argv[optind];
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(true, &ctx))
                return 1;
        SessionInfo i = {};
        int r = session_adopt(ctx.host, name, argv[optind + 1], epoch, &i);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "adopted session '%s' of user '%s' at epoch %lld (%s, %s)\n", name, i.row.user,
                (long long) i.row.epoch, session_state_to_string(i.row.state),
                vm_policy_to_string(i.config.policy));
        session_info_done(&i);
        return 0;
}

static int session_finalize_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "timeout", required_argument, NULL, 't' },
                {},
        };
        int timeout = SESSION_FINALIZE_TIMEOUT_S_DEFAULT, c;
        while ((c = getopt_long(argc, argv, "ht:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session finalize", "[--timeout S] NAME",
                                        "Finalizes a powered-off session: boots it once with 'roam.logoff=1\n"
                                        "roam.user=USER' on the kernel command line and the user's profile disk\n"
                                        "(users/USER/profile, or a new one) as its second disk. A guest with an\n"
                                        "agent is logged off through it (roam-logoff, then guest-shutdown); one\n"
                                        "without runs its log-off hook and powers off by itself. Then the profile\n"
                                        "goes into the store (users/USER/profile), a persistent session keeps its\n"
                                        "disk delta and a pooled one is reset to the master image. The session\n"
                                        "stays stopped. Prints the guest's log-off line.\n\n"
                                        "  -t, --timeout S  seconds for the whole log-off boot (default 300; then\n"
                                        "                   QEMU is ended hard and the disks are kept)\n");
                case 't': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > 3600)
                                return cli_usage("session finalize", "--timeout takes 1 to 3600 seconds");
                        timeout = (int) v;
                        break;
                }
                default:
                        return cli_usage("session finalize", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session finalize", "expected NAME");
        const char *name = argv[optind];
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(true, &ctx))
                return 1;
        SessionFinalizeResult res;
        int r = session_finalize_timeout(ctx.host, name, timeout, &res);
        if (r < 0)
                return cli_error(r);
        fprintf(stderr, "finalized '%s' in %.1f s (log-off boot %.1f s); policy %s: %s\n", name,
                (double) res.total_ns / 1e9, (double) res.boot_ns / 1e9, vm_policy_to_string(res.policy),
                res.reset ? "disk reset to the master" : "disk kept");
        printf("%s\n", res.logoff[0] ? res.logoff : "(the guest printed no log-off line)");
        return 0;
}

static int session_move_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "to", required_argument, NULL, 'o' },
                { "token", required_argument, NULL, 't' },
                { "no-precopy", no_argument, NULL, 'n' },
                { "cacert", required_argument, NULL, 'c' },
                { "fingerprint", required_argument, NULL, 'f' },
                { "to-host", required_argument, NULL, 'H' },
                {},
        };
        const char *to = NULL, *token_arg = NULL, *cacert = NULL, *fingerprint = NULL, *to_host = NULL;
        SessionMoveOptions mo = { 0 };
        int c;
        while ((c = getopt_long(argc, argv, "ho:t:nc:f:H:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("session move", "NAME --to URL [--token T] [--no-precopy]",
                                        "Moves a running session to the roam daemon at URL: a checkpoint is\n"
                                        "pushed while the guest keeps running (pre-copy), then the guest is\n"
                                        "paused, only what changed is pushed, and the target resumes it. This\n"
                                        "host gives the session up only after the target confirms that it runs,\n"
                                        "and records the target as owner with a new epoch; if the target fails,\n"
                                        "the session resumes here. Prints the downtime and the bytes sent.\n\n"
                                        "  --to URL         the target daemon (required)\n"
                                        "  -t, --token T    a host or admin token of the target (default $ROAM_TOKEN)\n"
                                        "  --no-precopy     skip the pre-copy round (longer downtime)\n"
                                        "  --fingerprint FP pin the target's certificate (sha256:HEX; default: the\n"
                                        "                   one the token from 'roam token create' carries)\n"
                                        "  --cacert FILE    trust this PEM CA certificate for https when nothing\n"
                                        "                   is pinned\n"
                                        "  --to-host HOST   in a fleet: to member HOST through the shared store\n"
                                        "                   (docs/fleet.md), from any member's home\n");
                case 'o':
                        to = optarg;
                        break;
                case 't':
                        token_arg = optarg;
                        break;
                case 'n':
                        mo.no_precopy = true;
                        break;
                case 'c':
                        cacert = optarg;
                        break;
                case 'f':
                        fingerprint = optarg;
                        break;
                case 'H':
                        to_host = optarg;
                        break;
                default:
                        return cli_usage("session move", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session move", "expected NAME");
        if (to_host && to)
                return cli_usage("session move", "--to and --to-host exclude each other");
        if (to_host)
                return cli_fleet_move(argv[optind], to_host);
        if (!to)
                return cli_usage("session move", "--to URL is required");
        const char *token_given = remote_token_from_env(token_arg);
        if (!token_given)
                return cli_errorf("no token for %s (use --token or set ROAM_TOKEN)", to);
        /* the hand-over marker keeps the token with the fingerprint to pin */
        _cleanup_free_ char *token = NULL;
        if (cli_token_with_fingerprint(token_given, fingerprint, &token))
                return 1;
        RemoteOptions ro = { .cacert = cacert };
        _cleanup_(remote_freep) Remote *r = NULL;
        int k = remote_new(to, token, &ro, &r);
        if (k < 0)
                return cli_error(k);
        _cleanup_(cli_host_done) CliHost ctx = {};
        if (cli_host_open(true, &ctx))
                return 1;
        SessionMoveResult res;
        mo.token = token;
        k = session_move(ctx.host, argv[optind], r, &mo, &res);
        if (k < 0)
                return cli_error(k);
        char a[32], b[32], hex[ID_HEX_SIZE];
        printf("moved session '%s' to %s (epoch %lld, checkpoint %.16s)\n", argv[optind], to, (long long) res.epoch,
               id_to_hex(&res.checkpoint, hex));
        printf("downtime %.0f ms (paused here -> running there; its restore %.0f ms, RAM %s%s), total %.2f s\n",
               ms(res.downtime_ns), ms(res.target_restore_ns),
               res.target_ram_staged ? "staged ahead" : "written in full",
               res.target_warm ? ", QEMU waiting" : "", (double) res.total_ns / 1e9);
        printf("bytes on the wire: %s before the pause, %s during it (%llu chunks)\n",
               format_bytes(res.precopy_wire_bytes, a, sizeof a), format_bytes(res.final_wire_bytes, b, sizeof b),
               (unsigned long long) res.final_chunks);
        return 0;
}

static const Verb session_verbs[] = {
        { "create", session_create_verb, "NAME --image IMG ...", "create a session of an image" },
        { "start", session_start_verb, "NAME", "boot a session's VM" },
        { "stop", session_stop_verb, "NAME", "power a session off cleanly" },
        { "pause", session_pause_verb, "NAME", "pause a running session" },
        { "resume", session_resume_verb, "NAME", "resume a paused session" },
        { "list", session_list_verb, "[--json]", "list sessions" },
        { "show", session_show_verb, "[--json] NAME", "show a session" },
        { "log", session_log_verb, "NAME", "print a session's console log" },
        { "exec", session_exec_verb, "NAME -- CMD...", "run a command in the guest (guest agent)" },
        { "screenshot", session_screenshot_verb, "NAME FILE.png", "save a running session's display as PNG" },
        { "connect", session_connect_verb, "NAME", "a loopback port for native VNC viewers to a session's desktop" },
        { "checkpoint", session_checkpoint_verb, "NAME", "save a session (running or powered off) into the store" },
        { "move", session_move_verb, "NAME --to URL", "move a running session to another roam host" },
        { "reclaim", session_reclaim_verb, "NAME", "take a session back from a lost laptop (admin)" },
        { "export-offline", session_export_offline_verb, "NAME --laptop ID -o FILE",
          "take a session offline by file (admin, on the server)" },
        { "apply-sync", session_apply_sync_verb, "FILE",
          "take a session online from a laptop's sync file (or keep a stale copy)" },
        { "export-stale", session_export_stale_verb, "NAME -o FILE",
          "write a stale copy's state to a file for the admin (laptop, after a reclaim)" },
        { "history", session_history_verb, "NAME", "list a session's checkpoints" },
        { "rollback", session_rollback_verb, "NAME CHECKPOINT", "roll a session back, keeping its present" },
        { "restore", session_restore_verb, "NAME [CHECKPOINT]", "resume a session from a checkpoint" },
        { "adopt", session_adopt_verb, "NAME CHECKPOINT", "take over a session from a checkpoint that arrived" },
        { "finalize", session_finalize_verb, "NAME", "log a powered-off session off and apply its policy" },
        { "rm", session_rm_verb, "NAME", "remove a session that does not run" },
};

int verb_session(int argc, char **argv) {
        return cli_dispatch("session", session_verbs, ELEMENTSOF(session_verbs), argc, argv);
}
