/* SPDX-License-Identifier: MIT */
#pragma once

/* Which store a home uses: its own directory HOME/store (the default), or
 * one named in HOME/store.url, which 'roam serve --store SPEC' writes so that
 * every command on that home then uses the same store (a RADOS pool shared by
 * a fleet: 'rados:POOL[?conf=FILE]', docs/fleet.md). $ROAM_STORE wins over
 * both. */

#define STORE_LOCATION_FILE "store.url"
#define STORE_LOCATION_MAX 1024

/* The store_open() argument for home. Caller frees *ret. -EBADMSG (with
 * detail) for a malformed HOME/store.url. */
int store_location(const char *home, char **ret);
/* Records spec as home's store (crash-safe); an empty spec or "HOME/store"
 * goes back to the default. */
int store_location_save(const char *home, const char *spec);
