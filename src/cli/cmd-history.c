/* SPDX-License-Identifier: MIT */
/* roam session history NAME and roam session rollback NAME CHECKPOINT
 * (src/session/history.h). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../session/history.h"
#include "../session/host-id.h"

static bool want_help(int argc, char **argv) {
        return argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

static json_t *entry_json(const CheckpointEntry *e) {
        char hex[ID_HEX_SIZE];
        return json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:b, s:b, s:b, s:b, s:I}", "ref", e->leaf, "id",
                         id_to_hex(&e->id, hex), "seq", (json_int_t) e->seq, "epoch", (json_int_t) e->epoch,
                         "created", (json_int_t) e->created, "host", e->host, "powered_off", e->powered_off,
                         "branch", e->branch, "latest", e->latest, "current", e->current, "bytes",
                         (json_int_t) e->bytes);
}

int session_history_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session history", "NAME [--json]",
                                "Lists a session's checkpoints, newest first: number (or the branch a\n"
                                "rollback kept), when (UTC), on which host, epoch, live or powered off,\n"
                                "the size of RAM and disk delta it holds, and its id. 'latest' is the one\n"
                                "a restore takes by default; 'current' is the parent of the next one.\n\n"
                                "  --json   one JSON object {\"session\", \"checkpoints\": [...]}\n");
        bool as_json = argc == 3 && !strcmp(argv[2], "--json");
        if (argc != 2 && !as_json)
                return cli_usage("session history", "expected NAME [--json]");
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        CheckpointEntry *list = NULL;
        size_t n = 0;
        int r = session_history(h.host, argv[1], &list, &n);
        if (r < 0)
                return cli_error(r);
        char me[HOST_ID_LEN + 1] = "";
        (void) host_id_get(cli_home(), me);
        if (as_json) {
                json_t *arr = json_array();
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(arr, entry_json(&list[i]));
                json_t *j = json_pack("{s:s, s:o}", "session", argv[1], "checkpoints", arr);
                json_dumpf(j, stdout, JSON_INDENT(2));
                putchar('\n');
                json_decref(j);
        } else {
                printf("%-18s %-20s %-10s %5s %-11s %10s  %-16s %s\n", "CHECKPOINT", "CREATED", "HOST", "EPOCH", "KIND",
                       "SIZE", "ID", "");
                for (size_t i = 0; i < n; i++) {
                        CheckpointEntry *e = &list[i];
                        char when[UTC_BUF_SIZE], size[32], hex[ID_HEX_SIZE];
                        format_utc(e->created, true, when, sizeof when);
                        const char *host = !e->host[0] ? "?" : !strcmp(e->host, me) ? "here" : e->host;
                        printf("%-18s %-20s %-10.10s %5lld %-11s %10s  %.16s %s%s\n", e->leaf, when, host,
                               (long long) e->epoch, e->powered_off ? "powered-off" : "live",
                               format_bytes(e->bytes, size, sizeof size), id_to_hex(&e->id, hex),
                               e->latest ? "latest " : "", e->current ? "current" : "");
                }
        }
        free(list);
        return 0;
}

int session_rollback_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("session rollback", "NAME CHECKPOINT",
                                "Rolls a session back to one of its checkpoints (a number or a branch\n"
                                "from 'roam session history', or a 64-digit id). Nothing is lost: the\n"
                                "session's state now is checkpointed first and kept as a branch, which\n"
                                "'roam session rollback NAME branch-...' brings back. A running session\n"
                                "runs on from the checkpoint; a powered-off checkpoint leaves it stopped.\n");
        if (argc != 3)
                return cli_usage("session rollback", "expected NAME CHECKPOINT");
        _cleanup_(cli_host_done) CliHost h = { 0 };
        if (cli_host_open(true, &h))
                return 1;
        RollbackResult res;
        int r = session_rollback(h.host, argv[1], argv[2], &res);
        if (r < 0)
                return cli_error(r);
        char a[ID_HEX_SIZE], b[ID_HEX_SIZE];
        printf("session '%s' rolled back to %.16s (%s); its state before is kept as %s (%.16s)\n", argv[1],
               id_to_hex(&res.to, a), res.powered_off ? "powered off: stopped" : "running", res.branch,
               id_to_hex(&res.kept, b));
        return 0;
}
