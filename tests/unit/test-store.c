/* SPDX-License-Identifier: MIT */
/* Unit tests for src/store: chunks, objects, refs, index, blobs, bundles,
 * fsck and gc, on a temp directory with seeded data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/util.h"
#include "store/blob.h"
#include "store/bundle.h"
#include "store/fresh.h"
#include "store/fsck.h"
#include "store/index.h"
#include "store/manifest.h"
#include "store/seen.h"
#include "store/store.h"

#define SEED 4242u

typedef struct Fixture {
        char dir[64];
        char *storedir;
        Store *s;
} Fixture;

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

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        strcpy(f->dir, "/tmp/roam-unit-store-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        f->storedir = path_join(f->dir, "store");
        StoreOptions o = { .create = true, .chunk_size = 4096 };
        if (store_open(f->storedir, &o, &f->s) < 0)
                return -1;
        rng_state = SEED;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        store_free(f->s);
        rm_rf(f->dir);
        free(f->storedir);
        free(f);
        return 0;
}

/* The fixture's store closed and opened again: a new process's view. */
static void reopen(Fixture *f) {
        store_free(f->s);
        assert_int_equal(store_open(f->storedir, &(StoreOptions){ 0 }, &f->s), 0);
}

static void corrupt_file(const char *path, off_t at) {
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x40;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
        close(fd);
}

static void chunk_path(Fixture *f, const RoamId *id, char *out, size_t n) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        snprintf(out, n, "%s/chunks/%.2s/%s", f->storedir, hex, hex);
}

static void test_chunk_roundtrip(void **state) {
        Fixture *f = *state;
        print_message("seed %u\n", SEED);
        ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t data[4096], out[4096];
        fill_random(data, sizeof data);
        RoamId id;
        sha256(data, sizeof data, &id);
        assert_int_equal(store_chunk_has(f->s, &id), 0);
        assert_true(store_chunk_put(f->s, c, &id, data, sizeof data) > 0);
        /* pending chunks count as present for dedup, but are not yet published */
        assert_int_equal(store_chunk_has(f->s, &id), 1);
        assert_int_equal(store_commit(f->s), 0);
        size_t len;
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &len), 0);
        assert_int_equal(len, sizeof data);
        assert_memory_equal(out, data, len);
        /* a flipped byte is an error that names the chunk, never wrong bytes */
        char p[512], hex[ID_HEX_SIZE];
        chunk_path(f, &id, p, sizeof p);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        corrupt_file(p, st.st_size - 2);
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &len), -EBADMSG);
        /* missing */
        unlink(p);
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &len), -ENOENT);
        (void) hex;
        chunk_codec_free(c);
}

/* Two pages of random bytes and their ids. */
static void random_pair(uint8_t a[static 4096], RoamId *ida, uint8_t b[static 4096], RoamId *idb) {
        fill_random(a, 4096);
        fill_random(b, 4096);
        sha256(a, 4096, ida);
        sha256(b, 4096, idb);
}

/* store_chunk_has() answers from memory for chunks it saw lately: a file
 * gone behind its back is still "here" for a few seconds (gc's grace is what
 * keeps files, not this); a removal through the store forgets at once, and a
 * store that never saw a chunk asks the file system. */
static void test_chunk_seen(void **state) {
        Fixture *f = *state;
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t a[4096], b[4096];
        RoamId ida, idb;
        random_pair(a, &ida, b, &idb);
        assert_true(store_chunk_put(f->s, c, &ida, a, sizeof a) > 0);
        assert_true(store_chunk_put(f->s, c, &idb, b, sizeof b) > 0);
        assert_int_equal(store_commit(f->s), 0);
        char pa[512], pb[512];
        chunk_path(f, &ida, pa, sizeof pa);
        chunk_path(f, &idb, pb, sizeof pb);
        assert_int_equal(unlink(pa), 0);
        assert_int_equal(store_chunk_has(f->s, &ida), 1); /* seen when written */
        /* a removal through the store forgets what it saw */
        assert_int_equal(store_chunk_remove(f->s, &idb), 0);
        assert_int_equal(store_chunk_has(f->s, &idb), 0);
        assert_int_equal(store_chunk_has(f->s, &ida), 0);
        /* a has() that found the file is remembered too */
        assert_true(store_chunk_put(f->s, c, &ida, a, sizeof a) > 0);
        assert_int_equal(store_commit(f->s), 0);
        reopen(f);
        assert_int_equal(store_chunk_has(f->s, &ida), 1);
        assert_int_equal(unlink(pa), 0);
        assert_int_equal(store_chunk_has(f->s, &ida), 1);
        reopen(f);
        assert_int_equal(store_chunk_has(f->s, &ida), 0);
}

/* what is in use stays, what is not goes, and no answer from memory is
 * older than the maximum age (plus two generations) */
static void test_seen_window(void **state) {
        (void) state;
        const uint64_t gen = (uint64_t) STORE_SEEN_S * 1000000000ULL,
                       max_age = (uint64_t) STORE_SEEN_MAX_AGE_S * 1000000000ULL, t0 = 1000 * max_age;
        Seen v;
        seen_init(&v);
        RoamId a, b, c;
        memset(&a, 1, sizeof a);
        memset(&b, 2, sizeof b);
        memset(&c, 3, sizeof c);
        seen_add_at(&v, &a, t0);
        assert_true(seen_has_at(&v, &a, t0));
        assert_false(seen_has_at(&v, &b, t0));
        assert_true(seen_has_at(&v, &a, t0 + gen - 1));
        assert_true(seen_has_at(&v, &a, t0 + gen + 1)); /* the previous generation */
        seen_add_at(&v, &b, t0 + gen + 2);
        assert_true(seen_has_at(&v, &a, t0 + gen + 3)); /* a rotation keeps its predecessor */
        /* in use: a stays generation after generation, until its lookup is
         * max_age old; then it is looked up again */
        uint64_t t = t0 + gen + 3;
        while (t + gen < t0 + max_age) {
                t += gen;
                assert_true(seen_has_at(&v, &a, t));
        }
        assert_false(seen_has_at(&v, &a, t0 + max_age + 2 * gen + 1));
        /* not in use: gone after two generations */
        t = t0 + max_age + 10 * gen;
        seen_add_at(&v, &c, t);
        assert_true(seen_has_at(&v, &b, t + 1) == false);
        assert_true(seen_has_at(&v, &c, t + gen + 1));
        assert_false(seen_has_at(&v, &a, t + gen + 1));
        seen_add_at(&v, &a, t + 2 * gen + 2); /* c was last used at t + gen + 1 */
        assert_true(seen_has_at(&v, &c, t + 2 * gen + 3));
        assert_true(seen_has_at(&v, &a, t + 3 * gen + 3));
        assert_false(seen_has_at(&v, &c, t + 4 * gen + 4)); /* not touched since t + 2 gen + 3 */
        seen_forget(&v);
        assert_false(seen_has_at(&v, &a, t + 4 * gen + 4));
        seen_done(&v);
}

/* A window of fresh chunks: what is stored in it is read back from memory
 * (even with its file gone), until the window closes or a removal. */
static void test_chunk_fresh(void **state) {
        Fixture *f = *state;
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t a[4096], b[4096], back[65536];
        RoamId ida, idb;
        size_t got;
        random_pair(a, &ida, b, &idb);
        assert_true(store_chunk_put(f->s, c, &ida, a, sizeof a) > 0); /* before the window */
        store_keep_fresh(f->s, 60);
        assert_true(store_chunk_put(f->s, c, &idb, b, sizeof b) > 0);
        assert_int_equal(store_commit(f->s), 0);
        char pa[512], pb[512];
        chunk_path(f, &ida, pa, sizeof pa);
        chunk_path(f, &idb, pb, sizeof pb);
        assert_int_equal(unlink(pa), 0);
        assert_int_equal(unlink(pb), 0);
        assert_true(store_chunk_get(f->s, c, &ida, back, &got) < 0);
        err_clear();
        assert_int_equal(store_chunk_get(f->s, c, &idb, back, &got), 0);
        assert_int_equal(got, sizeof b);
        assert_memory_equal(back, b, sizeof b);
        /* closed: from the store again */
        store_keep_fresh(f->s, 0);
        assert_true(store_chunk_get(f->s, c, &idb, back, &got) < 0);
        err_clear();
        /* a removal forgets what the window holds */
        store_keep_fresh(f->s, 60);
        assert_true(store_chunk_put(f->s, c, &idb, b, sizeof b) > 0);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_chunk_remove(f->s, &idb), 0);
        assert_true(store_chunk_get(f->s, c, &idb, back, &got) < 0);
        err_clear();
        store_keep_fresh(f->s, 0);
}

/* Store threads put the same chunks into a Fresh window at once: each is
 * kept once with its own bytes, the byte count is right, and no put goes
 * past FRESH_MAX_BYTES (the copies are made outside its lock). */
#define FRESH_TEST_IDS 64
#define FRESH_TEST_LEN (64u << 10)
#define FRESH_TEST_BIG (3u << 20)

typedef struct FreshRace {
        Fresh *fresh;
        uint8_t (*data)[FRESH_TEST_LEN];
        RoamId *id;
        int start; /* each thread its own order */
        const uint8_t *big;
} FreshRace;

static void *fresh_race(void *arg) {
        FreshRace *r = arg;
        for (int k = 0; k < FRESH_TEST_IDS; k++) {
                int i = (r->start + k * 7) % FRESH_TEST_IDS;
                fresh_put(r->fresh, &r->id[i], r->data[i], FRESH_TEST_LEN);
        }
        for (int k = 0; k < 32; k++) { /* 32 × 3 MiB × 4 threads: past the limit */
                RoamId big_id = { { 0xb1, (uint8_t) r->start, (uint8_t) k } };
                fresh_put(r->fresh, &big_id, r->big, FRESH_TEST_BIG);
        }
        return NULL;
}

static void fresh_race_check(size_t reserve_pieces) {
        Fresh fr;
        fresh_init(&fr);
        if (reserve_pieces > 0) {
                assert_int_equal(fresh_reserve(&fr, FRESH_TEST_LEN, reserve_pieces * FRESH_TEST_LEN), 0);
                assert_int_equal(fresh_reserve(&fr, FRESH_TEST_LEN, FRESH_TEST_LEN), -EBUSY);
                assert_int_equal(fresh_reserve_free(&fr), reserve_pieces);
        }
        fresh_open(&fr, 60);
        uint8_t (*data)[FRESH_TEST_LEN] = malloc((size_t) FRESH_TEST_IDS * FRESH_TEST_LEN);
        uint8_t *big = malloc(FRESH_TEST_BIG);
        RoamId id[FRESH_TEST_IDS];
        assert_non_null(data);
        assert_non_null(big);
        memset(big, 0x5a, FRESH_TEST_BIG);
        for (int i = 0; i < FRESH_TEST_IDS; i++) {
                fill_random(data[i], FRESH_TEST_LEN);
                sha256(data[i], FRESH_TEST_LEN, &id[i]);
        }
        pthread_t t[4];
        FreshRace r[4];
        for (int i = 0; i < 4; i++) {
                r[i] = (FreshRace){ .fresh = &fr, .data = data, .id = id, .start = i * 16, .big = big };
                assert_int_equal(pthread_create(&t[i], NULL, fresh_race, &r[i]), 0);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        /* every small one kept once, the big ones until the limit */
        assert_true(fr.bytes <= FRESH_MAX_BYTES);
        assert_true(fr.bytes + FRESH_TEST_BIG > FRESH_MAX_BYTES);
        size_t big_n = fr.n - FRESH_TEST_IDS;
        assert_int_equal(fr.bytes, (size_t) FRESH_TEST_IDS * FRESH_TEST_LEN + big_n * FRESH_TEST_BIG);
        static uint8_t back[FRESH_TEST_LEN];
        size_t got;
        for (int i = 0; i < FRESH_TEST_IDS; i++) {
                assert_int_equal(fresh_get(&fr, &id[i], back, sizeof back, &got), 1);
                assert_int_equal(got, FRESH_TEST_LEN);
                assert_memory_equal(back, data[i], FRESH_TEST_LEN);
        }
        /* the reserved pieces went to the first copies of small ones (the
         * big ones do not fit), the rest to malloc() */
        size_t left = reserve_pieces > FRESH_TEST_IDS ? reserve_pieces - FRESH_TEST_IDS : 0;
        assert_int_equal(fresh_reserve_free(&fr), left);
        fresh_open(&fr, 0); /* closed: forgets all, its pieces free again */
        assert_int_equal(fresh_get(&fr, &id[0], back, sizeof back, &got), 0);
        assert_int_equal(fr.bytes, 0);
        assert_int_equal(fresh_reserve_free(&fr), reserve_pieces);
        /* reused in the next window, as many as there are */
        fresh_open(&fr, 60);
        for (int i = 0; i < FRESH_TEST_IDS; i++)
                fresh_put(&fr, &id[i], data[i], FRESH_TEST_LEN);
        fresh_put(&fr, &id[0], data[1], FRESH_TEST_LEN); /* here already: not kept, its piece back */
        assert_int_equal(fresh_reserve_free(&fr), left);
        for (int i = 0; i < FRESH_TEST_IDS; i++) {
                assert_int_equal(fresh_get(&fr, &id[i], back, sizeof back, &got), 1);
                assert_memory_equal(back, data[i], FRESH_TEST_LEN);
        }
        fresh_done(&fr);
        free(data);
        free(big);
}

static void test_fresh_concurrent(void **state) {
        (void) state;
        fresh_race_check(0);
}

/* The same with memory reserved: half the small copies in its pieces, and
 * with more pieces than copies. */
static void test_fresh_reserved(void **state) {
        (void) state;
        fresh_race_check(FRESH_TEST_IDS / 2);
        fresh_race_check(FRESH_TEST_IDS * 2);
}

/* The names of the temp files in the store's tmp/, sorted, one per line, and
 * how many. */
static size_t tmp_names(Fixture *f, char *out, size_t cap) {
        _cleanup_free_ char *dir = path_join(f->storedir, "tmp");
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "ls -A '%s' | sort", dir);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(out, 1, cap - 1, p), lines = 0;
        out[n] = 0;
        pclose(p);
        for (size_t i = 0; i < n; i++)
                lines += out[i] == '\n';
        return lines;
}

static size_t wait_tmp_files(Fixture *f, size_t want, char *out, size_t cap) {
        size_t n = 0;
        for (int i = 0; i < 500 && (n = tmp_names(f, out, cap)) != want; i++)
                usleep(10000);
        return n;
}

/* The pool of empty temp files: chunk writes take them (no new file), it is
 * refilled once below half, never while a hand-over's window is open, a file
 * gone from it is passed over, and its files go with the store. */
static void test_tmp_pool(void **state) {
        Fixture *f = *state;
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        char before[4096], after[4096];
        assert_int_equal(store_tmp_pool(f->s, 8), 0);
        assert_int_equal(store_tmp_pool(f->s, 8), -EBUSY);
        assert_int_equal(wait_tmp_files(f, 8, before, sizeof before), 8);
        uint8_t d[4096];
        RoamId id;
        for (int i = 0; i < 3; i++) {
                fill_random(d, sizeof d);
                sha256(d, sizeof d, &id);
                assert_true(store_chunk_put(f->s, c, &id, d, sizeof d) > 0);
        }
        /* three pending: the pool's own files, none made */
        assert_int_equal(tmp_names(f, after, sizeof after), 8);
        assert_string_equal(after, before);
        assert_int_equal(store_commit(f->s), 0);
        usleep(100000);
        assert_int_equal(tmp_names(f, after, sizeof after), 5); /* 5 of 8: not below half */
        for (char *l = strtok(after, "\n"); l; l = strtok(NULL, "\n"))
                assert_non_null(strstr(before, l));
        /* a hand-over: below half, still nothing made */
        store_keep_fresh(f->s, 60);
        _cleanup_free_ char *tmpdir = path_join(f->storedir, "tmp");
        tmp_names(f, after, sizeof after);
        char gone[512];
        snprintf(gone, sizeof gone, "%s/%.*s", tmpdir, (int) strcspn(after, "\n"), after);
        assert_int_equal(unlink(gone), 0); /* removed behind its back */
        /* five puts empty it whatever the gone file's place in it: its four
         * files taken, the gone one passed over, a file of its own made */
        for (int i = 0; i < 5; i++) {
                fill_random(d, sizeof d);
                sha256(d, sizeof d, &id);
                assert_true(store_chunk_put(f->s, c, &id, d, sizeof d) > 0);
        }
        assert_int_equal(store_commit(f->s), 0);
        usleep(200000);
        assert_int_equal(tmp_names(f, after, sizeof after), 0);
        size_t got;
        uint8_t back[4096];
        assert_int_equal(store_chunk_get(f->s, c, &id, back, &got), 0);
        assert_memory_equal(back, d, sizeof d);
        /* the window closed: empty, it fills up to 8 again by itself (it
         * tries each second) */
        store_keep_fresh(f->s, 0);
        assert_int_equal(wait_tmp_files(f, 8, before, sizeof before), 8);
        /* full, it waits: the take that leaves it below half wakes it */
        for (int i = 0; i < 5; i++) {
                fill_random(d, sizeof d);
                sha256(d, sizeof d, &id);
                assert_true(store_chunk_put(f->s, c, &id, d, sizeof d) > 0);
        }
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(wait_tmp_files(f, 8, after, sizeof after), 8); /* else 3 */
        /* gone with the store */
        reopen(f);
        assert_int_equal(tmp_names(f, after, sizeof after), 0);
}

/* Published, for a completeness check: a pending chunk is not, a committed
 * one is, and stays answered from memory until a removal. */
static void test_chunk_published(void **state) {
        Fixture *f = *state;
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t a[4096], b[4096];
        RoamId ida, idb;
        random_pair(a, &ida, b, &idb);
        assert_true(store_chunk_put(f->s, c, &ida, a, sizeof a) > 0);
        assert_int_equal(store_chunk_published(f->s, &ida), 0);
        assert_int_equal(store_chunk_has(f->s, &ida), 1); /* pending counts there */
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_chunk_published(f->s, &ida), 1);
        char pa[512];
        chunk_path(f, &ida, pa, sizeof pa);
        assert_int_equal(unlink(pa), 0);
        assert_int_equal(store_chunk_published(f->s, &ida), 1); /* from memory */
        assert_true(store_chunk_put(f->s, c, &idb, b, sizeof b) > 0);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_chunk_remove(f->s, &idb), 0);
        assert_int_equal(store_chunk_published(f->s, &ida), 0);
        assert_int_equal(store_chunk_published(f->s, &idb), 0);
}

static void test_put_compressed_rejects_wrong_bytes(void **state) {
        Fixture *f = *state;
        ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t a[4096], b[4096];
        RoamId ida, idb;
        random_pair(a, &ida, b, &idb);
        assert_true(store_chunk_put(f->s, c, &ida, a, sizeof a) > 0);
        assert_int_equal(store_commit(f->s), 0);
        void *z;
        size_t zlen;
        assert_int_equal(store_chunk_get_compressed(f->s, c, &ida, &z, &zlen), 0);
        /* the bytes of a under the id of b must be refused */
        assert_int_equal(store_chunk_put_compressed(f->s, c, &idb, z, zlen), -EBADMSG);
        assert_int_equal(store_chunk_has(f->s, &idb), 0);
        /* garbage is refused */
        ((uint8_t *) z)[0] ^= 0xff;
        assert_int_equal(store_chunk_put_compressed(f->s, c, &ida, z, zlen), -EBADMSG);
        free(z);
        chunk_codec_free(c);
}

static void test_refs(void **state) {
        Fixture *f = *state;
        RoamId a, b, got;
        sha256("a", 1, &a);
        sha256("b", 1, &b);
        assert_int_equal(store_ref_get(f->s, "images/x", &got), -ENOENT);
        assert_int_equal(store_ref_set(f->s, "images/x", &a, &ID_NULL), 0);
        assert_int_equal(store_ref_get(f->s, "images/x", &got), 0);
        assert_true(id_equal(&got, &a));
        /* compare-and-swap */
        assert_int_equal(store_ref_set(f->s, "images/x", &b, &ID_NULL), -ESTALE);
        assert_int_equal(store_ref_set(f->s, "images/x", &b, &b), -ESTALE);
        assert_int_equal(store_ref_set(f->s, "images/x", &b, &a), 0);
        assert_int_equal(store_ref_get(f->s, "images/x", &got), 0);
        assert_true(id_equal(&got, &b));
        assert_int_equal(store_ref_set(f->s, "../evil", &a, NULL), -EINVAL);
        assert_int_equal(store_ref_set(f->s, "images/a b", &a, NULL), -EINVAL);
        /* a malformed ref file is reported as such */
        char p[512];
        snprintf(p, sizeof p, "%s/refs/images/bad", f->storedir);
        assert_int_equal(write_file_atomic(p, "garbage\n", 8, 0644), 0);
        assert_int_equal(store_ref_get(f->s, "images/bad", &got), -EBADMSG);
        assert_int_equal(store_ref_delete(f->s, "images/x"), 0);
        assert_int_equal(store_ref_get(f->s, "images/x", &got), -ENOENT);
        assert_int_equal(store_ref_delete(f->s, "images/x"), -ENOENT);
}

static void test_objects(void **state) {
        Fixture *f = *state;
        RoamId id;
        void *data;
        size_t len;
        assert_int_equal(store_object_put(f->s, "hello", 5, &id), 0);
        assert_int_equal(store_object_get(f->s, &id, 100, &data, &len), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(data, "hello", 5);
        free(data);
        char hex[ID_HEX_SIZE], p[512];
        id_to_hex(&id, hex);
        snprintf(p, sizeof p, "%s/objects/%.2s/%s", f->storedir, hex, hex);
        corrupt_file(p, 0);
        assert_int_equal(store_object_get(f->s, &id, 100, &data, &len), -EBADMSG);
}

static void test_index_format(void **state) {
        Index *x, *y;
        assert_int_equal(index_new(65536, 65536 * 3 + 100, &x), 0);
        assert_int_equal(x->n_chunks, 4);
        assert_int_equal(index_chunk_len(x, 3), 100);
        assert_int_equal(index_chunk_len(x, 0), 65536);
        sha256("c", 1, &x->ids[1]);
        void *b;
        size_t len;
        assert_int_equal(index_serialize(x, &b, &len), 0);
        assert_int_equal(len, INDEX_HEADER_SIZE + 4 * ID_SIZE);
        assert_int_equal(index_parse(b, len, &y), 0);
        assert_int_equal(y->blob_size, x->blob_size);
        assert_true(id_equal(&y->ids[1], &x->ids[1]));
        index_free(y);
        /* every truncation is refused */
        for (size_t n = 0; n < len; n++)
                assert_int_equal(index_parse(b, n, &y), -EBADMSG);
        /* chunk count that does not match the size */
        uint8_t *m = malloc(len);
        memcpy(m, b, len);
        put_le64(m + 24, 5);
        assert_int_equal(index_parse(m, len, &y), -EBADMSG);
        /* a chunk size that is not a power of two */
        memcpy(m, b, len);
        put_le32(m + 12, 65535);
        assert_int_equal(index_parse(m, len, &y), -EBADMSG);
        memcpy(m, b, len);
        put_le32(m + 8, 2);
        assert_int_equal(index_parse(m, len, &y), -EPROTONOSUPPORT);
        free(m);
        free(b);
        index_free(x);
}

static void test_manifest(void **state) {
        Fixture *f = *state;
        json_t *j = json_pack("{s:s, s:{s:s}}", "kind", "checkpoint", "objects", "ram",
                              "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        void *b;
        size_t len;
        assert_int_equal(manifest_serialize(j, &b, &len), 0);
        json_t *back;
        assert_int_equal(manifest_parse(b, len, &back), 0);
        assert_string_equal(json_string_value(json_object_get(back, "kind")), "checkpoint");
        json_decref(back);
        assert_int_equal(manifest_parse(b, len - 1, &back), -EBADMSG);
        free(b);
        json_decref(j);
        (void) f;
}

/* Writes a seeded test blob with holes, zero data, repeats and random data. */
static char *make_blob(Fixture *f, const char *name, size_t size, unsigned variant) {
        char *p = path_join(f->dir, name);
        int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) size), 0);
        uint8_t *buf = malloc(4096);
        for (size_t off = 0; off < size; off += 4096) {
                size_t n = MIN((size_t) 4096, size - off);
                unsigned k = (unsigned) ((off / 4096 + variant) % 5);
                if (k == 0)
                        continue; /* hole */
                if (k == 1)
                        memset(buf, 0, n);
                else if (k == 2)
                        memset(buf, 'r', n);
                else
                        fill_random(buf, n);
                assert_int_equal(loop_pwrite(fd, buf, n, off), 0);
        }
        free(buf);
        close(fd);
        return p;
}

static void import_file(Fixture *f, const char *path, RoamId *id, BlobStats *st) {
        int fd = open(path, O_RDONLY);
        struct stat s;
        assert_int_equal(fstat(fd, &s), 0);
        BlobOptions o = { .threads = 2 };
        assert_int_equal(blob_import_fd(f->s, fd, (uint64_t) s.st_size, &o, id, st), 0);
        close(fd);
}

static void assert_same_file(const char *a, const char *b) {
        char *x, *y;
        size_t lx, ly;
        assert_int_equal(read_full_file(a, 64 << 20, &x, &lx), 0);
        assert_int_equal(read_full_file(b, 64 << 20, &y, &ly), 0);
        assert_int_equal(lx, ly);
        assert_memory_equal(x, y, lx);
        free(x);
        free(y);
}

static void test_blob_roundtrip_and_dedup(void **state) {
        Fixture *f = *state;
        /* odd size: the last chunk is short */
        char *in = make_blob(f, "in.raw", 4096 * 200 + 1234, 0);
        RoamId id, id2;
        BlobStats st, st2;
        import_file(f, in, &id, &st);
        assert_int_equal(st.chunks, 201);
        assert_true(st.zero_chunks >= 80);
        /* importing the same file again stores nothing new */
        import_file(f, in, &id2, &st2);
        assert_true(id_equal(&id, &id2));
        assert_int_equal(st2.new_chunks, 0);

        Index *x;
        assert_int_equal(blob_load_index(f->s, &id, &x), 0);
        char *out = path_join(f->dir, "out.raw");
        int fd = open(out, O_CREAT | O_TRUNC | O_RDWR, 0644);
        assert_int_equal(blob_export_fd(f->s, x, fd, NULL, NULL), 0);
        close(fd);
        assert_same_file(in, out);
        index_free(x);
        free(in);
        free(out);
}

static int refuse_all(void *userdata, const char *envelope, const BundleRef *refs, size_t n) {
        assert_non_null(envelope);
        assert_int_equal(n, 1);
        assert_string_equal(refs[0].name, "images/b");
        return -EPERM;
}

static int allow_all(void *userdata, const char *envelope, const BundleRef *refs, size_t n) {
        return 0;
}

static void test_bundle_and_fsck(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "b.raw", 4096 * 64, 1);
        RoamId id;
        BlobStats st;
        import_file(f, in, &id, &st);
        assert_int_equal(store_ref_set(f->s, "images/b", &id, NULL), 0);
        FsckReport fr;
        assert_int_equal(store_fsck(f->s, NULL, NULL, NULL, &fr), 0);
        assert_true(fsck_report_ok(&fr));
        assert_int_equal(fr.unreferenced_chunks, 0);

        char *bpath = path_join(f->dir, "x.bundle");
        FILE *out = fopen(bpath, "w");
        char *refs[] = { "images/b" };
        BundleStats bs;
        assert_int_equal(bundle_create(f->s, refs, 1, NULL, 0, out, NULL, &bs), 0);
        fclose(out);
        assert_int_equal(bs.refs, 1);

        /* apply into a second store */
        char *dir2 = path_join(f->dir, "store2");
        StoreOptions o = { .create = true, .chunk_size = 4096 };
        Store *s2;
        assert_int_equal(store_open(dir2, &o, &s2), 0);
        assert_int_equal(bundle_apply(s2, bpath, NULL, NULL, &bs), 0);
        RoamId got;
        assert_int_equal(store_ref_get(s2, "images/b", &got), 0);
        assert_true(id_equal(&got, &id));
        assert_int_equal(store_fsck(s2, NULL, NULL, NULL, &fr), 0);
        assert_true(fsck_report_ok(&fr));

        /* with an envelope: read back; refused without a check; a check that
         * refuses stores nothing */
        char *epath = path_join(f->dir, "x.sync");
        BundleSpec spec = { .refs = refs, .n_refs = 1, .envelope = "{\"terms\": 1}" };
        assert_int_equal(bundle_write_file(f->s, &spec, epath, false, NULL, &bs), 0);
        assert_int_equal(bundle_write_file(f->s, &spec, epath, false, NULL, &bs), -EEXIST);
        assert_int_equal(bundle_write_file(f->s, &spec, f->dir, true, NULL, &bs), -EISDIR);
        FILE *ef = fopen(epath, "r");
        struct stat es;
        assert_int_equal(fstat(fileno(ef), &es), 0);
        BundleReader *br;
        BundleRecord rec;
        assert_int_equal(bundle_reader_new(ef, (uint64_t) es.st_size, &br), 0);
        assert_int_equal(bundle_reader_next(br, &rec), 1);
        assert_int_equal(rec.type, BUNDLE_ENVELOPE);
        assert_string_equal((const char *) rec.data, "{\"terms\": 1}");
        bundle_reader_free(br);
        fclose(ef);
        RoamId x_first_chunk = ID_NULL;
        Index *ix;
        assert_int_equal(blob_load_index(f->s, &id, &ix), 0);
        for (uint64_t k = 0; k < ix->n_chunks && id_is_null(&x_first_chunk); k++)
                x_first_chunk = ix->ids[k];
        index_free(ix);
        assert_false(id_is_null(&x_first_chunk));
        char *dir4 = path_join(f->dir, "store4");
        Store *s4;
        assert_int_equal(store_open(dir4, &o, &s4), 0);
        assert_int_equal(bundle_apply(s4, epath, NULL, NULL, &bs), -EINVAL);
        BundleApplyOptions refuse = { .check = refuse_all };
        assert_int_equal(bundle_apply(s4, epath, &refuse, NULL, &bs), -EPERM);
        assert_int_equal(store_ref_get(s4, "images/b", &got), -ENOENT);
        assert_int_equal(store_chunk_has(s4, &x_first_chunk), 0);
        BundleApplyOptions allow = { .check = allow_all };
        assert_int_equal(bundle_apply(s4, epath, &allow, NULL, &bs), 0);
        assert_int_equal(store_ref_get(s4, "images/b", &got), 0);
        assert_true(id_equal(&got, &id));
        store_free(s4);
        free(dir4);
        free(epath);

        /* a flipped byte anywhere: refused, and no ref set */
        Store *s3;
        char *dir3 = path_join(f->dir, "store3");
        assert_int_equal(store_open(dir3, &o, &s3), 0);
        struct stat sb;
        assert_int_equal(stat(bpath, &sb), 0);
        corrupt_file(bpath, sb.st_size / 2);
        assert_int_equal(bundle_apply(s3, bpath, NULL, NULL, &bs), -EBADMSG);
        assert_int_equal(store_ref_get(s3, "images/b", &got), -ENOENT);
        /* truncated */
        assert_int_equal(truncate(bpath, sb.st_size - 40), 0);
        assert_int_equal(bundle_apply(s3, bpath, NULL, NULL, &bs), -EBADMSG);
        assert_int_equal(store_ref_get(s3, "images/b", &got), -ENOENT);

        /* corrupt a referenced chunk: fsck sees it, gc refuses nothing but keeps it */
        Index *x;
        assert_int_equal(blob_load_index(f->s, &id, &x), 0);
        uint64_t i = 0;
        while (id_is_null(&x->ids[i]))
                i++;
        char p[512];
        chunk_path(f, &x->ids[i], p, sizeof p);
        corrupt_file(p, 5);
        assert_int_equal(store_fsck(f->s, NULL, NULL, NULL, &fr), 0);
        assert_false(fsck_report_ok(&fr));
        assert_int_equal(fr.corrupt_chunks, 1);
        index_free(x);

        /* gc removes only unreachable chunks */
        assert_int_equal(store_ref_delete(s2, "images/b"), 0);
        GcReport g;
        assert_int_equal(store_gc(s2, &(GcOptions){ .grace_s = 0 }, &g), 0);
        assert_true(g.chunks_removed > 0);
        assert_int_equal(store_fsck(s2, NULL, NULL, NULL, &fr), 0);
        assert_int_equal(fr.chunks_stored, 0);

        store_free(s2);
        store_free(s3);
        free(dir2);
        free(dir3);
        free(bpath);
        free(in);
}

static void test_bundle_since(void **state) {
        Fixture *f = *state;
        char *a = make_blob(f, "a.raw", 4096 * 50, 2);
        RoamId ida, idb;
        BlobStats st;
        import_file(f, a, &ida, &st);
        assert_int_equal(store_ref_set(f->s, "images/a", &ida, NULL), 0);
        /* b = a with a few changed blocks */
        int fd = open(a, O_WRONLY);
        uint8_t blk[4096];
        fill_random(blk, sizeof blk);
        assert_int_equal(loop_pwrite(fd, blk, sizeof blk, 4096 * 7), 0);
        close(fd);
        import_file(f, a, &idb, &st);
        assert_int_equal(st.new_chunks, 1);
        assert_int_equal(store_ref_set(f->s, "images/b", &idb, NULL), 0);

        char *bpath = path_join(f->dir, "delta.bundle");
        FILE *out = fopen(bpath, "w");
        char *refs[] = { "images/b" }, *since[] = { "images/a" };
        BundleStats bs;
        assert_int_equal(bundle_create(f->s, refs, 1, since, 1, out, NULL, &bs), 0);
        fclose(out);
        assert_int_equal(bs.chunks, 1);

        /* a store without the base refuses the delta */
        char *dir2 = path_join(f->dir, "store-nobase");
        StoreOptions o = { .create = true, .chunk_size = 4096 };
        Store *s2;
        assert_int_equal(store_open(dir2, &o, &s2), 0);
        assert_int_equal(bundle_apply(s2, bpath, NULL, NULL, &bs), -ENOENT);
        RoamId got;
        assert_int_equal(store_ref_get(s2, "images/b", &got), -ENOENT);
        store_free(s2);
        free(dir2);
        free(bpath);
        free(a);
}

/* ---- incremental import (fast hashes and a base) ---- */

/* Imports path with base (may be NULL); returns the new fast hashes. */
static BlobFast *import_base(Fixture *f, const char *path, const BlobBase *base, bool map, RoamId *id,
                             BlobStats *st) {
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        struct stat s;
        assert_int_equal(fstat(fd, &s), 0);
        BlobOptions o = { .threads = 2, .map = map };
        BlobFast *fast = NULL;
        assert_int_equal(blob_import_fd_base(f->s, fd, (uint64_t) s.st_size, &o, base, id, st, &fast), 0);
        close(fd);
        assert_non_null(fast);
        assert_true(id_equal(&fast->index_id, id));
        assert_int_equal(fast->blob_size, (uint64_t) s.st_size);
        return fast;
}

static BlobBase *base_of(Fixture *f, const BlobFast *fast) {
        BlobBase *b = NULL;
        assert_int_equal(blob_base_new(f->s, fast, &b), 0);
        assert_non_null(b);
        return b;
}

/* The id a plain (full) import gives: what every incremental import must give. */
static RoamId plain_id(Fixture *f, const char *path) {
        RoamId id;
        BlobStats st;
        import_file(f, path, &id, &st);
        return id;
}

static void write_block(const char *path, uint64_t block, uint8_t fill) {
        int fd = open(path, O_WRONLY);
        assert_true(fd >= 0);
        uint8_t blk[4096];
        if (fill)
                memset(blk, fill, sizeof blk);
        else
                fill_random(blk, sizeof blk);
        assert_int_equal(loop_pwrite(fd, blk, sizeof blk, block * 4096), 0);
        close(fd);
}

static void test_blob_base_unchanged(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "in.raw", 4096 * 100 + 777, 0);
        RoamId id0, id1, id2;
        BlobStats st0, st1, st2;
        BlobFast *f0 = import_base(f, in, NULL, false, &id0, &st0);
        RoamId want = plain_id(f, in);
        assert_true(id_equal(&id0, &want));
        assert_int_equal(f0->count, 101);
        assert_int_equal(st0.reused_chunks, 0);
        assert_int_equal(st0.hashed_chunks, st0.chunks - st0.zero_chunks);

        /* unchanged: same id, nothing hashed with SHA-256, nothing new; zero
         * chunks and holes stay zero */
        BlobBase *b0 = base_of(f, f0);
        BlobFast *f1 = import_base(f, in, b0, false, &id1, &st1);
        assert_true(id_equal(&id1, &id0));
        assert_int_equal(st1.new_chunks, 0);
        assert_int_equal(st1.hashed_chunks, 0);
        assert_int_equal(st1.zero_chunks, st0.zero_chunks);
        assert_int_equal(st1.reused_chunks, st0.chunks - st0.zero_chunks);
        /* the base's seed carries over, so the hashes are the same */
        assert_int_equal(f1->seed, f0->seed);
        assert_memory_equal(f1->hashes, f0->hashes, f0->count * BLOB_FAST_HASH_SIZE);
        /* the same through mmap */
        BlobFast *f2 = import_base(f, in, b0, true, &id2, &st2);
        assert_true(id_equal(&id2, &id0));
        assert_int_equal(st2.hashed_chunks, 0);
        assert_int_equal(st2.new_chunks, 0);
        blob_fast_free(f2);
        /* a result is a base in turn */
        BlobBase *b1 = base_of(f, f1);
        f2 = import_base(f, in, b1, false, &id2, &st2);
        assert_true(id_equal(&id2, &id0));
        assert_int_equal(st2.hashed_chunks, 0);
        blob_base_free(b0);
        blob_base_free(b1);
        blob_fast_free(f0);
        blob_fast_free(f1);
        blob_fast_free(f2);
        free(in);
}

static void test_blob_base_changes(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "in.raw", 4096 * 100, 0);
        RoamId id, want;
        BlobStats st;
        BlobFast *fast = import_base(f, in, NULL, false, &id, &st);
        for (int round = 0; round < 5; round++) {
                for (int map = 0; map <= 1; map++) {
                        /* blocks 3 and 4 are random data (variant 0), 5 a hole, 6 zeros */
                        uint64_t nz_before = st.chunks - st.zero_chunks;
                        if (round == 0)
                                write_block(in, 3, 0); /* one data chunk changes */
                        else if (round == 1)
                                write_block(in, 5 + 5 * (uint64_t) map, 0); /* a hole gets data */
                        else if (round == 2)
                                write_block(in, 6 + 5 * (uint64_t) map, 'z'); /* zero bytes get data */
                        else if (round == 3)
                                write_block(in, 4 + 5 * (uint64_t) map, 0x00 + 1); /* data -> repeated byte */
                        else {
                                /* data becomes zero */
                                int fd = open(in, O_WRONLY);
                                uint8_t z[4096] = { 0 };
                                assert_int_equal(loop_pwrite(fd, z, sizeof z, (13 + 5 * (uint64_t) map) * 4096), 0);
                                close(fd);
                        }
                        BlobBase *b = base_of(f, fast);
                        BlobStats st2;
                        BlobFast *next = import_base(f, in, b, map, &id, &st2);
                        want = plain_id(f, in);
                        assert_true(id_equal(&id, &want));
                        if (round < 4) {
                                assert_int_equal(st2.hashed_chunks, 1);
                                assert_true(st2.new_chunks <= 1);
                                assert_int_equal(st2.reused_chunks, nz_before - (round == 0 || round == 3));
                        } else {
                                assert_int_equal(st2.hashed_chunks, 0);
                                assert_int_equal(st2.zero_chunks, st.zero_chunks + 1);
                        }
                        if (round == 0 && map == 0)
                                assert_int_equal(st2.new_chunks, 1);
                        blob_base_free(b);
                        blob_fast_free(fast);
                        fast = next;
                        st = st2;
                }
        }
        /* the export of the last id is the file */
        Index *x;
        assert_int_equal(blob_load_index(f->s, &id, &x), 0);
        char *out = path_join(f->dir, "out.raw");
        int fd = open(out, O_CREAT | O_TRUNC | O_RDWR, 0644);
        assert_int_equal(blob_export_fd(f->s, x, fd, NULL, NULL), 0);
        close(fd);
        assert_same_file(in, out);
        index_free(x);
        blob_fast_free(fast);
        free(out);
        free(in);
}

static void test_blob_base_resized(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "in.raw", 4096 * 60 + 100, 1);
        RoamId id, want;
        BlobStats st, st2;
        BlobFast *fast = import_base(f, in, NULL, false, &id, &st);
        /* grown: the old short last chunk is now full and new chunks follow */
        int fd = open(in, O_WRONLY);
        uint8_t blk[4096 * 3];
        fill_random(blk, sizeof blk);
        assert_int_equal(loop_pwrite(fd, blk, sizeof blk, 4096 * 60 + 100), 0);
        close(fd);
        BlobBase *b = base_of(f, fast);
        BlobFast *grown = import_base(f, in, b, false, &id, &st2);
        want = plain_id(f, in);
        assert_true(id_equal(&id, &want));
        assert_int_equal(st2.chunks, 64);
        /* chunks 60..63 are new or changed; 0..59 come from the base */
        assert_int_equal(st2.hashed_chunks, 4);
        assert_int_equal(st2.reused_chunks, st.chunks - st.zero_chunks);
        blob_base_free(b);
        /* shrunk to an odd size: the new short last chunk is hashed, the rest reused */
        assert_int_equal(truncate(in, 4096 * 20 + 5), 0);
        b = base_of(f, grown);
        BlobFast *shrunk = import_base(f, in, b, true, &id, &st2);
        want = plain_id(f, in);
        assert_true(id_equal(&id, &want));
        assert_int_equal(st2.chunks, 21);
        assert_true(st2.hashed_chunks <= 1);
        assert_int_equal(st2.reused_chunks + st2.zero_chunks + st2.hashed_chunks, 21);
        blob_base_free(b);
        /* empty */
        assert_int_equal(truncate(in, 0), 0);
        b = base_of(f, shrunk);
        BlobFast *empty = import_base(f, in, b, false, &id, &st2);
        want = plain_id(f, in);
        assert_true(id_equal(&id, &want));
        assert_int_equal(empty->count, 0);
        blob_base_free(b);
        b = base_of(f, empty); /* a base of nothing is a base */
        blob_base_free(b);
        blob_fast_free(fast);
        blob_fast_free(grown);
        blob_fast_free(shrunk);
        blob_fast_free(empty);
        free(in);
}

static void test_blob_base_wrong(void **state) {
        Fixture *f = *state;
        char *a = make_blob(f, "a.raw", 4096 * 40, 0);
        char *bpath = make_blob(f, "b.raw", 4096 * 40, 3);
        RoamId ida, idb, id, want;
        BlobStats st;
        BlobFast *fa = import_base(f, a, NULL, false, &ida, &st);
        BlobFast *fb = import_base(f, bpath, NULL, false, &idb, &st);
        /* the base of another file: correct ids (it only equals where the
         * bytes are equal), just fewer reused chunks */
        BlobBase *ba = base_of(f, fa);
        BlobFast *x = import_base(f, bpath, ba, false, &id, &st);
        assert_true(id_equal(&id, &idb));
        want = plain_id(f, bpath);
        assert_true(id_equal(&id, &want));
        blob_fast_free(x);
        x = import_base(f, bpath, ba, true, &id, &st);
        assert_true(id_equal(&id, &idb));
        blob_fast_free(x);
        blob_base_free(ba);

        /* fast hashes of b paired with the index of a: refused */
        BlobFast forged = *fb;
        forged.index_id = ida;
        BlobBase *bad = NULL;
        assert_int_equal(blob_base_new(f->s, &forged, &bad), -EBADMSG);
        assert_null(bad);
        /* another seed: the hashes describe nothing */
        forged = *fa;
        forged.seed ^= 1;
        assert_int_equal(blob_base_new(f->s, &forged, &bad), -EBADMSG);
        /* another chunk count */
        forged = *fa;
        forged.count--;
        assert_int_equal(blob_base_new(f->s, &forged, &bad), -EBADMSG);
        /* an index that is not in the store */
        forged = *fa;
        forged.index_id.b[0] ^= 1;
        assert_int_equal(blob_base_new(f->s, &forged, &bad), -ENOENT);

        /* a chunk of the base is gone (gc): no base, never a dangling id */
        Index *xa;
        assert_int_equal(blob_load_index(f->s, &ida, &xa), 0);
        uint64_t i = 0;
        while (id_is_null(&xa->ids[i]))
                i++;
        char p[512];
        chunk_path(f, &xa->ids[i], p, sizeof p);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(blob_base_new(f->s, fa, &bad), -ENOENT);
        char *side = path_join(f->dir, "a.fast");
        assert_int_equal(blob_fast_save(fa, side), 0);
        bad = (BlobBase *) 1;
        assert_int_equal(blob_base_load(f->s, side, &bad), 0);
        assert_null(bad);
        index_free(xa);
        blob_fast_free(fa);
        blob_fast_free(fb);
        free(side);
        free(a);
        free(bpath);
}

static void test_blob_fast_format(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "in.raw", 4096 * 30 + 1, 2);
        RoamId id;
        BlobStats st;
        BlobFast *fast = import_base(f, in, NULL, false, &id, &st);
        void *data;
        size_t len;
        assert_int_equal(blob_fast_serialize(fast, &data, &len), 0);
        assert_int_equal(len, 72 + 31 * 16 + 32);
        BlobFast *back;
        assert_int_equal(blob_fast_parse(data, len, &back), 0);
        assert_true(id_equal(&back->index_id, &fast->index_id));
        assert_int_equal(back->seed, fast->seed);
        assert_int_equal(back->count, fast->count);
        assert_int_equal(back->blob_size, fast->blob_size);
        assert_memory_equal(back->hashes, fast->hashes, fast->count * BLOB_FAST_HASH_SIZE);
        blob_fast_free(back);
        /* every flipped byte and every truncation is refused */
        uint8_t *b = data;
        for (size_t k = 0; k < len; k++) {
                b[k] ^= 0x10;
                back = NULL;
                int r = blob_fast_parse(data, len, &back);
                assert_true(r == -EBADMSG || r == -EPROTONOSUPPORT);
                assert_null(back);
                b[k] ^= 0x10;
        }
        for (size_t n = 0; n < len; n += 7)
                assert_int_equal(blob_fast_parse(data, n, &back), -EBADMSG);

        /* sidecar file: save, load, base; missing or garbage = no base */
        char *side = path_join(f->dir, "in.fast");
        BlobBase *base = (BlobBase *) 1;
        assert_int_equal(blob_base_load(f->s, side, &base), 0);
        assert_null(base);
        assert_int_equal(blob_fast_load(side, &back), -ENOENT);
        assert_int_equal(blob_fast_save(fast, side), 0);
        assert_int_equal(blob_fast_load(side, &back), 0);
        blob_fast_free(back);
        assert_int_equal(blob_base_load(f->s, side, &base), 0);
        assert_non_null(base);
        RoamId id2;
        BlobFast *next = import_base(f, in, base, false, &id2, &st);
        assert_true(id_equal(&id2, &id));
        assert_int_equal(st.hashed_chunks, 0);
        blob_base_free(base);
        blob_fast_free(next);
        assert_int_equal(write_file_atomic(side, data, len / 2, 0644), 0);
        base = (BlobBase *) 1;
        assert_int_equal(blob_base_load(f->s, side, &base), 0);
        assert_null(base);
        free(data);
        free(side);
        blob_fast_free(fast);
        free(in);
}

/* The two halves of an import around a pause: what begin read is what the
 * index holds, whatever the file becomes before finish. */
static void test_blob_import_two_phase(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "in.raw", 4096 * 80, 0);
        RoamId id, want;
        BlobStats st;
        BlobFast *fast = import_base(f, in, NULL, false, &id, &st);
        for (int cap = 0; cap <= 2; cap++) {
                write_block(in, 3, 0);
                write_block(in, 8, 0);
                write_block(in, 40, 0);
                /* the bytes begin sees */
                char *snap = path_join(f->dir, "snap.raw");
                char *data;
                size_t len;
                assert_int_equal(read_full_file(in, 1 << 20, &data, &len), 0);
                assert_int_equal(write_file_atomic(snap, data, len, 0644), 0);
                free(data);

                BlobBase *b = base_of(f, fast);
                int fd = open(in, O_RDONLY);
                /* cap 0: every copy fits; 1: room for one, the rest stored at
                 * once; 2: no copies (stored at once, the file changes after) */
                BlobOptions o = { .threads = 2, .map = true, .capture_max = cap == 0 ? 1 << 20 : cap == 1 ? 4096 : 0 };
                BlobPending *p = NULL;
                assert_int_equal(blob_import_fd_begin(f->s, fd, 4096 * 80, &o, b, &p), 0);
                close(fd);
                /* the guest runs again */
                write_block(in, 3, 0);
                write_block(in, 8, 'q');
                write_block(in, 41, 0);
                BlobFast *next = NULL;
                assert_int_equal(blob_import_finish(p, &id, &st, &next), 0);
                blob_pending_free(p);
                assert_int_equal(st.hashed_chunks, 3);
                assert_int_equal(st.new_chunks, 3);
                want = plain_id(f, snap);
                assert_true(id_equal(&id, &want));
                assert_int_equal(st.reused_chunks + st.zero_chunks + 3, 80);
                assert_true(id_equal(&next->index_id, &id));
                /* its fast hashes describe the bytes begin saw */
                BlobBase *nb = base_of(f, next);
                RoamId id2;
                BlobFast *again = import_base(f, snap, nb, false, &id2, &st);
                assert_true(id_equal(&id2, &want));
                assert_int_equal(st.hashed_chunks, 0);
                blob_fast_free(again);
                blob_base_free(nb);
                blob_base_free(b);
                blob_fast_free(fast);
                fast = next;
                /* continue from what the file is now */
                blob_fast_free(fast);
                fast = import_base(f, in, NULL, false, &id, &st);
                free(snap);
        }
        /* an import begun and never finished: nothing referenced, no leak */
        BlobBase *b = base_of(f, fast);
        write_block(in, 5, 0);
        int fd = open(in, O_RDONLY);
        BlobPending *p = NULL;
        assert_int_equal(blob_import_fd_begin(f->s, fd, 4096 * 80, NULL, b, &p), 0);
        close(fd);
        blob_pending_free(p);
        blob_base_free(b);
        blob_fast_free(fast);
        free(in);
}

/* blob_patch_fd(): a file holding blob A becomes blob B, whatever changed
 * between them (data, data -> zero, zero -> data, the size both ways), and
 * only the chunks that differ are written. */
static void export_id(Fixture *f, const RoamId *id, const char *path) {
        Index *x;
        assert_int_equal(blob_load_index(f->s, id, &x), 0);
        int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
        assert_true(fd >= 0);
        assert_int_equal(blob_export_fd(f->s, x, fd, NULL, NULL), 0);
        close(fd);
        index_free(x);
}

static void patch_and_check(Fixture *f, const RoamId *from, const char *to_file, uint64_t want_written) {
        RoamId to;
        BlobStats st;
        import_file(f, to_file, &to, &st);
        Index *a, *b;
        assert_int_equal(blob_load_index(f->s, from, &a), 0);
        assert_int_equal(blob_load_index(f->s, &to, &b), 0);
        char *out = path_join(f->dir, "patched.raw");
        export_id(f, from, out);
        int fd = open(out, O_RDWR);
        BlobStats ps;
        assert_int_equal(blob_patch_fd(f->s, a, b, fd, &ps), 0);
        close(fd);
        assert_same_file(to_file, out);
        if (want_written != UINT64_MAX)
                assert_int_equal(ps.chunks, want_written);
        index_free(a);
        index_free(b);
        free(out);
}

static void test_blob_patch(void **state) {
        Fixture *f = *state;
        char *in = make_blob(f, "in.raw", 4096 * 64 + 100, 2);
        RoamId a;
        BlobStats st;
        import_file(f, in, &a, &st);
        /* the same blob: nothing to write */
        patch_and_check(f, &a, in, 0);
        /* (variant 2: block 3 a hole, 5 repeated bytes, 6 random) a hole gets data, a
         * data chunk changes, a data chunk becomes zero */
        write_block(in, 3, 'x');
        write_block(in, 6, 'y');
        int fd = open(in, O_WRONLY);
        uint8_t z[4096] = { 0 };
        assert_int_equal(loop_pwrite(fd, z, sizeof z, 5 * 4096), 0);
        close(fd);
        patch_and_check(f, &a, in, 3);
        /* it grows by chunks and bytes, and shrinks to a short last chunk */
        fd = open(in, O_WRONLY);
        assert_int_equal(ftruncate(fd, 4096 * 70 + 7), 0);
        close(fd);
        write_block(in, 68, 'g');
        patch_and_check(f, &a, in, UINT64_MAX);
        fd = open(in, O_WRONLY);
        assert_int_equal(ftruncate(fd, 4096 * 10 + 5), 0);
        close(fd);
        patch_and_check(f, &a, in, UINT64_MAX);
        /* a chunk the store lost: an error from the worker that met it, naming it */
        write_block(in, 20, 'm');
        write_block(in, 40, 'n');
        RoamId c;
        import_file(f, in, &c, &st);
        Index *ia, *ic;
        assert_int_equal(blob_load_index(f->s, &a, &ia), 0);
        assert_int_equal(blob_load_index(f->s, &c, &ic), 0);
        assert_int_equal(store_chunk_remove(f->s, &ic->ids[40]), 0);
        char *out = path_join(f->dir, "patched.raw"), hex[ID_HEX_SIZE];
        export_id(f, &a, out);
        fd = open(out, O_RDWR);
        assert_int_equal(blob_patch_fd(f->s, ia, ic, fd, NULL), -ENOENT);
        assert_non_null(strstr(err_message(-ENOENT), id_to_hex(&ic->ids[40], hex)));
        close(fd);
        free(out);
        index_free(ia);
        index_free(ic);
        /* chunk sizes must match the store's */
        Index *x, *y;
        assert_int_equal(blob_load_index(f->s, &a, &x), 0);
        assert_int_equal(index_new(8192, 8192, &y), 0);
        fd = open(in, O_RDWR);
        assert_true(blob_patch_fd(f->s, x, y, fd, NULL) < 0);
        close(fd);
        index_free(x);
        index_free(y);
        free(in);
}

/* Stray temp files: in use while locked, young ones and those of a running
 * store writer are not stray; gc-style removal takes the rest. */
static void test_stray_tmp(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *tmpdir = path_join(f->dir, "tmp"), *p = NULL, *q = NULL;
        assert_int_equal(mkdir_p(tmpdir, 0700), 0);
        int fd = tmpfile_create(tmpdir, &p);
        assert_true(fd >= 0);
        struct timespec old[2] = { { .tv_sec = time(NULL) - 3600 }, { .tv_sec = time(NULL) - 3600 } };
        assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
        uint64_t n = 99, bytes;
        assert_int_equal(store_stray_tmp(f->s, f->dir, STORE_TMP_MIN_AGE_S, false, &n, NULL), 0);
        assert_int_equal(n, 0); /* locked: in use */
        close(fd);
        assert_int_equal(store_stray_tmp(f->s, f->dir, STORE_TMP_MIN_AGE_S, false, &n, &bytes), 0);
        assert_int_equal(n, 1);

        /* a young closed file (a store writer's pending chunk) */
        fd = tmpfile_create(tmpdir, &q);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(store_stray_tmp(f->s, f->dir, STORE_TMP_MIN_AGE_S, false, &n, NULL), 0);
        assert_int_equal(n, 1);

        /* ... stays while another process that holds the store lock runs */
        int pipefd[2];
        assert_int_equal(pipe(pipefd), 0);
        struct timespec now[2] = { { .tv_sec = time(NULL) + 5 }, { .tv_sec = time(NULL) + 5 } };
        assert_int_equal(utimensat(AT_FDCWD, q, now, 0), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                Store *s;
                char c = store_open(f->storedir, NULL, &s) >= 0 && store_lock(s, false, false) >= 0;
                (void) !write(pipefd[1], &c, 1);
                pause();
                _exit(0);
        }
        char c = 0;
        assert_int_equal(read(pipefd[0], &c, 1), 1);
        assert_int_equal(c, 1);
        assert_int_equal(store_stray_tmp(f->s, f->dir, 0, false, &n, NULL), 0);
        assert_int_equal(n, 1); /* q is younger than the lock holder */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(pipefd[0]);
        close(pipefd[1]);
        assert_int_equal(store_stray_tmp(f->s, f->dir, 0, true, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_int_equal(access(p, F_OK), -1);
        assert_int_equal(access(q, F_OK), -1);
}

static void set_mtime(const char *path, time_t t) {
        struct timespec ts[2] = { { .tv_sec = t }, { .tv_sec = t } };
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static time_t mtime_of(const char *path) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return st.st_mtime;
}

static void object_path(Fixture *f, const RoamId *id, char *out, size_t n) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        snprintf(out, n, "%s/objects/%.2s/%s", f->storedir, hex, hex);
}

/* The grace rule: an unreferenced chunk or object younger than the grace is
 * kept; a writer's dedup hit (has, put of an existing object) makes an old
 * one young; grace 0 keeps nothing unreferenced; nothing referenced ever goes. */
static void test_gc_grace(void **state) {
        Fixture *f = *state;
        GcOptions hour = { .grace_s = 3600 };
        time_t now = 1700000000;
        assert_false(gc_is_young(&hour, now, now - 3600));
        assert_true(gc_is_young(&hour, now, now - 3599));
        assert_true(gc_is_young(&hour, now, now + 60)); /* from the future: kept */
        assert_false(gc_is_young(&(GcOptions){ 0 }, now, now));

        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t buf[4096];
        RoamId ids[4];
        char path[4][512];
        for (int i = 0; i < 4; i++) {
                fill_random(buf, sizeof buf);
                sha256(buf, sizeof buf, &ids[i]);
                assert_true(store_chunk_put(f->s, c, &ids[i], buf, sizeof buf) > 0);
                chunk_path(f, &ids[i], path[i], sizeof path[i]);
        }
        assert_int_equal(store_commit(f->s), 0);
        /* a referenced blob: kept whatever the grace */
        char in[512];
        snprintf(in, sizeof in, "%s/in.raw", f->dir);
        fill_random(buf, sizeof buf);
        assert_int_equal(write_file_atomic(in, buf, sizeof buf, 0644), 0);
        int fd = open(in, O_RDONLY);
        assert_true(fd >= 0);
        RoamId blob;
        assert_int_equal(blob_import_fd(f->s, fd, sizeof buf, &(BlobOptions){ 0 }, &blob, NULL), 0);
        close(fd);
        assert_int_equal(store_ref_set(f->s, "images/kept", &blob, NULL), 0);
        char bpath[512];
        object_path(f, &blob, bpath, sizeof bpath);
        set_mtime(bpath, time(NULL) - 7200);

        /* two unreferenced objects, both old */
        RoamId o1, o2;
        char p1[512], p2[512];
        assert_int_equal(store_object_put(f->s, "old object", 10, &o1), 0);
        assert_int_equal(store_object_put(f->s, "deduped object", 14, &o2), 0);
        object_path(f, &o1, p1, sizeof p1);
        object_path(f, &o2, p2, sizeof p2);

        time_t old = time(NULL) - 7200;
        set_mtime(path[0], old); /* old: goes */
        /* path[1] stays new: kept */
        set_mtime(path[2], old); /* old, then a writer's dedup hit: kept */
        set_mtime(path[3], time(NULL) - 30); /* 30 s: a hit leaves it be (STORE_TOUCH_S) */
        set_mtime(p1, old);
        set_mtime(p2, old);
        /* the mtimes above play an hour gone by: a store opened now has seen
         * none of these chunks lately (the one that wrote them would still
         * answer from memory for a few seconds) */
        reopen(f);
        assert_int_equal(store_chunk_has(f->s, &ids[2]), 1);
        assert_true(mtime_of(path[2]) >= time(NULL) - 5);
        time_t t3 = mtime_of(path[3]);
        assert_int_equal(store_chunk_has(f->s, &ids[3]), 1);
        assert_int_equal(mtime_of(path[3]), t3);
        RoamId again;
        assert_int_equal(store_object_put(f->s, "deduped object", 14, &again), 0);
        assert_true(id_equal(&again, &o2));
        assert_true(mtime_of(p2) >= time(NULL) - 5);

        GcReport g;
        assert_int_equal(store_gc(f->s, &hour, &g), 0);
        assert_int_equal(g.chunks_removed, 1);
        assert_int_equal(g.chunks_young, 3);
        assert_int_equal(g.objects_removed, 1);
        assert_int_equal(g.objects_young, 1);
        assert_int_equal(access(path[0], F_OK), -1);
        assert_int_equal(access(path[1], F_OK), 0);
        assert_int_equal(access(path[2], F_OK), 0);
        assert_int_equal(access(p1, F_OK), -1);
        assert_int_equal(access(p2, F_OK), 0);

        /* a clock given by the caller: two hours on, they are all old */
        assert_int_equal(store_gc(f->s, &(GcOptions){ .grace_s = 3600, .now = time(NULL) + 7200 }, &g), 0);
        assert_int_equal(g.chunks_removed, 3);
        assert_int_equal(g.objects_removed, 1);
        assert_int_equal(g.chunks_young + g.objects_young, 0);

        /* grace 0: nothing unreferenced is left, the referenced blob is whole */
        assert_int_equal(store_object_put(f->s, "new object", 10, &o1), 0);
        assert_int_equal(store_gc(f->s, &(GcOptions){ .grace_s = 0 }, &g), 0);
        assert_int_equal(g.objects_removed, 1);
        FsckReport fr;
        assert_int_equal(store_fsck(f->s, NULL, NULL, NULL, &fr), 0);
        assert_true(fsck_report_ok(&fr));
        assert_int_equal(fr.unreferenced_chunks + fr.unreferenced_objects, 0);
        assert_int_equal(fr.chunks_stored, fr.chunks_referenced);
        assert_true(fr.chunks_referenced > 0);
}

typedef struct Bracket {
        Store *s;
        sem_t held, release;
} Bracket;

/* A writer's bracket in a thread of its own, open until it is told. */
static void *hold_bracket(void *p) {
        Bracket *b = p;
        store_write_begin(b->s);
        sem_post(&b->held);
        usleep(100 * 1000);
        while (sem_wait(&b->release) < 0 && errno == EINTR)
                ;
        usleep(100 * 1000); /* exclude() waits meanwhile */
        store_write_end(b->s);
        return NULL;
}

/* The write gate: gc waits for open brackets, or gives up in time. */
static void test_write_gate(void **state) {
        Fixture *f = *state;
        store_write_begin(f->s);
        store_write_begin(f->s); /* nests */
        assert_int_equal(store_write_exclude(f->s, 10), -EDEADLK);
        store_write_end(f->s);
        store_write_end(f->s);
        assert_int_equal(store_write_exclude(f->s, 10), 0);
        store_write_allow(f->s);

        Bracket b = { .s = f->s };
        assert_int_equal(sem_init(&b.held, 0, 0), 0);
        assert_int_equal(sem_init(&b.release, 0, 0), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, hold_bracket, &b), 0);
        while (sem_wait(&b.held) < 0 && errno == EINTR)
                ;
        assert_int_equal(store_write_exclude(f->s, 20), -EBUSY);
        sem_post(&b.release);
        assert_int_equal(store_write_exclude(f->s, 60000), 0); /* after the bracket ends */
        store_write_allow(f->s);
        pthread_join(t, NULL);
        sem_destroy(&b.held);
        sem_destroy(&b.release);
}

/* An import asked to stop fails with -ECANCELED and leaves no temp file. */
static void test_blob_import_cancel(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *path = path_join(f->dir, "in.raw"), *tmp = path_join(f->storedir, "tmp");
        size_t len = 64 * 4096;
        _cleanup_free_ uint8_t *in = malloc(len);
        fill_random(in, len);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, in, len), 0);
        volatile int stop = 1;
        BlobOptions o = { .cancel = &stop };
        RoamId id;
        assert_int_equal(blob_import_fd(f->s, fd, len, &o, &id, NULL), -ECANCELED);
        close(fd);
        uint64_t n = 99;
        assert_int_equal(store_stray_tmp(f->s, tmp, 0, false, &n, NULL), 0);
        assert_int_equal(n, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_chunk_roundtrip, setup, teardown),
                cmocka_unit_test(test_seen_window),
                cmocka_unit_test_setup_teardown(test_chunk_fresh, setup, teardown),
                cmocka_unit_test(test_fresh_concurrent),
                cmocka_unit_test(test_fresh_reserved),
                cmocka_unit_test_setup_teardown(test_tmp_pool, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chunk_published, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chunk_seen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_put_compressed_rejects_wrong_bytes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_objects, setup, teardown),
                cmocka_unit_test(test_index_format),
                cmocka_unit_test_setup_teardown(test_manifest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_roundtrip_and_dedup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bundle_and_fsck, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bundle_since, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_base_unchanged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_base_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_base_resized, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_base_wrong, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_fast_format, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_import_two_phase, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_patch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stray_tmp, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_import_cancel, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_grace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_gate, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
