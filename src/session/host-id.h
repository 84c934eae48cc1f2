/* SPDX-License-Identifier: MIT */
#pragma once

/* A roam home's identity: 16 random bytes in hex, made on first use and
 * kept in HOME/host.id. A sync file names the server it is for by it, so a
 * file written for one server is refused by another (sync-file.h); GET
 * /v1/info tells it. */

#define HOST_ID_FILE "host.id"
#define HOST_ID_LEN 32

/* Reads HOME/host.id, making it (crash-safely) when it is missing. */
int host_id_get(const char *home, char ret[static HOST_ID_LEN + 1]);
