/* SPDX-License-Identifier: MIT */
#pragma once

/* A TLS certificate's fingerprint, and the pairing token that carries it
 * (pure: no I/O; fuzzed by tests/fuzz/fuzz-pairing.c).
 *
 * The fingerprint is the SHA-256 of the certificate's DER bytes, as a
 * browser's certificate viewer and 'openssl x509 -fingerprint -sha256' show
 * it. roam writes it "sha256:" + 64 lowercase hex digits and reads it with
 * or without that prefix (any case), with or without ':' between the bytes.
 *
 * A pairing token is an API token with the fingerprint of the server that
 * accepts it: "TOKEN@sha256:HEX" ('roam token create' prints it when the
 * server serves TLS). Clients split it: the token goes into the
 * Authorization header, the fingerprint is pinned (docs/sync-protocol.md,
 * "TLS and pinning"). A token without '@' is a plain token. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FINGERPRINT_SIZE 32
#define FINGERPRINT_PREFIX "sha256:"
/* "sha256:" + 64 hex + NUL */
#define FINGERPRINT_TEXT_SIZE (sizeof(FINGERPRINT_PREFIX) - 1 + 2 * FINGERPRINT_SIZE + 1)
/* The longest text fingerprint_parse() reads (prefix, 32 bytes with ':' between) */
#define FINGERPRINT_TEXT_MAX (sizeof(FINGERPRINT_PREFIX) - 1 + 3 * FINGERPRINT_SIZE - 1)
#define PAIRING_TOKEN_MAX 1024

typedef struct Fingerprint {
        uint8_t b[FINGERPRINT_SIZE];
} Fingerprint;

/* "sha256:<64 lowercase hex>" into buf; returns buf. */
char *fingerprint_format(const Fingerprint *fp, char buf[static FINGERPRINT_TEXT_SIZE]);
/* Parses text as above. -EINVAL (no detail) for anything else. */
int fingerprint_parse(const char *text, Fingerprint *ret);
bool fingerprint_equal(const Fingerprint *a, const Fingerprint *b);

/* Splits a token that may carry a fingerprint: *ret_token (caller frees) is
 * the part before '@' (the whole text when there is none); *ret_has_fp
 * tells whether a fingerprint followed, then in *ret_fp. -EINVAL with a
 * detail (never quoting the secret) for a malformed fingerprint part, an
 * empty token or a text over PAIRING_TOKEN_MAX. */
int pairing_token_split(const char *text, char **ret_token, Fingerprint *ret_fp, bool *ret_has_fp);
/* "TOKEN@sha256:HEX" (caller frees); token must not carry one already
 * (-EINVAL). */
int pairing_token_join(const char *token, const Fingerprint *fp, char **ret);
