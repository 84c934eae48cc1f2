/* SPDX-License-Identifier: MIT */
#include "session-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/util.h"

/* A running session's RAM file stays mapped here between its imports (a
 * pre-copy round, a checkpoint): the page tables of a fresh mapping are built
 * one fault per page as the import reads it, and its munmap tears them down
 * again, which for 2 GiB is about 90 ms and 45 ms on this machine, in the pause
 * of a hand-over's last checkpoint. Kept, the mapping costs that once.
 *
 * A mapping keeps the file's pages even once the file is gone, so it is
 * dropped when its file is: ram_unlink() (every place that removes a RAM file),
 * a state change of the session that ends its QEMU (set_state()), a file found
 * replaced or gone on the next lookup, the host's end. Users hold a reference:
 * a mapping dropped while an import reads it is unmapped by the last
 * ram_map_put(). */

struct RamMap {
        char *path;
        dev_t dev;
        ino_t ino;
        uint64_t size;
        void *addr;
        unsigned refs; /* users, plus one while in the table */
};

/* Mappings this large are unmapped by a thread of their own: the munmap of
 * 2 GiB takes about 45 ms here (and frees the pages of a file already
 * removed), which a hand-over's pause should not wait for. */
#define RAM_MAP_UNMAP_ASIDE (64ULL << 20)

static void *unmap_main(void *arg) {
        RamMap *m = arg;
        (void) munmap(m->addr, m->size);
        free(m->path);
        free(m);
        return NULL;
}

static void ram_map_unref(RamMap *m) {
        if (--m->refs > 0)
                return;
        pthread_t t;
        pthread_attr_t a;
        if (m->size >= RAM_MAP_UNMAP_ASIDE && pthread_attr_init(&a) == 0) {
                bool ok = pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) == 0 &&
                          pthread_create(&t, &a, unmap_main, m) == 0;
                pthread_attr_destroy(&a);
                if (ok)
                        return;
        }
        unmap_main(m);
}

/* Under the lock: takes entry i out of the table. */
static void maps_remove(SessionHost *h, size_t i) {
        RamMap *m = h->ram_maps[i];
        h->ram_maps[i] = h->ram_maps[--h->n_ram_maps];
        ram_map_unref(m);
}

/* Under the lock: drops the mappings whose file is gone or was replaced
 * (path NULL), or the one of path. */
static void maps_sweep(SessionHost *h, const char *path) {
        for (size_t i = 0; i < h->n_ram_maps;) {
                RamMap *m = h->ram_maps[i];
                struct stat st;
                bool gone = path ? !strcmp(m->path, path)
                                 : stat(m->path, &st) < 0 || st.st_dev != m->dev || st.st_ino != m->ino ||
                                           (uint64_t) st.st_size != m->size;
                if (gone)
                        maps_remove(h, i);
                else
                        i++;
        }
}

int ram_map_get(SessionHost *h, const char *path, int fd, RamMap **ret) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size <= 0)
                return -EINVAL;
        pthread_mutex_lock(&h->ram_maps_lock);
        maps_sweep(h, NULL);
        RamMap *m = NULL;
        for (size_t i = 0; i < h->n_ram_maps; i++)
                if (!strcmp(h->ram_maps[i]->path, path)) {
                        m = h->ram_maps[i];
                        break;
                }
        int r = 0;
        if (m && (m->dev != st.st_dev || m->ino != st.st_ino || m->size != (uint64_t) st.st_size)) {
                maps_sweep(h, path);
                m = NULL;
        }
        if (!m) {
                if (h->n_ram_maps == ELEMENTSOF(h->ram_maps))
                        maps_remove(h, 0); /* more running sessions than slots: one maps afresh */
                m = calloc(1, sizeof *m);
                void *addr = m ? mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
                if (!m || !(m->path = strdup(path)) || addr == MAP_FAILED) {
                        r = m && addr == MAP_FAILED ? -errno : -ENOMEM;
                        if (addr != MAP_FAILED)
                                (void) munmap(addr, (size_t) st.st_size);
                        if (m)
                                free(m->path);
                        free(m);
                        m = NULL;
                } else {
                        *m = (RamMap) { .path = m->path, .dev = st.st_dev, .ino = st.st_ino,
                                        .size = (uint64_t) st.st_size, .addr = addr, .refs = 1 };
                        h->ram_maps[h->n_ram_maps++] = m;
                }
        }
        if (m)
                m->refs++;
        pthread_mutex_unlock(&h->ram_maps_lock);
        if (r < 0)
                return r;
        *ret = m;
        return 0;
}

RamMap *ram_map_lend(SessionHost *h, const char *path, int fd, BlobOptions *o) {
        RamMap *m;
        if (ram_map_get(h, path, fd, &m) < 0) {
                err_clear(); /* the import maps the file itself */
                return NULL;
        }
        o->map = true;
        o->map_addr = m->addr;
        return m;
}

const void *ram_map_addr(const RamMap *m) {
        return m->addr;
}

uint64_t ram_map_size(const RamMap *m) {
        return m->size;
}

void ram_map_put(SessionHost *h, RamMap *m) {
        if (!m)
                return;
        pthread_mutex_lock(&h->ram_maps_lock);
        ram_map_unref(m);
        pthread_mutex_unlock(&h->ram_maps_lock);
}

void ram_map_drop(SessionHost *h, const char *path) {
        if (!path)
                return;
        pthread_mutex_lock(&h->ram_maps_lock);
        maps_sweep(h, path);
        pthread_mutex_unlock(&h->ram_maps_lock);
}

void ram_maps_free(SessionHost *h) {
        pthread_mutex_lock(&h->ram_maps_lock);
        while (h->n_ram_maps > 0) {
                RamMap *m = h->ram_maps[--h->n_ram_maps];
                if (--m->refs == 0)
                        unmap_main(m); /* the host's end: no thread left behind */
        }
        pthread_mutex_unlock(&h->ram_maps_lock);
}

int ram_unlink(SessionHost *h, const char *path) {
        /* removed first, so that the pages are freed by the unmap aside */
        int r = unlink(path) < 0 ? -errno : 0;
        ram_map_drop(h, path);
        return r;
}
