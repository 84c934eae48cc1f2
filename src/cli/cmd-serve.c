/* SPDX-License-Identifier: MIT */
/* roam serve */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "../basic/interrupt.h"
#include "../basic/util.h"
#include "../daemon/daemon.h"
#include "../daemon/api-console.h"
#include "../daemon/api-session.h"
#include "../daemon/hoard.h"
#include "../daemon/laptop.h"
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
        "  --tls-key FILE      ... and this PEM private key\n"
        "  --role ROLE         server (default) or laptop\n"
        "  --log FILE          log here instead of stderr\n"
        "  --hoard-rate RATE   bandwidth cap of background hoards per connection, e.g. 4M\n"
        "                      (bytes/s; default none: hoards share the link with others)\n"
        "  --offline-days D    (server) how long a laptop may keep a session offline\n"
        "                      (default 30; fractions allowed; 0 = no limit); a paired\n"
        "                      laptop renews it while it reaches the server\n"
        "  --nonce-ttl S       (server) how long a nonce for a laptop's signed request\n"
        "                      stays good (default 300 s)\n"
        "Laptop role:\n"
        "  --server URL        the datacenter server this laptop pairs with\n"
        "  --token T           the user's token on that server (default $ROAM_TOKEN)\n"
        "  --name NAME         this laptop's display name (default: the host name); its\n"
        "                      identity is the key it makes on first start\n"
        "                      ($ROAM_HOME/laptop.key) and registers with the server\n"
        "  --precopy-interval S  seconds between background pre-copies (default 5)\n"
        "  --precopy-rate RATE bandwidth cap of background pre-copy per connection\n"
        "  --no-precopy        pre-copy nothing in the background (for comparisons)\n"
        "  -v, --verbose       log every request\n"
        "  --foreground        stay in the foreground (the default; roam never daemonizes)\n";

int verb_serve(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "listen", required_argument, NULL, 'l' },
                { "tls-cert", required_argument, NULL, 'c' },
                { "tls-key", required_argument, NULL, 'k' },
                { "role", required_argument, NULL, 'r' },
                { "log", required_argument, NULL, 'L' },
                { "verbose", no_argument, NULL, 'v' },
                { "foreground", no_argument, NULL, 'f' },
                { "hoard-rate", required_argument, NULL, 'H' },
                { "offline-days", required_argument, NULL, 'D' },
                { "server", required_argument, NULL, 'S' },
                { "token", required_argument, NULL, 'T' },
                { "name", required_argument, NULL, 'N' },
                { "precopy-interval", required_argument, NULL, 'I' },
                { "precopy-rate", required_argument, NULL, 'R' },
                { "no-precopy", no_argument, NULL, 'P' },
                { "nonce-ttl", required_argument, NULL, 'n' },
                {},
        };
        DaemonOptions o = { 0 };
        HoardOptions ho = { 0 };
        LaptopOptions lo = { 0 };
        double offline_days = 30;
        uint64_t nonce_ttl = 0;
        int c;
        while ((c = getopt_long(argc, argv, "hv", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("serve",
                                        "[--listen ADDR:PORT] [--tls-cert FILE --tls-key FILE] [--role server|laptop] "
                                        "[--log FILE]",
                                        serve_help);
                case 'l':
                        o.listen = optarg;
                        break;
                case 'c':
                        o.tls_cert = optarg;
                        break;
                case 'k':
                        o.tls_key = optarg;
                        break;
                case 'r':
                        if (strcmp(optarg, "server") && strcmp(optarg, "laptop"))
                                return cli_usage("serve", "--role takes server or laptop, not '%s'", optarg);
                        o.role = optarg;
                        break;
                case 'L':
                        o.log_path = optarg;
                        break;
                case 'v':
                        o.verbose = true;
                        break;
                case 'f':
                        break;
                case 'H':
                        if (parse_size(optarg, &ho.default_limit_rate) < 0 || ho.default_limit_rate < 1024)
                                return cli_usage("serve", "--hoard-rate takes a rate of at least 1K (bytes/s)");
                        break;
                case 'D': {
                        char *end;
                        offline_days = strtod(optarg, &end);
                        if (*end || end == optarg || offline_days < 0 || offline_days > 3650)
                                return cli_usage("serve", "--offline-days takes a number of days from 0 to 3650");
                        break;
                }
                case 'S':
                        lo.server_url = optarg;
                        break;
                case 'T':
                        lo.token = optarg;
                        break;
                case 'N':
                        lo.name = optarg;
                        break;
                case 'I': {
                        char *end;
                        lo.precopy_interval_s = strtod(optarg, &end);
                        if (*end || end == optarg || lo.precopy_interval_s < 0.2 || lo.precopy_interval_s > 86400)
                                return cli_usage("serve", "--precopy-interval takes seconds from 0.2 to 86400");
                        break;
                }
                case 'P':
                        lo.no_precopy = true;
                        break;
                case 'n':
                        if (parse_u64(optarg, &nonce_ttl) < 0 || nonce_ttl < 1 || nonce_ttl > 86400)
                                return cli_usage("serve", "--nonce-ttl takes seconds from 1 to 86400");
                        break;
                case 'R':
                        if (parse_size(optarg, &lo.precopy_rate) < 0 || lo.precopy_rate < 1024)
                                return cli_usage("serve", "--precopy-rate takes a rate of at least 1K (bytes/s)");
                        break;
                default:
                        return cli_usage("serve", "invalid option");
                }
        if (optind != argc)
                return cli_usage("serve", "unexpected argument '%s'", argv[optind]);
        if (!!o.tls_cert != !!o.tls_key)
                return cli_usage("serve", "--tls-cert and --tls-key go together");
        o.home = cli_home();
        bool laptop = o.role && !strcmp(o.role, "laptop");
        if (lo.server_url && !laptop)
                return cli_usage("serve", "--server goes with --role laptop");
        if (lo.server_url) {
                lo.token = remote_token_from_env(lo.token);
                if (!lo.token)
                        return cli_errorf("no token for %s (use --token or set ROAM_TOKEN)", lo.server_url);
        }

        interrupt_uninstall(); /* the daemon stops cleanly on its own */
        Daemon *d;
        int r = daemon_new(&o, &d);
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
        if (r >= 0)
                r = api_laptop_register(d, (int64_t) nonce_ttl, &laptops);
        if (r >= 0)
                r = api_session_register(d, sh, (int64_t) (offline_days * 86400), laptops);
        if (r >= 0 && lo.server_url)
                r = laptop_register(d, sh, hoard, &lo);
        if (r >= 0)
                r = api_console_register(d, sh);
        if (r < 0) {
                session_host_free(sh);
                daemon_free(d);
                return cli_error(r);
        }
        r = daemon_run(d);
        session_host_free(sh);
        daemon_free(d);
        if (r < 0)
                return cli_error(r);
        return 0;
}
