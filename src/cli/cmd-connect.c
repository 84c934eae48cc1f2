/* SPDX-License-Identifier: MIT */
/* roam session connect NAME: a session's desktop for native VNC viewers.
 *
 * A loopback port where each viewer connection is checked with VNC
 * Authentication (a fresh random password per run of this command, printed)
 * and then carried to the session's VNC over the daemon's authenticated API:
 * GET /v1/console/sessions/NAME/vnc upgraded to a raw byte stream
 * (src/sync/remote-stream.h). The RFB opening on both sides is
 * src/vnc/rfb.h; the rest is relayed byte for byte (src/basic/relay.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/relay.h"
#include "../basic/util.h"
#include "../daemon/api-console.h"
#include "../daemon/daemon.h"
#include "../http/server.h"
#include "../sync/remote-stream.h"
#include "../sync/remote.h"
#include "../vnc/rfb.h"

#define CONNECT_VIEWERS_MAX 8        /* viewers at once; more are turned away */
#define CONNECT_HANDSHAKE_MS 30000   /* for a viewer's part of the opening */
#define CONNECT_WRONG_PASSWORD_MS 1000 /* a wrong password waits this long: slow guessing */
#define CONNECT_LISTEN_DEFAULT "127.0.0.1:0"

typedef struct Target {
        const char *url, *token;
        RemoteOptions ro; /* cacert, fingerprint */
        char path[128];
        const char *name;
        char password[RFB_PASSWORD_LEN + 1];
} Target;

static atomic_int viewers;

static bool stop_requested(void *userdata) {
        return interrupt_requested();
}

/* An RfbIo over a RelayEnd, with the handshake's time limit. */
static int end_read(void *userdata, void *buf, size_t n) {
        return relay_end_read_exact(userdata, buf, n, CONNECT_HANDSHAKE_MS, stop_requested, NULL);
}
static int end_write(void *userdata, const void *buf, size_t n) {
        return relay_end_write_all(userdata, buf, n, CONNECT_HANDSHAKE_MS, stop_requested, NULL);
}

static void note(const char *fmt, ...) _printf_(1, 2);
static void note(const char *fmt, ...) {
        if (arg_quiet)
                return;
        va_list ap;
        va_start(ap, fmt);
        flockfile(stderr); /* one line at a time from the viewers' threads */
        fputs("roam: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        funlockfile(stderr);
        va_end(ap);
}

/* The desktop through the daemon, opened up to where ClientInit goes. */
static int open_desktop(const Target *t, RemoteStream **ret) {
        _cleanup_(remote_stream_freep) RemoteStream *s = NULL;
        int r = remote_stream_open(t->url, t->token, &t->ro, t->path, VNC_RAW_PROTOCOL, &s);
        if (r < 0)
                return r;
        RelayEnd e = { .fd = remote_stream_fd(s), .read = remote_stream_read, .write = remote_stream_write,
                       .userdata = s };
        RfbIo io = { end_read, end_write, &e };
        r = rfb_client_none(&io);
        if (r < 0)
                return err_set_if_none(r, "the desktop of session '%s' broke off its opening: %s", t->name,
                                       strerror(-r));
        *ret = TAKE_PTR(s);
        return 0;
}

typedef struct Viewer {
        const Target *t;
        int fd;
        char peer[INET6_ADDRSTRLEN + 8];
} Viewer;

static void *viewer_run(void *p) {
        Viewer *v = p;
        const Target *t = v->t;
        RelayEnd ve = { .fd = v->fd };
        RfbIo io = { end_read, end_write, &ve };
        uint8_t challenge[RFB_CHALLENGE_SIZE];
        int minor = 0, r = random_bytes(challenge, sizeof challenge);
        err_clear();
        if (r >= 0)
                r = rfb_serve_auth(&io, t->password, challenge, &minor);
        if (r == -EACCES) {
                note("viewer %s: wrong password", v->peer);
                struct timespec ts = { CONNECT_WRONG_PASSWORD_MS / 1000, 0 };
                nanosleep(&ts, NULL);
        } else if (r < 0)
                note("viewer %s: %s", v->peer, err_message(r));
        else {
                _cleanup_(remote_stream_freep) RemoteStream *s = NULL;
                err_clear();
                r = open_desktop(t, &s);
                if (r < 0) {
                        note("viewer %s: %s", v->peer, err_message(r));
                        (void) rfb_serve_result(&io, minor, err_message(r));
                } else if (rfb_serve_result(&io, minor, NULL) >= 0) {
                        note("viewer %s connected", v->peer);
                        RelayEnd de = { .fd = remote_stream_fd(s), .read = remote_stream_read,
                                        .write = remote_stream_write, .userdata = s };
                        r = relay_run(&ve, &de, NULL, 0, stop_requested, NULL);
                        note("viewer %s left%s%s", v->peer, r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
                }
        }
        close(v->fd);
        free(v);
        atomic_fetch_sub(&viewers, 1);
        return NULL;
}

static void peer_text(const struct sockaddr_storage *ss, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (ss->ss_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) ss;
                inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
                port = ntohs(a->sin6_port);
                snprintf(buf, size, "[%s]:%u", host, port);
        } else {
                const struct sockaddr_in *a = (const struct sockaddr_in *) ss;
                inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
                port = ntohs(a->sin_port);
                snprintf(buf, size, "%s:%u", host, port);
        }
}

static bool is_loopback(const struct sockaddr_storage *ss) {
        if (ss->ss_family == AF_INET6)
                return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) ss)->sin6_addr);
        return (ntohl(((const struct sockaddr_in *) ss)->sin_addr.s_addr) >> 24) == 127;
}

/* The listening socket on a loopback address; *ret_addr for the URL. */
static int listen_loopback(const char *listen_arg, int *ret_fd, char *ret_addr, size_t size) {
        struct sockaddr_storage ss;
        socklen_t sl;
        bool v6;
        if (http_listen_parse(listen_arg, &ss, &sl, &v6) < 0)
                return cli_errorf("listen address '%s' is invalid (use 127.0.0.1:PORT or [::1]:PORT)", listen_arg);
        if (!is_loopback(&ss))
                return cli_errorf("listen address '%s' is not a loopback address (the desktop's port is for this "
                                  "machine only: use 127.0.0.1:PORT)",
                                  listen_arg);
        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *) &ss, sl) < 0 || listen(fd, 16) < 0)
                return cli_errorf("cannot listen on '%s': %s%s", listen_arg, strerror(errno),
                                  errno == EADDRINUSE ? " (pick another --listen port)" : "");
        struct sockaddr_storage bound;
        socklen_t bl = sizeof bound;
        if (getsockname(fd, (struct sockaddr *) &bound, &bl) < 0)
                return cli_error(-errno);
        peer_text(&bound, ret_addr, size);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int accept_loop(Target *t, int lfd) {
        while (!interrupt_requested()) {
                struct pollfd p = { .fd = lfd, .events = POLLIN };
                int k = poll(&p, 1, RELAY_POLL_MS);
                if (k <= 0)
                        continue;
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                int fd = accept4(lfd, (struct sockaddr *) &ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                        continue;
                if (atomic_fetch_add(&viewers, 1) >= CONNECT_VIEWERS_MAX) {
                        atomic_fetch_sub(&viewers, 1);
                        note("turned a viewer away: %d are connected already", CONNECT_VIEWERS_MAX);
                        close(fd);
                        continue;
                }
                Viewer *v = malloc(sizeof *v);
                pthread_t th;
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                if (v) {
                        *v = (Viewer) { .t = t, .fd = fd };
                        peer_text(&ss, v->peer, sizeof v->peer);
                }
                if (!v || pthread_create(&th, &attr, viewer_run, v) != 0) {
                        free(v);
                        close(fd);
                        atomic_fetch_sub(&viewers, 1);
                }
                pthread_attr_destroy(&attr);
        }
        return 0;
}

int session_connect_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "url", required_argument, NULL, 'u' },
                { "token", required_argument, NULL, 't' },
                { "cacert", required_argument, NULL, 'c' },
                { "fingerprint", required_argument, NULL, 'f' },
                { "listen", required_argument, NULL, 'l' },
                { "password-file", required_argument, NULL, 'p' },
                {},
        };
        const char *url = NULL, *token_arg = NULL, *cacert = NULL, *fingerprint = NULL, *listen_arg = CONNECT_LISTEN_DEFAULT,
                   *password_file = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "hu:t:c:f:l:p:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help(
                                "session connect", "NAME [--url URL --token T] [--listen 127.0.0.1:PORT]",
                                "Opens a loopback port for a native VNC viewer (TigerVNC, Remmina, ...) and\n"
                                "carries each connection to the desktop of session NAME over the daemon's\n"
                                "authenticated API: the local daemon (server or laptop), or the one at URL.\n"
                                "Prints the vnc:// address and a password made for this run; viewers\n"
                                "answer it with VNC Authentication before anything reaches the daemon.\n"
                                "Runs in the foreground until Ctrl-C. A user token reaches only its user's\n"
                                "sessions.\n\n"
                                "  --url URL              the daemon (default: the one serving --home)\n"
                                "  -t, --token T          its token (default $ROAM_TOKEN; with --url)\n"
                                "  --fingerprint FP       pin the https server's certificate (sha256:HEX;\n"
                                "                         default: the one in the token)\n"
                                "  --cacert FILE          trust this PEM CA certificate for https when\n"
                                "                         nothing is pinned\n"
                                "  -l, --listen A:P       loopback address and port (default 127.0.0.1 and a\n"
                                "                         free port)\n"
                                "  -p, --password-file F  also write the password as a VNC password file\n"
                                "                         (mode 0600) for 'vncviewer -passwd F'\n");
                case 'u':
                        url = optarg;
                        break;
                case 't':
                        token_arg = optarg;
                        break;
                case 'c':
                        cacert = optarg;
                        break;
                case 'f':
                        fingerprint = optarg;
                        break;
                case 'l':
                        listen_arg = optarg;
                        break;
                case 'p':
                        password_file = optarg;
                        break;
                default:
                        return cli_usage("session connect", "invalid option");
                }
        if (argc - optind != 1)
                return cli_usage("session connect", "expected NAME");
        /* a viewer that leaves while bytes are on their way to it is an
         * EPIPE for its thread, not the end of the process */
        signal(SIGPIPE, SIG_IGN);
        Target t = { .name = argv[optind], .ro = { .cacert = cacert, .fingerprint = fingerprint } };
        if (!name_is_valid(t.name))
                return cli_errorf("session name '%s' is invalid", t.name);
        snprintf(t.path, sizeof t.path, "/v1/console/sessions/%s/vnc", t.name);
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        if (url) {
                t.url = url;
                if (!(t.token = remote_token_from_env(token_arg)))
                        return cli_errorf("no token for %s (use --token or set ROAM_TOKEN)", url);
        } else {
                if (token_arg || fingerprint)
                        return cli_usage("session connect", "--token and --fingerprint go with --url");
                int r = daemon_endpoint_read(cli_home(), &ep);
                if (r < 0)
                        return cli_error(r);
                t.url = ep->url;
                t.token = ep->token;
                t.ro.fingerprint = ep->fingerprint; /* the local daemon's own certificate */
        }

        /* the session must be there, visible to the token and showing a
         * desktop now: one opening to find out, and its words if not */
        _cleanup_(remote_stream_freep) RemoteStream *probe = NULL;
        int r = open_desktop(&t, &probe);
        if (r < 0)
                return cli_error(r);
        remote_stream_free(TAKE_PTR(probe));

        _cleanup_close_ int lfd = -1;
        char addr[INET6_ADDRSTRLEN + 8];
        if (listen_loopback(listen_arg, &lfd, addr, sizeof addr))
                return 1;
        if ((r = rfb_password_new(t.password)) < 0)
                return cli_error(r);
        if (password_file) {
                uint8_t bytes[8];
                rfb_password_file_bytes(t.password, bytes);
                r = write_file_atomic(password_file, bytes, sizeof bytes, 0600);
                if (r < 0)
                        return cli_errorf("cannot write the password file '%s': %s", password_file,
                                          err_message(r));
        }
        printf("vnc://%s\npassword: %s\n", addr, t.password);
        fflush(stdout);
        const char *colon = strrchr(addr, ':');
        note("session '%s' is at vnc://%s for VNC viewers (TigerVNC: vncviewer %.*s:%s%s%s); Ctrl-C ends", t.name,
             addr, (int) (colon - addr), addr, colon, password_file ? " -passwd " : "",
             password_file ? password_file : "");
        accept_loop(&t, lfd);
        note("the desktop port of session '%s' is closed", t.name);
        return 0;
}
