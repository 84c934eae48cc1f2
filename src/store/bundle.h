/* SPDX-License-Identifier: MIT */
#pragma once

/* Bundle: one file that carries refs, the objects and the chunks they need
 * (optionally only those not reachable from a base), for a USB stick.
 * Format (little-endian; docs/store-format.md):
 *
 *   header  8 magic "ROAMBDL\0", 4 version (1), 4 chunk size, 8 flags
 *           (bit 0: an ENVELOPE record comes first; no other bit is known)
 *   records, each starting with one type byte:
 *     0x04 ENVELOPE 4 length (1..BUNDLE_ENVELOPE_MAX), JSON (a sync file's
 *                  terms: daemon/sync-file.h); only with flag bit 0, first
 *     0x01 REF     2 name length (1..255), name, 32 object id
 *     0x02 OBJECT  32 id, 4 length (<= STORE_OBJECT_MAX), bytes
 *     0x03 CHUNK   32 id, 4 length (<= zstd bound of chunk size), zstd frame
 *     0x7f END     8 refs, 8 objects, 8 chunks (counts of the records above),
 *                  32 SHA-256 of every byte of the file before this hash
 *   nothing after END.
 *
 * Refs come first, then objects, then chunks. apply() checks the trailer hash
 * over the whole file before it writes anything, verifies every object and
 * chunk against its id while storing, and sets the refs only at the end, after
 * checking that everything they need is in the store. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../basic/progress.h"
#include "store.h"

#define BUNDLE_MAGIC "ROAMBDL"
#define BUNDLE_MAX_REFS 4096
#define BUNDLE_ENVELOPE_MAX (64 * 1024)
#define BUNDLE_FLAG_ENVELOPE 1u

enum { BUNDLE_REF = 1, BUNDLE_OBJECT = 2, BUNDLE_CHUNK = 3, BUNDLE_ENVELOPE = 4, BUNDLE_END = 0x7f };

typedef struct BundleRecord {
        int type;
        char name[256];     /* REF */
        RoamId id;          /* REF: object id; OBJECT, CHUNK: own id */
        const uint8_t *data; /* OBJECT, CHUNK, ENVELOPE: owned by the reader until the next call */
        uint32_t len;
} BundleRecord;

typedef struct BundleReader BundleReader;

/* Reads the header from f, a file of file_size bytes (bounds every length).
 * chunk_size is taken from the header. Caller frees with bundle_reader_free(). */
int bundle_reader_new(FILE *f, uint64_t file_size, BundleReader **ret);
void bundle_reader_free(BundleReader *b);
static inline void bundle_reader_freep(BundleReader **b) {
        if (*b)
                bundle_reader_free(*b);
}
uint32_t bundle_reader_chunk_size(const BundleReader *b);
/* 1 with a record, 0 after a valid END (hash and counts checked, EOF after
 * it), -EBADMSG (with detail) on anything malformed or truncated. */
int bundle_reader_next(BundleReader *b, BundleRecord *ret);

typedef struct BundleStats {
        uint64_t refs, objects, chunks, bytes;
        uint64_t chunks_new; /* apply: chunks the store did not have yet */
} BundleStats;

/* What to write: refs (names in s), leaving out everything reachable from the
 * since refs (may be n_since = 0), with an envelope (NUL-terminated JSON of at
 * most BUNDLE_ENVELOPE_MAX bytes; NULL = none). */
typedef struct BundleSpec {
        char **refs;
        size_t n_refs;
        char **since;
        size_t n_since;
        const char *envelope;
} BundleSpec;

/* Writes a bundle to out. Both this and bundle_apply() stop with -ECANCELED
 * once interrupt_requested() (src/basic/interrupt.h). */
int bundle_write(Store *s, const BundleSpec *spec, FILE *out, Progress *p, BundleStats *ret);
/* The same into the file path, crash-safely (temp file beside it, fsync,
 * rename, fsync of the directory; mode 0644): -EEXIST unless overwrite,
 * -EISDIR for a directory, with details. */
int bundle_write_file(Store *s, const BundleSpec *spec, const char *path, bool overwrite, Progress *p,
                      BundleStats *ret);
/* bundle_write() without an envelope. */
int bundle_create(Store *s, char **refs, size_t n_refs, char **since, size_t n_since, FILE *out, Progress *p,
                  BundleStats *ret);

typedef struct BundleRef {
        char name[256];
        RoamId id;
} BundleRef;

typedef struct BundleApplyOptions {
        /* Called once the whole file is verified (structure, counts,
         * checksum) and before anything is stored, with its envelope (NULL
         * when it has none) and its refs: a negative errno (with detail)
         * refuses the bundle, and nothing is written. */
        int (*check)(void *userdata, const char *envelope, const BundleRef *refs, size_t n_refs);
        void *userdata;
} BundleApplyOptions;

/* Applies the bundle at path into s. On any error no ref is changed. o may be
 * NULL: then a bundle with an envelope is refused (a sync file is applied by
 * the hand-over that reads its terms). */
int bundle_apply(Store *s, const char *path, const BundleApplyOptions *o, Progress *p, BundleStats *ret);
