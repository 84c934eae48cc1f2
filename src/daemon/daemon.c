/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/util.h"
#include "../crypto/tls-cert.h"
#include "../store/home-store.h"
#include "../store/location.h"
#include "api-gc.h"
#include "auth.h"

#define TOKEN_FILE_MAX 256
#define SERVE_FILE_MAX 4096

struct DaemonWorker {
        Daemon *d;
        char *name;
        DaemonWorkerFn fn;
        void *userdata;
        pthread_t thread;
        bool running;
        bool woken; /* under d->worker_mutex */
};

struct Daemon {
        char *home;
        char *role;
        char *serve_path;
        char *tls_cert_abs;
        char *tls_key;
        char fingerprint[FINGERPRINT_TEXT_SIZE]; /* "" for plain HTTP */
        Store *store;
        Catalog *catalog;
        ApiStore *api;
        HttpServer *http;

        /* log */
        pthread_mutex_t log_mutex;
        FILE *log;
        char *log_path;
        int log_level; /* least level logged */

        /* workers */
        DaemonWorker **workers;
        size_t n_workers;
        pthread_mutex_t worker_mutex;
        pthread_cond_t worker_cond;
        bool stopping; /* under worker_mutex */

        int stop_fd; /* eventfd for daemon_stop() */
};

/* ---- log ---- */

static const char *const level_names[_DAEMON_LOG_MAX] = {
        [DAEMON_LOG_DEBUG] = "debug",
        [DAEMON_LOG_INFO] = "info",
        [DAEMON_LOG_WARNING] = "warning",
        [DAEMON_LOG_ERROR] = "error",
};

int daemon_log_level_from_string(const char *s) {
        if (!strcasecmp(s, "warn"))
                return DAEMON_LOG_WARNING;
        for (int i = DAEMON_LOG_DEBUG; i < _DAEMON_LOG_MAX; i++)
                if (!strcasecmp(s, level_names[i]))
                        return i;
        return -EINVAL;
}

const char *daemon_log_level_to_string(int level) {
        return level >= DAEMON_LOG_DEBUG && level < _DAEMON_LOG_MAX ? level_names[level] : NULL;
}

static void log_line(Daemon *d, DaemonLogLevel level, const char *line) {
        if ((int) level < d->log_level)
                return;
        struct timespec ts;
        struct tm tm;
        char when[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        pthread_mutex_lock(&d->log_mutex);
        FILE *f = d->log ? d->log : stderr;
        fprintf(f, "%s.%03ldZ roam[%d] %s: %s\n", when, ts.tv_nsec / 1000000, (int) getpid(), level_names[level],
                line);
        fflush(f);
        pthread_mutex_unlock(&d->log_mutex);
}

void daemon_log(Daemon *d, DaemonLogLevel level, const char *fmt, ...) {
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        log_line(d, level, line);
}

static void http_log(HttpLogLevel level, const char *line, void *userdata) {
        log_line(userdata, level == HTTP_LOG_ERROR  ? DAEMON_LOG_ERROR
                           : level == HTTP_LOG_INFO ? DAEMON_LOG_INFO
                                                    : DAEMON_LOG_DEBUG,
                 line);
}

static int log_open(Daemon *d) {
        if (!d->log_path)
                return 0;
        FILE *f = fopen(d->log_path, "ae");
        if (!f)
                return err_set(-errno, "cannot open log file '%s': %m (choose another --log FILE)", d->log_path);
        setvbuf(f, NULL, _IOLBF, 0);
        pthread_mutex_lock(&d->log_mutex);
        FILE *old = d->log;
        d->log = f;
        pthread_mutex_unlock(&d->log_mutex);
        if (old)
                fclose(old);
        return 0;
}

/* ---- the store's write gate (api-gc.h) ---- */

/* POSTs that only read: they need not wait for a gc (and gc's own route must not) */
static const char *const read_only_posts[] = { "/v1/chunks/get", "/v1/chunks/pages", "/v1/pack/get",
                                               "/v1/store/gc" };

/* Every request but GET and the read-only POSTs is a writer (any route added
 * later too): it waits while a gc runs and holds gc back while it runs. */
static void *request_enter(HttpRequest *req, void *userdata) {
        Daemon *d = userdata;
        if (!strcmp(http_request_method(req), "GET"))
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(read_only_posts); i++)
                if (!strcmp(http_request_path(req), read_only_posts[i]))
                        return NULL;
        store_write_begin(d->store);
        return d->store;
}

static void request_leave(void *token, void *userdata) {
        if (token)
                store_write_end(token);
}

/* ---- set-up ---- */

static char *home_path(Daemon *d, const char *rel) {
        return path_join(d->home, rel);
}

/* Reuses HOME/local.token while the catalog accepts it as an admin token,
 * else makes a new one. */
static int ensure_local_token(Daemon *d) {
        _cleanup_free_ char *path = home_path(d, DAEMON_TOKEN_FILE);
        if (!path)
                return -ENOMEM;
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, TOKEN_FILE_MAX, &text, &len);
        if (r >= 0) {
                text[strcspn(text, "\r\n")] = 0;
                CatalogRole role;
                r = catalog_token_check(d->catalog, text, &role, NULL);
                if (r >= 0 && role == CATALOG_ROLE_ADMIN)
                        return 0;
                if (r < 0 && r != -EACCES)
                        return r;
                daemon_log(d, DAEMON_LOG_INFO, "local token in '%s' is no longer valid, making a new one", path);
        } else if (r != -ENOENT && r != -EFBIG)
                return err_set(r, "cannot read '%s': %s", path, strerror(-r));

        _cleanup_free_ char *token = NULL;
        r = catalog_token_create_labeled(d->catalog, CATALOG_ROLE_ADMIN, NULL, "local admin token of roam serve", 0,
                                         &token);
        if (r < 0)
                return r;
        size_t n = strlen(token);
        token[n] = '\n'; /* the terminator becomes the newline; write n + 1 bytes */
        r = write_file_atomic(path, token, n + 1, 0600);
        explicit_bzero(token, n);
        if (r < 0)
                return err_set(r, "cannot write '%s': %s", path, strerror(-r));
        return 0;
}

static int read_serve(const char *home, DaemonEndpoint *e);

/* Refuses to start when serve.json names another live daemon. */
static int check_not_running(Daemon *d) {
        DaemonEndpoint e = { 0 };
        int r = read_serve(d->home, &e);
        if (r >= 0)
                r = err_set(-EBUSY, "a roam daemon already serves '%s' (pid %d at %s); stop it first", d->home,
                            (int) e.pid, e.url);
        else
                err_clear();
        free(e.url);
        free(e.role);
        free(e.cacert);
        free(e.fingerprint);
        return r == -EBUSY ? r : 0;
}

int daemon_new(const DaemonOptions *o, Daemon **ret) {
        if (!o->home || !*o->home)
                return err_set(-EINVAL, "no state directory (set ROAM_HOME or --home)");
        const char *role = o->role ? o->role : "server";
        if (strcmp(role, "server") && strcmp(role, "laptop"))
                return err_set(-EINVAL, "role '%s' is invalid (use server or laptop)", role);
        _cleanup_(daemon_freep) Daemon *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->stop_fd = -1;
        pthread_mutex_init(&d->log_mutex, NULL);
        pthread_mutex_init(&d->worker_mutex, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&d->worker_cond, &ca);
        pthread_condattr_destroy(&ca);
        d->log_level = o->verbose ? DAEMON_LOG_DEBUG : o->log_level ? o->log_level : DAEMON_LOG_INFO;
        if (!daemon_log_level_to_string(d->log_level))
                return err_set(-EINVAL, "log level %d is invalid (use " DAEMON_LOG_LEVELS ")", o->log_level);
        d->home = strdup(o->home);
        d->role = strdup(role);
        d->serve_path = path_join(o->home, DAEMON_SERVE_FILE);
        if (o->log_path && !(d->log_path = strdup(o->log_path)))
                return -ENOMEM;
        if (!d->home || !d->role || !d->serve_path)
                return -ENOMEM;
        if (!!o->tls_cert != !!o->tls_key)
                return err_set(-EINVAL, "TLS needs both a certificate and a key (--tls-cert FILE --tls-key FILE)");
        if (o->tls_cert && o->insecure_http)
                return err_set(-EINVAL, "--insecure-http serves plain HTTP: drop --tls-cert and --tls-key, or it");
        if (o->tls_cert) {
                Fingerprint fp;
                int k = tls_cert_check_pair(o->tls_cert, o->tls_key, &fp);
                if (k < 0)
                        return k;
                if (!(d->tls_cert_abs = realpath(o->tls_cert, NULL)))
                        return err_set(-errno, "cannot read TLS certificate '%s': %m", o->tls_cert);
                if (!(d->tls_key = strdup(o->tls_key)))
                        return -ENOMEM;
                fingerprint_format(&fp, d->fingerprint);
        }
        d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->stop_fd < 0)
                return -errno;

        int r = log_open(d);
        if (r < 0)
                return r;
        r = mkdir_p(d->home, 0755);
        if (r < 0)
                return err_set(r, "cannot create state directory '%s': %s (set ROAM_HOME or --home)", d->home,
                               strerror(-r));
        r = check_not_running(d);
        if (r < 0)
                return r;

        if (o->store) {
                r = store_location_save(d->home, o->store);
                if (r < 0)
                        return r;
        }
        _cleanup_free_ char *store_dir = NULL;
        r = store_location(d->home, &store_dir);
        if (r < 0)
                return r;
        StoreOptions so = { .create = true };
        /* a laptop's is encrypted by default, and may start locked ('roam unlock') */
        r = home_store_open(d->home, &so,
                            !strcmp(role, "laptop") ? HOME_STORE_LAPTOP | HOME_STORE_ALLOW_LOCKED |
                                                              (o->laptop_server ? HOME_STORE_SERVER_KEY : 0)
                                                    : 0,
                            &d->store);
        if (r < 0)
                return r;
        r = store_lock(d->store, false, true);
        if (r == -EAGAIN || r == -EWOULDBLOCK)
                return err_set(-EBUSY, "store '%s' is locked by 'roam store gc'; start the daemon when it is done",
                               store_dir);
        if (r < 0)
                return r;
        /* after the lock: a check for stray temp files (fsck) leaves files younger than its holders alone */
        if (!o->no_tmp_pool && store_tmp_pool(d->store, DAEMON_TMP_POOL) < 0)
                err_clear(); /* then every chunk write makes its file */
        if (!o->no_handover_memory && store_fresh_reserve(d->store, DAEMON_HANDOVER_MEMORY) < 0)
                err_clear(); /* then the copies take new memory */

        _cleanup_free_ char *catalog_path = home_path(d, "catalog.db");
        if (!catalog_path)
                return -ENOMEM;
        r = catalog_open(catalog_path, &d->catalog);
        if (r < 0)
                return r;
        r = ensure_local_token(d);
        if (r < 0)
                return r;
        if (!o->tls_cert && !o->insecure_http) {
                /* the home's own pair, made on first start */
                Fingerprint fp;
                bool created;
                r = tls_home_cert_ensure(d->home, &d->tls_cert_abs, &d->tls_key, &fp, &created);
                if (r < 0)
                        return r;
                fingerprint_format(&fp, d->fingerprint);
                if (created)
                        daemon_log(d, DAEMON_LOG_INFO, "made a TLS key and self-signed certificate in %s/%s",
                                   d->home, TLS_HOME_DIR);
        }

        r = api_store_new(d->store, d->role, &d->api);
        if (r < 0)
                return r;
        api_store_set_fingerprint(d->api, daemon_fingerprint(d));
        HttpServerOptions ho = {
                .listen = o->listen ? o->listen : DAEMON_LISTEN_DEFAULT,
                .tls_cert = d->tls_cert_abs,
                .tls_key = d->tls_key,
                .stop_grace_s = o->stop_grace_s,
                .auth = auth_http_hook,
                .auth_userdata = d->catalog,
                .log = http_log,
                .log_userdata = d,
                .enter = request_enter,
                .leave = request_leave,
                .enter_userdata = d,
        };
        r = http_server_new(&ho, &d->http);
        if (r < 0)
                return r;
        r = api_store_register(d->api, d->http);
        if (r >= 0)
                r = api_gc_register(d);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(d);
        return 0;
}

static void workers_stop(Daemon *d) {
        pthread_mutex_lock(&d->worker_mutex);
        d->stopping = true;
        pthread_cond_broadcast(&d->worker_cond);
        pthread_mutex_unlock(&d->worker_mutex);
        for (size_t i = 0; i < d->n_workers; i++)
                if (d->workers[i]->running) {
                        pthread_join(d->workers[i]->thread, NULL);
                        d->workers[i]->running = false;
                        daemon_log(d, DAEMON_LOG_DEBUG, "worker '%s' stopped", d->workers[i]->name);
                }
}

void daemon_quiesce(Daemon *d) {
        if (!d)
                return;
        http_server_stop(d->http);
        workers_stop(d);
}

void daemon_free(Daemon *d) {
        if (!d)
                return;
        http_server_free(d->http); /* stops it if running */
        workers_stop(d);
        for (size_t i = 0; i < d->n_workers; i++) {
                free(d->workers[i]->name);
                free(d->workers[i]);
        }
        free(d->workers);
        api_store_free(d->api);
        catalog_free(d->catalog);
        store_free(d->store); /* drops pending (uncommitted) chunks and the lock */
        if (d->log)
                fclose(d->log);
        if (d->stop_fd >= 0)
                close(d->stop_fd);
        pthread_mutex_destroy(&d->log_mutex);
        pthread_mutex_destroy(&d->worker_mutex);
        pthread_cond_destroy(&d->worker_cond);
        free(d->home);
        free(d->role);
        free(d->serve_path);
        free(d->tls_cert_abs);
        free(d->tls_key);
        free(d->log_path);
        free(d);
}

Store *daemon_store(Daemon *d) {
        return d->store;
}
Catalog *daemon_catalog(Daemon *d) {
        return d->catalog;
}
ApiStore *daemon_api_store(Daemon *d) {
        return d->api;
}
HttpServer *daemon_http(Daemon *d) {
        return d->http;
}
const char *daemon_home(Daemon *d) {
        return d->home;
}
const char *daemon_role(Daemon *d) {
        return d->role;
}
const char *daemon_fingerprint(Daemon *d) {
        return d->fingerprint[0] ? d->fingerprint : NULL;
}

int daemon_add_routes(Daemon *d, const HttpRoute *routes, size_t n, void *userdata) {
        return http_server_add_routes(d->http, routes, n, userdata);
}

/* ---- workers ---- */

int daemon_add_worker(Daemon *d, const char *name, DaemonWorkerFn fn, void *userdata, DaemonWorker **ret_worker) {
        DaemonWorker **nw = realloc(d->workers, (d->n_workers + 1) * sizeof *nw);
        if (!nw)
                return -ENOMEM;
        d->workers = nw;
        DaemonWorker *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (DaemonWorker){ .d = d, .name = strdup(name), .fn = fn, .userdata = userdata };
        if (!w->name) {
                free(w);
                return -ENOMEM;
        }
        d->workers[d->n_workers++] = w;
        if (ret_worker)
                *ret_worker = w;
        return 0;
}

/* A worker is a writer of the store while it works, not while it sleeps. */
static void *worker_main(void *p) {
        DaemonWorker *w = p;
        store_write_begin(w->d->store);
        w->fn(w, w->userdata);
        store_write_end(w->d->store);
        return NULL;
}

bool daemon_worker_sleep(DaemonWorker *w, double seconds) {
        Daemon *d = w->d;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        if (seconds > 0) {
                double whole = (double) (time_t) seconds;
                until.tv_sec += (time_t) seconds;
                until.tv_nsec += (long) ((seconds - whole) * 1e9);
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
        }
        store_write_end(d->store); /* a gc may run meanwhile */
        pthread_mutex_lock(&d->worker_mutex);
        while (!d->stopping && !w->woken)
                if (pthread_cond_timedwait(&d->worker_cond, &d->worker_mutex, &until) == ETIMEDOUT)
                        break;
        w->woken = false;
        bool go_on = !d->stopping;
        pthread_mutex_unlock(&d->worker_mutex);
        store_write_begin(d->store);
        return go_on;
}

bool daemon_worker_stopping(DaemonWorker *w) {
        pthread_mutex_lock(&w->d->worker_mutex);
        bool s = w->d->stopping;
        pthread_mutex_unlock(&w->d->worker_mutex);
        return s;
}

void daemon_worker_wake(DaemonWorker *w) {
        pthread_mutex_lock(&w->d->worker_mutex);
        w->woken = true;
        pthread_cond_broadcast(&w->d->worker_cond);
        pthread_mutex_unlock(&w->d->worker_mutex);
}

Daemon *daemon_worker_daemon(DaemonWorker *w) {
        return w->d;
}

/* ---- run ---- */

void daemon_stop(Daemon *d) {
        uint64_t one = 1;
        ssize_t k = write(d->stop_fd, &one, sizeof one);
        (void) k;
}

static int write_serve_file(Daemon *d) {
        json_t *j = json_pack("{s:s, s:i, s:s, s:s*, s:s*}", "url", http_server_url(d->http), "pid", (int) getpid(),
                              "role", d->role, "tls_cert", d->tls_cert_abs, "fingerprint", daemon_fingerprint(d));
        if (!j)
                return -ENOMEM;
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(j);
        if (!text)
                return -ENOMEM;
        size_t n = strlen(text);
        char *t2 = realloc(text, n + 2);
        if (!t2) {
                free(text);
                return -ENOMEM;
        }
        t2[n] = '\n';
        int r = write_file_atomic(d->serve_path, t2, n + 1, 0644);
        free(t2);
        if (r < 0)
                return err_set(r, "cannot write '%s': %s", d->serve_path, strerror(-r));
        return 0;
}

/* Removes serve.json if it still names this process. */
static void remove_serve_file(Daemon *d) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_full_file(d->serve_path, SERVE_FILE_MAX, &text, &len) < 0)
                return;
        json_t *j = json_loads(text, 0, NULL);
        json_t *pid = j ? json_object_get(j, "pid") : NULL;
        if (json_is_integer(pid) && json_integer_value(pid) == getpid())
                unlink(d->serve_path);
        json_decref(j);
}

int daemon_run(Daemon *d) {
        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        /* before any thread starts, so that only the signalfd sees them */
        pthread_sigmask(SIG_BLOCK, &mask, &old);
        signal(SIGPIPE, SIG_IGN);
        _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sfd < 0) {
                int r = -errno;
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                return r;
        }
        int r = http_server_start(d->http);
        if (r < 0) {
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                return r;
        }
        r = write_serve_file(d);
        for (size_t i = 0; r >= 0 && i < d->n_workers; i++) {
                DaemonWorker *w = d->workers[i];
                r = -pthread_create(&w->thread, NULL, worker_main, w);
                if (r < 0)
                        r = err_set(r, "cannot start worker '%s': %s", w->name, strerror(-r));
                else {
                        w->running = true;
                        daemon_log(d, DAEMON_LOG_DEBUG, "worker '%s' started", w->name);
                }
        }
        if (r >= 0)
                daemon_log(d, DAEMON_LOG_INFO, "serving store '%s' as %s on %s", store_path(d->store), d->role,
                           http_server_url(d->http));
        if (r >= 0 && d->fingerprint[0])
                daemon_log(d, DAEMON_LOG_INFO, "TLS certificate %s: fingerprint %s (clients pin it: 'roam token "
                           "create' puts it into the tokens it prints)", d->tls_cert_abs, d->fingerprint);
        else if (r >= 0)
                daemon_log(d, DAEMON_LOG_WARNING, "plain HTTP (--insecure-http): tokens and data cross the "
                           "network unencrypted");

        while (r >= 0) {
                struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = d->stop_fd, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (p[1].revents)
                        break;
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) != sizeof si)
                        continue;
                if (si.ssi_signo == SIGHUP) {
                        int k = log_open(d);
                        if (k < 0)
                                daemon_log(d, DAEMON_LOG_ERROR, "%s", err_message(k));
                        else
                                daemon_log(d, DAEMON_LOG_INFO, "log reopened");
                        continue;
                }
                daemon_log(d, DAEMON_LOG_INFO, "%s: shutting down", strsignal((int) si.ssi_signo));
                break;
        }

        /* keep the first error's detail; shutdown steps log their own */
        int failed = r;
        http_server_stop(d->http);
        workers_stop(d);
        int k = api_store_commit(d->api);
        if (k < 0)
                daemon_log(d, DAEMON_LOG_ERROR, "final commit failed: %s", err_message(k));
        remove_serve_file(d);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (failed < 0)
                return failed;
        if (k < 0)
                return k;
        daemon_log(d, DAEMON_LOG_INFO, "stopped");
        return 0;
}

/* ---- local endpoint ---- */

void daemon_endpoint_free(DaemonEndpoint *e) {
        if (!e)
                return;
        free(e->url);
        if (e->token)
                explicit_bzero(e->token, strlen(e->token));
        free(e->token);
        free(e->cacert);
        free(e->fingerprint);
        free(e->role);
        free(e);
}

/* True if pid names a live process (not a zombie waiting to be reaped). */
static bool pid_is_running(pid_t pid) {
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return false;
        char path[64], buf[256];
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno != ENOENT;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return true;
        buf[n] = 0;
        const char *close_paren = strrchr(buf, ')');
        return !(close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z');
}

/* Reads HOME/serve.json into e (url, role, cacert, pid) and checks that its
 * process lives. */
static int read_serve(const char *home, DaemonEndpoint *e) {
        _cleanup_free_ char *serve = path_join(home, DAEMON_SERVE_FILE);
        if (!serve)
                return -ENOMEM;
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(serve, SERVE_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return err_set(r, "no roam daemon serves '%s' (start one with 'roam serve')", home);
        if (r < 0)
                return err_set(r, "cannot read '%s': %s", serve, strerror(-r));
        json_t *j = json_loads(text, 0, NULL);
        const char *url = NULL, *role = NULL, *cacert = NULL, *fp = NULL;
        json_t *cert = NULL, *fpj = NULL;
        json_int_t pid = 0;
        Fingerprint parsed;
        if (!j || json_unpack(j, "{s:s, s:I, s:s, s?o, s?o}", "url", &url, "pid", &pid, "role", &role, "tls_cert",
                              &cert, "fingerprint", &fpj) < 0 ||
            pid <= 0 || pid > INT_MAX || (cert && !json_is_null(cert) && !(cacert = json_string_value(cert))) ||
            (fpj && !json_is_null(fpj) && (!(fp = json_string_value(fpj)) || fingerprint_parse(fp, &parsed) < 0))) {
                json_decref(j);
                return err_set(-EBADMSG, "'%s' is malformed (remove it and restart 'roam serve')", serve);
        }
        if (!pid_is_running((pid_t) pid) || (pid_t) pid == getpid()) {
                json_decref(j);
                return err_set(-ESRCH, "the roam daemon of '%s' is gone (pid %d; start it again with 'roam serve')",
                               home, (int) pid);
        }
        r = 0;
        if (!(e->url = strdup(url)) || !(e->role = strdup(role)) || (cacert && !(e->cacert = strdup(cacert))) ||
            (fp && !(e->fingerprint = strdup(fp))))
                r = -ENOMEM;
        e->pid = (pid_t) pid;
        json_decref(j);
        return r;
}

int daemon_endpoint_read(const char *home, DaemonEndpoint **ret) {
        _cleanup_free_ char *tokpath = path_join(home, DAEMON_TOKEN_FILE);
        if (!tokpath)
                return -ENOMEM;
        DaemonEndpoint *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        int r = read_serve(home, e);
        if (r < 0) {
                daemon_endpoint_free(e);
                return r;
        }
        size_t len;
        r = read_full_file(tokpath, TOKEN_FILE_MAX, &e->token, &len);
        if (r < 0) {
                daemon_endpoint_free(e);
                return err_set(r, "cannot read the local token '%s': %s (run as the daemon's user)", tokpath,
                               strerror(-r));
        }
        e->token[strcspn(e->token, "\r\n")] = 0;
        *ret = e;
        return 0;
}
