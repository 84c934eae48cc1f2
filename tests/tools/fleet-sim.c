/* SPDX-License-Identifier: MIT */
/* fleet-sim: placement of many simulated sessions against a real etcd
 * (bench/fleet.sh). HOSTS members join the fleet (each with its lease and
 * record, as 'roam serve --etcd' does), then SESSIONS sessions are placed one
 * by one: fleet_place() as any member sees the fleet, then the picked member
 * claims the session new in etcd (one transaction), as a real create does.
 * With --parallel P, P threads place at once (creates that come in from
 * many clients), each asking through a member of its own. No VM runs.
 * Prints one JSON object: the time taken, the time in placement decisions
 * and in claims, and the sessions each member got.
 *
 * usage: fleet-sim --etcd URLS [--hosts N] [--sessions N] [--ram MIB] [--parallel P] [--prefix P]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/error.h"
#include "fleet/fleet.h"

static double now_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

typedef struct Sim {
        Fleet *f[100];
        char names[100][32];
        long hosts, sessions, ram, parallel;
        const char *prefix;
        _Atomic long next;
        _Atomic unsigned count[100];
        _Atomic int error;
        pthread_mutex_t lock; /* the timings */
        double place_s, claim_s, worst;
} Sim;

static void *worker(void *arg) {
        Sim *x = ((void **) arg)[0];
        long t = (long) (intptr_t) ((void **) arg)[1];
        for (;;) {
                long s = atomic_fetch_add(&x->next, 1);
                if (s >= x->sessions || atomic_load(&x->error))
                        break;
                char *pick = NULL, name[64];
                snprintf(name, sizeof name, "%s-s%06ld", x->prefix, s);
                double t0 = now_s();
                int r = fleet_place(x->f[t % x->hosts], (uint64_t) x->ram, NULL, &pick);
                double t1 = now_s();
                long k = -1;
                for (long i = 0; r >= 0 && i < x->hosts; i++)
                        if (!strcmp(pick, x->names[i]))
                                k = i;
                if (r >= 0 && k < 0)
                        r = -ENOENT;
                if (r >= 0)
                        r = fleet_claim(x->f[k], name, 0, FLEET_CLAIM_NEW, NULL);
                double t2 = now_s();
                free(pick);
                if (r < 0) {
                        fprintf(stderr, "fleet-sim: session %s: %s\n", name, err_message(r));
                        atomic_store(&x->error, r);
                        break;
                }
                atomic_fetch_add(&x->count[k], 1);
                pthread_mutex_lock(&x->lock);
                x->place_s += t1 - t0;
                x->claim_s += t2 - t1;
                if (t2 - t0 > x->worst)
                        x->worst = t2 - t0;
                pthread_mutex_unlock(&x->lock);
        }
        return NULL;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "etcd", required_argument, NULL, 'e' },     { "hosts", required_argument, NULL, 'h' },
                { "sessions", required_argument, NULL, 's' }, { "ram", required_argument, NULL, 'r' },
                { "prefix", required_argument, NULL, 'p' },   { "parallel", required_argument, NULL, 'P' },
                {},
        };
        static Sim x = { .hosts = 10, .sessions = 1000, .ram = 64, .parallel = 1, .prefix = "sim" };
        const char *etcd = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0)
                switch (c) {
                case 'e':
                        etcd = optarg;
                        break;
                case 'h':
                        x.hosts = strtol(optarg, NULL, 10);
                        break;
                case 's':
                        x.sessions = strtol(optarg, NULL, 10);
                        break;
                case 'r':
                        x.ram = strtol(optarg, NULL, 10);
                        break;
                case 'p':
                        x.prefix = optarg;
                        break;
                case 'P':
                        x.parallel = strtol(optarg, NULL, 10);
                        break;
                default:
                        return 2;
                }
        if (!etcd || x.hosts < 1 || x.hosts > 100 || x.sessions < 1 || x.sessions > 100000 || x.ram < 1 ||
            x.parallel < 1 || x.parallel > 64 || strlen(x.prefix) > 20) {
                fprintf(stderr, "usage: fleet-sim --etcd URLS [--hosts 1-100] [--sessions N] [--ram MIB] "
                                "[--parallel 1-64] [--prefix P]\n");
                return 2;
        }
        pthread_mutex_init(&x.lock, NULL);
        int r = 0;
        for (long i = 0; i < x.hosts && r >= 0; i++) {
                snprintf(x.names[i], sizeof x.names[i], "%s-host%02ld", x.prefix, i);
                char url[64];
                snprintf(url, sizeof url, "http://127.0.0.1:%ld", 20000 + i);
                r = fleet_join(&(FleetOptions){ .etcd = etcd, .name = x.names[i], .url = url }, &x.f[i]);
        }
        if (r < 0) {
                fprintf(stderr, "fleet-sim: %s\n", err_message(r));
                return 1;
        }
        double t0 = now_s();
        pthread_t tid[64];
        void *args[64][2];
        for (long t = 0; t < x.parallel; t++) {
                args[t][0] = &x;
                args[t][1] = (void *) (intptr_t) t;
                pthread_create(&tid[t], NULL, worker, args[t]);
        }
        for (long t = 0; t < x.parallel; t++)
                pthread_join(tid[t], NULL);
        double secs = now_s() - t0;
        if (atomic_load(&x.error) < 0)
                return 1;
        printf("{\"hosts\": %ld, \"sessions\": %ld, \"parallel\": %ld, \"seconds\": %.3f, \"place_s\": %.3f, "
               "\"claim_s\": %.3f, \"worst_ms\": %.1f, \"per_host\": [",
               x.hosts, x.sessions, x.parallel, secs, x.place_s, x.claim_s, x.worst * 1000);
        for (long i = 0; i < x.hosts; i++)
                printf("%s%u", i ? ", " : "", atomic_load(&x.count[i]));
        printf("]}\n");
        for (long i = 0; i < x.hosts; i++)
                fleet_leave(x.f[i], true);
        return 0;
}
