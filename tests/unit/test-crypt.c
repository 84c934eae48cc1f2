/* SPDX-License-Identifier: MIT */
/* Unit tests for encryption at rest: key derivation, names, chunk seal and
 * open, the key files (passphrase, wrap to the home key), and an encrypted
 * store end to end (what is on its disk, wrong key, tampering, fsck, gc). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "crypto/data-key.h"
#include "crypto/home-keys.h"
#include "crypto/key-file.h"
#include "store/fsck.h"
#include "store/store.h"

#define SEED 1313u
#define CHUNK 4096

static uint64_t rng_state;
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

static void key_of(uint8_t seed, uint8_t dk[static DATA_KEY_SIZE]) {
        for (size_t i = 0; i < DATA_KEY_SIZE; i++)
                dk[i] = (uint8_t) (seed * 31 + i);
}

static DataKeys *keys_of(uint8_t seed) {
        uint8_t dk[DATA_KEY_SIZE];
        key_of(seed, dk);
        DataKeys *k = NULL;
        assert_int_equal(data_keys_new(dk, &k), 0);
        return k;
}

/* ---- derivation and names ---- */

static void test_derivation(void **state) {
        (void) state;
        _cleanup_(data_keys_freep) DataKeys *a = keys_of(1), *a2 = keys_of(1), *b = keys_of(2);
        uint8_t ca[DATA_KEY_CHECK_SIZE], ca2[DATA_KEY_CHECK_SIZE], cb[DATA_KEY_CHECK_SIZE];
        data_keys_check(a, ca);
        data_keys_check(a2, ca2);
        data_keys_check(b, cb);
        assert_memory_equal(ca, ca2, sizeof ca); /* deterministic */
        assert_memory_not_equal(ca, cb, sizeof ca);
        /* RFC 5869 test case 1 */
        uint8_t ikm[22], salt[13], okm[42];
        memset(ikm, 0x0b, sizeof ikm);
        for (size_t i = 0; i < sizeof salt; i++)
                salt[i] = (uint8_t) i;
        /* info 0xf0..0xf9 */
        char info[11];
        for (size_t i = 0; i < 10; i++)
                info[i] = (char) (0xf0 + i);
        info[10] = 0;
        assert_int_equal(hkdf_sha256(ikm, sizeof ikm, salt, sizeof salt, info, okm, sizeof okm), 0);
        static const uint8_t want[8] = { 0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a };
        assert_memory_equal(okm, want, sizeof want);
}

static void test_names(void **state) {
        (void) state;
        rng_state = SEED;
        _cleanup_(data_keys_freep) DataKeys *a = keys_of(1), *b = keys_of(2);
        for (int i = 0; i < 200; i++) {
                RoamId id, n1, n2, nb, back;
                fill_random(id.b, sizeof id.b);
                assert_int_equal(data_keys_name(a, &id, &n1), 0);
                assert_int_equal(data_keys_name(a, &id, &n2), 0);
                assert_true(id_equal(&n1, &n2)); /* deterministic: lookups and dedup */
                assert_false(id_equal(&n1, &id));
                assert_int_equal(data_keys_name(b, &id, &nb), 0);
                assert_false(id_equal(&n1, &nb)); /* another user: another name */
                assert_int_equal(data_keys_unname(a, &n1, &back), 0);
                assert_true(id_equal(&back, &id));
                /* one bit of the id changes both halves of the name */
                RoamId id2 = id, m;
                id2.b[31] ^= 1;
                assert_int_equal(data_keys_name(a, &id2, &m), 0);
                assert_memory_not_equal(m.b, n1.b, 16);
                assert_memory_not_equal(m.b + 16, n1.b + 16, 16);
        }
}

/* ---- seal and open ---- */

static void test_seal_open(void **state) {
        (void) state;
        rng_state = SEED;
        _cleanup_(data_keys_freep) DataKeys *a = keys_of(1), *b = keys_of(2);
        _cleanup_(seal_ctx_freep) SealCtx *c = seal_ctx_new();
        assert_non_null(c);
        uint8_t plain[5000], sealed[5000 + SEAL_OVERHEAD], sealed2[5000 + SEAL_OVERHEAD], out[5000];
        fill_random(plain, sizeof plain);
        RoamId id, other;
        sha256(plain, sizeof plain, &id);
        other = id;
        other.b[0] ^= 1;
        size_t n, n2, m;
        assert_int_equal(seal(a, c, SEAL_CHUNK, &id, plain, sizeof plain, sealed, sizeof sealed, &n), 0);
        assert_int_equal(n, sizeof plain + SEAL_OVERHEAD);
        assert_memory_equal(sealed, SEAL_MAGIC, 4);
        assert_null(memmem(sealed, n, plain, 32)); /* nothing plain */
        assert_int_equal(unseal(a, c, SEAL_CHUNK, &id, sealed, n, out, sizeof out, &m), 0);
        assert_int_equal(m, sizeof plain);
        assert_memory_equal(out, plain, m);
        /* a new nonce each time (no key and nonce pair twice) */
        assert_int_equal(seal(a, NULL, SEAL_CHUNK, &id, plain, sizeof plain, sealed2, sizeof sealed2, &n2), 0);
        assert_memory_not_equal(sealed + 8, sealed2 + 8, SEAL_NONCE_SIZE);
        /* wrong key, wrong id, wrong kind: refused */
        assert_int_equal(unseal(b, c, SEAL_CHUNK, &id, sealed, n, out, sizeof out, &m), -EBADMSG);
        assert_int_equal(unseal(a, c, SEAL_CHUNK, &other, sealed, n, out, sizeof out, &m), -EBADMSG);
        assert_int_equal(unseal(a, c, SEAL_OBJECT, &id, sealed, n, out, sizeof out, &m), -EBADMSG);
        /* every byte tampered with: refused (header, nonce, ciphertext, tag) */
        for (size_t at = 0; at < n; at += (at < 64 ? 1 : 397)) {
                sealed[at] ^= 0x20;
                assert_int_not_equal(unseal(a, c, SEAL_CHUNK, &id, sealed, n, out, sizeof out, &m), 0);
                sealed[at] ^= 0x20;
        }
        /* truncated and too small buffers */
        assert_int_equal(unseal(a, c, SEAL_CHUNK, &id, sealed, n - 1, out, sizeof out, &m), -EBADMSG);
        assert_int_equal(unseal(a, c, SEAL_CHUNK, &id, sealed, SEAL_OVERHEAD - 1, out, sizeof out, &m), -EBADMSG);
        assert_int_equal(unseal(a, c, SEAL_CHUNK, &id, sealed, n, out, 10, &m), -ENOBUFS);
        assert_int_equal(seal(a, c, SEAL_CHUNK, &id, plain, sizeof plain, sealed, 100, &n2), -ENOBUFS);
        /* an empty payload seals too */
        assert_int_equal(seal(a, c, SEAL_OBJECT, &id, "", 0, sealed, sizeof sealed, &n2), 0);
        assert_int_equal(n2, (size_t) SEAL_OVERHEAD);
        assert_int_equal(unseal(a, c, SEAL_OBJECT, &id, sealed, n2, out, sizeof out, &m), 0);
        assert_int_equal(m, 0);
}

static void test_seal_header(void **state) {
        (void) state;
        uint8_t buf[64] = { 'R', 'M', 'S', '1', 1 };
        SealHeader h;
        assert_int_equal(seal_header_parse(buf, sizeof buf, &h), 0);
        assert_int_equal(h.kind, SEAL_CHUNK);
        assert_int_equal(h.ciphertext_len, sizeof buf - SEAL_OVERHEAD);
        assert_ptr_equal(h.tag, buf + sizeof buf - SEAL_TAG_SIZE);
        assert_int_equal(seal_header_parse(buf, SEAL_OVERHEAD - 1, &h), -EBADMSG);
        buf[4] = 3;
        assert_int_equal(seal_header_parse(buf, sizeof buf, &h), -EBADMSG);
        buf[4] = 2;
        buf[6] = 1;
        assert_int_equal(seal_header_parse(buf, sizeof buf, &h), -EBADMSG);
        buf[6] = 0;
        buf[0] = 'X';
        assert_int_equal(seal_header_parse(buf, sizeof buf, &h), -EBADMSG);
}

/* ---- key files ---- */

static const KdfParams fast_kdf = { 10, 8, 1 };

static void test_home_key(void **state) {
        (void) state;
        uint8_t file[HOME_KEY_SIZE], again[HOME_KEY_SIZE];
        assert_int_equal(home_key_make("correct horse", 13, fast_kdf, file), 0);
        HomeKey k;
        assert_int_equal(home_key_parse(file, sizeof file, &k), 0);
        assert_int_equal(k.kdf.log2_n, 10);
        uint8_t priv[X25519_KEY_SIZE], priv2[X25519_KEY_SIZE];
        assert_int_equal(home_key_open(&k, "correct horse", 13, priv), 0);
        assert_int_equal(home_key_open(&k, "correct hors3", 13, priv2), -EACCES);
        /* the header is authenticated: a changed public key or KDF is refused */
        file[40] ^= 1;
        HomeKey bad;
        assert_int_equal(home_key_parse(file, sizeof file, &bad), 0);
        assert_int_equal(home_key_open(&bad, "correct horse", 13, priv2), -EACCES);
        file[40] ^= 1;
        /* a new passphrase, same key pair */
        assert_int_equal(home_key_reseal(&k, priv, "battery staple", 14, fast_kdf, again), 0);
        HomeKey k2;
        assert_int_equal(home_key_parse(again, sizeof again, &k2), 0);
        assert_memory_equal(k2.public_key, k.public_key, X25519_KEY_SIZE);
        assert_int_equal(home_key_open(&k2, "battery staple", 14, priv2), 0);
        assert_memory_equal(priv, priv2, sizeof priv);
        assert_int_equal(home_key_open(&k2, "correct horse", 13, priv2), -EACCES);
        /* bounds */
        assert_int_equal(home_key_parse(file, sizeof file - 1, &bad), -EBADMSG);
        file[9] = 30; /* log2 N */
        assert_int_equal(home_key_parse(file, sizeof file, &bad), -EBADMSG);
        file[9] = 20;
        file[10] = 16; /* 128 * 16 * 2^20 = 2 GiB: too much memory */
        assert_int_equal(home_key_parse(file, sizeof file, &bad), -EBADMSG);
        assert_int_equal(home_key_make("short", 5, fast_kdf, file), -EINVAL);
}

static void test_wrapped_key(void **state) {
        (void) state;
        uint8_t hk[HOME_KEY_SIZE], hk2[HOME_KEY_SIZE], w[WRAPPED_KEY_SIZE];
        assert_int_equal(home_key_make("passphrase one", 14, fast_kdf, hk), 0);
        assert_int_equal(home_key_make("passphrase two", 14, fast_kdf, hk2), 0);
        HomeKey k, k2;
        assert_int_equal(home_key_parse(hk, sizeof hk, &k), 0);
        assert_int_equal(home_key_parse(hk2, sizeof hk2, &k2), 0);
        uint8_t dk[DATA_KEY_SIZE], got[DATA_KEY_SIZE], priv[X25519_KEY_SIZE], priv2[X25519_KEY_SIZE];
        key_of(7, dk);
        /* the server wraps to the public half, without the passphrase */
        assert_int_equal(wrapped_key_make(k.public_key, dk, KEY_ORIGIN_SERVER, w), 0);
        assert_null(memmem(w, sizeof w, dk, 8));
        WrappedKey wk;
        assert_int_equal(wrapped_key_parse(w, sizeof w, &wk), 0);
        assert_int_equal(wk.origin, KEY_ORIGIN_SERVER);
        assert_int_equal(home_key_open(&k, "passphrase one", 14, priv), 0);
        assert_int_equal(home_key_open(&k2, "passphrase two", 14, priv2), 0);
        assert_int_equal(wrapped_key_open(&wk, priv, got), 0);
        assert_memory_equal(got, dk, sizeof dk);
        /* another home's key does not open it */
        assert_int_equal(wrapped_key_open(&wk, priv2, got), -EACCES);
        /* tampered: origin (authenticated), ciphertext, tag */
        for (size_t at = 8; at < sizeof w; at += 13) {
                w[at] ^= 0x01;
                WrappedKey t;
                if (wrapped_key_parse(w, sizeof w, &t) == 0)
                        assert_int_equal(wrapped_key_open(&t, priv, got), -EACCES);
                w[at] ^= 0x01;
        }
        assert_int_equal(wrapped_key_parse(w, sizeof w + 1, &wk), -EBADMSG);
        /* a low-order public key is refused */
        uint8_t zero_pub[X25519_KEY_SIZE] = { 0 };
        assert_int_equal(wrapped_key_make(zero_pub, dk, KEY_ORIGIN_SERVER, w), -EINVAL);
}

/* ---- an encrypted store ---- */

typedef struct Fixture {
        char dir[64];
        char *storedir;
        Store *s;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        strcpy(f->dir, "/tmp/roam-unit-crypt-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        f->storedir = path_join(f->dir, "store");
        StoreOptions o = { .create = true, .chunk_size = CHUNK, .encrypted = true };
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

/* Calls fn(path) for every file below dir. */
static void walk(const char *dir, void (*fn)(const char *path, void *u), void *u) {
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *p = path_join(dir, de->d_name);
                struct stat st;
                assert_int_equal(lstat(p, &st), 0);
                if (S_ISDIR(st.st_mode))
                        walk(p, fn, u);
                else
                        fn(p, u);
        }
        closedir(d);
}

typedef struct Needle {
        const void *bytes;
        size_t len;
        const char *hex; /* also looked for in file names */
        unsigned found;
} Needle;

static void look(const char *path, void *u) {
        Needle *n = u;
        if (n->hex && strstr(path, n->hex))
                n->found++;
        _cleanup_free_ char *data = NULL;
        size_t len;
        assert_int_equal(read_full_file(path, 1 << 24, &data, &len), 0);
        if (memmem(data, len, n->bytes, n->len) || (n->hex && memmem(data, len, n->hex, strlen(n->hex))))
                n->found++;
}

static void test_store_roundtrip(void **state) {
        Fixture *f = *state;
        uint8_t dk[DATA_KEY_SIZE];
        key_of(1, dk);
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        assert_non_null(c);
        assert_true(store_is_encrypted(f->s));
        assert_false(store_is_unlocked(f->s));
        /* locked: refused with the command to run */
        RoamId id, oid, got_id;
        uint8_t plain[CHUNK], out[CHUNK];
        memset(plain, 0, sizeof plain);
        memcpy(plain, "MARKER-plain-text-of-a-chunk", 28);
        fill_random(plain + 100, 1000); /* compressible, not all zero */
        sha256(plain, sizeof plain, &id);
        err_clear();
        assert_int_equal(store_chunk_put(f->s, c, &id, plain, sizeof plain), -ENOKEY);
        assert_non_null(strstr(err_message(-ENOKEY), "roam unlock"));
        assert_int_equal(store_ref_get(f->s, "images/x", &got_id), -ENOKEY);

        assert_int_equal(store_unlock(f->s, dk), 0);
        assert_true(store_is_unlocked(f->s));
        assert_true(store_chunk_put(f->s, c, &id, plain, sizeof plain) > 0);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_chunk_has(f->s, &id), 1);
        size_t n;
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &n), 0);
        assert_int_equal(n, sizeof plain);
        assert_memory_equal(out, plain, n);
        /* the codec's bytes go to a peer as in a plain store */
        _cleanup_free_ void *z = NULL;
        size_t zlen;
        uint64_t sz, psize;
        assert_int_equal(store_chunk_get_compressed(f->s, c, &id, &z, &zlen), 0);
        assert_int_equal(store_chunk_stat(f->s, &id, &sz), 0);
        assert_int_equal(sz, zlen);
        assert_int_equal(store_chunk_plain_size(f->s, &id, &psize), 0);
        assert_int_equal(psize, sizeof plain);
        static const char obj[] = "{\"MARKER-object\": 1}";
        assert_int_equal(store_object_put(f->s, obj, sizeof obj - 1, &oid), 0);
        assert_int_equal(store_ref_set(f->s, "images/x", &oid, &ID_NULL), 0);
        assert_int_equal(store_ref_get(f->s, "images/x", &got_id), 0);
        assert_true(id_equal(&got_id, &oid));
        assert_int_equal(store_ref_set(f->s, "images/x", &oid, &oid), 0); /* compare-and-swap on plain ids */
        assert_int_equal(store_ref_set(f->s, "images/x", &oid, &id), -ESTALE);
        _cleanup_free_ void *ob = NULL;
        size_t olen;
        assert_int_equal(store_object_get(f->s, &oid, 1024, &ob, &olen), 0);
        assert_int_equal(olen, sizeof obj - 1);
        assert_memory_equal(ob, obj, olen);

        /* on the disk: no plain bytes, no plain ids, neither in names nor in refs */
        char hex[ID_HEX_SIZE], ohex[ID_HEX_SIZE];
        Needle nc = { .bytes = "MARKER", .len = 6, .hex = id_to_hex(&id, hex) };
        walk(f->storedir, look, &nc);
        assert_int_equal(nc.found, 0);
        Needle no = { .bytes = "MARKER", .len = 6, .hex = id_to_hex(&oid, ohex) };
        walk(f->storedir, look, &no);
        assert_int_equal(no.found, 0);

        /* reopened: locked again; another key refused, the right one works */
        store_free(f->s);
        StoreOptions o = { .chunk_size = CHUNK };
        assert_int_equal(store_open(f->storedir, &o, &f->s), 0);
        assert_true(store_is_encrypted(f->s));
        assert_false(store_is_unlocked(f->s));
        uint8_t other[DATA_KEY_SIZE];
        key_of(2, other);
        assert_int_equal(store_unlock(f->s, other), -EKEYREJECTED);
        assert_false(store_is_unlocked(f->s));
        assert_int_equal(store_unlock(f->s, dk), 0);
        chunk_codec_free(c);
        c = chunk_codec_new(f->s);
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &n), 0);
        assert_memory_equal(out, plain, n);
        store_forget_key(f->s);
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &n), -ENOKEY);
}

static int count_cb(const RoamId *id, uint64_t size, void *u) {
        (void) size;
        const RoamId *want = ((const RoamId **) u)[0];
        if (id_equal(id, want))
                (*(unsigned *) ((void **) u)[1])++;
        return 0;
}

static void chunk_file_of(Fixture *f, char *path, size_t size) {
        /* the only chunk file of the store */
        char chunks[256];
        snprintf(chunks, sizeof chunks, "%s/chunks", f->storedir);
        DIR *d = opendir(chunks);
        struct dirent *de;
        path[0] = 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        _cleanup_free_ char *sub = path_join(chunks, de->d_name);
                        DIR *d2 = opendir(sub);
                        struct dirent *e2;
                        while ((e2 = readdir(d2)))
                                if (e2->d_name[0] != '.') {
                                        _cleanup_free_ char *p = path_join(sub, e2->d_name);
                                        assert_true(strlen(p) < size);
                                        strcpy(path, p);
                                }
                        closedir(d2);
                }
        closedir(d);
        assert_true(path[0]);
}

static void test_store_fsck_gc(void **state) {
        Fixture *f = *state;
        uint8_t dk[DATA_KEY_SIZE];
        key_of(3, dk);
        assert_int_equal(store_unlock(f->s, dk), 0);
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(f->s);
        uint8_t plain[CHUNK];
        fill_random(plain, sizeof plain);
        RoamId id;
        sha256(plain, sizeof plain, &id);
        assert_true(store_chunk_put(f->s, c, &id, plain, sizeof plain) > 0);
        assert_int_equal(store_commit(f->s), 0);
        /* foreach lists plain ids */
        unsigned seen = 0;
        void *u[2] = { &id, &seen };
        assert_int_equal(store_chunk_foreach(f->s, count_cb, u), 0);
        assert_int_equal(seen, 1);
        /* unreferenced: gc removes it by its plain id */
        GcOptions go = { .grace_s = 0 };
        GcReport gr;
        assert_int_equal(store_gc(f->s, &go, &gr), 0);
        assert_int_equal(gr.chunks_removed, 1);
        assert_int_equal(store_chunk_has(f->s, &id), 0);

        /* a referenced chunk, tampered on the disk: fsck finds it corrupt */
        assert_true(store_chunk_put(f->s, c, &id, plain, sizeof plain) > 0);
        assert_int_equal(store_commit(f->s), 0);
        uint8_t idx[32 + 32];
        memcpy(idx, "ROAMIDX\0", 8);
        uint32_t v = 1, cs = CHUNK;
        uint64_t bs = CHUNK, cnt = 1;
        memcpy(idx + 8, &v, 4);
        memcpy(idx + 12, &cs, 4);
        memcpy(idx + 16, &bs, 8);
        memcpy(idx + 24, &cnt, 8);
        memcpy(idx + 32, id.b, 32);
        RoamId xid;
        assert_int_equal(store_object_put(f->s, idx, sizeof idx, &xid), 0);
        assert_int_equal(store_ref_set(f->s, "images/t", &xid, NULL), 0);
        FsckReport fr;
        assert_int_equal(store_fsck(f->s, NULL, NULL, NULL, &fr), 0);
        assert_true(fsck_report_ok(&fr));
        assert_int_equal(fr.chunks_referenced, 1);
        char path[512];
        chunk_file_of(f, path, sizeof path);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, 100), 1);
        b ^= 0x10;
        assert_int_equal(pwrite(fd, &b, 1, 100), 1);
        close(fd);
        uint8_t out[CHUNK];
        size_t n;
        err_clear();
        assert_int_equal(store_chunk_get(f->s, c, &id, out, &n), -EBADMSG);
        assert_non_null(strstr(err_message(-EBADMSG), "does not decrypt"));
        assert_int_equal(store_fsck(f->s, NULL, NULL, NULL, &fr), 0);
        assert_int_equal(fr.corrupt_chunks, 1);
}

/* A plain store is untouched by the layer: names are the ids. */
static void test_plain_store(void **state) {
        (void) state;
        char dir[] = "/tmp/roam-unit-crypt-plain-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *sd = path_join(dir, "store");
        Store *s;
        StoreOptions o = { .create = true, .chunk_size = CHUNK };
        assert_int_equal(store_open(sd, &o, &s), 0);
        assert_false(store_is_encrypted(s));
        assert_true(store_is_unlocked(s));
        uint8_t dk[DATA_KEY_SIZE];
        key_of(1, dk);
        assert_int_equal(store_unlock(s, dk), 0); /* ignored */
        ChunkCodec *c = chunk_codec_new(s);
        uint8_t plain[CHUNK];
        fill_random(plain, sizeof plain);
        RoamId id;
        sha256(plain, sizeof plain, &id);
        assert_true(store_chunk_put(s, c, &id, plain, sizeof plain) > 0);
        assert_int_equal(store_commit(s), 0);
        char hex[ID_HEX_SIZE], p[512];
        id_to_hex(&id, hex);
        snprintf(p, sizeof p, "%s/chunks/%.2s/%s", sd, hex, hex);
        assert_int_equal(access(p, F_OK), 0);
        chunk_codec_free(c);
        store_free(s);
        rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_derivation),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_seal_open),
                cmocka_unit_test(test_seal_header),
                cmocka_unit_test(test_home_key),
                cmocka_unit_test(test_wrapped_key),
                cmocka_unit_test_setup_teardown(test_store_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_store_fsck_gc, setup, teardown),
                cmocka_unit_test(test_plain_store),
        };
        printf("# seed %u\n", SEED);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
