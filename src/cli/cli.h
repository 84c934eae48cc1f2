/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared pieces of the command line: the verb tables, the state directory,
 * error reporting. Only code under src/cli/ prints and exits. */

#include <stdbool.h>
#include <stdio.h>

#include "../store/store.h"

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char **argv); /* argv[0] is the verb */
        const char *args;                  /* "NAME FILE" for help */
        const char *summary;
        bool group; /* a verb group: 'roam NAME COMMAND', its own man page */
} Verb;

/* Runs the verb named argv[0] from table; prints the group's help on
 * --help / no verb. Returns the exit code. */
int cli_dispatch(const char *group, const Verb *table, size_t n, int argc, char **argv);
void cli_print_verbs(FILE *f, const char *group, const Verb *table, size_t n);

/* Man pages (src/cli/man.c), roff from the verb tables and each verb's own
 * --help text. cli_man_header() starts page (e.g. "roam-image") with its
 * NAME section; cli_man_verb() is one .SS of a verb (prefix: "image ");
 * cli_man_commands() is the COMMANDS section of a group, which cli_dispatch()
 * prints for 'roam GROUP --help-man'. Return 0, or 1 after an error. */
void cli_man_header(const char *page, const char *name, const char *summary);
int cli_man_verb(const char *prefix, const Verb *v);
int cli_man_commands(const char *group, const Verb *table, size_t n);

/* Global options. */
extern const char *arg_home;
extern bool arg_quiet;
extern const char *arg_log_level; /* roam --log-level, checked */

/* The log level asked for: roam --log-level, else $ROAM_LOG (a bad value is
 * ignored with a warning), else NULL. */
const char *cli_log_level(void);

/* The state directory: --home, $ROAM_HOME, /var/lib/roam (root) or
 * ~/.local/share/roam. */
const char *cli_home(void);
/* cli_home() + "/" + rel; caller frees. */
char *cli_home_path(const char *rel);

/* The state directory must exist and be a directory; create: make it when
 * missing (first use by a writer). Prints the error; returns 0 or 1. */
int cli_need_home(bool create);
/* Refuses a read-only state directory with a line that names it. */
int cli_need_writable_home(void);

/* True when the home has a store already (its directory, or one elsewhere: store/location.h). */
bool cli_store_exists(void);
/* Opens the home's store (cli_home()/store, or the one store/location.h
 * names); create makes it when missing. A writer takes the store lock
 * shared. Prints the error itself. */
int cli_open_store(bool create, bool writer, Store **ret);

/* Prints "roam: <detail>" where the detail comes from err_message(r).
 * Returns 1 (the exit code for an error). */
int cli_error(int r);
/* Prints "roam: <formatted>" and returns 1. */
int cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Once interrupted (src/basic/interrupt.h) both print one line instead,
 * "roam: interrupted; <note>", and return 130. The note says what was kept;
 * the default is "nothing was changed". cli_interrupted() prints it (once). */
void cli_interrupt_note(const char *note);
int cli_interrupted(void);
/* Usage error: "roam: <msg> (see 'roam <cmd> --help')", returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens cli_home()/catalog.db (made when missing); create: makes the state
 * directory too, else a missing one is an error. Prints the error itself. */
struct Catalog;
int cli_open_catalog(bool create, struct Catalog **ret);

/* A home's store (as a writer; with_store false: none), catalog and session
 * host, for the commands on sessions. cli_host_open() prints its errors;
 * done() accepts a zeroed or half-opened one. */
struct SessionHost;
struct SessionCreate;
typedef struct CliHost {
        Store *store;
        struct Catalog *catalog;
        struct SessionHost *host;
        struct Fleet *fleet; /* a fleet member's home: the fleet, observed (docs/fleet.md) */
} CliHost;
int cli_host_open(bool with_store, CliHost *ret);
void cli_host_done(CliHost *h);

/* Standard option handling for a verb: returns -1 to continue, else an exit
 * code (after --help). Use in getopt loops: case 'h': return cli_help(...). */
int cli_help(const char *cmd, const char *args, const char *text);

/* The daemon serving cli_home() and a client for it (its local admin token).
 * Print errors themselves; callers free both. */
struct Remote;
struct DaemonEndpoint;
/* The token to give a Remote, a hoard or a hand-over marker: token with
 * fingerprint ("sha256:HEX", may be NULL: token as it is) in place of the
 * one it may carry ("TOKEN@sha256:HEX", crypto/fingerprint.h). Caller
 * frees. Prints errors itself (returns 1). */
int cli_token_with_fingerprint(const char *token, const char *fingerprint, char **ret);
int cli_local_daemon(struct Remote **ret_remote, struct DaemonEndpoint **ret_ep);
/* The same with a longer wait for an answer that takes long (a hand-over whose
 * far side boots a guest for its log-off); 0 = the default. */
int cli_local_daemon_stall(struct Remote **ret_remote, struct DaemonEndpoint **ret_ep, unsigned stall_timeout_s);
/* One JSON request to it; *ret is the answer (caller decrefs). */
struct json_t;
int cli_local_request(struct Remote *rem, const char *method, const char *path, struct json_t *body,
                      struct json_t **ret);

/* --json output (docs/cli-json.md). cli_take_flag() removes the first
 * argv[1..] equal to flag (before a "--"), shifting the rest down; returns
 * whether it was there. cli_print_json() prints j on stdout, indented, with
 * a newline, and decrefs it; a NULL j (allocation failure) is an error.
 * Returns 0 or 1. */
bool cli_take_flag(int *argc, char **argv, const char *flag);
int cli_print_json(struct json_t *j);

/* Verb groups. */
int verb_image(int argc, char **argv);
int verb_store(int argc, char **argv);
int verb_bundle(int argc, char **argv);
int verb_session(int argc, char **argv);
int verb_desk(int argc, char **argv);
int verb_serve(int argc, char **argv);
int verb_token(int argc, char **argv);
int verb_pull(int argc, char **argv);
int verb_push(int argc, char **argv);
int verb_hoard(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_offline(int argc, char **argv);
int verb_online(int argc, char **argv);
int session_reclaim_verb(int argc, char **argv);
int session_connect_verb(int argc, char **argv);
/* 'roam session create' on a fleet member's home (cmd-host.c): imports the
 * kernel and initrd into the shared store and asks the local daemon to place
 * the session (on_host: that member). -1 when the home is in no fleet (and
 * on_host is NULL): create it here; else the exit code. */
int cli_fleet_create(const struct SessionCreate *a, const char *on_host);
/* 'roam session move NAME --to-host HOST' through the local fleet member. */
int cli_fleet_move(const char *name, const char *to_host);
int verb_host(int argc, char **argv);
int verb_laptop(int argc, char **argv);
/* sync files (cmd-syncfile.c) */
int session_export_offline_verb(int argc, char **argv);
int session_apply_sync_verb(int argc, char **argv);
int session_export_stale_verb(int argc, char **argv);
int syncfile_offline_from(const char *name, const char *file);
int syncfile_online_to(const char *name, const char *file, bool force);
int syncfile_resume_refused(const char *name);
/* history and rollback (cmd-history.c) */
int session_history_verb(int argc, char **argv);
int session_rollback_verb(int argc, char **argv);
int verb_info(int argc, char **argv);
int verb_unlock(int argc, char **argv);
int verb_lock(int argc, char **argv);
/* 'roam laptop init': the home key (asks for the passphrase), or a plain
 * store with plain (cmd-crypt.c). Prints; returns 0 or 1. */
int cli_laptop_encryption_init(const char *passphrase_file, bool plain);
