/* SPDX-License-Identifier: MIT */
#include "reach.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "index.h"
#include "manifest.h"

#define REACH_MAX_DEPTH 16

Reach *reach_new(void) {
        Reach *r = calloc(1, sizeof *r);
        if (!r)
                return NULL;
        r->objects = idset_new();
        r->chunks = idset_new();
        if (!r->objects || !r->chunks) {
                reach_free(r);
                return NULL;
        }
        return r;
}

void reach_free(Reach *r) {
        if (!r)
                return;
        idset_free(r->objects);
        idset_free(r->chunks);
        free(r);
}

static void problem(Reach *r, const char *fmt, ...) _printf_(2, 3);
static void problem(Reach *r, const char *fmt, ...) {
        if (!r->problem)
                return;
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        r->problem(buf, r->userdata);
}

typedef struct Walk {
        Store *s;
        Reach *r;
        int depth;
} Walk;

static int add_object(Store *s, Reach *r, const RoamId *id, int depth);

static int manifest_cb(const char *role, const RoamId *id, void *userdata) {
        Walk *w = userdata;
        return add_object(w->s, w->r, id, w->depth + 1);
}

static int add_object(Store *s, Reach *r, const RoamId *id, int depth) {
        char hex[ID_HEX_SIZE];
        id_to_hex(id, hex);
        if (depth > REACH_MAX_DEPTH) {
                r->bad_objects++;
                problem(r, "object %s: nested too deeply", hex);
                return 0;
        }
        int k = idset_add(r->objects, id);
        if (k < 0)
                return k;
        if (k == 0)
                return 0; /* seen */
        _cleanup_free_ void *data = NULL;
        size_t len;
        err_clear();
        k = store_object_get(s, id, STORE_OBJECT_MAX, &data, &len);
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                r->bad_objects++;
                problem(r, "%s", err_message(k));
                return 0;
        }
        if (index_is_index(data, len)) {
                _cleanup_(index_freep) Index *x = NULL;
                k = index_parse(data, len, &x);
                if (k < 0) {
                        r->bad_objects++;
                        problem(r, "object %s: malformed index", hex);
                        return 0;
                }
                r->blob_bytes += x->blob_size;
                for (uint64_t i = 0; i < x->n_chunks; i++) {
                        if (id_is_null(&x->ids[i]))
                                continue;
                        r->nonzero_bytes += index_chunk_len(x, i);
                        k = idset_add(r->chunks, &x->ids[i]);
                        if (k < 0)
                                return k;
                }
                return 0;
        }
        if (manifest_is_manifest(data, len)) {
                json_t *j = NULL;
                k = manifest_parse(data, len, &j);
                if (k < 0) {
                        r->bad_objects++;
                        problem(r, "object %s: malformed manifest", hex);
                        return 0;
                }
                Walk w = { .s = s, .r = r, .depth = depth };
                k = manifest_foreach_object(j, manifest_cb, &w);
                json_decref(j);
                return k;
        }
        /* any other object is an opaque leaf (e.g. small blobs stored whole) */
        return 0;
}

int reach_add_object(Store *s, Reach *r, const RoamId *id) {
        return add_object(s, r, id, 0);
}

static int ref_cb(const char *name, const RoamId *id, void *userdata) {
        Walk *w = userdata;
        w->r->refs++;
        if (!id) {
                w->r->bad_refs++;
                problem(w->r, "ref '%s' is malformed", name);
                return 0;
        }
        return add_object(w->s, w->r, id, 0);
}

int reach_add_refs(Store *s, Reach *r, const char *prefix) {
        Walk w = { .s = s, .r = r };
        return store_ref_foreach(s, prefix, ref_cb, &w);
}
