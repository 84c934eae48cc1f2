/* SPDX-License-Identifier: MIT */
/* roam serve */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/conf-file.h"
#include "../basic/error.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../daemon/auth.h"
#include "../daemon/daemon.h"
#include "../daemon/api-console.h"
#include "../daemon/api-fleet.h"
#include "../daemon/api-keys.h"
#include "../daemon/api-desk.h"
#include "../daemon/api-session.h"
#include "../daemon/hoard.h"
#include "../daemon/laptop.h"
#include "../daemon/laptop-identity.h"
#include "../daemon/laptop-registry.h"
#include "../session/session.h"
#include "../sync/remote.h"

static const char serve_help[] =
        "Serves the store in the state directory over HTTP(S) for 'roam pull', 'roam push'\n"
        "and other roam hosts (docs/sync-protocol.md). Runs in the foreground until\n"
        "SIGTERM or SIGINT, then finishes the requests in flight and exits 0; SIGHUP\n"
        "reopens the log file. Every request needs a token ('roam token create');\n"
        "local commands use the admin token the daemon keeps in $ROAM_HOME/local.token\n"
        "and find it through $ROAM_HOME/serve.json.\n\n"
        "  --listen ADDR:PORT  address to listen on (default " DAEMON_LISTEN_DEFAULT "; [IPv6]:PORT;\n"
        "                      port 0 picks a free port, see serve.json)\n"
        "  --tls-cert FILE     serve HTTPS with this PEM certificate ...\n"
        "  --tls-key FILE      ... and this PEM private key (default: the self-signed\n"
        "                      pair made on first start in $ROAM_HOME/tls; either way\n"
        "                      the certificate's SHA-256 fingerprint is logged at start,\n"
        "                      shown by the console and /v1/info, and carried by the\n"
        "                      tokens 'roam token create' prints: clients pin it)\n"
        "  --insecure-http     serve plain HTTP instead: tokens and data unencrypted (also\n"
        "                      $ROAM_INSECURE_HTTP=1; for tests and trusted loopback)\n"
        "  --role ROLE         server (default) or laptop\n"
        "  --log FILE          log here instead of stderr\n"
        "  --log-level LEVEL   debug, info (default), warning or error (also 'roam\n"
        "                      --log-level' and $ROAM_LOG)\n"
        "  --hoard-rate RATE   bandwidth cap of background hoards per connection, e.g. 4M\n"
        "                      (bytes/s; default none: hoards share the link with others)\n"
        "  --offline-days D    (server) how long a laptop may keep a session offline\n"
        "                      (default 30; fractions allowed; 0 = no limit); a paired\n"
        "                      laptop renews it while it reaches the server\n"
        "  --nonce-ttl S       (server) how long a nonce for a laptop's signed request\n"
        "                      stays good (default 300 s)\n"
        "  --max-failed-logins N  refused tokens a client address may present within a\n"
        "                      minute; then it gets 429 for a minute (default 20; 0 = no\n"
        "                      limit)\n"
        "Fleet (docs/fleet.md):\n"
        "  --store SPEC        the store: a directory or rados:POOL[?conf=FILE] (Ceph\n"
        "                      RADOS, shared by a fleet); kept as the home's store\n"
        "  --etcd URL[,URL...] join the fleet whose membership and ownership live in\n"
        "                      this etcd cluster\n"
        "  --fleet-name NAME   this host's name in the fleet (default: the home's host id)\n"
        "  --fleet-url URL     where the other members reach this host (default\n"
        "                      http://LISTEN)\n"
        "  --fleet-checkpoint S  a checkpoint of every running session this often, into\n"
        "                      the shared store: what another member restores when this\n"
        "                      one dies (default 30; 0 = none)\n"
        "Laptop role:\n"
        "  --server URL        the datacenter server this laptop pairs with\n"
        "  --token T           the user's token on that server (default $ROAM_TOKEN); the\n"
        "                      pairing token 'roam token create' prints there carries\n"
        "                      the server's fingerprint, which is pinned\n"
        "  --fingerprint FP    pin this fingerprint of the server's certificate instead\n"
        "                      (sha256:HEX); without either, the one pinned at pairing\n"
        "                      ($ROAM_HOME/server-pin.json)\n"
        "  --name NAME         this laptop's display name (default: the host name); its\n"
        "                      identity is the key it makes on first start\n"
        "                      ($ROAM_HOME/laptop.key) and registers with the server\n"
        "  --precopy-interval S  seconds between background pre-copies (default 5)\n"
        "  --precopy-rate RATE bandwidth cap of background pre-copy per connection\n"
        "  --no-precopy        pre-copy nothing in the background (for comparisons)\n"
        "  --no-grant-pack     the remainder of a hand-over in a round trip of its own:\n"
        "                      take offline asks for the server's grant, then pulls it;\n"
        "                      take online pushes it, then moves in (by default it comes\n"
        "                      with the grant, and goes with the move-in; for comparisons)\n"
        "Both roles:\n"
        "  --no-stream-pack    a hand-over's remainder whole: the server sends a take\n"
        "                      offline's once all of it is packed, the laptop stores it\n"
        "                      once all of it is here; the laptop sends a take online's\n"
        "                      once all of it is packed, the server stores it once all\n"
        "                      of it is here (by default it goes while it is packed and\n"
        "                      is stored while it comes; for comparisons)\n"
        "  --no-warm-restore   start no QEMU ahead of a hand-over (by default, when a\n"
        "                      session's RAM is staged here, its QEMU is started too\n"
        "                      and waits for the click; for comparisons)\n"
        "  --no-tmp-pool       every chunk written makes its temp file (by default the\n"
        "                      store keeps empty ones made ahead, so that a hand-over's\n"
        "                      pause creates no file; for comparisons)\n"
        "  --no-handover-memory\n"
        "                      a hand-over's copies of its chunks take new memory (by\n"
        "                      default the store keeps 64 MiB touched ahead, so that a\n"
        "                      pause takes no page faults for them; for comparisons)\n"
        "  -v, --verbose       log every request (--log-level debug)\n"
        "  --foreground        stay in the foreground (the default; roam never daemonizes)\n"
        "Configuration:\n"
        "  --config FILE       read these settings from FILE (default: $ROAM_HOME/roam.conf\n"
        "                      when --home or $ROAM_HOME is set, else /etc/roam/roam.conf;\n"
        "                      a missing default file is no error). One 'key = value' a\n"
        "                      line, the keys being the long options above without '--'\n"
        "                      (docs/config.md); options on the command line win\n"
        "  --print-config      print the settings in effect, checked, as a config file,\n"
        "                      and exit\n";

#define SERVE_CONFIG_FILE "roam.conf"
#define SERVE_CONFIG_SYSTEM "/etc/roam/roam.conf"

/* Every option of roam serve; all but the last three are config file keys
 * too. The order is the order of --print-config. */
enum {
        OPT_LISTEN = 1000, OPT_TLS_CERT, OPT_TLS_KEY, OPT_INSECURE_HTTP, OPT_ROLE, OPT_LOG, OPT_LOG_LEVEL, OPT_VERBOSE,
        OPT_FOREGROUND, OPT_HOARD_RATE, OPT_OFFLINE_DAYS, OPT_NONCE_TTL, OPT_MAX_FAILED_LOGINS,
        OPT_STORE, OPT_ETCD, OPT_FLEET_NAME, OPT_FLEET_URL, OPT_FLEET_CHECKPOINT, OPT_SERVER, OPT_TOKEN,
        OPT_FINGERPRINT, OPT_NAME,
        OPT_PRECOPY_INTERVAL, OPT_PRECOPY_RATE, OPT_NO_PRECOPY, OPT_NO_GRANT_PACK, OPT_NO_STREAM_PACK, OPT_NO_WARM_RESTORE, OPT_NO_TMP_POOL,
        OPT_NO_HANDOVER_MEMORY, OPT_CONFIG, OPT_PRINT_CONFIG,
        OPT_HELP,
};
#define N_SETTINGS (OPT_CONFIG - OPT_LISTEN)

/* What roam serve runs with, converted from the settings. */
typedef struct ServeConfig {
        DaemonOptions daemon;
        HoardOptions hoard;
        LaptopOptions laptop;
        double offline_days;
        uint64_t nonce_ttl;
        double max_failed_logins;
        bool foreground; /* accepted, changes nothing */
        bool no_warm;    /* no QEMU started ahead of a hand-over's restore */
        bool no_stream_pack; /* a hand-over's remainder sent and stored only whole */
        struct {
                const char *etcd, *name, *url;
                double checkpoint_s;
        } fleet;
} ServeConfig;

typedef enum FlagKind {
        KIND_STRING, /* const char * at offset */
        KIND_SWITCH, /* bool at offset, set by the flag or "true" */
        KIND_RATE,   /* uint64_t bytes/s at offset, at least 1K */
        KIND_NUMBER, /* double at offset, from min to max */
        KIND_OTHER,  /* apply_other() */
} FlagKind;

#define AT(field) offsetof(ServeConfig, field)
static const struct ServeFlag {
        const char *name;
        int has_arg;
        const char *dflt; /* for --print-config */
        FlagKind kind;
        size_t offset;
        double min, max; /* KIND_NUMBER */
        const char *range; /* KIND_NUMBER: what it takes */
} flags[] = {
        [OPT_LISTEN - OPT_LISTEN] = { "listen", required_argument, DAEMON_LISTEN_DEFAULT, KIND_STRING, AT(daemon.listen) },
        [OPT_TLS_CERT - OPT_LISTEN] = { "tls-cert", required_argument, "($ROAM_HOME/tls/cert.pem, made if missing)",
                                        KIND_STRING, AT(daemon.tls_cert) },
        [OPT_TLS_KEY - OPT_LISTEN] = { "tls-key", required_argument, "($ROAM_HOME/tls/key.pem)", KIND_STRING,
                                       AT(daemon.tls_key) },
        [OPT_INSECURE_HTTP - OPT_LISTEN] = { "insecure-http", no_argument, "false", KIND_SWITCH,
                                             AT(daemon.insecure_http) },
        [OPT_ROLE - OPT_LISTEN] = { "role", required_argument, "server", KIND_OTHER },
        [OPT_LOG - OPT_LISTEN] = { "log", required_argument, "(stderr)", KIND_STRING, AT(daemon.log_path) },
        [OPT_LOG_LEVEL - OPT_LISTEN] = { "log-level", required_argument, "info", KIND_OTHER },
        [OPT_VERBOSE - OPT_LISTEN] = { "verbose", no_argument, "false", KIND_SWITCH, AT(daemon.verbose) },
        [OPT_FOREGROUND - OPT_LISTEN] = { "foreground", no_argument, "true", KIND_SWITCH, AT(foreground) },
        [OPT_HOARD_RATE - OPT_LISTEN] = { "hoard-rate", required_argument, "(no cap)", KIND_RATE,
                                          AT(hoard.default_limit_rate) },
        [OPT_OFFLINE_DAYS - OPT_LISTEN] = { "offline-days", required_argument, "30", KIND_NUMBER, AT(offline_days), 0,
                                            3650, "a number of days from 0 to 3650" },
        [OPT_NONCE_TTL - OPT_LISTEN] = { "nonce-ttl", required_argument, "300", KIND_OTHER },
        [OPT_MAX_FAILED_LOGINS - OPT_LISTEN] = { "max-failed-logins", required_argument, "20", KIND_NUMBER,
                                                 AT(max_failed_logins), 0, 100000, "a count from 0 to 100000" },
        [OPT_STORE - OPT_LISTEN] = { "store", required_argument, "($ROAM_HOME/store)", KIND_STRING, AT(daemon.store) },
        [OPT_ETCD - OPT_LISTEN] = { "etcd", required_argument, "(none: a standalone server)", KIND_STRING,
                                    AT(fleet.etcd) },
        [OPT_FLEET_NAME - OPT_LISTEN] = { "fleet-name", required_argument, "(the home's host id)", KIND_STRING,
                                          AT(fleet.name) },
        [OPT_FLEET_URL - OPT_LISTEN] = { "fleet-url", required_argument, "(http://LISTEN)", KIND_STRING,
                                         AT(fleet.url) },
        [OPT_FLEET_CHECKPOINT - OPT_LISTEN] = { "fleet-checkpoint", required_argument, "30", KIND_NUMBER,
                                                AT(fleet.checkpoint_s), 0, 86400, "seconds from 0 to 86400" },
        [OPT_SERVER - OPT_LISTEN] = { "server", required_argument, "(none)", KIND_STRING, AT(laptop.server_url) },
        [OPT_TOKEN - OPT_LISTEN] = { "token", required_argument, "($ROAM_TOKEN)", KIND_STRING, AT(laptop.token) },
        [OPT_FINGERPRINT - OPT_LISTEN] = { "fingerprint", required_argument, "(the token's, else the pinned one)",
                                           KIND_STRING, AT(laptop.fingerprint) },
        [OPT_NAME - OPT_LISTEN] = { "name", required_argument, "(the host name)", KIND_STRING, AT(laptop.name) },
        [OPT_PRECOPY_INTERVAL - OPT_LISTEN] = { "precopy-interval", required_argument, "5", KIND_NUMBER,
                                                AT(laptop.precopy_interval_s), 0.2, 86400,
                                                "seconds from 0.2 to 86400" },
        [OPT_PRECOPY_RATE - OPT_LISTEN] = { "precopy-rate", required_argument, "(no cap)", KIND_RATE,
                                            AT(laptop.precopy_rate) },
        [OPT_NO_PRECOPY - OPT_LISTEN] = { "no-precopy", no_argument, "false", KIND_SWITCH, AT(laptop.no_precopy) },
        [OPT_NO_GRANT_PACK - OPT_LISTEN] = { "no-grant-pack", no_argument, "false", KIND_SWITCH,
                                             AT(laptop.no_grant_pack) },
        [OPT_NO_STREAM_PACK - OPT_LISTEN] = { "no-stream-pack", no_argument, "false", KIND_SWITCH,
                                              AT(no_stream_pack) },
        [OPT_NO_WARM_RESTORE - OPT_LISTEN] = { "no-warm-restore", no_argument, "false", KIND_SWITCH, AT(no_warm) },
        [OPT_NO_TMP_POOL - OPT_LISTEN] = { "no-tmp-pool", no_argument, "false", KIND_SWITCH, AT(daemon.no_tmp_pool) },
        [OPT_NO_HANDOVER_MEMORY - OPT_LISTEN] = { "no-handover-memory", no_argument, "false", KIND_SWITCH,
                                                  AT(daemon.no_handover_memory) },
        [OPT_CONFIG - OPT_LISTEN] = { "config", required_argument, NULL },
        [OPT_PRINT_CONFIG - OPT_LISTEN] = { "print-config", no_argument, NULL },
        [OPT_HELP - OPT_LISTEN] = { "help", no_argument, NULL },
};

/* The settings as text, from the config file and then the command line. */
typedef struct Settings {
        char *value[N_SETTINGS];   /* NULL = unset; "true" for a flag that is set */
        const char *from[N_SETTINGS]; /* the file's path, or NULL for the command line */
        unsigned line[N_SETTINGS];
} Settings;

static void settings_done(Settings *s) {
        for (size_t i = 0; i < N_SETTINGS; i++)
                free(s->value[i]);
}

static int settings_set(Settings *s, size_t i, const char *value, const char *from, unsigned line) {
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        free(s->value[i]);
        s->value[i] = v;
        s->from[i] = from;
        s->line[i] = line;
        return 0;
}

typedef struct ConfCtx {
        Settings *settings;
        const char *path;
} ConfCtx;

static int conf_item(const char *key, const char *value, unsigned line, void *userdata) {
        ConfCtx *c = userdata;
        for (size_t i = 0; i < N_SETTINGS; i++) {
                if (strcmp(flags[i].name, key))
                        continue;
                if (flags[i].has_arg == no_argument) {
                        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1"))
                                return settings_set(c->settings, i, "true", c->path, line);
                        if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "0")) {
                                free(c->settings->value[i]);
                                c->settings->value[i] = NULL;
                                return 0;
                        }
                        return err_set(-EINVAL, "'%s' line %u: '%s' takes true or false, not '%s'", c->path, line,
                                       key, value);
                }
                if (!*value)
                        return err_set(-EINVAL, "'%s' line %u: '%s' has no value", c->path, line, key);
                return settings_set(c->settings, i, value, c->path, line);
        }
        return err_set(-EINVAL, "'%s' line %u: unknown setting '%s' (the keys are the long options of "
                       "'roam serve --help')", c->path, line, key);
}

/* The config file: --config, else the home's roam.conf when the home was
 * chosen (--home, $ROAM_HOME), else /etc/roam/roam.conf. */
static int read_config(const char *explicit_path, Settings *s, char **ret_path) {
        _cleanup_free_ char *path = NULL;
        const char *env = getenv("ROAM_HOME");
        if (explicit_path)
                path = strdup(explicit_path);
        else if (arg_home || (env && *env))
                path = cli_home_path(SERVE_CONFIG_FILE);
        else
                path = strdup(SERVE_CONFIG_SYSTEM);
        if (!path)
                return -ENOMEM;
        ConfCtx c = { .settings = s, .path = path };
        int r = conf_parse_file(path, conf_item, &c);
        if (r == -ENOENT && !explicit_path) {
                *ret_path = NULL; /* none: the defaults */
                return 0;
        }
        if (r == -ENOENT)
                return err_set(r, "config file '%s' does not exist (check --config)", path);
        if (r < 0)
                return r;
        *ret_path = TAKE_PTR(path);
        return 0;
}

static const char *apply_other(ServeConfig *c, int opt, const char *v) {
        switch (opt) {
        case OPT_ROLE:
                if (strcmp(v, "server") && strcmp(v, "laptop"))
                        return "takes server or laptop";
                c->daemon.role = v;
                return NULL;
        case OPT_LOG_LEVEL: {
                int l = daemon_log_level_from_string(v);
                if (l < 0)
                        return "takes " DAEMON_LOG_LEVELS;
                c->daemon.log_level = l;
                return NULL;
        }
        case OPT_NONCE_TTL:
                if (parse_u64(v, &c->nonce_ttl) < 0 || c->nonce_ttl < 1 || c->nonce_ttl > 86400)
                        return "takes seconds from 1 to 86400";
                return NULL;
        }
        return "is not a setting";
}

/* Converts setting i into c; NULL, or what is wrong with the value ("takes
 * ...", after the option's name). */
static const char *apply(ServeConfig *c, size_t i, const char *v) {
        static char range[96];
        const struct ServeFlag *f = &flags[i];
        void *field = (char *) c + f->offset;
        char *end;
        switch (f->kind) {
        case KIND_STRING:
                *(const char **) field = v;
                return NULL;
        case KIND_SWITCH:
                *(bool *) field = true;
                return NULL;
        case KIND_RATE:
                if (parse_size(v, field) < 0 || *(uint64_t *) field < 1024)
                        return "takes a rate of at least 1K (bytes/s)";
                return NULL;
        case KIND_NUMBER: {
                double x = strtod(v, &end);
                if (*end || end == v || !(x >= f->min && x <= f->max)) {
                        snprintf(range, sizeof range, "takes %s", f->range);
                        return range;
                }
                *(double *) field = x;
                return NULL;
        }
        case KIND_OTHER:
                break;
        }
        return apply_other(c, OPT_LISTEN + (int) i, v);
}

/* A value that looks fine to the config file writer: quoted when it would
 * not survive unquoted. */
static void print_value(const char *v) {
        size_t n = strlen(v);
        if (n && !strchr(v, '#') && !strchr(v, '"') && !strchr(v, '\\') && v[0] != ' ' && v[0] != '\t' &&
            v[n - 1] != ' ' && v[n - 1] != '\t') {
                printf("%s\n", v);
                return;
        }
        putchar('"');
        for (const char *p = v; *p; p++) {
                if (*p == '"' || *p == '\\')
                        putchar('\\');
                putchar(*p);
        }
        printf("\"\n");
}

static void print_config(const Settings *s, const char *path) {
        if (path)
                printf("# roam serve: the settings in effect: the config file '%s', then $ROAM_LOG and\n"
                       "# the command line. Commented out: not set (the default in effect).\n", path);
        else
                printf("# roam serve: the settings in effect (no config file): $ROAM_LOG and the command\n"
                       "# line. Commented out: not set (the default in effect).\n");
        for (size_t i = 0; i < N_SETTINGS; i++) {
                if (!s->value[i]) {
                        printf("# %s = %s\n", flags[i].name, flags[i].dflt);
                        continue;
                }
                printf("%s = ", flags[i].name);
                if (i == OPT_TOKEN - OPT_LISTEN)
                        printf("(hidden: a secret)\n");
                else
                        print_value(s->value[i]);
        }
}

int verb_serve(int argc, char **argv) {
        struct option opts[ELEMENTSOF(flags) + 1] = {};
        for (size_t i = 0; i < ELEMENTSOF(flags); i++)
                opts[i] = (struct option){ flags[i].name, flags[i].has_arg, NULL, OPT_LISTEN + (int) i };
        _cleanup_(settings_done) Settings cmdline = {}, s = {};
        const char *config_path = NULL;
        bool print = false;
        int c;
        while ((c = getopt_long(argc, argv, "hv", opts, NULL)) >= 0) {
                if (c == 'h' || c == OPT_HELP)
                        return cli_help("serve",
                                        "[--listen ADDR:PORT] [--tls-cert FILE --tls-key FILE | --insecure-http] "
                                        "[--role server|laptop] "
                                        "[--config FILE] ...",
                                        serve_help);
                if (c == OPT_CONFIG)
                        config_path = optarg;
                else if (c == OPT_PRINT_CONFIG)
                        print = true;
                else if (c == 'v' || (c >= OPT_LISTEN && c < OPT_CONFIG)) {
                        size_t i = (size_t) ((c == 'v' ? OPT_VERBOSE : c) - OPT_LISTEN);
                        if (settings_set(&cmdline, i, optarg ? optarg : "true", NULL, 0) < 0)
                                return cli_error(-ENOMEM);
                } else
                        return cli_usage("serve", "invalid option");
        }
        if (optind != argc)
                return cli_usage("serve", "unexpected argument '%s'", argv[optind]);

        /* the file, then $ROAM_LOG and roam --log-level, then serve's own options */
        _cleanup_free_ char *path = NULL;
        int r = read_config(config_path, &s, &path);
        if (r < 0)
                return cli_error(r);
        const char *level = cli_log_level();
        if (level && settings_set(&s, OPT_LOG_LEVEL - OPT_LISTEN, level, NULL, 0) < 0)
                return cli_error(-ENOMEM);
        /* $ROAM_INSECURE_HTTP beats the file; a certificate given wins over it */
        const char *insecure = getenv("ROAM_INSECURE_HTTP");
        if (insecure && *insecure && !cmdline.value[OPT_TLS_CERT - OPT_LISTEN]) {
                bool on = !strcmp(insecure, "1") || !strcmp(insecure, "true") || !strcmp(insecure, "yes");
                if (!on && strcmp(insecure, "0") && strcmp(insecure, "false") && strcmp(insecure, "no"))
                        return cli_errorf("$ROAM_INSECURE_HTTP takes 1 or 0, not '%s'", insecure);
                size_t i = OPT_INSECURE_HTTP - OPT_LISTEN;
                free(s.value[i]);
                s.value[i] = NULL;
                if (on && settings_set(&s, i, "true", NULL, 0) < 0)
                        return cli_error(-ENOMEM);
        }
        for (size_t i = 0; i < N_SETTINGS; i++)
                if (cmdline.value[i] && settings_set(&s, i, cmdline.value[i], NULL, 0) < 0)
                        return cli_error(-ENOMEM);

        ServeConfig cfg = { .offline_days = 30, .max_failed_logins = AUTH_FAILED_LOGINS_DEFAULT,
                            .fleet.checkpoint_s = 30 };
        for (size_t i = 0; i < N_SETTINGS; i++) {
                const char *problem = s.value[i] ? apply(&cfg, i, s.value[i]) : NULL;
                if (problem && s.from[i])
                        return cli_errorf("'%s' line %u: '%s' %s (fix the config file)", s.from[i], s.line[i],
                                          flags[i].name, problem);
                if (problem)
                        return cli_usage("serve", "--%s %s", flags[i].name, problem);
        }
        DaemonOptions o = cfg.daemon;
        HoardOptions ho = cfg.hoard;
        LaptopOptions lo = cfg.laptop;
        lo.no_stream_pack = cfg.no_stream_pack;
        double offline_days = cfg.offline_days;
        uint64_t nonce_ttl = cfg.nonce_ttl;
        if (!!o.tls_cert != !!o.tls_key)
                return cli_usage("serve", "--tls-cert and --tls-key go together");
        if (o.tls_cert && o.insecure_http)
                return cli_usage("serve", "--insecure-http serves plain HTTP: it does not go with --tls-cert and "
                                 "--tls-key");
        o.home = cli_home();
        bool laptop = o.role && !strcmp(o.role, "laptop");
        o.laptop_server = lo.server_url;
        if (lo.server_url && !laptop)
                return cli_usage("serve", "--server goes with --role laptop");
        if (lo.fingerprint && !lo.server_url)
                return cli_usage("serve", "--fingerprint goes with --role laptop --server URL");
        if (print) {
                print_config(&s, path);
                return 0;
        }
        _cleanup_free_ char *pinned = NULL;
        if (lo.server_url) {
                lo.token = remote_token_from_env(lo.token);
                if (!lo.token)
                        return cli_errorf("no token for %s (use --token or set ROAM_TOKEN)", lo.server_url);
                /* what to pin, before anything starts */
                r = laptop_pin_resolve(o.home, lo.server_url, lo.token, lo.fingerprint, &pinned);
                if (r < 0)
                        return cli_error(r);
                lo.token = pinned;
                lo.fingerprint = NULL;
        }

        auth_throttle_set((unsigned) cfg.max_failed_logins);
        interrupt_uninstall(); /* the daemon stops cleanly on its own */
        Daemon *d;
        r = daemon_new(&o, &d);
        if (r < 0)
                return cli_error(r);
        if (laptop && !lo.server_url)
                daemon_log(d, DAEMON_LOG_INFO,
                           "a laptop without --server URL: it pairs with no server and pre-copies nothing; it "
                           "hoards what 'roam hoard URL REF' hands it");
        SessionHost *sh = NULL;
        Hoard *hoard = NULL;
        ApiLaptop *laptops = NULL;
        r = hoard_register(d, &ho, &hoard);
        if (r >= 0)
                r = session_host_new(o.home, daemon_store(d), daemon_catalog(d), &sh);
        if (r >= 0) {
                session_host_set_owner_describer(sh, laptop_owner_describer, daemon_catalog(d));
                session_host_set_warm(sh, !cfg.no_warm);
                session_warm_sweep(sh, false); /* what a crash left */
        }
        if (r >= 0)
                r = api_laptop_register(d, (int64_t) nonce_ttl, &laptops);
        if (r >= 0)
                r = api_session_register(d, sh, (int64_t) (offline_days * 86400), laptops, !cfg.no_stream_pack);
        if (r >= 0)
                r = api_keys_register(d, laptops);
        if (r >= 0 && lo.server_url)
                r = laptop_register(d, sh, hoard, &lo);
        else if (r >= 0 && laptop)
                r = laptop_register_without_server(d);
        if (r >= 0)
                r = api_console_register(d, sh);
        ApiFleet *fleet = NULL;
        if (r >= 0 && cfg.fleet.etcd)
                r = api_fleet_register(d, sh,
                                       &(ApiFleetOptions){ .etcd = cfg.fleet.etcd, .name = cfg.fleet.name,
                                                           .url = cfg.fleet.url, .listen = o.listen,
                                                           .checkpoint_s = cfg.fleet.checkpoint_s,
                                                           .laptops = laptops },
                                       &fleet);
        if (r >= 0)
                r = api_desk_register(d, sh);
        if (r < 0) {
                api_fleet_free(fleet);
                session_host_free(sh);
                daemon_free(d);
                return cli_error(r);
        }
        r = daemon_run(d);
        /* no request or worker may start a waiting QEMU after the sweep */
        daemon_quiesce(d);
        session_warm_sweep(sh, true);
        api_fleet_free(fleet);
        session_host_free(sh);
        daemon_free(d);
        if (r < 0)
                return cli_error(r);
        return 0;
}
