/* SPDX-License-Identifier: MIT */
/* Unit tests for how chunks are stored (src/store/chunk-frame.c: zstd frames,
 * compressed or raw) and for the parallel import (src/store/blob.c: workers
 * plus a committer), on temp directories with seeded data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include "store/chunk-frame.h"
#include "store/fsck.h"
#include "store/store.h"

static uint64_t seed;
static uint64_t rng_state;
static uint64_t rng(void) {
        /* xorshift64*, seeded: reproducible data */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ULL;
}
static void fill_random(uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (rng() >> 56);
}
/* compressible: words from a small vocabulary */
static void fill_text(uint8_t *p, size_t n) {
        static const char *words[] = { "roam ", "chunk ", "session ", "laptop ", "server ", "image ", "the ", "of " };
        size_t at = 0;
        while (at < n) {
                const char *w = words[rng() % ELEMENTSOF(words)];
                size_t l = MIN(strlen(w), n - at);
                memcpy(p + at, w, l);
                at += l;
        }
}

typedef struct Fixture {
        char dir[64];
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        strcpy(f->dir, "/tmp/roam-unit-chunk-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        /* ROAM_TEST_SEED reproduces a failure */
        const char *env = getenv("ROAM_TEST_SEED");
        seed = env ? strtoull(env, NULL, 0) : (uint64_t) time(NULL);
        print_message("seed %llu (ROAM_TEST_SEED=%llu reproduces it)\n", (unsigned long long) seed,
                      (unsigned long long) seed);
        rng_state = seed | 1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        rm_rf(f->dir);
        free(f);
        return 0;
}

static Store *open_store(Fixture *f, const char *name, uint32_t chunk_size) {
        _cleanup_free_ char *p = path_join(f->dir, name);
        StoreOptions o = { .create = true, .chunk_size = chunk_size };
        Store *s = NULL;
        assert_int_equal(store_open(p, &o, &s), 0);
        assert_int_equal(store_lock(s, false, false), 0);
        return s;
}

static size_t read_chunk_file(Store *s, const RoamId *id, uint8_t *buf, size_t cap) {
        char hex[ID_HEX_SIZE], p[512];
        id_to_hex(id, hex);
        snprintf(p, sizeof p, "%s/chunks/%.2s/%s", store_path(s), hex, hex);
        int fd = open(p, O_RDONLY);
        assert_true(fd >= 0);
        ssize_t n = loop_read(fd, buf, cap);
        close(fd);
        assert_true(n > 0);
        return (size_t) n;
}

static void flip_chunk_byte(Store *s, const RoamId *id, off_t at) {
        char hex[ID_HEX_SIZE], p[512];
        id_to_hex(id, hex);
        snprintf(p, sizeof p, "%s/chunks/%.2s/%s", store_path(s), hex, hex);
        int fd = open(p, O_RDWR);
        assert_true(fd >= 0);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x10;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
        close(fd);
}

/* A raw frame is a zstd frame that zstd itself decodes, of any size. */
static void test_raw_frame(void **state) {
        static const size_t sizes[] = { 1, 100, 4096, 65536, 131071, 131072, 131073, 300000, 4u << 20 };
        size_t cap = CHUNK_FRAME_RAW_SIZE((size_t) 4 << 20);
        _cleanup_free_ uint8_t *in = malloc(4u << 20), *frame = malloc(cap), *out = malloc(4u << 20);
        fill_random(in, 4u << 20);
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                size_t len = sizes[k];
                size_t n = chunk_frame_raw(frame, cap, in, len);
                assert_int_equal(n, CHUNK_FRAME_RAW_SIZE(len));
                assert_true(chunk_frame_is_raw(frame, n));
                assert_int_equal(ZSTD_getFrameContentSize(frame, n), len);
                assert_int_equal(ZSTD_findFrameCompressedSize(frame, n), n);
                assert_int_equal(ZSTD_decompress(out, 4u << 20, frame, n), len);
                assert_memory_equal(out, in, len);
                /* cut short: neither raw nor decodable */
                assert_false(chunk_frame_is_raw(frame, n - 1));
                assert_true(ZSTD_isError(ZSTD_decompress(out, 4u << 20, frame, n - 1)));
                /* too small a buffer: nothing written */
                assert_int_equal(chunk_frame_raw(frame, n - 1, in, len), 0);
        }
        assert_int_equal(chunk_frame_raw(frame, cap, in, 0), 0);
        assert_int_equal(chunk_frame_raw(frame, cap, in, (4u << 20) + 1), 0);

        /* zstd's compressed frame of text is not raw; its own frame of random
         * bytes is (zstd falls back to raw blocks) */
        fill_text(in, 65536);
        size_t zcap = ZSTD_compressBound(65536);
        _cleanup_free_ uint8_t *z = malloc(zcap);
        size_t zn = ZSTD_compress(z, zcap, in, 65536, 1);
        assert_false(ZSTD_isError(zn));
        assert_false(chunk_frame_is_raw(z, zn));
        fill_random(in, 65536);
        zn = ZSTD_compress(z, zcap, in, 65536, 1);
        assert_true(chunk_frame_is_raw(z, zn));
        assert_false(chunk_frame_is_raw("garbage", 7));
}

/* The store keeps what shrinks compressed and the rest raw; reads, fsck and
 * the old (always compressed) chunks work for both. */
static void test_store_raw_and_compressed(void **state) {
        Fixture *f = *state;
        Store *s = open_store(f, "store", 65536);
        ChunkCodec *c = chunk_codec_new(s);
        size_t zcap = ZSTD_compressBound(65536);
        _cleanup_free_ uint8_t *rnd = malloc(65536), *text = malloc(65536), *old = malloc(65536),
                               *out = malloc(65536), *file = malloc(zcap);
        fill_random(rnd, 65536);
        fill_text(text, 65536);
        fill_text(old, 65536);
        old[0] = 'X';
        RoamId id_rnd, id_text, id_old;
        sha256(rnd, 65536, &id_rnd);
        sha256(text, 65536, &id_text);
        sha256(old, 65536, &id_old);
        assert_int_equal(store_chunk_put(s, c, &id_rnd, rnd, 65536), (int) CHUNK_FRAME_RAW_SIZE(65536));
        int zl = store_chunk_put(s, c, &id_text, text, 65536);
        assert_true(zl > 0 && zl < 65536 / 2);
        /* a chunk as every earlier version wrote it: zstd, any level */
        size_t zn = ZSTD_compress(file, zcap, old, 65536, 3);
        assert_int_equal(store_chunk_put_compressed(s, c, &id_old, file, zn), (int) zn);
        assert_int_equal(store_commit(s), 0);

        size_t n = read_chunk_file(s, &id_rnd, file, zcap);
        assert_int_equal(n, CHUNK_FRAME_RAW_SIZE(65536));
        assert_true(chunk_frame_is_raw(file, n));
        assert_memory_equal(file + CHUNK_FRAME_RAW_HEADER + 3, rnd, 65536); /* the plain bytes, as they are */
        n = read_chunk_file(s, &id_text, file, zcap);
        assert_false(chunk_frame_is_raw(file, n));

        const RoamId *ids[] = { &id_rnd, &id_text, &id_old };
        const uint8_t *want[] = { rnd, text, old };
        for (size_t i = 0; i < 3; i++) {
                size_t len;
                assert_int_equal(store_chunk_get(s, c, ids[i], out, &len), 0);
                assert_int_equal(len, 65536);
                assert_memory_equal(out, want[i], 65536);
        }
        /* a raw chunk travels as any other: its frame goes into another store */
        void *wire;
        size_t wlen;
        assert_int_equal(store_chunk_get_compressed(s, c, &id_rnd, &wire, &wlen), 0);
        Store *s2 = open_store(f, "store2", 65536);
        ChunkCodec *c2 = chunk_codec_new(s2);
        assert_int_equal(store_chunk_put_compressed(s2, c2, &id_rnd, wire, wlen), (int) wlen);
        free(wire);
        chunk_codec_free(c2);
        store_free(s2);

        /* fsck reads both kinds; a flipped byte of a raw chunk's bytes or of
         * its block header is caught, never read as data */
        Index *x;
        assert_int_equal(index_new(65536, 3 * 65536, &x), 0);
        x->ids[0] = id_rnd;
        x->ids[1] = id_text;
        x->ids[2] = id_old;
        void *ser;
        size_t slen;
        RoamId xid;
        assert_int_equal(index_serialize(x, &ser, &slen), 0);
        assert_int_equal(store_object_put(s, ser, slen, &xid), 0);
        assert_int_equal(store_ref_set(s, "images/t", &xid, NULL), 0);
        free(ser);
        index_free(x);
        FsckReport fr;
        assert_int_equal(store_fsck(s, NULL, NULL, NULL, &fr), 0);
        assert_true(fsck_report_ok(&fr));
        assert_int_equal(fr.chunks_referenced, 3);
        flip_chunk_byte(s, &id_rnd, CHUNK_FRAME_RAW_HEADER + 3 + 1000);
        size_t len;
        assert_int_equal(store_chunk_get(s, c, &id_rnd, out, &len), -EBADMSG);
        assert_int_equal(store_fsck(s, NULL, NULL, NULL, &fr), 0);
        assert_int_equal(fr.corrupt_chunks, 1);
        flip_chunk_byte(s, &id_rnd, CHUNK_FRAME_RAW_HEADER + 3 + 1000); /* back */
        assert_int_equal(store_chunk_get(s, c, &id_rnd, out, &len), 0);
        flip_chunk_byte(s, &id_rnd, CHUNK_FRAME_RAW_HEADER); /* block type: raw -> RLE */
        assert_int_equal(store_chunk_get(s, c, &id_rnd, out, &len), -EBADMSG);
        assert_int_equal(store_fsck(s, NULL, NULL, NULL, &fr), 0);
        assert_int_equal(fr.corrupt_chunks, 1);
        chunk_codec_free(c);
        store_free(s);
}

/* Seeded input of n chunks of cs bytes: random (stored raw), text
 * (compressed), zero, and repeats of earlier chunks. */
static char *make_input(Fixture *f, uint32_t cs, size_t n, uint8_t **ret_data) {
        uint8_t *data = calloc(n, cs);
        assert_non_null(data);
        for (size_t i = 0; i < n; i++) {
                uint8_t *p = data + i * cs;
                switch (rng() % 5) {
                case 0:
                        fill_random(p, cs);
                        break;
                case 1:
                case 2:
                        fill_text(p, cs);
                        break;
                case 3:
                        break; /* zero */
                case 4:
                        if (i > 0)
                                memcpy(p, data + (rng() % i) * cs, cs);
                        break;
                }
        }
        char *path = path_join(f->dir, "input.raw");
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, data, (size_t) n * cs), 0);
        close(fd);
        *ret_data = data;
        return path;
}

typedef struct Listing {
        RoamId *ids;
        uint64_t *sizes;
        size_t n, cap;
} Listing;

static int list_cb(const RoamId *id, uint64_t size, void *userdata) {
        Listing *l = userdata;
        if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 256;
                l->ids = realloc(l->ids, l->cap * sizeof *l->ids);
                l->sizes = realloc(l->sizes, l->cap * sizeof *l->sizes);
        }
        l->ids[l->n] = *id;
        l->sizes[l->n++] = size;
        return 0;
}

static int cmp_id_size(const void *a, const void *b) {
        return memcmp(a, b, ID_SIZE);
}

static void sorted_listing(Store *s, Listing *l) {
        *l = (Listing){ 0 };
        assert_int_equal(store_chunk_foreach(s, list_cb, l), 0);
        /* sizes travel with ids: sort pairs through an index */
        RoamId *ids = malloc((l->n ? l->n : 1) * sizeof *ids);
        memcpy(ids, l->ids, l->n * sizeof *ids);
        qsort(ids, l->n, sizeof *ids, cmp_id_size);
        uint64_t *sizes = malloc((l->n ? l->n : 1) * sizeof *sizes);
        for (size_t i = 0; i < l->n; i++) {
                uint64_t size;
                assert_int_equal(store_chunk_stat(s, &ids[i], &size), 0);
                sizes[i] = size;
        }
        free(l->ids);
        free(l->sizes);
        l->ids = ids;
        l->sizes = sizes;
}

/* The parallel import (every thread count, the committer publishing while
 * the workers run) stores exactly what one thread stores: the same index id,
 * the same chunk files with the same bytes; the blob comes back byte for byte. */
static void test_parallel_import_deterministic(void **state) {
        Fixture *f = *state;
        const uint32_t cs = 4096;
        const size_t n = 3000; /* past the committer's threshold at 4 KiB chunks */
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *in = make_input(f, cs, n, &data);
        static const unsigned threads[] = { 1, 2, 4, 7 };
        RoamId first_id = ID_NULL;
        Listing first = { 0 };
        for (size_t t = 0; t < ELEMENTSOF(threads); t++) {
                char name[32];
                snprintf(name, sizeof name, "s%u", threads[t]);
                Store *s = open_store(f, name, cs);
                int fd = open(in, O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                BlobOptions o = { .threads = threads[t] };
                RoamId id;
                BlobStats st;
                assert_int_equal(blob_import_fd(s, fd, (uint64_t) n * cs, &o, &id, &st), 0);
                close(fd);
                assert_int_equal(store_chunk_pending(s), 0);
                Listing l;
                sorted_listing(s, &l);
                /* two workers may store the same new content at once (same bytes,
                 * one name); one worker stores each new chunk once */
                if (threads[t] == 1)
                        assert_int_equal(st.new_chunks, l.n);
                else
                        assert_true(st.new_chunks >= l.n);
                if (t == 0) {
                        first_id = id;
                        first = l;
                        /* the blob comes back as it went in */
                        Index *x;
                        assert_int_equal(blob_load_index(s, &id, &x), 0);
                        _cleanup_free_ char *out = path_join(f->dir, "out.raw");
                        int ofd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                        assert_int_equal(blob_export_fd(s, x, ofd, NULL, NULL), 0);
                        _cleanup_free_ uint8_t *back = malloc((size_t) n * cs);
                        assert_int_equal(pread(ofd, back, (size_t) n * cs, 0), (ssize_t) n * cs);
                        assert_memory_equal(back, data, (size_t) n * cs);
                        close(ofd);
                        index_free(x);
                } else {
                        assert_true(id_equal(&id, &first_id));
                        assert_int_equal(l.n, first.n);
                        assert_memory_equal(l.ids, first.ids, l.n * sizeof *l.ids);
                        assert_memory_equal(l.sizes, first.sizes, l.n * sizeof *l.sizes);
                        free(l.ids);
                        free(l.sizes);
                }
                /* a second import finds everything */
                fd = open(in, O_RDONLY | O_CLOEXEC);
                assert_int_equal(blob_import_fd(s, fd, (uint64_t) n * cs, &o, &id, &st), 0);
                close(fd);
                assert_int_equal(st.new_chunks, 0);
                assert_true(id_equal(&id, &first_id));
                store_free(s);
        }
        free(first.ids);
        free(first.sizes);
}

typedef struct Stopper {
        volatile int *flag;
        unsigned after_us;
} Stopper;

static void *stop_later(void *arg) {
        Stopper *st = arg;
        usleep(st->after_us);
        *st->flag = 1;
        return NULL;
}

/* An import stopped while its workers and committer run (Ctrl-C) fails with
 * -ECANCELED and leaves the store consistent: what was published is
 * unreferenced (gc's), nothing pending stays behind as a temp file. */
static void test_parallel_import_cancel(void **state) {
        Fixture *f = *state;
        const uint32_t cs = 4096;
        const size_t n = 6000;
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *in = make_input(f, cs, n, &data);
        unsigned delays[] = { 0, 2000, 20000 };
        for (size_t k = 0; k < ELEMENTSOF(delays); k++) {
                char name[32];
                snprintf(name, sizeof name, "c%zu", k);
                Store *s = open_store(f, name, cs);
                volatile int stop = 0;
                Stopper sp = { .flag = &stop, .after_us = delays[k] };
                pthread_t t;
                assert_int_equal(pthread_create(&t, NULL, stop_later, &sp), 0);
                int fd = open(in, O_RDONLY | O_CLOEXEC);
                BlobOptions o = { .threads = 3, .cancel = &stop };
                RoamId id;
                int r = blob_import_fd(s, fd, (uint64_t) n * cs, &o, &id, NULL);
                close(fd);
                pthread_join(t, NULL);
                /* fast enough to finish first is fine; anything else is not */
                assert_true(r == 0 || r == -ECANCELED);
                _cleanup_free_ char *p = strdup(store_path(s));
                store_free(s);
                assert_int_equal(store_open(p, NULL, &s), 0);
                _cleanup_free_ char *tmp = path_join(p, "tmp");
                uint64_t stray = 99;
                assert_int_equal(store_stray_tmp(s, tmp, 0, false, &stray, NULL), 0);
                assert_int_equal(stray, 0);
                FsckReport fr;
                assert_int_equal(store_fsck(s, NULL, NULL, NULL, &fr), 0);
                assert_true(fsck_report_ok(&fr));
                assert_int_equal(fr.tmp_files, 0);
                store_free(s);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_raw_frame, setup, teardown),
                cmocka_unit_test_setup_teardown(test_store_raw_and_compressed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_import_deterministic, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_import_cancel, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
