/* SPDX-License-Identifier: MIT */
#pragma once

/* What remote.c and remote-stream.c share about TLS (internal to src/sync):
 * the token split from its pinned fingerprint, the libcurl options of a
 * pinned or a CA-verified connection, and the one-line errors when a
 * server's certificate is refused (docs/sync-protocol.md, "TLS and
 * pinning"). */

#include <curl/curl.h>
#include <stdbool.h>

#include "../crypto/fingerprint.h"
#include "../crypto/tls-verify.h"
#include "remote.h"

typedef struct RemoteTls {
        bool pinned;
        Fingerprint pin;
        const char *cacert; /* borrowed from the RemoteOptions */
} RemoteTls;

/* The bearer token (caller frees; NULL when token is NULL) and the TLS
 * settings from a token that may carry a fingerprint and the options
 * (o->fingerprint wins over the token's). -EINVAL with detail for a
 * malformed token or fingerprint. */
int remote_tls_config(const char *token, const RemoteOptions *o, char **ret_bearer, RemoteTls *ret);

/* Sets the TLS options of h for url; tv receives what the handshake saw
 * and must outlive it. Nothing for http:// (a pin means nothing there). */
int remote_tls_setup(CURL *h, const char *url, const RemoteTls *t, TlsVerify *tv);

/* After a failed transfer: the negative errno with a detail when the
 * server's certificate was refused (-EKEYREJECTED: not the pinned one, or
 * not verifiable), else 0. */
int remote_tls_error(const char *url, const RemoteTls *t, const TlsVerify *tv, CURLcode cc);
