/* SPDX-License-Identifier: MIT */
#include "obj-delta.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/util.h"

#define GRAIN 32u /* an index entry */

bool obj_delta_is(const void *p, size_t len) {
        return len >= 4 && memcmp(p, OBJ_DELTA_MAGIC, 4) == 0;
}

int obj_delta_parse(const void *p, size_t len, unsigned n_bases, size_t max, ObjDelta *ret) {
        const uint8_t *b = p;
        if (len < OBJ_DELTA_HEADER || !obj_delta_is(p, len))
                return -EBADMSG;
        ObjDelta d = { .base = b[4], .len = get_le32(b + 5), .n_runs = get_le32(b + 9) };
        if (d.base >= n_bases || d.len == 0 || d.len > max)
                return -EBADMSG;
        size_t left = len - OBJ_DELTA_HEADER;
        if (d.n_runs == 0 || d.n_runs > left / 8)
                return -EBADMSG;
        d.runs = b + OBJ_DELTA_HEADER;
        d.literal = d.runs + (size_t) d.n_runs * 8;
        d.literal_len = left - (size_t) d.n_runs * 8;
        uint64_t at = 0, lit = 0;
        for (uint32_t i = 0; i < d.n_runs; i++) {
                uint32_t copy = get_le32(d.runs + 8 * (size_t) i), add = get_le32(d.runs + 8 * (size_t) i + 4);
                at += copy;
                if (copy > 0)
                        d.copy_end = at;
                d.copied += copy;
                at += add;
                lit += add;
                if (at > d.len)
                        return -EBADMSG;
        }
        if (at != d.len || lit != d.literal_len)
                return -EBADMSG;
        *ret = d;
        return 0;
}

int obj_delta_apply(const ObjDelta *d, const void *base, size_t base_len, void *out) {
        if (d->copy_end > base_len)
                return -ESTALE;
        const uint8_t *bb = base, *lit = d->literal;
        uint8_t *o = out;
        size_t at = 0;
        for (uint32_t i = 0; i < d->n_runs; i++) {
                uint32_t copy = get_le32(d->runs + 8 * (size_t) i), add = get_le32(d->runs + 8 * (size_t) i + 4);
                memcpy(o + at, bb + at, copy);
                at += copy;
                memcpy(o + at, lit, add);
                lit += add;
                at += add;
        }
        return 0;
}

/* The runs of obj against base, into runs unless NULL; their number and the
 * literal bytes they add in *ret_runs, *ret_lit. */
static void delta_runs(const uint8_t *base, size_t base_len, const uint8_t *obj, size_t len, uint8_t *runs,
                       uint32_t *ret_runs, size_t *ret_lit) {
        uint32_t n = 0, copy = 0, add = 0;
        size_t lit = 0;
        for (size_t at = 0; at < len; at += GRAIN) {
                size_t g = len - at < GRAIN ? len - at : GRAIN;
                bool same = at + g <= base_len && memcmp(base + at, obj + at, g) == 0;
                if (same && add > 0) {
                        if (runs) {
                                put_le32(runs + 8 * (size_t) n, copy);
                                put_le32(runs + 8 * (size_t) n + 4, add);
                        }
                        n++;
                        copy = add = 0;
                }
                if (same)
                        copy += (uint32_t) g;
                else {
                        add += (uint32_t) g;
                        lit += g;
                }
        }
        if (copy > 0 || add > 0) {
                if (runs) {
                        put_le32(runs + 8 * (size_t) n, copy);
                        put_le32(runs + 8 * (size_t) n + 4, add);
                }
                n++;
        }
        *ret_runs = n;
        *ret_lit = lit;
}

int obj_delta_encode(const void *base, size_t base_len, const void *obj, size_t len, unsigned base_no, size_t limit,
                     uint8_t **ret, size_t *ret_len) {
        if (len == 0 || len > UINT32_MAX || base_no > UINT8_MAX)
                return -EINVAL;
        uint32_t n;
        size_t lit;
        delta_runs(base, base_len, obj, len, NULL, &n, &lit);
        size_t total = OBJ_DELTA_HEADER + (size_t) n * 8 + lit;
        if (total >= limit)
                return -E2BIG;
        uint8_t *out = malloc(total);
        if (!out)
                return -ENOMEM;
        memcpy(out, OBJ_DELTA_MAGIC, 4);
        out[4] = (uint8_t) base_no;
        put_le32(out + 5, (uint32_t) len);
        put_le32(out + 9, n);
        uint8_t *runs = out + OBJ_DELTA_HEADER, *l = runs + (size_t) n * 8;
        delta_runs(base, base_len, obj, len, runs, &n, &lit);
        /* the literal part: the bytes the runs add, in order */
        const uint8_t *ob = obj;
        size_t at = 0;
        for (uint32_t i = 0; i < n; i++) {
                uint32_t copy = get_le32(runs + 8 * (size_t) i), add = get_le32(runs + 8 * (size_t) i + 4);
                at += copy;
                memcpy(l, ob + at, add);
                l += add;
                at += add;
        }
        *ret = out;
        *ret_len = total;
        return 0;
}
