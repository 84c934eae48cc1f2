/* SPDX-License-Identifier: MIT */
#pragma once

/* The laptop registry of a fleet (docs/fleet.md, "Laptops in the fleet"): a
 * laptop pairs with the fleet, not with one member. Its record lives in etcd
 * under /roam/laptops/<id> as JSON {"id", "public_key" (base64url), "name",
 * "user", "paired", "last_seen", "revoked"}, no lease; every change is a
 * compare-and-swap of the whole value, so a revoke is never overwritten by a
 * concurrent pairing or "last seen". Offline grants are the fleet's ownership
 * records (fleet.h: /roam/owners/<session> "laptop:ID" and /roam/grants/).
 *
 * laptop_fleet_use() makes laptop-registry.h's functions for catalog c go to
 * the fleet f (a member's daemon, or a command on a member's home that
 * observes the fleet). f must outlive every use. */

#include <jansson.h>

#include "../fleet/fleet.h"
#include "laptop-registry.h"

void laptop_fleet_use(Catalog *c, Fleet *f);

/* Pure, fuzzed (tests/fuzz/fuzz-etcd.c): a record's value; -EBADMSG. The
 * id must be the key's fingerprint. */
int laptop_fleet_record_parse(const char *text, size_t len, LaptopRecord *ret);
/* The value of record l (caller frees), or NULL (out of memory). */
char *laptop_fleet_record_format(const LaptopRecord *l);
