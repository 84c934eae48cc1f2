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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/util.h"
#include "store/blob.h"
#include "store/bundle.h"
#include "store/fsck.h"
#include "store/index.h"
#include "store/manifest.h"
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

static void test_put_compressed_rejects_wrong_bytes(void **state) {
        Fixture *f = *state;
        ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t a[4096], b[4096];
        fill_random(a, sizeof a);
        fill_random(b, sizeof b);
        RoamId ida, idb;
        sha256(a, sizeof a, &ida);
        sha256(b, sizeof b, &idb);
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
        assert_int_equal(bundle_apply(s2, bpath, NULL, &bs), 0);
        RoamId got;
        assert_int_equal(store_ref_get(s2, "images/b", &got), 0);
        assert_true(id_equal(&got, &id));
        assert_int_equal(store_fsck(s2, NULL, NULL, NULL, &fr), 0);
        assert_true(fsck_report_ok(&fr));

        /* a flipped byte anywhere: refused, and no ref set */
        Store *s3;
        char *dir3 = path_join(f->dir, "store3");
        assert_int_equal(store_open(dir3, &o, &s3), 0);
        struct stat sb;
        assert_int_equal(stat(bpath, &sb), 0);
        corrupt_file(bpath, sb.st_size / 2);
        assert_int_equal(bundle_apply(s3, bpath, NULL, &bs), -EBADMSG);
        assert_int_equal(store_ref_get(s3, "images/b", &got), -ENOENT);
        /* truncated */
        assert_int_equal(truncate(bpath, sb.st_size - 40), 0);
        assert_int_equal(bundle_apply(s3, bpath, NULL, &bs), -EBADMSG);
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
        assert_int_equal(store_gc(s2, &g), 0);
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
        assert_int_equal(bundle_apply(s2, bpath, NULL, &bs), -ENOENT);
        RoamId got;
        assert_int_equal(store_ref_get(s2, "images/b", &got), -ENOENT);
        store_free(s2);
        free(dir2);
        free(bpath);
        free(a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_chunk_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_put_compressed_rejects_wrong_bytes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_objects, setup, teardown),
                cmocka_unit_test(test_index_format),
                cmocka_unit_test_setup_teardown(test_manifest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_blob_roundtrip_and_dedup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bundle_and_fsck, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bundle_since, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
