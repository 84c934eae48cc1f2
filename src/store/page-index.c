/* SPDX-License-Identifier: MIT */
#include "page-index.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "blob.h"

#define PAGE_INDEX_VERSION 1

void page_index_free(PageIndex *x) {
        if (!x)
                return;
        free(x->hashes);
        free(x->pages);
        free(x);
}

uint64_t page_index_hash(const PageIndex *x, const void *page) {
        return XXH3_64bits_withSeed(page, PAGE_SIZE_4K, x->seed);
}

bool page_index_lookup(const PageIndex *x, uint64_t hash, uint32_t *ret_page) {
        size_t lo = 0, hi = x->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (x->hashes[mid] < hash)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo < x->n && x->hashes[lo] == hash) {
                *ret_page = x->pages[lo];
                return true;
        }
        return false;
}

static PageIndex *page_index_alloc(uint64_t n) {
        PageIndex *x = calloc(1, sizeof *x);
        if (!x)
                return NULL;
        x->hashes = malloc(MAX(n, (uint64_t) 1) * sizeof *x->hashes);
        x->pages = malloc(MAX(n, (uint64_t) 1) * sizeof *x->pages);
        if (!x->hashes || !x->pages) {
                page_index_free(x);
                return NULL;
        }
        x->n = n;
        return x;
}

int page_index_serialize(const PageIndex *x, void **ret, size_t *ret_len) {
        if (x->n > PAGE_INDEX_MAX_ENTRIES)
                return -EINVAL;
        size_t len = PAGE_INDEX_HEADER + (size_t) x->n * PAGE_INDEX_ENTRY + ID_SIZE;
        uint8_t *b = malloc(len);
        if (!b)
                return -ENOMEM;
        memcpy(b, PAGE_INDEX_MAGIC, 8); /* with the NUL */
        put_le32(b + 8, PAGE_INDEX_VERSION);
        put_le32(b + 12, PAGE_SIZE_4K);
        put_le64(b + 16, x->blob_size);
        put_le64(b + 24, x->n);
        put_le64(b + 32, x->seed);
        memcpy(b + 40, x->blob.b, ID_SIZE);
        for (uint64_t i = 0; i < x->n; i++) {
                uint8_t *e = b + PAGE_INDEX_HEADER + i * PAGE_INDEX_ENTRY;
                put_le64(e, x->hashes[i]);
                put_le32(e + 8, x->pages[i]);
        }
        RoamId sum;
        sha256(b, len - ID_SIZE, &sum);
        memcpy(b + len - ID_SIZE, sum.b, ID_SIZE);
        *ret = b;
        *ret_len = len;
        return 0;
}

int page_index_parse(const void *data, size_t len, PageIndex **ret) {
        const uint8_t *b = data;
        if (len < PAGE_INDEX_HEADER + ID_SIZE || memcmp(b, PAGE_INDEX_MAGIC, 8) != 0)
                return -EBADMSG;
        if (get_le32(b + 8) != PAGE_INDEX_VERSION)
                return -EPROTONOSUPPORT;
        uint64_t size = get_le64(b + 16), n = get_le64(b + 24);
        if (get_le32(b + 12) != PAGE_SIZE_4K || n > PAGE_INDEX_MAX_ENTRIES || n > size / PAGE_SIZE_4K)
                return -EBADMSG;
        if ((len - PAGE_INDEX_HEADER - ID_SIZE) != n * PAGE_INDEX_ENTRY)
                return -EBADMSG;
        RoamId sum;
        sha256(b, len - ID_SIZE, &sum);
        if (memcmp(sum.b, b + len - ID_SIZE, ID_SIZE) != 0)
                return -EBADMSG;
        _cleanup_(page_index_freep) PageIndex *x = page_index_alloc(n);
        if (!x)
                return -ENOMEM;
        x->blob_size = size;
        x->seed = get_le64(b + 32);
        memcpy(x->blob.b, b + 40, ID_SIZE);
        uint64_t pages = size / PAGE_SIZE_4K;
        for (uint64_t i = 0; i < n; i++) {
                const uint8_t *e = b + PAGE_INDEX_HEADER + i * PAGE_INDEX_ENTRY;
                x->hashes[i] = get_le64(e);
                x->pages[i] = get_le32(e + 8);
                if (x->pages[i] >= pages || (i > 0 && x->hashes[i] <= x->hashes[i - 1]))
                        return -EBADMSG;
        }
        *ret = TAKE_PTR(x);
        return 0;
}

typedef struct Entry {
        uint64_t hash;
        uint32_t page;
} Entry;

static int cmp_entry(const void *a, const void *b) {
        const Entry *x = a, *y = b;
        if (x->hash != y->hash)
                return x->hash < y->hash ? -1 : 1;
        return x->page < y->page ? -1 : x->page > y->page;
}

static uint64_t sort_unique(Entry *e, uint64_t n) {
        qsort(e, n, sizeof *e, cmp_entry);
        uint64_t m = 0;
        for (uint64_t i = 0; i < n; i++)
                if (m == 0 || e[i].hash != e[m - 1].hash)
                        e[m++] = e[i];
        return m;
}

int page_index_finish_slots(PageIndex *x) {
        uint64_t n = 0;
        for (uint64_t i = 0; i < x->n; i++)
                n += x->pages[i] != UINT32_MAX;
        _cleanup_free_ Entry *e = malloc(MAX(n, (uint64_t) 1) * sizeof *e);
        if (!e)
                return -ENOMEM;
        n = 0;
        for (uint64_t i = 0; i < x->n; i++)
                if (x->pages[i] != UINT32_MAX)
                        e[n++] = (Entry){ .hash = x->hashes[i], .page = x->pages[i] };
        uint64_t m = sort_unique(e, n);
        if (m > PAGE_INDEX_MAX_ENTRIES)
                return -EFBIG;
        for (uint64_t i = 0; i < m; i++) {
                x->hashes[i] = e[i].hash;
                x->pages[i] = e[i].page;
        }
        x->n = m;
        return 0;
}

int page_index_build(Store *s, const RoamId *blob, PageIndex **ret) {
        _cleanup_(index_freep) Index *x = NULL;
        int r = blob_load_index(s, blob, &x);
        if (r < 0)
                return r;
        uint64_t pages = x->blob_size / PAGE_SIZE_4K;
        char hex[ID_HEX_SIZE];
        if (pages > UINT32_MAX)
                return err_set(-EFBIG, "blob %.12s is too large for a page index", id_to_hex(blob, hex));
        uint64_t seed;
        if (getrandom(&seed, sizeof seed, 0) != (ssize_t) sizeof seed)
                return err_set(-EIO, "getrandom failed");
        /* at most one entry per page of each non-zero chunk */
        uint64_t cap = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++)
                if (!id_is_null(&x->ids[i]))
                        cap += index_chunk_len(x, i) / PAGE_SIZE_4K;
        if (cap > PAGE_INDEX_MAX_ENTRIES)
                return err_set(-EFBIG, "blob %.12s has too many pages for a page index", id_to_hex(blob, hex));
        _cleanup_free_ Entry *e = malloc(MAX(cap, (uint64_t) 1) * sizeof *e);
        _cleanup_(chunk_codec_freep) ChunkCodec *codec = chunk_codec_new(s);
        _cleanup_free_ uint8_t *buf = malloc(x->chunk_size);
        if (!e || !codec || !buf)
                return -ENOMEM;
        PageIndex probe = { .seed = seed };
        uint64_t n = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                if (id_is_null(&x->ids[i]))
                        continue;
                /* a run of one chunk (a repeated pattern) adds no new hash */
                if (i > 0 && id_equal(&x->ids[i], &x->ids[i - 1]))
                        continue;
                size_t len;
                r = store_chunk_get(s, codec, &x->ids[i], buf, &len);
                if (r < 0)
                        return r;
                if (len != index_chunk_len(x, i))
                        return err_set(-EBADMSG, "chunk %llu of blob %.12s has the wrong length",
                                       (unsigned long long) i, id_to_hex(blob, hex));
                uint64_t first = i * x->chunk_size / PAGE_SIZE_4K;
                for (size_t off = 0; off + PAGE_SIZE_4K <= len; off += PAGE_SIZE_4K) {
                        if (memory_is_zero(buf + off, PAGE_SIZE_4K))
                                continue; /* zero pages travel as zero pages */
                        e[n++] = (Entry){ .hash = page_index_hash(&probe, buf + off),
                                          .page = (uint32_t) (first + off / PAGE_SIZE_4K) };
                }
        }
        uint64_t m = sort_unique(e, n);
        PageIndex *pi = page_index_alloc(m);
        if (!pi)
                return -ENOMEM;
        pi->blob = *blob;
        pi->blob_size = x->blob_size;
        pi->seed = seed;
        for (uint64_t i = 0; i < m; i++) {
                pi->hashes[i] = e[i].hash;
                pi->pages[i] = e[i].page;
        }
        *ret = pi;
        return 0;
}

char *page_index_path(Store *s, const RoamId *blob) {
        char hex[ID_HEX_SIZE], rel[80];
        snprintf(rel, sizeof rel, "pages/%s", id_to_hex(blob, hex));
        return path_join(store_path(s), rel);
}

int page_index_keep_recent(Store *s, const char *list, const RoamId *blob, unsigned keep) {
        /* the list: hex ids, oldest first, one a line */
        RoamId ids[PAGE_INDEX_KEEP_MAX + 1];
        size_t n = 0;
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(list, (PAGE_INDEX_KEEP_MAX + 1) * (ID_HEX_SIZE + 1), &text, &len);
        if (r < 0 && r != -ENOENT)
                err_clear(); /* damaged or too long: start over (a cache) */
        for (char *line = r >= 0 ? strtok(text, "\n") : NULL; line && n < PAGE_INDEX_KEEP_MAX;
             line = strtok(NULL, "\n"))
                if (id_from_hex(line, &ids[n]) >= 0 && !id_equal(&ids[n], blob))
                        n++;
        _cleanup_free_ char *mine = page_index_path(s, blob);
        if (!mine)
                return -ENOMEM;
        if (access(mine, F_OK) == 0)
                ids[n++] = *blob;
        keep = MIN(MAX(keep, 1u), (unsigned) PAGE_INDEX_KEEP_MAX);
        size_t drop = n > keep ? n - keep : 0;
        for (size_t i = 0; i < drop; i++) {
                _cleanup_free_ char *p = page_index_path(s, &ids[i]);
                if (p)
                        (void) unlink(p);
        }
        char out[(PAGE_INDEX_KEEP_MAX + 1) * (ID_HEX_SIZE + 1)];
        size_t o = 0;
        for (size_t i = drop; i < n; i++) {
                char hex[ID_HEX_SIZE];
                o += (size_t) snprintf(out + o, sizeof out - o, "%s\n", id_to_hex(&ids[i], hex));
        }
        return write_file_atomic(list, out, o, 0644);
}

/* The page indexes used last, shared (each holds a reference). */
#define CACHE_SLOTS 8
#define CACHE_BYTES (512u << 20)
static struct {
        pthread_mutex_t lock;
        PageIndex *slot[CACHE_SLOTS]; /* most recently used first */
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

PageIndex *page_index_ref(PageIndex *x) {
        if (x)
                atomic_fetch_add(&x->refs, 1);
        return x;
}

void page_index_unref(PageIndex *x) {
        if (x && atomic_fetch_sub(&x->refs, 1) == 1)
                page_index_free(x);
}

static PageIndex *cache_find(const RoamId *blob) {
        pthread_mutex_lock(&cache.lock);
        PageIndex *x = NULL;
        for (size_t i = 0; i < CACHE_SLOTS && cache.slot[i]; i++)
                if (id_equal(&cache.slot[i]->blob, blob)) {
                        x = cache.slot[i];
                        memmove(&cache.slot[1], &cache.slot[0], i * sizeof cache.slot[0]);
                        cache.slot[0] = x;
                        atomic_fetch_add(&x->refs, 1);
                        break;
                }
        pthread_mutex_unlock(&cache.lock);
        return x;
}

/* Takes x (refs 1, the caller's) into the cache: refs 2. */
static PageIndex *cache_add(PageIndex *x) {
        pthread_mutex_lock(&cache.lock);
        PageIndex *old = NULL;
        for (size_t i = 0; i < CACHE_SLOTS && cache.slot[i]; i++)
                if (id_equal(&cache.slot[i]->blob, &x->blob)) {
                        /* another thread built it meanwhile: use that one */
                        old = cache.slot[i];
                        atomic_fetch_add(&old->refs, 1);
                        break;
                }
        PageIndex *evicted[CACHE_SLOTS] = { NULL };
        size_t n_evicted = 0;
        if (!old) {
                evicted[n_evicted++] = cache.slot[CACHE_SLOTS - 1];
                memmove(&cache.slot[1], &cache.slot[0], (CACHE_SLOTS - 1) * sizeof cache.slot[0]);
                cache.slot[0] = x;
                atomic_fetch_add(&x->refs, 1);
                /* within the byte budget: the least used go (never the new one) */
                uint64_t bytes = 0;
                for (size_t i = 0; i < CACHE_SLOTS && cache.slot[i]; i++) {
                        bytes += cache.slot[i]->n * (sizeof(uint64_t) + sizeof(uint32_t));
                        if (i > 0 && bytes > CACHE_BYTES) {
                                for (size_t k = i; k < CACHE_SLOTS && cache.slot[k]; k++) {
                                        evicted[n_evicted++] = cache.slot[k];
                                        cache.slot[k] = NULL;
                                }
                                break;
                        }
                }
        }
        pthread_mutex_unlock(&cache.lock);
        for (size_t i = 0; i < n_evicted; i++)
                page_index_unref(evicted[i]);
        if (old) {
                page_index_unref(x);
                return old;
        }
        return x;
}

int page_index_save(Store *s, const PageIndex *x) {
        _cleanup_free_ char *p = page_index_path(s, &x->blob), *dir = path_join(store_path(s), "pages");
        _cleanup_free_ void *ser = NULL;
        size_t len;
        if (!p || !dir)
                return -ENOMEM;
        int r = page_index_serialize(x, &ser, &len);
        if (r < 0)
                return r;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return write_file_replace(p, ser, len, 0644, false);
}

/* Non-zero bytes of the blob, at most (its non-zero chunks). */
static int blob_nonzero(Store *s, const RoamId *blob, uint64_t *ret) {
        _cleanup_(index_freep) Index *x = NULL;
        int r = blob_load_index(s, blob, &x);
        if (r < 0)
                return r;
        uint64_t n = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++)
                if (!id_is_null(&x->ids[i]))
                        n += index_chunk_len(x, i);
        *ret = n;
        return 0;
}

static int load_or_build(Store *s, const RoamId *blob, uint64_t build_max, PageIndex **ret) {
        _cleanup_free_ char *p = page_index_path(s, blob);
        if (!p)
                return -ENOMEM;
        const size_t max = PAGE_INDEX_HEADER + (size_t) PAGE_INDEX_MAX_ENTRIES * PAGE_INDEX_ENTRY + ID_SIZE;
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = read_full_file(p, max, &data, &len);
        if (r >= 0) {
                PageIndex *x = NULL;
                if (page_index_parse(data, len, &x) >= 0 && id_equal(&x->blob, blob)) {
                        *ret = x;
                        return 0;
                }
                page_index_free(x); /* damaged or for another blob: build it again */
        } else if (r == -ENOMEM)
                return r;
        if (build_max != UINT64_MAX) {
                uint64_t nonzero;
                r = blob_nonzero(s, blob, &nonzero);
                if (r < 0)
                        return r;
                if (nonzero > build_max)
                        return -EAGAIN;
        }
        _cleanup_(page_index_freep) PageIndex *x = NULL;
        r = page_index_build(s, blob, &x);
        if (r < 0)
                return r;
        /* a cache: failing to keep it costs the next build, nothing else */
        (void) page_index_save(s, x);
        *ret = TAKE_PTR(x);
        return 0;
}

int page_index_get(Store *s, const RoamId *blob, uint64_t build_max, PageIndex **ret) {
        PageIndex *x = cache_find(blob);
        if (x) {
                *ret = x;
                return 0;
        }
        int r = load_or_build(s, blob, build_max, &x);
        if (r < 0)
                return r;
        x->refs = 1;
        *ret = cache_add(x);
        return 0;
}

int page_index_prune(Store *s, bool (*keep)(const RoamId *, void *), void *userdata, uint64_t *ret_removed) {
        _cleanup_free_ char *dir = path_join(store_path(s), "pages");
        if (!dir)
                return -ENOMEM;
        DIR *d = opendir(dir);
        uint64_t removed = 0;
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
        } else {
                struct dirent *de;
                while ((de = readdir(d))) {
                        RoamId id;
                        if (de->d_name[0] == '.' || id_from_hex(de->d_name, &id) < 0 || keep(&id, userdata))
                                continue;
                        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                                removed++;
                }
                closedir(d);
        }
        if (ret_removed)
                *ret_removed = removed;
        return 0;
}
