/* SPDX-License-Identifier: MIT */
#pragma once

/* Single-use nonces for signed requests (crypto/request-sig.h), in memory.
 * A nonce is bound to the user it was issued to (a token's user; "" for
 * admin and host tokens), lives ttl seconds, and is gone once consumed. The
 * table holds at most max nonces: issuing beyond that first drops expired
 * ones, then the oldest. A restart forgets them all: the client then gets
 * "nonce refused" and signs again with a new one (remote.h). Thread-safe.
 * The clock is passed in (unix seconds) for tests. */

#include <stddef.h>
#include <stdint.h>

#include "../crypto/request-sig.h"

typedef struct NonceTable NonceTable;

int nonce_table_new(size_t max, int64_t ttl_s, NonceTable **ret);
void nonce_table_free(NonceTable *t);
int64_t nonce_table_ttl(const NonceTable *t);

/* A new nonce for user into ret (REQSIG_NONCE_HEX_LEN digits and a NUL). */
int nonce_issue(NonceTable *t, const char *user, int64_t now, char ret[static REQSIG_NONCE_HEX_LEN + 1]);

/* Consumes nonce for user: 0; -ETIME when it expired; -ESTALE when it is
 * unknown, used already or issued to another user (with details). */
int nonce_consume(NonceTable *t, const char *nonce, const char *user, int64_t now);
