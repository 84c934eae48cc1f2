/* SPDX-License-Identifier: MIT */
#pragma once

/* The server's laptop routes (docs/sync-protocol.md, "Laptops"):
 *
 *   POST /v1/laptops/nonces?n=N    any token: N (1..16, default 4) nonces for
 *                                  signed requests, bound to the token's user
 *                                  200 {"nonces": [...], "ttl": S}
 *   POST /v1/laptops               pair: {"public_key": B64, "name": NAME,
 *                                  "user": U (admin tokens only)}, signed by
 *                                  that key (proof that the caller holds it);
 *                                  200 {"id", "name", "user", "paired", "again"}
 *   GET  /v1/laptops               admin/host: every laptop; user: their own
 *   POST /v1/laptops/ID/revoke     admin: the laptop's ownership requests are
 *                                  refused from now on; its sessions can be
 *                                  reclaimed
 *
 * and the check that other routes (api-session.c) make of a signed request. */

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "laptop-registry.h"

#define API_LAPTOP_NONCE_TTL_DEFAULT_S 300
#define API_LAPTOP_NONCES_MAX 4096

typedef struct ApiLaptop ApiLaptop;

/* nonce_ttl_s: 0 = API_LAPTOP_NONCE_TTL_DEFAULT_S. *ret lives as long as the
 * daemon process. */
int api_laptop_register(Daemon *d, int64_t nonce_ttl_s, ApiLaptop **ret);

/* The laptop that signed req: 0 with *ret (paired, not revoked, of the
 * token's user; its nonce consumed, last_seen noted). -ENOENT without a
 * reply when req carries no signature at all. Otherwise it has replied with
 * the reason (400 malformed headers; 401 {"nonce_refused": true} for an
 * unknown, used or expired nonce; 403 unknown or revoked laptop, another
 * user's laptop, or a signature that does not match the request) and returns
 * 1. */
int api_laptop_verify(ApiLaptop *a, HttpRequest *req, LaptopRecord *ret);

/* In a fleet a member that verified a laptop's signed request passes it on
 * to the member that runs the session (one hop) with that member's fleet
 * token and the header API_LAPTOP_FLEET_HEADER: ID. is_member(req) says
 * whether req comes with this member's own fleet token; then the header is
 * believed (the laptop's record is still read: a revoked laptop is refused).
 * NULL unsets. */
#define API_LAPTOP_FLEET_HEADER "Roam-Fleet-Laptop"
void api_laptop_set_member_check(ApiLaptop *a, bool (*is_member)(const HttpRequest *req, void *userdata),
                                 void *userdata);
/* True when req is a fleet member's passing on a laptop's request. */
bool api_laptop_from_member(ApiLaptop *a, const HttpRequest *req);

/* Pure and fuzzed (tests/fuzz/fuzz-reqsig.c): the pairing body. *ret_user
 * is NULL when the body names none. Borrowed from j. */
int api_laptop_parse_pairing(json_t *j, uint8_t pub[static SIGN_PUBLIC_SIZE], const char **ret_name,
                             const char **ret_user);
