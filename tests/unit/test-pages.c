/* SPDX-License-Identifier: MIT */
/* Unit tests for page references (src/store/page-index.c,
 * src/sync/page-chunk.c, src/sync/pages.c): the page index of a blob, a
 * chunk sent as pages and rebuilt in another store, and every way a
 * reference can be wrong falling back, never giving wrong bytes. Seeded
 * data, seed printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/util.h"
#include "store/blob.h"
#include "store/fsck.h"
#include "store/page-index.h"
#include "store/store.h"
#include "sync/obj-delta.h"
#include "sync/page-chunk.h"
#include "sync/pack-out.h"
#include "sync/pack.h"
#include "sync/pages.h"
#include "sync/sync.h"
#include "store/reach.h"

#define CS 65536u
#define PG 4096u

static uint64_t seed, rng_state;
static uint64_t rng(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ULL;
}
static void fill_random(uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (rng() >> 56);
}

typedef struct Fixture {
        char dir[64];
        Store *a, *b; /* a: the sender, b: the receiver */
        uint8_t *master;
        size_t master_len;
        RoamId master_id; /* its index object, in both stores */
} Fixture;

static Store *open_store(Fixture *f, const char *name) {
        _cleanup_free_ char *p = path_join(f->dir, name);
        StoreOptions o = { .create = true, .chunk_size = CS };
        Store *s = NULL;
        assert_int_equal(store_open(p, &o, &s), 0);
        assert_int_equal(store_lock(s, false, false), 0);
        return s;
}

static void import_bytes(Fixture *f, Store *s, const uint8_t *data, size_t len, RoamId *ret) {
        _cleanup_free_ char *p = path_join(f->dir, "in.raw");
        int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, data, len), 0);
        assert_int_equal(blob_import_fd(s, fd, len, NULL, ret, NULL), 0);
        close(fd);
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        strcpy(f->dir, "/tmp/roam-unit-pages-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        const char *env = getenv("ROAM_TEST_SEED");
        seed = env ? strtoull(env, NULL, 0) : (uint64_t) time(NULL);
        print_message("seed %llu (ROAM_TEST_SEED=%llu reproduces it)\n", (unsigned long long) seed,
                      (unsigned long long) seed);
        rng_state = seed | 1;
        f->a = open_store(f, "a");
        f->b = open_store(f, "b");
        /* the master: 16 chunks of random pages, one chunk of zeros, and a
         * short tail (its last page is not whole) */
        f->master_len = 17 * CS + 1000;
        f->master = calloc(1, f->master_len);
        fill_random(f->master, 16 * CS);
        fill_random(f->master + 17 * CS, 1000);
        RoamId ida, idb;
        import_bytes(f, f->a, f->master, f->master_len, &ida);
        import_bytes(f, f->b, f->master, f->master_len, &idb);
        assert_true(id_equal(&ida, &idb));
        f->master_id = ida;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        store_free(f->a);
        store_free(f->b);
        free(f->master);
        rm_rf(f->dir);
        free(f);
        return 0;
}

/* The page index holds every whole non-zero page once, and finds it. */
static void test_page_index(void **state) {
        Fixture *f = *state;
        PageIndex *x;
        assert_int_equal(page_index_build(f->a, &f->master_id, &x), 0);
        assert_int_equal(x->n, 16 * CS / PG); /* zero pages and the short tail are not in it */
        for (uint32_t p = 0; p < 16 * CS / PG; p++) {
                uint32_t got;
                assert_true(page_index_lookup(x, page_index_hash(x, f->master + (size_t) p * PG), &got));
                assert_int_equal(got, p);
        }
        uint8_t other[PG];
        fill_random(other, PG);
        uint32_t got;
        assert_false(page_index_lookup(x, page_index_hash(x, other), &got));
        /* serialized and parsed again: the same; every damage is refused */
        void *ser;
        size_t len;
        assert_int_equal(page_index_serialize(x, &ser, &len), 0);
        PageIndex *y;
        assert_int_equal(page_index_parse(ser, len, &y), 0);
        assert_int_equal(y->n, x->n);
        assert_int_equal(y->seed, x->seed);
        assert_memory_equal(y->hashes, x->hashes, x->n * sizeof *x->hashes);
        assert_memory_equal(y->pages, x->pages, x->n * sizeof *x->pages);
        page_index_free(y);
        for (size_t at = 0; at < len; at += 97) {
                ((uint8_t *) ser)[at] ^= 1;
                assert_true(page_index_parse(ser, len, &y) < 0);
                ((uint8_t *) ser)[at] ^= 1;
        }
        assert_true(page_index_parse(ser, len - 1, &y) < 0);
        free(ser);
        page_index_free(x);

        /* cached in the store; a damaged cache is built again */
        PageIndex *c1, *c2;
        assert_int_equal(page_index_get(f->a, &f->master_id, UINT64_MAX, &c1), 0);
        _cleanup_free_ char *path = page_index_path(f->a, &f->master_id);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(page_index_get(f->a, &f->master_id, UINT64_MAX, &c2), 0);
        assert_ptr_equal(c1, c2); /* from memory */
        page_index_unref(c1);
        page_index_unref(c2);
}

/* A RAM-like blob on a: half of its pages are pages of the master. */
static void make_ram(Fixture *f, uint8_t *ram, size_t len) {
        for (size_t p = 0; p * PG < len; p++) {
                uint8_t *dst = ram + p * PG;
                size_t n = MIN((size_t) PG, len - p * PG); /* the last may be short */
                uint64_t k = rng() % 8;
                if (k < 4)
                        memcpy(dst, f->master + (rng() % 256) * PG, n);
                else if (k < 6)
                        memset(dst, 0, n);
                else
                        fill_random(dst, n);
        }
}

/* An import with BlobOptions.page_index writes the page index from the bytes
 * it reads: the same pages as one built from the store; a sender that finds
 * none builds only small ones on demand. */
static void test_page_index_at_import(void **state) {
        Fixture *f = *state;
        size_t len = 40 * CS + 5000;
        _cleanup_free_ uint8_t *blob = malloc(len);
        make_ram(f, blob, len);
        memcpy(blob, "at-import", 9);
        _cleanup_free_ char *in = path_join(f->dir, "blob.raw");
        int fd = open(in, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_int_equal(loop_write(fd, blob, len), 0);
        RoamId id;
        BlobOptions o = { .page_index = true, .threads = 3 };
        assert_int_equal(blob_import_fd(f->a, fd, len, &o, &id, NULL), 0);
        close(fd);
        _cleanup_free_ char *path = page_index_path(f->a, &id);
        _cleanup_free_ char *data = NULL;
        size_t dlen;
        assert_int_equal(read_full_file(path, 1u << 26, &data, &dlen), 0);
        PageIndex *x, *y;
        assert_int_equal(page_index_parse(data, dlen, &x), 0);
        assert_true(id_equal(&x->blob, &id));
        assert_int_equal(page_index_build(f->a, &id, &y), 0);
        assert_int_equal(x->n, y->n);
        /* every whole non-zero page is found, at a page with its bytes */
        for (size_t p = 0; (p + 1) * PG <= len; p++) {
                uint32_t got;
                bool zero = memory_is_zero(blob + p * PG, PG);
                assert_int_equal(page_index_lookup(x, page_index_hash(x, blob + p * PG), &got), !zero);
                if (!zero)
                        assert_memory_equal(blob + (size_t) got * PG, blob + p * PG, PG);
        }
        page_index_free(x);
        page_index_free(y);

        /* no cache and too big to build on demand: -EAGAIN; small enough: built */
        RoamId other;
        memcpy(blob, "on-demand", 9);
        import_bytes(f, f->a, blob, len, &other);
        PageIndex *z = NULL;
        assert_int_equal(page_index_get(f->a, &other, 4 * CS, &z), -EAGAIN);
        assert_int_equal(page_index_get(f->a, &other, 64 * CS, &z), 0);
        assert_non_null(z);
        page_index_unref(z);
        /* an incremental import takes the entries of the chunks it took from
         * its base unread: read after all when the base has no page index,
         * from the base's page index when it has one; either way the same
         * lookups as a build from the store */
        BlobFast *fast = NULL;
        memcpy(blob, "at-import", 9); /* as in the file */
        _cleanup_free_ uint8_t *orig = malloc(len); /* the blob before the rounds change it */
        memcpy(orig, blob, len);
        fd = open(in, O_RDONLY | O_CLOEXEC);
        assert_int_equal(blob_import_fd_base(f->a, fd, len, NULL, NULL, &id, NULL, &fast), 0);
        for (int round = 0; round < 3; round++) {
                BlobBase *base;
                assert_int_equal(blob_base_new(f->a, fast, &base), 0);
                char tag[16];
                snprintf(tag, sizeof tag, "changed %d", round);
                memcpy(blob + (37 + round) * CS, tag, strlen(tag));
                int fd2 = open(in, O_RDWR | O_CLOEXEC);
                assert_int_equal(pwrite(fd2, tag, strlen(tag), (37 + round) * CS), (ssize_t) strlen(tag));
                close(fd2);
                BlobFast *fast2 = NULL;
                RoamId id2;
                /* the last round copies what changed (a paused checkpoint's
                 * import): from a base with a page index, still complete */
                BlobPending *p = NULL;
                BlobOptions om = o;
                om.map = true; /* as a RAM file is read */
                if (round < 2)
                        assert_int_equal(blob_import_fd_base(f->a, fd, len, &om, base, &id2, NULL, &fast2), 0);
                else {
                        BlobOptions oc = om;
                        oc.capture_max = 1 << 20;
                        assert_int_equal(blob_import_fd_begin(f->a, fd, len, &oc, base, &p), 0);
                        assert_int_equal(blob_import_finish(p, &id2, NULL, &fast2), 0);
                        blob_pending_free(p);
                }
                blob_base_free(base);
                _cleanup_free_ char *path2 = page_index_path(f->a, &id2);
                _cleanup_free_ char *data2 = NULL;
                assert_int_equal(read_full_file(path2, 1u << 26, &data2, &dlen), 0);
                PageIndex *w;
                assert_int_equal(page_index_parse(data2, dlen, &w), 0);
                assert_true(id_equal(&w->blob, &id2));
                /* a page found is a page with those bytes; every non-zero
                 * page whose bytes are nowhere else in the blob, and were
                 * nowhere else before the rounds, is found (of bytes that are
                 * in several pages, the base listed its first one only: when
                 * that one changed, the others are not listed) */
                size_t n_pages = len / PG;
                _cleanup_free_ uint64_t *hs = malloc(n_pages * sizeof *hs), *ho = malloc(n_pages * sizeof *ho);
                for (size_t q = 0; q < n_pages; q++) {
                        hs[q] = page_index_hash(w, blob + q * PG);
                        ho[q] = page_index_hash(w, orig + q * PG);
                }
                for (size_t q = 0; q < n_pages; q++) {
                        uint32_t got;
                        bool zero = memory_is_zero(blob + q * PG, PG), unique = true;
                        for (size_t k = 0; k < n_pages && unique; k++)
                                unique = (k == q || hs[k] != hs[q]) && (k == q || ho[k] != hs[q]);
                        bool found = page_index_lookup(w, hs[q], &got);
                        if (zero)
                                assert_false(found);
                        else if (unique || round == 0)
                                assert_true(found);
                        if (found)
                                assert_memory_equal(blob + (size_t) got * PG, blob + q * PG, PG);
                }
                page_index_free(w);
                blob_fast_free(fast);
                fast = fast2;
        }
        close(fd);
        blob_fast_free(fast);

        /* a paused import of a mapped file (a RAM file) from a base without
         * a page index reads nothing it need not: no page index */
        int fd2 = open(in, O_RDWR | O_CLOEXEC);
        assert_int_equal(pwrite(fd2, "no index", 8, 0), 8);
        fd = open(in, O_RDONLY | O_CLOEXEC);
        assert_int_equal(blob_import_fd_base(f->a, fd, len, NULL, NULL, &id, NULL, &fast), 0);
        _cleanup_free_ char *path0 = page_index_path(f->a, &fast->index_id);
        struct stat st;
        assert_int_equal(stat(path0, &st), -1);
        BlobBase *base;
        assert_int_equal(blob_base_new(f->a, fast, &base), 0);
        BlobOptions oc = o;
        oc.capture_max = 1 << 20;
        oc.map = true;
        BlobPending *p = NULL;
        BlobFast *fast2 = NULL;
        RoamId id2;
        assert_int_equal(pwrite(fd2, "paused", 6, 0), 6);
        close(fd2);
        assert_int_equal(blob_import_fd_begin(f->a, fd, len, &oc, base, &p), 0);
        assert_int_equal(blob_import_finish(p, &id2, NULL, &fast2), 0);
        blob_pending_free(p);
        close(fd);
        _cleanup_free_ char *path3 = page_index_path(f->a, &id2);
        assert_int_equal(stat(path3, &st), -1);
        blob_base_free(base);
        blob_fast_free(fast);
        blob_fast_free(fast2);
}

typedef struct FindCtx {
        const uint8_t *base;
        size_t base_len;
} FindCtx;

/* a find() of the tests: a page is a reference when it equals a page of base */
static bool find_in(void *userdata, const void *page, PageRef *ret) {
        FindCtx *c = userdata;
        for (size_t p = 0; (p + 1) * PG <= c->base_len; p++)
                if (memcmp(c->base + p * PG, page, PG) == 0) {
                        *ret = (PageRef){ .base = 0, .page = (uint32_t) p };
                        return true;
                }
        return false;
}

typedef struct PageCtx {
        const uint8_t *base;
        size_t base_len;
} PageCtx;

static int page_from(void *userdata, unsigned base, uint32_t page, void *out) {
        PageCtx *c = userdata;
        if (base != 0 || ((size_t) page + 1) * PG > c->base_len)
                return -ESTALE;
        memcpy(out, c->base + (size_t) page * PG, PG);
        return 0;
}

/* The payload format: encoded, parsed and decoded back; bounds refused. */
static void test_page_chunk_format(void **state) {
        Fixture *f = *state;
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        ZSTD_DCtx *dc = ZSTD_createDCtx();
        _cleanup_free_ uint8_t *chunk = malloc(CS), *out = malloc(CS);
        /* pages: master pages, zero, random, and a short tail */
        size_t len = CS - 100;
        for (size_t p = 0; p * PG < len; p++) {
                uint8_t *dst = chunk + p * PG;
                size_t n = MIN((size_t) PG, len - p * PG);
                switch (p % 4) {
                case 0:
                case 1:
                        memcpy(dst, f->master + (rng() % 256) * PG, n);
                        break;
                case 2:
                        memset(dst, 0, n);
                        break;
                case 3:
                        fill_random(dst, n);
                        break;
                }
        }
        uint8_t *buf = NULL;
        size_t cap = 0;
        uint32_t refs;
        FindCtx fc = { f->master, 16 * CS };
        int n = page_chunk_encode(chunk, len, cc, 1, find_in, &fc, &buf, &cap, &refs);
        assert_true(n > 0);
        assert_true(refs >= 7); /* the master pages; the tail page may be short */
        assert_true(page_chunk_is(buf, (size_t) n));
        PageChunk pc;
        assert_int_equal(page_chunk_parse(buf, (size_t) n, CS, 1, &pc), 0);
        assert_int_equal(pc.len, len);
        assert_int_equal(pc.n_refs, refs);
        PageCtx pcx = { f->master, 16 * CS };
        assert_int_equal(page_chunk_decode(&pc, dc, out, page_from, &pcx), 0);
        assert_memory_equal(out, chunk, len);
        /* a base the request did not name, a length over the bound, a cut */
        assert_int_equal(page_chunk_parse(buf, (size_t) n, CS, 0, &pc), -EBADMSG);
        assert_int_equal(page_chunk_parse(buf, (size_t) n, len - 1, 1, &pc), -EBADMSG);
        for (size_t cut = 0; cut < (size_t) n; cut += 1 + cut / 3)
                assert_int_equal(page_chunk_parse(buf, cut, CS, 1, &pc), -EBADMSG);
        /* every flipped byte is refused, or parses into something that the
         * decode refuses, or decodes into other bytes: never a crash */
        for (size_t at = 0; at < (size_t) n; at += 7) {
                buf[at] ^= 0x21;
                if (page_chunk_parse(buf, (size_t) n, CS, 1, &pc) == 0)
                        (void) page_chunk_decode(&pc, dc, out, page_from, &pcx);
                buf[at] ^= 0x21;
        }
        /* nothing to reference: 0, the chunk goes as its frame */
        fill_random(chunk, CS);
        assert_int_equal(page_chunk_encode(chunk, CS, cc, 1, find_in, &fc, &buf, &cap, &refs), 0);
        assert_int_equal(refs, 0);

        /* the request body */
        RoamId bases[2], ids[3];
        for (int i = 0; i < 2; i++)
                fill_random(bases[i].b, ID_SIZE);
        for (int i = 0; i < 3; i++)
                fill_random(ids[i].b, ID_SIZE);
        void *body;
        size_t blen;
        assert_int_equal(page_request_build(bases, 2, ids, 3, &body, &blen), 0);
        const uint8_t *pb, *pi;
        unsigned nb;
        size_t ni;
        assert_int_equal(page_request_parse(body, blen, 1024, &pb, &nb, &pi, &ni), 0);
        assert_int_equal(nb, 2);
        assert_int_equal(ni, 3);
        assert_memory_equal(pi, ids, sizeof ids);
        assert_int_equal(page_request_parse(body, blen, 2, &pb, &nb, &pi, &ni), -EBADMSG);
        assert_int_equal(page_request_parse(body, blen - 1, 1024, &pb, &nb, &pi, &ni), -EBADMSG);
        assert_int_equal(page_request_parse(body, 4 + 2 * ID_SIZE, 1024, &pb, &nb, &pi, &ni), -EBADMSG);
        free(body);
        free(buf);
        ZSTD_freeCCtx(cc);
        ZSTD_freeDCtx(dc);
}

/* Sender on a, receiver on b: chunks go as pages and come out the same;
 * a stale or tampered reference, or a base b cannot read, is -ESTALE and
 * stores nothing. */
static void test_send_and_rebuild(void **state) {
        Fixture *f = *state;
        size_t len = 8 * CS;
        _cleanup_free_ uint8_t *ram = malloc(len), *back = malloc(CS);
        make_ram(f, ram, len);
        RoamId ram_id;
        import_bytes(f, f->a, ram, len, &ram_id);
        Index *x;
        assert_int_equal(blob_load_index(f->a, &ram_id, &x), 0);

        PageSender *ps;
        RoamId bases[2] = { ram_id, f->master_id }; /* b lacks the first: a base of nothing */
        assert_int_equal(page_sender_new(f->a, bases, 2, &ps), 0);
        PageBases *pb;
        assert_int_equal(page_bases_new(f->b, bases, 2, &pb), 0);
        ChunkCodec *cb = chunk_codec_new(f->b);
        ZSTD_DCtx *dc = ZSTD_createDCtx();
        uint64_t paged = 0, refs_total = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                if (id_is_null(&x->ids[i]))
                        continue;
                void *payload;
                size_t plen;
                uint32_t refs;
                assert_int_equal(page_sender_payload(ps, &x->ids[i], &payload, &plen, &refs), 0);
                if (!page_chunk_is(payload, plen)) {
                        assert_int_equal(refs, 0);
                        free(payload);
                        continue;
                }
                /* the sender took its own first base too (a has the RAM): those
                 * references are to what b lacks, and fall back */
                PageChunk pc;
                assert_int_equal(page_chunk_parse(payload, plen, CS, 2, &pc), 0);
                bool to_ram = false;
                for (uint32_t k = 0; k < pc.n_refs; k++)
                        to_ram |= page_chunk_ref(&pc, k).base == 0;
                int r = page_bases_store(pb, cb, &x->ids[i], payload, plen);
                if (to_ram) {
                        assert_int_equal(r, -ESTALE);
                        assert_int_equal(store_chunk_has(f->b, &x->ids[i]), 0);
                } else {
                        assert_int_equal(r, (int) refs);
                        paged++;
                        refs_total += refs;
                        size_t n;
                        assert_int_equal(store_commit(f->b), 0);
                        assert_int_equal(store_chunk_get(f->b, cb, &x->ids[i], back, &n), 0);
                        assert_memory_equal(back, ram + i * CS, n);
                }
                free(payload);
        }
        page_sender_free(ps);
        page_bases_free(pb);

        /* with the master as the only base: every non-zero chunk that has a
         * master page goes as pages, and each is rebuilt */
        assert_int_equal(page_sender_new(f->a, &f->master_id, 1, &ps), 0);
        assert_int_equal(page_bases_new(f->b, &f->master_id, 1, &pb), 0);
        paged = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                if (id_is_null(&x->ids[i]))
                        continue;
                void *payload;
                size_t plen;
                uint32_t refs;
                assert_int_equal(page_sender_payload(ps, &x->ids[i], &payload, &plen, &refs), 0);
                assert_true(page_chunk_is(payload, plen));
                assert_true(refs > 0);
                /* a tampered reference (another page of the master): another
                 * hash, refused; nothing stored */
                PageChunk pc;
                assert_int_equal(page_chunk_parse(payload, plen, CS, 1, &pc), 0);
                uint8_t *ref0 = (uint8_t *) pc.refs;
                uint32_t page = get_le32(ref0 + 1);
                put_le32(ref0 + 1, (page + 1) % 256);
                assert_int_equal(page_bases_store(pb, cb, &x->ids[i], payload, plen), -ESTALE);
                /* a reference past the end of the base */
                put_le32(ref0 + 1, 100000);
                assert_int_equal(page_bases_store(pb, cb, &x->ids[i], payload, plen), -ESTALE);
                /* garbage */
                assert_int_equal(page_bases_store(pb, cb, &x->ids[i], "RPG1junk", 8), -ESTALE);
                if (store_chunk_has(f->b, &x->ids[i]) == 0) {
                        put_le32(ref0 + 1, page);
                        assert_int_equal(page_bases_store(pb, cb, &x->ids[i], payload, plen), (int) refs);
                        paged++;
                }
                free(payload);
        }
        assert_true(paged > 0);
        assert_int_equal(store_commit(f->b), 0);
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                size_t n;
                if (id_is_null(&x->ids[i]))
                        continue;
                assert_int_equal(store_chunk_get(f->b, cb, &x->ids[i], back, &n), 0);
                assert_memory_equal(back, ram + i * CS, CS);
        }
        page_bases_free(pb);

        /* the receiver's copy of the master lost a chunk: references into it
         * fail, nothing wrong is stored */
        Index *mx;
        assert_int_equal(blob_load_index(f->b, &f->master_id, &mx), 0);
        assert_int_equal(store_chunk_remove(f->b, &mx->ids[3]), 0);
        assert_int_equal(page_bases_new(f->b, &f->master_id, 1, &pb), 0);
        _cleanup_free_ uint8_t *chunk = malloc(CS);
        memcpy(chunk, f->master + 3 * CS + PG, PG); /* a page of the lost chunk */
        fill_random(chunk + PG, CS - PG);
        RoamId cid;
        sha256(chunk, CS, &cid);
        ChunkCodec *ca = chunk_codec_new(f->a);
        assert_true(store_chunk_put(f->a, ca, &cid, chunk, CS) > 0);
        assert_int_equal(store_commit(f->a), 0);
        void *payload;
        size_t plen;
        uint32_t refs;
        assert_int_equal(page_sender_payload(ps, &cid, &payload, &plen, &refs), 0);
        assert_int_equal(refs, 1);
        assert_int_equal(page_bases_store(pb, cb, &cid, payload, plen), -ESTALE);
        assert_int_equal(store_chunk_has(f->b, &cid), 0);
        free(payload);
        chunk_codec_free(ca);
        index_free(mx);
        page_bases_free(pb);
        page_sender_free(ps);
        ZSTD_freeDCtx(dc);
        chunk_codec_free(cb);
        index_free(x);
}

/* A RAM blob on a, what b lacks of it (b holds the master), and a's page
 * sender against the master: the two pack tests below. */
typedef struct RamPack {
        uint8_t *ram;
        size_t len;
        RoamId id;
        Reach *want, *have;
        PageSender *ps;
} RamPack;

static void ram_pack_new(Fixture *f, RamPack *rp) {
        rp->len = 8 * CS;
        rp->ram = malloc(rp->len);
        make_ram(f, rp->ram, rp->len);
        import_bytes(f, f->a, rp->ram, rp->len, &rp->id);
        rp->want = reach_new();
        rp->have = reach_new();
        assert_int_equal(reach_add_object(f->a, rp->want, &rp->id), 0);
        assert_int_equal(reach_add_object(f->a, rp->have, &f->master_id), 0);
        assert_int_equal(page_sender_new(f->a, &f->master_id, 1, &rp->ps), 0);
}

static void ram_pack_done(RamPack *rp) {
        page_sender_free(rp->ps);
        reach_free(rp->want);
        reach_free(rp->have);
        free(rp->ram);
}

/* sync_pack_fill() of all of it (max 0) or of max bytes. */
static bool ram_pack_fill(Fixture *f, RamPack *rp, size_t max, PackWriter *pw) {
        assert_int_equal(pack_writer_init(pw, max), 0);
        bool complete = false;
        RoamId missing;
        assert_int_equal(sync_pack_fill(f->a, rp->want, rp->have, rp->ps, pw, &complete, &missing), 0);
        return complete;
}

/* b holds the RAM blob whole, byte for byte. */
static void assert_ram_in_b(Fixture *f, const RamPack *rp) {
        Index *x;
        assert_int_equal(blob_load_index(f->a, &rp->id, &x), 0);
        ChunkCodec *cb = chunk_codec_new(f->b);
        _cleanup_free_ uint8_t *back = malloc(CS);
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                size_t got;
                if (id_is_null(&x->ids[i]))
                        continue;
                assert_int_equal(store_chunk_get(f->b, cb, &x->ids[i], back, &got), 0);
                assert_memory_equal(back, rp->ram + i * CS, got);
        }
        chunk_codec_free(cb);
        index_free(x);
}

/* Reads a pack made by sync_pack_fill() into the receiver b (pages rebuilt
 * from the master there, frames as they are): the chunk records it held. */
static uint32_t take_pack(Fixture *f, const PackWriter *pw, bool *ret_complete) {
        PackReader rd;
        assert_int_equal(pack_reader_init(&rd, pw->buf, pw->len, STORE_OBJECT_MAX, 2 * CS + 4096), 0);
        *ret_complete = rd.flags & PACK_COMPLETE;
        assert_true(rd.flags & PACK_PAGED);
        PageBases *pb;
        assert_int_equal(page_bases_new(f->b, &f->master_id, 1, &pb), 0);
        ChunkCodec *cb = chunk_codec_new(f->b);
        PackKind kind;
        RoamId id;
        const uint8_t *data;
        uint32_t len, chunks = 0;
        int r;
        while ((r = pack_reader_next(&rd, &kind, &id, &data, &len)) == 1) {
                if (kind != PACK_CHUNK)
                        continue;
                chunks++;
                if (page_chunk_is(data, len))
                        assert_true(page_bases_store(pb, cb, &id, data, len) >= 0);
                else
                        assert_true(store_chunk_put_compressed(f->b, cb, &id, data, len) >= 0);
        }
        assert_int_equal(r, 0);
        assert_int_equal(store_commit(f->b), 0);
        chunk_codec_free(cb);
        page_bases_free(pb);
        return chunks;
}

/* A pack of the chunks the other side lacks, made by a thread per core: the
 * records in the order of the list, every one right; one that fills up is a
 * prefix of it, not complete. */
static void test_pack_fill(void **state) {
        Fixture *f = *state;
        RamPack rp;
        ram_pack_new(f, &rp);
        size_t lacking = 0, pos = 0;
        RoamId id;
        while (idset_next(rp.want->chunks, &pos, &id))
                lacking += !idset_contains(rp.have->chunks, &id);
        assert_true(lacking > 2);

        /* how big all of it is; then a pack with room for about half of it */
        PackWriter pw;
        assert_true(ram_pack_fill(f, &rp, 0, &pw));
        size_t whole = pw.len;
        pack_writer_done(&pw);
        assert_false(ram_pack_fill(f, &rp, whole / 2, &pw));
        bool said;
        uint32_t n = take_pack(f, &pw, &said);
        assert_false(said);
        assert_true(n < lacking);
        /* the records are the list's first ones */
        pos = 0;
        for (uint32_t k = 0; k < n;) {
                assert_true(idset_next(rp.want->chunks, &pos, &id));
                if (idset_contains(rp.have->chunks, &id))
                        continue;
                assert_int_equal(store_chunk_has(f->b, &id), 1);
                k++;
        }
        pack_writer_done(&pw);

        /* room for all: complete, and b has the RAM whole */
        assert_true(ram_pack_fill(f, &rp, 0, &pw));
        assert_int_equal(take_pack(f, &pw, &said), lacking);
        assert_true(said);
        pack_writer_done(&pw);
        assert_ram_in_b(f, &rp);

        /* a chunk the sender lacks: -ENOENT, named */
        Index *x;
        assert_int_equal(blob_load_index(f->a, &rp.id, &x), 0);
        assert_int_equal(store_chunk_remove(f->a, &x->ids[1]), 0);
        assert_int_equal(pack_writer_init(&pw, 0), 0);
        bool complete;
        RoamId missing;
        assert_true(sync_pack_fill(f->a, rp.want, rp.have, rp.ps, &pw, &complete, &missing) < 0);
        assert_true(id_equal(&missing, &x->ids[1]));
        pack_writer_done(&pw);
        index_free(x);
        ram_pack_done(&rp);
}

/* A pack stored as it comes (sync_pack_stream): fed in pieces of any size,
 * it stores what sync_pack_take() would; a pack cut short is refused at the
 * end (what came whole of it is stored: every chunk is checked against its
 * id). */
static void test_pack_stream(void **state) {
        Fixture *f = *state;
        RamPack rp;
        ram_pack_new(f, &rp);
        PackWriter pw;
        assert_true(ram_pack_fill(f, &rp, 0, &pw));

        /* the receiver asks with the master it holds: page references work */
        SyncOptions so = { .have = &f->master_id, .n_have = 1 };
        json_t *ask_json;
        SyncPackAsk *ask;
        assert_int_equal(sync_pack_ask(f->b, &so, &ask_json, &ask), 0);
        json_decref(ask_json);

        /* cut short: refused at the end */
        SyncPackStream *st;
        assert_int_equal(sync_pack_stream_new(ask, &st), 0);
        size_t cut = pw.len - 7;
        for (size_t at = 1; at <= cut; at += 1 + rng() % 3000)
                sync_pack_stream_feed(st, pw.buf, at);
        sync_pack_stream_feed(st, pw.buf, cut);
        SyncStats stats = { 0 };
        assert_true(sync_pack_stream_finish(st, pw.buf, cut, &stats) < 0);
        sync_pack_stream_free(st);

        /* the body goes away halfway (a transfer that failed): stopped first,
         * then nothing touches it any more */
        uint8_t *copy = malloc(pw.len);
        memcpy(copy, pw.buf, pw.len);
        assert_int_equal(sync_pack_stream_new(ask, &st), 0);
        sync_pack_stream_feed(st, copy, pw.len / 2);
        sync_pack_stream_stop(st);
        memset(copy, 0xee, pw.len);
        free(copy);
        sync_pack_stream_feed(st, pw.buf, pw.len); /* fed no more */
        sync_pack_stream_free(st);

        /* whole, in pieces: complete, and b holds the RAM */
        assert_int_equal(sync_pack_stream_new(ask, &st), 0);
        for (size_t at = 0; at < pw.len; at += 1 + rng() % 5000)
                sync_pack_stream_feed(st, pw.buf, at);
        sync_pack_stream_feed(st, pw.buf, pw.len);
        stats = (SyncStats){ 0 };
        assert_int_equal(sync_pack_stream_finish(st, pw.buf, pw.len, &stats), 1);
        assert_int_equal(stats.chunks_page_fallback, 0);
        assert_true(stats.chunks_paged > 0);
        assert_int_equal(store_commit(f->b), 0);
        assert_ram_in_b(f, &rp);
        sync_pack_stream_free(st);
        /* not fed at all (streams off): finish() takes it whole */
        assert_int_equal(sync_pack_stream_new(ask, &st), 0);
        assert_int_equal(sync_pack_stream_finish(st, pw.buf, pw.len, &stats), 1);
        sync_pack_stream_free(st);
        sync_pack_ask_free(ask);
        pack_writer_done(&pw);
        ram_pack_done(&rp);
}

/* An object as a delta against a base (src/sync/obj-delta.h): the format
 * round trip, its bounds, and in a pack: a changed blob's index goes as the
 * entries that differ from the base the receiver named, and rebuilds there to
 * the same id; a base the receiver lacks or a tampered delta stores nothing
 * (the object is fetched whole), never a wrong object. */
static void test_object_delta(void **state) {
        Fixture *f = *state;
        /* the format: entries of 32 bytes, some changed, the tail shorter */
        size_t blen = 32 + 300 * 32, olen = blen + 48;
        _cleanup_free_ uint8_t *base = malloc(blen), *obj = malloc(olen), *back = malloc(olen);
        fill_random(base, blen);
        memcpy(obj, base, blen);
        fill_random(obj + blen, olen - blen);
        for (int k = 0; k < 5; k++)
                fill_random(obj + 32 + (rng() % 300) * 32, 32);
        uint8_t *d;
        size_t dlen;
        assert_int_equal(obj_delta_encode(base, blen, obj, olen, 3, olen, &d, &dlen), 0);
        assert_true(dlen < 13 + 6 * 8 + 5 * 32 + 48 + 1);
        uint8_t *none = NULL;
        assert_int_equal(obj_delta_encode(base, blen, obj, olen, 3, dlen, &none, &(size_t){ 0 }), -E2BIG);
        assert_null(none);
        ObjDelta od;
        assert_int_equal(obj_delta_parse(d, dlen, 3, olen, &od), -EBADMSG); /* base 3 of 3 */
        assert_int_equal(obj_delta_parse(d, dlen, 4, olen - 1, &od), -EBADMSG); /* longer than max */
        assert_int_equal(obj_delta_parse(d, dlen - 1, 4, olen, &od), -EBADMSG);  /* literal cut short */
        assert_int_equal(obj_delta_parse(d, dlen, 4, olen, &od), 0);
        assert_int_equal(od.base, 3);
        assert_int_equal(od.len, olen);
        assert_int_equal(obj_delta_apply(&od, base, blen - 64, back), -ESTALE); /* the base too short */
        assert_int_equal(obj_delta_apply(&od, base, blen, back), 0);
        assert_memory_equal(back, obj, olen);
        free(d);

        /* in a pack: a sparse blob of 256 chunks (an index of 8 KiB), then
         * the same with two chunks changed */
        size_t len = 256 * CS;
        _cleanup_free_ uint8_t *v1 = calloc(1, len), *v2 = NULL;
        for (int k = 0; k < 12; k++)
                fill_random(v1 + (size_t) (k * 21) * CS, CS);
        v2 = malloc(len);
        memcpy(v2, v1, len);
        fill_random(v2 + 21 * CS + 5 * PG, PG);
        fill_random(v2 + 100 * CS, CS);
        RoamId id1, id2, idb;
        import_bytes(f, f->a, v1, len, &id1);
        import_bytes(f, f->b, v1, len, &idb);
        assert_true(id_equal(&id1, &idb));
        import_bytes(f, f->a, v2, len, &id2);
        Reach *want = reach_new(), *have = reach_new();
        assert_int_equal(reach_add_object(f->a, want, &id2), 0);
        assert_int_equal(reach_add_object(f->a, have, &id1), 0);
        PageSender *ps;
        assert_int_equal(page_sender_new(f->a, &id1, 1, &ps), 0);
        PackWriter pw;
        assert_int_equal(pack_writer_init(&pw, 0), 0);
        bool complete;
        RoamId missing;
        assert_int_equal(sync_pack_fill(f->a, want, have, ps, &pw, &complete, &missing), 0);
        assert_true(complete);
        assert_int_equal(pw.n_objects, 1);
        assert_int_equal(pw.n_delta, 1);
        assert_true(pw.object_bytes < 512); /* 8 KiB of index */
        PackReader rd;
        assert_int_equal(pack_reader_init(&rd, pw.buf, pw.len, STORE_OBJECT_MAX, 2 * CS + 4096), 0);
        assert_true(rd.flags & PACK_DELTA);

        /* a receiver without the base: the object is not stored, the chunks are */
        RoamId stranger;
        memset(&stranger, 0x42, sizeof stranger);
        PageBases *pb;
        assert_int_equal(page_bases_new(f->b, &stranger, 1, &pb), 0);
        SyncStats st = { 0 };
        assert_int_equal(sync_pack_store(f->b, pb, pw.buf, pw.len, &st), 1);
        assert_int_equal(st.objects_delta, 0);
        assert_int_equal(store_object_has(f->b, &id2), 0);
        page_bases_free(pb);
        /* tampered: one literal byte of the delta flipped */
        _cleanup_free_ uint8_t *bad = malloc(pw.len);
        memcpy(bad, pw.buf, pw.len);
        PackKind kind;
        RoamId rid;
        const uint8_t *rec;
        uint32_t rlen;
        assert_int_equal(pack_reader_next(&rd, &kind, &rid, &rec, &rlen), 1);
        assert_int_equal(kind, PACK_OBJECT);
        assert_true(obj_delta_is(rec, rlen));
        bad[(rec - pw.buf) + rlen - 1] ^= 1;
        assert_int_equal(page_bases_new(f->b, &id1, 1, &pb), 0);
        st = (SyncStats){ 0 };
        assert_int_equal(sync_pack_store(f->b, pb, bad, pw.len, &st), 1);
        assert_int_equal(st.objects_delta, 0);
        assert_int_equal(store_object_has(f->b, &id2), 0);
        /* right: rebuilt to its id, and b exports the same bytes */
        st = (SyncStats){ 0 };
        assert_int_equal(sync_pack_store(f->b, pb, pw.buf, pw.len, &st), 1);
        assert_int_equal(st.objects_delta, 1);
        assert_int_equal(store_object_has(f->b, &id2), 1);
        assert_int_equal(store_commit(f->b), 0);
        Index *x;
        assert_int_equal(blob_load_index(f->b, &id2, &x), 0);
        ChunkCodec *cb = chunk_codec_new(f->b);
        _cleanup_free_ uint8_t *chunk = malloc(CS);
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                size_t got;
                if (id_is_null(&x->ids[i])) {
                        assert_true(memory_is_zero(v2 + i * CS, CS));
                        continue;
                }
                assert_int_equal(store_chunk_get(f->b, cb, &x->ids[i], chunk, &got), 0);
                assert_memory_equal(chunk, v2 + i * CS, got);
        }
        chunk_codec_free(cb);
        index_free(x);
        page_bases_free(pb);
        pack_writer_done(&pw);
        page_sender_free(ps);
        reach_free(want);
        reach_free(have);
}

/* A pack sent while it is made (pack-out.h): read in pieces of any size, it
 * is the prefix and then byte for byte what sync_pack_fill() makes; one that
 * might not fit is refused before a byte, as is one with a chunk not here;
 * freed halfway, its workers stop. */
static void test_pack_out(void **state) {
        Fixture *f = *state;
        RamPack rp;
        ram_pack_new(f, &rp);
        PackWriter pw;
        assert_true(ram_pack_fill(f, &rp, 0, &pw));
        static const char prefix[] = "{\"grant\": 1}\n";
        PackOut *po;
        RoamId missing;
        assert_int_equal(pack_out_new(f->a, rp.want, rp.have, rp.ps, 0, prefix, strlen(prefix), &po, &missing), 0);
        size_t total = strlen(prefix) + pw.len, got = 0;
        _cleanup_free_ uint8_t *out = malloc(total + 1);
        for (;;) {
                size_t want = 1 + rng() % 7000;
                ssize_t n = pack_out_read(po, out + got, MIN(want, total + 1 - got));
                assert_true(n >= 0);
                if (n == 0)
                        break;
                got += (size_t) n;
                assert_true(got <= total);
        }
        assert_int_equal(got, total);
        assert_memory_equal(out, prefix, strlen(prefix));
        assert_memory_equal(out + strlen(prefix), pw.buf, pw.len);
        PackOutStats st;
        pack_out_stats(po, &st);
        assert_int_equal(st.n_chunks, pw.n_chunks);
        assert_int_equal(st.n_paged, pw.n_paged);
        assert_int_equal(st.bytes, total);
        pack_out_free(po);

        /* the stored frames might not fit: refused, nothing made */
        assert_int_equal(pack_out_new(f->a, rp.want, rp.have, rp.ps, pw.len / 2, "", 0, &po, &missing), -E2BIG);
        /* freed after a few bytes: the workers stop, nothing leaks */
        assert_int_equal(pack_out_new(f->a, rp.want, rp.have, NULL, 0, "", 0, &po, &missing), 0);
        assert_true(pack_out_read(po, out, 100) > 0);
        pack_out_free(po);
        /* a chunk not here: named before a byte */
        Index *x;
        assert_int_equal(blob_load_index(f->a, &rp.id, &x), 0);
        assert_int_equal(store_chunk_remove(f->a, &x->ids[2]), 0);
        assert_int_equal(pack_out_new(f->a, rp.want, rp.have, rp.ps, 0, "", 0, &po, &missing), -ENOENT);
        assert_true(id_equal(&missing, &x->ids[2]));
        index_free(x);
        pack_writer_done(&pw);
        ram_pack_done(&rp);
}

/* Pages from a plain copy of a base (a RAM file staged ahead): a receiver
 * whose store lost the base's chunks still rebuilds from it; a copy that is
 * not the base's bytes rebuilds nothing wrong (each such chunk falls back). */
static void test_plain_base(void **state) {
        Fixture *f = *state;
        RamPack rp;
        ram_pack_new(f, &rp);
        PackWriter pw;
        assert_true(ram_pack_fill(f, &rp, 0, &pw));
        assert_true(pw.n_paged > 0);
        Index *mx;
        assert_int_equal(blob_load_index(f->b, &f->master_id, &mx), 0);
        for (uint64_t i = 0; i < mx->n_chunks; i++)
                if (!id_is_null(&mx->ids[i]))
                        (void) store_chunk_remove(f->b, &mx->ids[i]);
        /* a wrong copy first: nothing wrong is stored, the paged chunks fall back */
        _cleanup_free_ uint8_t *wrong = malloc(f->master_len);
        fill_random(wrong, f->master_len);
        PageBases *pb;
        assert_int_equal(page_bases_new(f->b, &f->master_id, 1, &pb), 0);
        page_bases_attach_plain(pb, &f->master_id, wrong, f->master_len);
        SyncStats st = { 0 };
        assert_int_equal(sync_pack_store(f->b, pb, pw.buf, pw.len, &st), 1);
        assert_int_equal(st.chunks_page_fallback, pw.n_paged);
        page_bases_free(pb);
        /* the right copy (of another length: not taken) */
        assert_int_equal(page_bases_new(f->b, &f->master_id, 1, &pb), 0);
        page_bases_attach_plain(pb, &f->master_id, f->master, f->master_len - 1);
        st = (SyncStats){ 0 };
        assert_int_equal(sync_pack_store(f->b, pb, pw.buf, pw.len, &st), 1);
        assert_int_equal(st.chunks_page_fallback, pw.n_paged);
        page_bases_free(pb);
        assert_int_equal(page_bases_new(f->b, &f->master_id, 1, &pb), 0);
        page_bases_attach_plain(pb, &f->master_id, f->master, f->master_len);
        st = (SyncStats){ 0 };
        assert_int_equal(sync_pack_store(f->b, pb, pw.buf, pw.len, &st), 1);
        assert_int_equal(st.chunks_page_fallback, 0);
        assert_int_equal(st.chunks_paged, pw.n_paged);
        assert_int_equal(store_commit(f->b), 0);
        assert_ram_in_b(f, &rp);
        page_bases_free(pb);
        index_free(mx);
        pack_writer_done(&pw);
        ram_pack_done(&rp);
}

/* A receiver names as bases only the blobs it holds whole. */
static void test_pick_bases(void **state) {
        Fixture *f = *state;
        size_t len = 4 * CS;
        _cleanup_free_ uint8_t *ram = malloc(len);
        make_ram(f, ram, len);
        RoamId ram_id;
        import_bytes(f, f->b, ram, len, &ram_id);
        Reach *need = reach_new();
        assert_int_equal(reach_add_object(f->b, need, &f->master_id), 0);
        assert_int_equal(reach_add_object(f->b, need, &ram_id), 0);
        RoamId out[PAGE_CHUNK_MAX_BASES];
        unsigned n;
        assert_int_equal(pages_pick_bases(f->b, need, NULL, NULL, 0, out, &n), 0);
        assert_int_equal(n, 2);
        /* a chunk of the RAM is missing: the RAM is no base */
        IdSet *missing = idset_new();
        Index *x;
        assert_int_equal(blob_load_index(f->b, &ram_id, &x), 0);
        for (uint64_t i = 0; i < x->n_chunks; i++)
                if (!id_is_null(&x->ids[i])) {
                        assert_int_equal(idset_add(missing, &x->ids[i]), 1);
                        break;
                }
        assert_int_equal(pages_pick_bases(f->b, need, missing, NULL, 0, out, &n), 0);
        assert_int_equal(n, 1);
        assert_true(id_equal(&out[0], &f->master_id));
        /* have objects come first */
        assert_int_equal(pages_pick_bases(f->b, need, NULL, &ram_id, 1, out, &n), 0);
        assert_int_equal(n, 2);
        assert_true(id_equal(&out[0], &ram_id));
        idset_free(missing);
        index_free(x);
        reach_free(need);
}

/* gc keeps the page index of a blob a ref reaches and drops the others'. */
static void test_gc_prunes(void **state) {
        Fixture *f = *state;
        size_t len = 3 * CS;
        _cleanup_free_ uint8_t *kept = malloc(len), *gone = malloc(len);
        make_ram(f, kept, len);
        make_ram(f, gone, len);
        memcpy(kept, "gc-kept", 7); /* blobs of their own (page indexes are shared in memory by blob) */
        memcpy(gone, "gc-gone", 7);
        RoamId kept_id, gone_id;
        import_bytes(f, f->a, kept, len, &kept_id);
        import_bytes(f, f->a, gone, len, &gone_id);
        assert_int_equal(store_ref_set(f->a, "images/k", &kept_id, NULL), 0);
        PageIndex *x;
        assert_int_equal(page_index_get(f->a, &kept_id, UINT64_MAX, &x), 0);
        page_index_unref(x);
        assert_int_equal(page_index_get(f->a, &gone_id, UINT64_MAX, &x), 0);
        page_index_unref(x);
        _cleanup_free_ char *pk = page_index_path(f->a, &kept_id), *pg = page_index_path(f->a, &gone_id);
        struct stat st;
        assert_int_equal(stat(pk, &st), 0);
        assert_int_equal(stat(pg, &st), 0);
        /* the fixture holds the store lock shared; gc wants it exclusive */
        _cleanup_free_ char *p = strdup(store_path(f->a));
        store_free(f->a);
        assert_int_equal(store_open(p, NULL, &f->a), 0);
        GcOptions o = { .grace_s = 0 };
        GcReport rep;
        assert_int_equal(store_gc(f->a, &o, &rep), 0);
        assert_int_equal(stat(pk, &st), 0);
        assert_int_equal(stat(pg, &st), -1);
}

/* A session's RAM page indexes: the last few kept, the older ones removed;
 * a blob without a page index is not listed; a damaged list starts over. */
static void test_keep_recent(void **state) {
        Fixture *f = *state;
        size_t len = 2 * CS;
        _cleanup_free_ uint8_t *ram = malloc(len);
        make_ram(f, ram, len);
        _cleanup_free_ char *list = path_join(f->dir, "ram.fast.pages");
        RoamId ids[5];
        for (int i = 0; i < 5; i++) {
                char tag[16];
                snprintf(tag, sizeof tag, "keep-%d", i);
                memcpy(ram, tag, strlen(tag));
                import_bytes(f, f->a, ram, len, &ids[i]);
                PageIndex *x;
                assert_int_equal(page_index_get(f->a, &ids[i], UINT64_MAX, &x), 0);
                page_index_unref(x);
                assert_int_equal(page_index_keep_recent(f->a, list, &ids[i], 3), 0);
        }
        struct stat st;
        for (int i = 0; i < 5; i++) {
                _cleanup_free_ char *p = page_index_path(f->a, &ids[i]);
                assert_int_equal(stat(p, &st) == 0, i >= 2);
        }
        _cleanup_free_ char *text = NULL;
        size_t tlen;
        assert_int_equal(read_full_file(list, 4096, &text, &tlen), 0);
        assert_int_equal(tlen, 3 * (ID_HEX_SIZE - 1 + 1));
        char hex[ID_HEX_SIZE];
        assert_memory_equal(text, id_to_hex(&ids[2], hex), ID_HEX_SIZE - 1);
        /* a blob without a page index is not listed and removes nothing */
        RoamId none;
        memcpy(ram, "keep-none", 9);
        import_bytes(f, f->a, ram, len, &none);
        assert_int_equal(page_index_keep_recent(f->a, list, &none, 3), 0);
        _cleanup_free_ char *p2 = page_index_path(f->a, &ids[2]);
        assert_int_equal(stat(p2, &st), 0);
        /* a damaged list: started over with the blob given */
        assert_int_equal(write_file_atomic(list, "garbage\n", 8, 0644), 0);
        assert_int_equal(page_index_keep_recent(f->a, list, &ids[4], 1), 0);
        free(text);
        text = NULL;
        assert_int_equal(read_full_file(list, 4096, &text, &tlen), 0);
        assert_int_equal(tlen, ID_HEX_SIZE);
        assert_memory_equal(text, id_to_hex(&ids[4], hex), ID_HEX_SIZE - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_keep_recent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_page_index, setup, teardown),
                cmocka_unit_test_setup_teardown(test_page_index_at_import, setup, teardown),
                cmocka_unit_test_setup_teardown(test_page_chunk_format, setup, teardown),
                cmocka_unit_test_setup_teardown(test_send_and_rebuild, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pack_fill, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pack_stream, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pick_bases, setup, teardown),
                cmocka_unit_test_setup_teardown(test_object_delta, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pack_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plain_base, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_prunes, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
