/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared by sync.c (pull, push) and upload.c (packs and uploads to send). */

#include "../store/reach.h"
#include "../store/store.h"

#define PACK_AUTO_BYTES (16u << 20) /* remainders up to this go as one pack */

/* Everything below root in the local store: objects and chunks. A missing
 * or unreadable object is err (with the detail given by what). */
int sync_reach_root(Store *s, const RoamId *root, int err, const char *what, Reach **ret);
