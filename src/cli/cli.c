/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../daemon/api-fleet.h"
#include "../fleet/fleet.h"
#include "../store/home-store.h"
#include "../store/location.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../crypto/fingerprint.h"
#include "../daemon/daemon.h"
#include "../daemon/laptop-fleet.h"
#include "../daemon/laptop-registry.h"
#include "../session/session.h"
#include "../sync/remote.h"

const char *arg_home;
bool arg_quiet;
const char *arg_log_level;

const char *cli_log_level(void) {
        if (arg_log_level)
                return arg_log_level;
        const char *e = getenv("ROAM_LOG");
        if (!e || !*e)
                return NULL;
        if (daemon_log_level_from_string(e) < 0) {
                fprintf(stderr, "roam: ignoring ROAM_LOG='%s' (use " DAEMON_LOG_LEVELS ")\n", e);
                return NULL;
        }
        return e;
}

void cli_print_verbs(FILE *f, const char *group, const Verb *table, size_t n) {
        fprintf(f, "Commands:\n");
        for (size_t i = 0; i < n; i++) {
                char left[64];
                snprintf(left, sizeof left, "%s %s", table[i].name, table[i].args ? table[i].args : "");
                fprintf(f, "  %-28s %s\n", left, table[i].summary);
        }
}

int cli_dispatch(const char *group, const Verb *table, size_t n, int argc, char **argv) {
        /* argv[0] is the group name when group != NULL, else the verb */
        if (group) {
                argc--;
                argv++;
        }
        if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
                FILE *f = argc < 1 ? stderr : stdout;
                if (group)
                        fprintf(f, "usage: roam %s COMMAND [ARGS...]\n\n", group);
                cli_print_verbs(f, group, table, n);
                if (group)
                        fprintf(f, "\nRun 'roam %s COMMAND --help' for a command's options.\n", group);
                return argc < 1 ? 2 : 0;
        }
        if (group && !strcmp(argv[0], "--help-man")) /* hidden: the build makes the man pages */
                return cli_man_commands(group, table, n);
        for (size_t i = 0; i < n; i++)
                if (!strcmp(table[i].name, argv[0])) {
                        optind = 0; /* reset getopt for the verb */
                        err_clear();
                        return table[i].run(argc, argv);
                }
        if (group)
                fprintf(stderr, "roam: unknown command 'roam %s %s' (see 'roam %s --help')\n", group, argv[0],
                        group);
        else
                fprintf(stderr, "roam: unknown command '%s' (see 'roam --help')\n", argv[0]);
        return 2;
}

const char *cli_home(void) {
        static char *home;
        if (arg_home)
                return arg_home;
        const char *e = getenv("ROAM_HOME");
        if (e && *e)
                return e;
        if (home)
                return home;
        if (geteuid() == 0)
                return "/var/lib/roam";
        const char *h = getenv("HOME");
        if (!h || !*h)
                h = "/tmp";
        home = path_join(h, ".local/share/roam");
        return home ? home : "/tmp/roam";
}

char *cli_home_path(const char *rel) {
        return path_join(cli_home(), rel);
}

static const char *interrupt_note = "nothing was changed";
static bool interrupt_reported;

void cli_interrupt_note(const char *note) {
        interrupt_note = note;
}

int cli_interrupted(void) {
        if (!interrupt_reported)
                fprintf(stderr, "roam: interrupted; %s\n", interrupt_note);
        interrupt_reported = true;
        return INTERRUPT_EXIT;
}

int cli_error(int r) {
        if (interrupt_requested())
                return cli_interrupted();
        fprintf(stderr, "roam: %s\n", err_message(r));
        return 1;
}

int cli_errorf(const char *fmt, ...) {
        if (interrupt_requested())
                return cli_interrupted();
        va_list ap;
        fputs("roam: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
        va_list ap;
        fputs("roam: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, " (see 'roam %s --help')\n", cmd);
        return 2;
}

int cli_help(const char *cmd, const char *args, const char *text) {
        printf("usage: roam %s %s\n\n%s", cmd, args, text);
        return 0;
}

int cli_need_home(bool create) {
        struct stat st;
        const char *h = cli_home();
        if (stat(h, &st) < 0 && errno == ENOENT && !create)
                return cli_errorf("state directory '%s' does not exist (check --home or ROAM_HOME)", h);
        int r = mkdir_p(h, 0755);
        if (r == -ENOTDIR)
                return cli_errorf("state directory '%s' is not a directory (check --home or ROAM_HOME)", h);
        if (r < 0)
                return cli_errorf("cannot create state directory '%s': %s (set ROAM_HOME or --home)", h,
                                  strerror(-r));
        return 0;
}

int cli_need_writable_home(void) {
        if (access(cli_home(), W_OK) < 0 && (errno == EROFS || errno == EACCES))
                return cli_errorf("cannot write to state directory '%s': %s (make it writable, or use another "
                                  "with --home)",
                                  cli_home(), strerror(errno));
        return 0;
}

bool cli_store_exists(void) {
        _cleanup_free_ char *loc = NULL;
        if (store_location(cli_home(), &loc) < 0)
                return true; /* opening it tells what is wrong */
        if (!strncmp(loc, "rados:", 6))
                return true;
        _cleanup_free_ char *cfg = path_join(loc, "config");
        return cfg && access(cfg, F_OK) == 0;
}

int cli_open_store(bool create, bool writer, Store **ret) {
        if (cli_need_home(create))
                return 1;
        StoreOptions o = { .create = create };
        Store *s;
        /* an encrypted laptop's is unlocked, or refused: "run 'roam unlock'" */
        int r = home_store_open(cli_home(), &o, 0, &s);
        if (r < 0)
                return cli_error(r);
        if (writer) {
                r = store_lock(s, false, false);
                if (r < 0) {
                        store_free(s);
                        return cli_error(r);
                }
        }
        *ret = s;
        return 0;
}

int cli_open_catalog(bool create, Catalog **ret) {
        if (cli_need_home(create))
                return 1;
        _cleanup_free_ char *path = cli_home_path("catalog.db");
        if (!path)
                return cli_error(-ENOMEM);
        if (cli_need_writable_home())
                return 1;
        int r = catalog_open(path, ret);
        return r < 0 ? cli_error(r) : 0;
}

static int cli_fleet_guard(void *userdata, const char *session, int64_t epoch);

static int cli_fleet_take(void *userdata, const char *session, const char *holder, int64_t epoch) {
        return err_set(-EREMOTE, "session '%s' is a fleet's: reclaim it through a member's daemon (POST "
                       "/v1/fleet/sessions/%s/reclaim, or the console)",
                       session, session);
}

/* Giving a session to a laptop is an etcd transaction under the member's
 * lease: its daemon's, never a command's (sync files are not for fleets). */
static int cli_fleet_give(void *userdata, const char *session, int64_t epoch, const char *holder,
                          int64_t lease_until) {
        return err_set(-EREMOTE, "session '%s' is a fleet's: it goes offline through the network only (on the laptop: "
                       "'roam offline %s'), never by a sync file",
                       session, session);
}

int cli_host_open(bool with_store, CliHost *ret) {
        *ret = (CliHost) { 0 };
        if ((with_store && cli_open_store(true, true, &ret->store)) || cli_open_catalog(true, &ret->catalog)) {
                cli_host_done(ret);
                return 1;
        }
        int r = session_host_new(cli_home(), ret->store, ret->catalog, &ret->host);
        if (r < 0) {
                cli_host_done(ret);
                return cli_error(r);
        }
        session_host_set_owner_describer(ret->host, laptop_owner_describer, ret->catalog);
        /* a fleet member's home: what runs here is what the fleet says runs here */
        _cleanup_free_ char *etcd = NULL, *name = NULL;
        if (api_fleet_home(cli_home(), &etcd, &name) >= 0) {
                r = fleet_join(&(FleetOptions){ .etcd = etcd, .name = name, .observe = true }, &ret->fleet);
                if (r < 0) {
                        cli_host_done(ret);
                        return cli_error(r);
                }
                session_host_set_guard(ret->host, cli_fleet_guard, ret->fleet);
                session_host_set_give(ret->host, cli_fleet_give, NULL);
                session_host_set_take(ret->host, cli_fleet_take, NULL);
                laptop_fleet_use(ret->catalog, ret->fleet); /* the laptops and grants are the fleet's */
        }
        err_clear();
        return 0;
}

/* The fleet's word, read only: a CLI holds no lease and claims nothing (the
 * daemon does: 'roam session create' and the fleet routes go through it). */
static int cli_fleet_guard(void *userdata, const char *session, int64_t epoch) {
        int r = fleet_check(userdata, session, epoch);
        if (r == -EREMOTE) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", err_message(r));
                return err_set(r, "%s (in a fleet, act on sessions through the daemon: POST /v1/fleet/sessions/%s/...)",
                               msg, session);
        }
        return r;
}

void cli_host_done(CliHost *h) {
        if (h->fleet) {
                laptop_fleet_use(h->catalog, NULL);
                fleet_leave(h->fleet, false);
        }
        session_host_free(h->host);
        catalog_free(h->catalog);
        store_free(h->store);
        *h = (CliHost) { 0 };
}

int cli_token_with_fingerprint(const char *token, const char *fingerprint, char **ret) {
        if (!fingerprint) {
                *ret = strdup(token);
                return *ret ? 0 : cli_error(-ENOMEM);
        }
        _cleanup_free_ char *bare = NULL;
        Fingerprint fp, ignored;
        bool had;
        int r = pairing_token_split(token, &bare, &ignored, &had);
        if (r < 0)
                return cli_error(r);
        if (fingerprint_parse(fingerprint, &fp) < 0)
                return cli_errorf("fingerprint '%.100s' is malformed (expected sha256: and 64 hex digits, as 'roam "
                                  "serve' prints it)", fingerprint);
        r = pairing_token_join(bare, &fp, ret);
        return r < 0 ? cli_error(r) : 0;
}

/* Connects to the daemon serving cli_home(). Prints errors itself. */
int cli_local_daemon(Remote **ret_remote, DaemonEndpoint **ret_ep) {
        return cli_local_daemon_stall(ret_remote, ret_ep, 0);
}

int cli_local_daemon_stall(Remote **ret_remote, DaemonEndpoint **ret_ep, unsigned stall_timeout_s) {
        DaemonEndpoint *ep = NULL;
        int r = daemon_endpoint_read(cli_home(), &ep);
        if (r < 0)
                return cli_error(r);
        RemoteOptions ro = { .cacert = ep->cacert, .fingerprint = ep->fingerprint,
                             .stall_timeout_s = stall_timeout_s };
        Remote *rem;
        r = remote_new(ep->url, ep->token, &ro, &rem);
        if (r < 0) {
                daemon_endpoint_free(ep);
                return cli_error(r);
        }
        *ret_remote = rem;
        *ret_ep = ep;
        return 0;
}

/* One JSON request to the local daemon; prints errors itself. */
int cli_local_request(Remote *rem, const char *method, const char *path, json_t *body, json_t **ret) {
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(rem);
        if (!c)
                return cli_error(-ENOMEM);
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        RemoteResponse resp;
        int r = remote_request(c, method, path, text, text ? strlen(text) : 0, "application/json", 16 << 20, &resp);
        if (r < 0)
                return cli_error(r);
        if (resp.status < 200 || resp.status > 299) {
                /* the local daemon's own words, without its address: it is this host */
                json_t *e = json_loadb((const char *) resp.body, resp.len, 0, NULL);
                const char *msg = json_string_value(json_object_get(e, "error"));
                r = msg ? cli_errorf("%s", msg) : cli_error(remote_status_error(rem, &resp, path));
                json_decref(e);
                remote_response_done(&resp);
                return r;
        }
        json_t *j = json_loadb((const char *) resp.body, resp.len, 0, NULL);
        remote_response_done(&resp);
        if (!j)
                return cli_errorf("the local daemon sent a malformed answer to %s", path);
        *ret = j;
        return 0;
}


bool cli_take_flag(int *argc, char **argv, const char *flag) {
        for (int i = 1; i < *argc && strcmp(argv[i], "--"); i++)
                if (!strcmp(argv[i], flag)) {
                        memmove(argv + i, argv + i + 1, sizeof(char *) * (size_t) (*argc - i)); /* with argv[argc] */
                        (*argc)--;
                        return true;
                }
        return false;
}

int cli_print_json(json_t *j) {
        if (!j)
                return cli_error(-ENOMEM);
        int r = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(j);
        if (r < 0 || putchar('\n') == EOF || fflush(stdout) == EOF)
                return cli_errorf("cannot write the JSON answer to stdout: %s", strerror(errno));
        return 0;
}
