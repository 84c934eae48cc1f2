/* SPDX-License-Identifier: MIT */
#pragma once

/* base64url (RFC 4648 section 5) without padding: tokens, public keys and
 * signatures in HTTP headers and JSON. */

#include <stddef.h>
#include <stdint.h>

/* Characters needed for n bytes, without the terminating NUL. */
#define BASE64URL_LEN(n) (((n) * 4 + 2) / 3)

/* Writes BASE64URL_LEN(n) characters and a NUL to out. */
void base64url_encode(const void *in, size_t n, char *out);

/* Decodes s (no padding, no whitespace) into exactly n bytes: -EINVAL unless
 * s is the canonical encoding of n bytes (length, alphabet, unused bits 0). */
int base64url_decode_exact(const char *s, void *out, size_t n);

/* n random bytes from getrandom(); -errno on failure. */
int random_bytes(void *p, size_t n);
