/* SPDX-License-Identifier: MIT */
#pragma once

/* The `roam serve` runtime: one process that owns the store (lock held
 * shared), the catalog and the HTTP(S) server, plus background workers.
 *
 *   daemon_new(&opts, &d)          open store + catalog, bind, local token
 *   daemon_add_routes(d, ...)      more HTTP routes (sessions, console, ...)
 *   daemon_add_worker(d, ...)      background jobs (hoarding, pre-copy, ...)
 *   daemon_run(d)                  serve until SIGTERM/SIGINT (or daemon_stop())
 *   daemon_free(d)
 *
 * Files in the state directory (HOME):
 *   HOME/store/        the content-addressed store
 *   HOME/catalog.db    tokens (catalog.h)
 *   HOME/serve.json    {"url", "pid", "role", "tls_cert"?, "fingerprint"?} while
 *                      the daemon serves; written atomically after the server
 *                      listens, removed on clean shutdown
 *   HOME/tls/          the TLS key and certificate made on first start
 *                      (crypto/tls-cert.h), unless --tls-cert or --insecure-http
 *   HOME/local.token   an admin token for local CLI commands (mode 0600),
 *                      created once and reused while the catalog accepts it
 *
 * Local clients find the daemon with daemon_endpoint_read().
 *
 * gc while serving (api-gc.h): every request but GET and the read-only POSTs
 * holds the store's write gate (store_write_begin()) for its handler, and a
 * worker holds it except inside daemon_worker_sleep().
 *
 * Signals: SIGTERM/SIGINT stop it cleanly (stop accepting, let requests in
 * flight finish for a grace period, stop workers, store_commit(), remove
 * serve.json; daemon_run() returns 0). SIGHUP reopens the log file.
 *
 * Logging: lines at or above the log level (default info): one per request
 * at debug, the daemon's life at info, trouble at warning and error. */

#include <stdbool.h>
#include <sys/types.h>

#include "../basic/macro.h"
#include "../catalog/catalog.h"
#include "../http/server.h"
#include "../store/store.h"
#include "api-store.h"

#define DAEMON_LISTEN_DEFAULT "127.0.0.1:7450"
#define DAEMON_SERVE_FILE "serve.json"
#define DAEMON_TOKEN_FILE "local.token"

/* Levels, least first. DaemonOptions.log_level 0 means the default, info. */
typedef enum DaemonLogLevel {
        DAEMON_LOG_DEBUG = 1,
        DAEMON_LOG_INFO,
        DAEMON_LOG_WARNING,
        DAEMON_LOG_ERROR,
        _DAEMON_LOG_MAX,
} DaemonLogLevel;
#define DAEMON_LOG_LEVELS "debug, info, warning or error"
/* "debug", "info", "warning" (or "warn"), "error" (any case); -EINVAL otherwise. */
int daemon_log_level_from_string(const char *s);
const char *daemon_log_level_to_string(int level);

typedef struct DaemonOptions {
        const char *home;     /* state directory, created if missing (required) */
        const char *listen;   /* NULL = DAEMON_LISTEN_DEFAULT */
        const char *tls_cert; /* PEM; both or neither (neither: HOME/tls, made if missing) */
        const char *tls_key;
        bool insecure_http;   /* plain HTTP (no tls_cert then) */
        const char *role;     /* "server" (NULL = default) or "laptop"; reported by /v1/info */
        const char *log_path; /* NULL = stderr */
        bool verbose;         /* log every request: the same as log_level debug */
        int log_level;        /* a DaemonLogLevel, the least that is logged; 0 = info */
        unsigned stop_grace_s; /* 0 = HTTP_STOP_GRACE_DEFAULT_S */
        const char *store;    /* NULL: the home's (store/location.h); else recorded as the home's */
        bool laptop_server;   /* a laptop with --server: its data key comes at pairing (store/home-store.h) */
        bool no_tmp_pool;     /* the store makes no temp files ahead (store_tmp_pool()) */
        bool no_handover_memory; /* no memory touched ahead for a hand-over's copies (store_fresh_reserve()) */
} DaemonOptions;

/* Empty temp files a daemon's local store keeps made ahead: more than a
 * desktop's take offline or online writes chunks (~1000) */
#define DAEMON_TMP_POOL 2048
/* Memory a daemon's store keeps touched for the plain copies of a hand-over's
 * window: more than a desktop's remainder (~700 chunks of 64 KiB, 44 MiB) */
#define DAEMON_HANDOVER_MEMORY (64u << 20)

typedef struct Daemon Daemon;

/* -EINVAL (with detail) for bad options, -EADDRINUSE, -EBUSY when another
 * daemon serves HOME, ... Caller frees with daemon_free(). */
int daemon_new(const DaemonOptions *o, Daemon **ret);
/* Stops the HTTP server (requests in flight get their grace) and joins the
 * workers: nothing of the daemon runs any more (daemon_free() does it too). */
void daemon_quiesce(Daemon *d);
void daemon_free(Daemon *d);
static inline void daemon_freep(Daemon **d) {
        if (*d)
                daemon_free(*d);
}

/* Serves until a stop signal or daemon_stop(). Blocks SIGTERM, SIGINT and
 * SIGHUP in the calling thread (and so in every thread it starts); call it
 * from the main thread. Returns 0 after a clean shutdown. */
int daemon_run(Daemon *d);
/* Asks daemon_run() to shut down (any thread, async-signal-safe). */
void daemon_stop(Daemon *d);

Store *daemon_store(Daemon *d);
Catalog *daemon_catalog(Daemon *d);
ApiStore *daemon_api_store(Daemon *d);
HttpServer *daemon_http(Daemon *d);
const char *daemon_home(Daemon *d);
const char *daemon_role(Daemon *d);
/* "sha256:HEX" of the certificate served, or NULL for plain HTTP. */
const char *daemon_fingerprint(Daemon *d);

/* Adds routes to the HTTP server (before daemon_run()); they share the
 * authentication of every route (auth.h: auth_of(req)). */
int daemon_add_routes(Daemon *d, const HttpRoute *routes, size_t n, void *userdata);


/* One line to the daemon's log (thread-safe). */
void daemon_log(Daemon *d, DaemonLogLevel level, const char *fmt, ...) _printf_(3, 4);

/* ---- background workers ----
 * A worker is a function run in its own thread from daemon_run() start until
 * shutdown. It loops on daemon_worker_sleep(), which returns false once the
 * daemon stops; the worker then returns promptly (before store_commit() and
 * the exit). Example:
 *
 *     static void hoard(DaemonWorker *w, void *userdata) {
 *             do
 *                     hoard_some(daemon_worker_daemon(w), userdata);
 *             while (daemon_worker_sleep(w, 60));
 *     }
 *     daemon_add_worker(d, "hoard", hoard, ctx, NULL);
 */
typedef struct DaemonWorker DaemonWorker;
typedef void (*DaemonWorkerFn)(DaemonWorker *w, void *userdata);
/* Before daemon_run(). *ret_worker (may be NULL) is owned by the daemon. */
int daemon_add_worker(Daemon *d, const char *name, DaemonWorkerFn fn, void *userdata, DaemonWorker **ret_worker);
/* Waits up to seconds, or until woken or stopping. Returns false when the
 * daemon stops. */
bool daemon_worker_sleep(DaemonWorker *w, double seconds);
bool daemon_worker_stopping(DaemonWorker *w);
/* Ends the worker's current sleep early (e.g. a route that says "hoard now"). */
void daemon_worker_wake(DaemonWorker *w);
Daemon *daemon_worker_daemon(DaemonWorker *w);

/* ---- finding the local daemon (for CLI commands) ---- */
typedef struct DaemonEndpoint {
        char *url;    /* "http://127.0.0.1:7450" */
        char *token;  /* the local admin token */
        char *cacert; /* the daemon's TLS certificate file (for https), else NULL */
        char *fingerprint; /* "sha256:HEX" of that certificate, pinned by local clients; NULL for http */
        char *role;   /* "server" or "laptop" */
        pid_t pid;
} DaemonEndpoint;
/* Reads HOME/serve.json and HOME/local.token. -ENOENT when no daemon serves
 * HOME, -ESRCH when serve.json is stale (its process is gone), -EBADMSG for
 * malformed files; all with an error detail that says what to do. Caller
 * frees with daemon_endpoint_free(). */
int daemon_endpoint_read(const char *home, DaemonEndpoint **ret);
void daemon_endpoint_free(DaemonEndpoint *e);
static inline void daemon_endpoint_freep(DaemonEndpoint **e) {
        if (*e)
                daemon_endpoint_free(*e);
}
