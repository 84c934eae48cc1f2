/* SPDX-License-Identifier: MIT */
#include "bundle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/fileio.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "reach.h"

#define HEADER_SIZE 24

struct BundleReader {
        FILE *f;
        uint64_t size, pos;
        uint32_t chunk_size;
        Sha256Ctx *hash;
        uint8_t *buf;
        size_t cap;
        uint64_t refs, objects, chunks;
        int phase; /* 0 envelope, 1 refs, 2 objects, 3 chunks: records must not go back */
        bool envelope; /* flag bit 0: an envelope comes first */
        bool ended;
};

static int rd(BundleReader *b, void *out, size_t n, bool hash) {
        if (n > b->size - b->pos)
                return err_set(-EBADMSG, "bundle is truncated at byte %llu (copy it again)",
                               (unsigned long long) b->pos);
        if (n && fread(out, 1, n, b->f) != n)
                return err_set(-EBADMSG, "bundle is truncated at byte %llu (copy it again)",
                               (unsigned long long) b->pos);
        if (hash)
                sha256_ctx_update(b->hash, out, n);
        b->pos += n;
        return 0;
}

static int reserve(BundleReader *b, size_t n) {
        if (n <= b->cap)
                return 0;
        uint8_t *nb = realloc(b->buf, n);
        if (!nb)
                return -ENOMEM;
        b->buf = nb;
        b->cap = n;
        return 0;
}

int bundle_reader_new(FILE *f, uint64_t file_size, BundleReader **ret) {
        BundleReader *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->f = f;
        b->size = file_size;
        b->hash = sha256_ctx_new();
        if (!b->hash) {
                bundle_reader_free(b);
                return -ENOMEM;
        }
        uint8_t h[HEADER_SIZE];
        int r = rd(b, h, sizeof h, true);
        if (r >= 0 && memcmp(h, BUNDLE_MAGIC, 8))
                r = err_set(-EBADMSG, "not a roam bundle (bad magic)");
        if (r >= 0 && get_le32(h + 8) != 1)
                r = err_set(-EPROTONOSUPPORT, "bundle version %u is not supported (update roam)", get_le32(h + 8));
        uint32_t cs = r >= 0 ? get_le32(h + 12) : 0;
        if (r >= 0 && (cs < STORE_CHUNK_SIZE_MIN || cs > STORE_CHUNK_SIZE_MAX || (cs & (cs - 1))))
                r = err_set(-EBADMSG, "bundle has an invalid chunk size %u", cs);
        if (r >= 0 && (get_le64(h + 16) & ~(uint64_t) BUNDLE_FLAG_ENVELOPE))
                r = err_set(-EBADMSG, "bundle has unknown flags (update roam)");
        if (r < 0) {
                bundle_reader_free(b);
                return r;
        }
        b->chunk_size = cs;
        b->envelope = get_le64(h + 16) & BUNDLE_FLAG_ENVELOPE;
        *ret = b;
        return 0;
}

void bundle_reader_free(BundleReader *b) {
        if (!b)
                return;
        sha256_ctx_free(b->hash);
        free(b->buf);
        free(b);
}

uint32_t bundle_reader_chunk_size(const BundleReader *b) {
        return b->chunk_size;
}

static int next_phase(BundleReader *b, int phase) {
        if (phase < b->phase)
                return err_set(-EBADMSG, "bundle records are out of order at byte %llu", (unsigned long long) b->pos);
        b->phase = phase;
        return 0;
}

int bundle_reader_next(BundleReader *b, BundleRecord *ret) {
        if (b->ended)
                return 0;
        uint8_t type;
        int r = rd(b, &type, 1, true);
        if (r < 0)
                return r;
        BundleRecord rec = { .type = type };
        /* with flag bit 0 the first record is the envelope, and only then */
        if (b->phase == 0 && b->envelope != (type == BUNDLE_ENVELOPE))
                return err_set(-EBADMSG, b->envelope ? "bundle lacks the envelope its header announces"
                                                     : "bundle has an envelope its header does not announce");
        switch (type) {
        case BUNDLE_ENVELOPE: {
                uint8_t l[4];
                if (b->phase > 0)
                        return err_set(-EBADMSG, "bundle has an envelope out of place at byte %llu",
                                       (unsigned long long) (b->pos - 1));
                if ((r = rd(b, l, 4, true)) < 0)
                        return r;
                uint32_t n = get_le32(l);
                if (n == 0 || n > BUNDLE_ENVELOPE_MAX || n > b->size - b->pos)
                        return err_set(-EBADMSG, "bundle envelope has an invalid length %u", n);
                if ((r = reserve(b, (size_t) n + 1)) < 0 || (r = rd(b, b->buf, n, true)) < 0)
                        return r;
                b->buf[n] = 0;
                if (strlen((const char *) b->buf) != n)
                        return err_set(-EBADMSG, "bundle envelope holds a NUL byte");
                rec.data = b->buf;
                rec.len = n;
                b->phase = 1; /* once */
                break;
        }
        case BUNDLE_REF: {
                uint8_t l[2];
                if ((r = next_phase(b, 1)) < 0 || (r = rd(b, l, 2, true)) < 0)
                        return r;
                uint16_t n = (uint16_t) (l[0] | l[1] << 8);
                if (n == 0 || n > 255)
                        return err_set(-EBADMSG, "bundle has a ref name of invalid length %u", n);
                if ((r = rd(b, rec.name, n, true)) < 0 || (r = rd(b, rec.id.b, ID_SIZE, true)) < 0)
                        return r;
                rec.name[n] = 0;
                if (strlen(rec.name) != n || !ref_name_is_valid(rec.name))
                        return err_set(-EBADMSG, "bundle has an invalid ref name");
                if (++b->refs > BUNDLE_MAX_REFS)
                        return err_set(-EBADMSG, "bundle has too many refs");
                break;
        }
        case BUNDLE_OBJECT:
        case BUNDLE_CHUNK: {
                uint8_t l[4];
                if ((r = next_phase(b, type == BUNDLE_OBJECT ? 2 : 3)) < 0 ||
                    (r = rd(b, rec.id.b, ID_SIZE, true)) < 0 || (r = rd(b, l, 4, true)) < 0)
                        return r;
                uint32_t n = get_le32(l);
                uint64_t max = type == BUNDLE_OBJECT ? STORE_OBJECT_MAX : ZSTD_compressBound(b->chunk_size);
                if (n == 0 || n > max || n > b->size - b->pos)
                        return err_set(-EBADMSG, "bundle record at byte %llu has an invalid length %u%s",
                                       (unsigned long long) b->pos, n,
                                       n > b->size - b->pos ? " (the bundle is truncated; copy it again)" : "");
                if ((r = reserve(b, n)) < 0 || (r = rd(b, b->buf, n, true)) < 0)
                        return r;
                rec.data = b->buf;
                rec.len = n;
                if (type == BUNDLE_OBJECT)
                        b->objects++;
                else
                        b->chunks++;
                break;
        }
        case BUNDLE_END: {
                uint8_t t[24];
                RoamId want, got;
                if ((r = rd(b, t, sizeof t, true)) < 0)
                        return r;
                sha256_ctx_final(b->hash, &got);
                if ((r = rd(b, want.b, ID_SIZE, false)) < 0)
                        return r;
                if (!id_equal(&want, &got))
                        return err_set(-EBADMSG, "bundle is corrupt (checksum mismatch; copy it again)");
                if (get_le64(t) != b->refs || get_le64(t + 8) != b->objects || get_le64(t + 16) != b->chunks)
                        return err_set(-EBADMSG, "bundle is corrupt (record counts do not match)");
                if (b->pos != b->size)
                        return err_set(-EBADMSG, "bundle has %llu bytes of trailing garbage",
                                       (unsigned long long) (b->size - b->pos));
                b->ended = true;
                return 0;
        }
        default:
                return err_set(-EBADMSG, "bundle has an unknown record type 0x%02x at byte %llu", type,
                               (unsigned long long) (b->pos - 1));
        }
        *ret = rec;
        return 1;
}

/* ---- create ---- */

typedef struct Writer {
        FILE *f;
        Sha256Ctx *hash;
        int error;
} Writer;

static void wr(Writer *w, const void *p, size_t n) {
        if (w->error || n == 0)
                return;
        if (fwrite(p, 1, n, w->f) != n)
                w->error = errno ? -errno : -EIO;
        sha256_ctx_update(w->hash, p, n);
}

typedef struct RefArg {
        Writer *w;
        Store *s;
} RefArg;

int bundle_create(Store *s, char **refs, size_t n_refs, char **since, size_t n_since, FILE *out, Progress *p,
                  BundleStats *ret) {
        BundleSpec spec = { .refs = refs, .n_refs = n_refs, .since = since, .n_since = n_since };
        return bundle_write(s, &spec, out, p, ret);
}

int bundle_write(Store *s, const BundleSpec *spec, FILE *out, Progress *p, BundleStats *ret) {
        char **refs = spec->refs, **since = spec->since;
        size_t n_refs = spec->n_refs, n_since = spec->n_since;
        size_t envelope_len = spec->envelope ? strlen(spec->envelope) : 0;
        if (spec->envelope && (envelope_len == 0 || envelope_len > BUNDLE_ENVELOPE_MAX))
                return err_set(-EINVAL, "bundle envelope of %zu bytes (1 to %d)", envelope_len, BUNDLE_ENVELOPE_MAX);
        _cleanup_(reach_freep) Reach *base = reach_new();
        _cleanup_(reach_freep) Reach *want = reach_new();
        if (!base || !want)
                return -ENOMEM;
        BundleStats st = { 0 };
        RoamId *ref_ids = calloc(MAX(n_refs, (size_t) 1), sizeof(RoamId));
        if (!ref_ids)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; i < n_since && r >= 0; i++) {
                RoamId id;
                r = store_ref_get(s, since[i], &id);
                if (r == -ENOENT)
                        r = err_set(r, "ref '%s' not found (try 'roam image list')", since[i]);
                if (r >= 0)
                        r = reach_add_object(s, base, &id);
        }
        for (size_t i = 0; i < n_refs && r >= 0; i++) {
                r = store_ref_get(s, refs[i], &ref_ids[i]);
                if (r == -ENOENT)
                        r = err_set(r, "ref '%s' not found (try 'roam image list')", refs[i]);
                if (r >= 0)
                        r = reach_add_object(s, want, &ref_ids[i]);
        }
        if (r >= 0 && (want->bad_objects || base->bad_objects))
                r = err_set(-EUCLEAN, "store has unreadable objects (run 'roam store fsck')");
        if (r < 0) {
                free(ref_ids);
                return r;
        }
        Writer w = { .f = out, .hash = sha256_ctx_new() };
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(s);
        if (!w.hash || !c) {
                free(ref_ids);
                sha256_ctx_free(w.hash);
                return -ENOMEM;
        }
        uint8_t h[HEADER_SIZE] = { 0 };
        memcpy(h, BUNDLE_MAGIC, 8);
        put_le32(h + 8, 1);
        put_le32(h + 12, store_chunk_size(s));
        if (spec->envelope) {
                put_le64(h + 16, BUNDLE_FLAG_ENVELOPE);
                uint8_t t = BUNDLE_ENVELOPE, l[4];
                put_le32(l, (uint32_t) envelope_len);
                wr(&w, h, sizeof h);
                wr(&w, &t, 1);
                wr(&w, l, 4);
                wr(&w, spec->envelope, envelope_len);
        } else
                wr(&w, h, sizeof h);
        for (size_t i = 0; i < n_refs; i++) {
                uint8_t t = BUNDLE_REF, l[2];
                size_t n = strlen(refs[i]);
                l[0] = (uint8_t) n;
                l[1] = (uint8_t) (n >> 8);
                wr(&w, &t, 1);
                wr(&w, l, 2);
                wr(&w, refs[i], n);
                wr(&w, ref_ids[i].b, ID_SIZE);
                st.refs++;
        }
        free(ref_ids);
        size_t pos = 0;
        RoamId id;
        while (r >= 0 && !w.error && idset_next(want->objects, &pos, &id)) {
                if (idset_contains(base->objects, &id))
                        continue;
                _cleanup_free_ void *data = NULL;
                size_t len;
                r = store_object_get(s, &id, STORE_OBJECT_MAX, &data, &len);
                if (r < 0)
                        break;
                uint8_t t = BUNDLE_OBJECT, l[4];
                put_le32(l, (uint32_t) len);
                wr(&w, &t, 1);
                wr(&w, id.b, ID_SIZE);
                wr(&w, l, 4);
                wr(&w, data, len);
                st.objects++;
                st.bytes += len;
        }
        uint64_t total = 0;
        pos = 0;
        while (idset_next(want->chunks, &pos, &id))
                total += !idset_contains(base->chunks, &id);
        progress_set_total(p, total);
        pos = 0;
        while (r >= 0 && !w.error && idset_next(want->chunks, &pos, &id)) {
                if (interrupt_requested()) {
                        r = err_set(-ECANCELED, "stopped on request");
                        break;
                }
                if (idset_contains(base->chunks, &id))
                        continue;
                _cleanup_free_ void *z = NULL;
                size_t zlen;
                r = store_chunk_get_compressed(s, c, &id, &z, &zlen);
                if (r < 0)
                        break;
                uint8_t t = BUNDLE_CHUNK, l[4];
                put_le32(l, (uint32_t) zlen);
                wr(&w, &t, 1);
                wr(&w, id.b, ID_SIZE);
                wr(&w, l, 4);
                wr(&w, z, zlen);
                st.chunks++;
                st.bytes += zlen;
                progress_add(p, 1);
        }
        if (r >= 0 && !w.error) {
                uint8_t t = BUNDLE_END, c3[24];
                put_le64(c3, st.refs);
                put_le64(c3 + 8, st.objects);
                put_le64(c3 + 16, st.chunks);
                wr(&w, &t, 1);
                wr(&w, c3, sizeof c3);
                RoamId sum;
                sha256_ctx_final(w.hash, &sum);
                if (fwrite(sum.b, 1, ID_SIZE, out) != ID_SIZE)
                        w.error = -EIO;
        }
        sha256_ctx_free(w.hash);
        if (r >= 0 && w.error)
                r = err_set(w.error, "cannot write bundle: %s", strerror(-w.error));
        if (r >= 0 && fflush(out) != 0)
                r = err_set(-errno, "cannot write bundle: %s", strerror(errno));
        if (r < 0)
                return r;
        if (ret)
                *ret = st;
        return 0;
}

/* ---- apply ---- */

static int open_reader(const char *path, FILE **ret_f, BundleReader **ret) {
        FILE *f = fopen(path, "re");
        if (!f)
                return err_set(-errno, "cannot open bundle '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
                fclose(f);
                return err_set(-EINVAL, "bundle '%s' is not a regular file", path);
        }
        int r = bundle_reader_new(f, (uint64_t) st.st_size, ret);
        if (r < 0) {
                fclose(f);
                return err_set_if_none(r, "bundle '%s' is unreadable", path);
        }
        *ret_f = f;
        return 0;
}

int bundle_apply(Store *s, const char *path, const BundleApplyOptions *o, Progress *p, BundleStats *ret) {
        FILE *f = NULL;
        BundleReader *b = NULL;
        BundleRecord rec;
        int r;

        /* pass 1: structure and checksum of the whole file, nothing written;
         * the envelope and the refs for the caller's check */
        r = open_reader(path, &f, &b);
        if (r < 0)
                return r;
        if (bundle_reader_chunk_size(b) != store_chunk_size(s)) {
                r = err_set(-EINVAL, "bundle chunk size %u differs from the store's %u (use a store with the same "
                            "chunk size)", bundle_reader_chunk_size(b), store_chunk_size(s));
        }
        _cleanup_free_ BundleRef *refs = calloc(BUNDLE_MAX_REFS, sizeof *refs);
        _cleanup_free_ char *envelope = NULL;
        size_t n_refs = 0;
        if (!refs)
                r = -ENOMEM;
        while (r >= 0 && (r = bundle_reader_next(b, &rec)) > 0) {
                if (rec.type == BUNDLE_ENVELOPE && !(envelope = strdup((const char *) rec.data)))
                        r = -ENOMEM;
                if (rec.type == BUNDLE_REF) {
                        snprintf(refs[n_refs].name, sizeof refs[n_refs].name, "%s", rec.name);
                        refs[n_refs++].id = rec.id;
                }
        }
        bundle_reader_free(b);
        fclose(f);
        if (r >= 0 && envelope && !(o && o->check))
                r = err_set(-EINVAL, "'%s' is a sync file, not a plain bundle (apply it with 'roam session "
                            "apply-sync' on a server, 'roam offline --from-file' on a laptop)", path);
        if (r >= 0 && o && o->check)
                r = o->check(o->userdata, envelope, refs, n_refs);
        if (r < 0)
                return r;

        /* pass 2: store objects and chunks (each verified), then the refs */
        r = open_reader(path, &f, &b);
        if (r < 0)
                return r;
        _cleanup_(chunk_codec_freep) ChunkCodec *c = chunk_codec_new(s);
        if (!c) {
                bundle_reader_free(b);
                fclose(f);
                return -ENOMEM;
        }
        BundleStats st = { 0 };
        while ((r = bundle_reader_next(b, &rec)) > 0) {
                char hex[ID_HEX_SIZE];
                if (interrupt_requested()) {
                        r = err_set(-ECANCELED, "stopped on request");
                        break;
                }
                if (rec.type == BUNDLE_REF)
                        st.refs++; /* as read in pass 1 */
                else if (rec.type == BUNDLE_ENVELOPE)
                        continue;
                else if (rec.type == BUNDLE_OBJECT) {
                        RoamId got;
                        sha256(rec.data, rec.len, &got);
                        if (!id_equal(&got, &rec.id)) {
                                r = err_set(-EBADMSG, "bundle object %s is corrupt", id_to_hex(&rec.id, hex));
                                break;
                        }
                        r = store_object_put(s, rec.data, rec.len, &got);
                        if (r < 0)
                                break;
                        st.objects++;
                } else {
                        r = store_chunk_has(s, &rec.id);
                        if (r == 0) {
                                r = store_chunk_put_compressed(s, c, &rec.id, rec.data, rec.len);
                                st.chunks_new++;
                        }
                        if (r < 0) {
                                err_set_if_none(r, "bundle chunk %s is corrupt", id_to_hex(&rec.id, hex));
                                break;
                        }
                        st.chunks++;
                        st.bytes += rec.len;
                        progress_add(p, rec.len);
                }
        }
        bundle_reader_free(b);
        fclose(f);
        if (r >= 0)
                r = store_commit(s);
        /* everything each ref needs must be here now (a --since bundle needs its base) */
        for (uint64_t i = 0; i < st.refs && r >= 0; i++) {
                _cleanup_(reach_freep) Reach *need = reach_new();
                if (!need) {
                        r = -ENOMEM;
                        break;
                }
                r = reach_add_object(s, need, &refs[i].id);
                if (r >= 0 && need->bad_objects)
                        r = err_set(-ENOENT, "bundle ref '%s' needs objects this store lacks (apply its base first)",
                                    refs[i].name);
                size_t pos = 0;
                RoamId id;
                while (r >= 0 && idset_next(need->chunks, &pos, &id)) {
                        int k = store_chunk_has(s, &id);
                        if (k < 0)
                                r = k;
                        else if (k == 0)
                                r = err_set(-ENOENT,
                                            "bundle ref '%s' needs chunks this store lacks (apply its base first)",
                                            refs[i].name);
                }
        }
        for (uint64_t i = 0; i < st.refs && r >= 0; i++) {
                failpoint(i == 0 ? "bundle-apply:before-refs" : "bundle-apply:between-refs");
                r = store_ref_set(s, refs[i].name, &refs[i].id, NULL);
        }
        if (r < 0)
                return r;
        if (ret)
                *ret = st;
        return 0;
}

int bundle_write_file(Store *s, const BundleSpec *spec, const char *path, bool overwrite, Progress *p,
                      BundleStats *ret) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                return err_set(-EISDIR, "'%s' is a directory (give the name of the file to write)", path);
        if (!overwrite && stat(path, &st) == 0)
                return err_set(-EEXIST, "'%s' exists (use --force to overwrite it)", path);
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (slash)
                slash[slash == dir] = 0; /* "/x" -> "/" */
        else
                strcpy(dir, ".");
        _cleanup_free_ char *tmp = NULL;
        int fd = tmpfile_create(dir, &tmp);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f) {
                int e = fd < 0 ? fd : -errno;
                if (fd >= 0)
                        close(fd);
                return err_set(e, "cannot write to '%s': %s", dir, strerror(-e));
        }
        int r = bundle_write(s, spec, f, p, ret);
        if (r >= 0 && (fflush(f) != 0 || fsync(fileno(f)) < 0 || fchmod(fileno(f), 0644) < 0))
                r = err_set(-errno, "cannot write '%s': %s", path, strerror(errno));
        fclose(f);
        if (r >= 0 && rename(tmp, path) < 0)
                r = err_set(-errno, "cannot rename to '%s': %s", path, strerror(errno));
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        (void) fsync_parent(path);
        return 0;
}
