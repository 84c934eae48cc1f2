/* SPDX-License-Identifier: MIT */
#pragma once

/* Sync files: take offline and take online carried in a file, where the
 * laptop never reaches the server over a usable link (docs/handoff.md, "By
 * file"). The same ownership rules as over the network:
 *
 *   server  roam session export-offline S --laptop ID -o F
 *           the grant goes into the file: owner := laptop:ID at epoch+1,
 *           with a lease; F holds the final checkpoint (not the master)
 *   laptop  roam offline S --from-file F
 *           only the laptop the file names, only within its lease: S runs
 *   laptop  roam online S --to-file F
 *           S is paused and checkpointed (or taken as it is, powered off);
 *           F holds what the server lacks, signed by the laptop's key; the
 *           laptop marks S "handed in": it runs S again only if the server
 *           refuses F (roam session resume S --file-refused)
 *   server  roam session apply-sync F   (or POST /v1/sessions/sync)
 *           only from the laptop that holds S, at the epoch it holds: S
 *           resumes live, or (powered off) is logged off and finalized
 *
 * And a stale copy (a laptop that comes back after a reclaim):
 *
 *   laptop  roam session export-stale S -o F
 *           S, found stale here (handoff.h: StaleNote) and stopped: its
 *           latest checkpoint, signed by the laptop's key
 *   server  roam session apply-sync F
 *           from a laptop paired for the session's user (revoked or not),
 *           for this server, older than the session's epoch here: the
 *           checkpoint is kept as ref sessions/USER/S/stale-eEPOCH-LAPTOP12
 *           and nothing else changes (owner, epoch, state, latest); an
 *           admin may restore it on purpose ('roam session restore S HEX')
 *
 * A sync file is a bundle (store/bundle.h) whose envelope holds its terms:
 *
 *   {"roam_sync": 1, "kind": "take-offline" | "take-online" | "stale-copy",
 *    "session", "user", "server": HOST ID (host-id.h), "laptop": ID,
 *    "epoch", "checkpoint": HEX, "powered_off", "lease_until", "created",
 *    "signature": B64URL (take-online, stale-copy: Ed25519 by the laptop
 *     over sync_terms_message())}
 *
 * Every check runs after the whole file is verified and before anything is
 * stored, so a refused file leaves the receiving store and catalog as they
 * were. "epoch" of a take-online file is the laptop's epoch; the server takes
 * the session at epoch + 1, so the same file applied twice, or one from
 * before a reclaim, is stale. */

#include <stdbool.h>
#include <stdint.h>

#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../crypto/sign-key.h"
#include "../session/handoff.h"
#include "../store/bundle.h"
#include "../session/host-id.h"

typedef enum SyncKind {
        SYNC_TAKE_OFFLINE,
        SYNC_TAKE_ONLINE,
        SYNC_STALE_COPY,
} SyncKind;

typedef struct SyncTerms {
        SyncKind kind;
        char session[NAME_MAX_LEN + 1];
        char user[NAME_MAX_LEN + 1];
        char server[HOST_ID_LEN + 1];
        char laptop[SIGN_KEY_ID_LEN + 1];
        int64_t epoch;
        char checkpoint[ID_HEX_SIZE];
        bool powered_off;
        int64_t lease_until; /* take-offline; 0 = no limit */
        int64_t created;
        bool signed_;        /* take-online: signature present */
        uint8_t signature[SIGN_SIGNATURE_SIZE];
} SyncTerms;

/* Pure and bounded (fuzzed: tests/fuzz/fuzz-syncterms.c): -EBADMSG with a
 * detail naming the field. */
int sync_terms_parse(const char *json, SyncTerms *ret);
/* JSON; caller frees. */
char *sync_terms_format(const SyncTerms *t);
/* The bytes a take-online file's signature covers; caller frees *ret. */
int sync_terms_message(const SyncTerms *t, char **ret, size_t *ret_len);

/* What the operations work on; all borrowed. */
typedef struct SyncCtx {
        const char *home;
        Store *store;
        Catalog *catalog;
        SessionHost *host;
} SyncCtx;

typedef struct SyncFileResult {
        SyncTerms terms;
        BundleStats stats;
        FinalizeInResult finalize; /* apply of a powered-off session */
        uint64_t file_bytes;       /* written */
        char kept_ref[REF_NAME_MAX_LEN + 1]; /* stale-copy: the ref written or kept */
} SyncFileResult;

/* Server: grants session name to the laptop whose id starts with laptop
 * (paired, not revoked, of the session's user) with a lease of lease_s
 * seconds (0 = none), and writes the grant and the final checkpoint to path.
 * Asked again for the same laptop, the same grant. */
int sync_file_export_offline(const SyncCtx *x, const char *name, const char *laptop, int64_t lease_s,
                             const char *path, bool overwrite, SyncFileResult *ret);
/* Server: applies a take-online file, or keeps a stale-copy file's
 * checkpoint (terms.kind says which). as_user (NULL: any) limits it to that
 * user's sessions (a user token; another user's session is "not found"). */
int sync_file_apply(const SyncCtx *x, const char *path, const char *as_user, SyncFileResult *ret);

/* Laptop: applies a take-offline file (name: NULL = the file's session) and
 * runs the session here. */
int sync_file_take_offline(const SyncCtx *x, const char *name, const char *path, SyncFileResult *ret);
/* Laptop: hands session name in by file. */
int sync_file_take_online(const SyncCtx *x, const char *name, const char *path, bool overwrite,
                          SyncFileResult *ret);
/* Laptop: writes the stale copy of session name (found stale by the laptop
 * daemon, not running) to path: its latest checkpoint, signed; the master
 * image is left out (the server has it). Nothing here changes. */
int sync_file_export_stale(const SyncCtx *x, const char *name, const char *path, bool overwrite,
                           SyncFileResult *ret);
/* Laptop: the server refused the file: the session may run here again, from
 * the checkpoint it was handed in with. */
int sync_file_resume_refused(const SyncCtx *x, const char *name);

/* The rule for a plain bundle (roam bundle apply): its sessions/USER/NAME/...
 * refs only for a session this host does not know or holds itself, and no
 * users/... refs, unless force; *ret_forced (caller frees, NULL when nothing
 * was forced) says what force let through, for the log. */
int sync_check_plain_refs(const SyncCtx *x, const BundleRef *refs, size_t n, bool force, char **ret_forced);
