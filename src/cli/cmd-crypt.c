/* SPDX-License-Identifier: MIT */
/* roam unlock|lock: an encrypted laptop's key (docs/store-format.md,
 * "Encryption at rest"; crypto/home-keys.h). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../catalog/catalog.h"
#include "../crypto/home-keys.h"
#include "../daemon/daemon.h"
#include "../session/session.h"
#include "../store/location.h"
#include "../sync/remote.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static void wipe_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

static int need_encrypted_home(void) {
        if (!home_keys_encrypted(cli_home()))
                return cli_errorf("home '%s' is not encrypted: it has no home key ('roam laptop init' makes one "
                                  "for a new laptop)",
                                  cli_home());
        return 0;
}

/* Tells the daemon serving this home, if one does (POST path). */
static int tell_daemon(const char *path) {
        _cleanup_(daemon_endpoint_freep) DaemonEndpoint *ep = NULL;
        if (daemon_endpoint_read(cli_home(), &ep) < 0) {
                err_clear();
                return 0; /* none runs: the next one reads the key itself */
        }
        Remote *rem = NULL;
        RemoteOptions ro = { .cacert = ep->cacert };
        int r = remote_new(ep->url, ep->token, &ro, &rem);
        if (r < 0)
                return cli_error(r);
        json_t *ans = NULL;
        r = cli_local_request(rem, "POST", path, NULL, &ans);
        json_decref(ans);
        remote_free(rem);
        return r;
}

static int unlock_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "passphrase-file", required_argument, NULL, 'p' },
                { "new-passphrase", no_argument, NULL, 'n' },
                { "new-passphrase-file", required_argument, NULL, 'N' },
                {},
        };
        const char *file = NULL, *new_file = NULL;
        bool change = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("unlock", "[--passphrase-file FILE] [--new-passphrase [--new-passphrase-file F]]",
                                        "Unlocks this encrypted laptop: asks for the passphrase on the terminal (or\n"
                                        "reads the first line of FILE; $ROAM_PASSPHRASE_FILE is the default), opens\n"
                                        "the home key with it (scrypt) and the data key with that, and keeps the data\n"
                                        "key in the home's RAM directory (tmpfs) until 'roam lock' or power-off.\n"
                                        "Works with the network cut. The laptop daemon, if it runs, starts hoarding\n"
                                        "and pre-copying again. A home that never got its user's key from a server\n"
                                        "makes a key of its own here.\n\n"
                                        "  --new-passphrase        then set a new passphrase (asked twice, or from\n"
                                        "                          --new-passphrase-file F)\n");
                case 'p':
                        file = optarg;
                        break;
                case 'n':
                        change = true;
                        break;
                case 'N':
                        change = true;
                        new_file = optarg;
                        break;
                default:
                        return cli_usage("unlock", "invalid option");
                }
        if (optind != argc)
                return cli_usage("unlock", "unexpected argument '%s'", argv[optind]);
        if (need_encrypted_home())
                return 1;
        _cleanup_(wipe_freep) char *pass = NULL;
        size_t len;
        file = passphrase_file_default(file);
        int r = file ? passphrase_from_file(file, &pass, &len) : passphrase_ask("passphrase: ", false, &pass, &len);
        if (r < 0)
                return cli_error(r);
        uint8_t dk[DATA_KEY_SIZE];
        r = home_keys_unlock(cli_home(), pass, len, dk);
        if (r < 0)
                return cli_error(r);
        /* the store says whether this is its key */
        _cleanup_free_ char *dir = NULL;
        if (store_location(cli_home(), &dir) >= 0 && cli_store_exists()) {
                Store *s = NULL;
                r = store_open(dir, NULL, &s);
                if (r >= 0 && store_is_encrypted(s))
                        r = store_unlock(s, dk);
                store_free(s);
                if (r < 0) {
                        explicit_bzero(dk, sizeof dk);
                        (void) home_keys_lock(cli_home());
                        return cli_error(r);
                }
        }
        explicit_bzero(dk, sizeof dk);
        if (change) {
                _cleanup_(wipe_freep) char *np = NULL;
                size_t nlen;
                r = new_file ? passphrase_from_file(new_file, &np, &nlen)
                             : passphrase_ask("new passphrase: ", true, &np, &nlen);
                if (r >= 0)
                        r = home_keys_change_passphrase(cli_home(), pass, len, np, nlen);
                if (r < 0)
                        return cli_error(r);
                printf("new passphrase set\n");
        }
        if (tell_daemon("/v1/unlock"))
                return 1;
        _cleanup_free_ char *rd = NULL;
        if (home_runtime_dir(cli_home(), &rd) < 0)
                return cli_error(-ENOMEM);
        printf("unlocked (the key stays in %s/" RUNTIME_KEY_NAME " until 'roam lock' or power-off)\n", rd);
        return 0;
}

/* Refuses while a session runs here (its RAM is plain on tmpfs while it
 * runs); puts every other one away: its disk into the store, its files off
 * tmpfs. */
static int put_away_all(void) {
        _cleanup_free_ char *db = cli_home_path("catalog.db");
        if (!db || access(db, F_OK) < 0)
                return 0;
        CliHost h;
        if (cli_host_open(true, &h))
                return 1;
        SessionInfo *list = NULL;
        size_t n = 0;
        int r = session_list(h.host, &list, &n), k = 0;
        for (size_t i = 0; r >= 0 && i < n && !k; i++)
                if (list[i].pid > 0)
                        k = cli_errorf("session '%s' runs on this laptop (its RAM is plain while it runs): stop it "
                                       "first ('roam session stop %s'), then lock",
                                       list[i].row.name, list[i].row.name);
        for (size_t i = 0; r >= 0 && i < n && !k; i++)
                r = session_put_away(h.host, list[i].row.name, true);
        session_info_list_free(list, n);
        cli_host_done(&h);
        return r < 0 ? cli_error(r) : k;
}

/* Staged RAM (src/session/staging.c) is plain too: a lock drops it. */
static unsigned drop_staged(void) {
        _cleanup_free_ char *rd = NULL;
        if (home_runtime_dir(cli_home(), &rd) < 0)
                return 0;
        _cleanup_(closedirp) DIR *d = opendir(rd);
        unsigned n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
                if ((strstr(e->d_name, ".staged.") || strstr(e->d_name, ".staging.")) &&
                    unlinkat(dirfd(d), e->d_name, 0) == 0)
                        n++;
        return n;
}

static int lock_verb(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("lock", "",
                                "Locks this encrypted laptop: the data key leaves the home's RAM directory\n"
                                "and the laptop daemon's memory; stopped sessions' disks go into the store\n"
                                "and their files off tmpfs, and staged RAM is dropped; from then on\n"
                                "every command that reads or writes the store, and the daemon's hoards and\n"
                                "pre-copies, stop with \"this laptop is locked (run 'roam unlock')\".\n"
                                "Refused while a session runs here: stop it first.\n");
        if (argc > 1)
                return cli_usage("lock", "unexpected argument '%s'", argv[1]);
        if (need_encrypted_home())
                return 1;
        uint8_t dk[DATA_KEY_SIZE];
        bool unlocked = home_keys_unlocked(cli_home(), dk) >= 0;
        explicit_bzero(dk, sizeof dk);
        err_clear();
        if (unlocked && put_away_all())
                return 1;
        if (tell_daemon("/v1/lock"))
                return 1;
        int r = home_keys_lock(cli_home());
        if (r < 0)
                return cli_error(r);
        unsigned staged = drop_staged();
        printf("locked%s", r == 0 ? " (it was locked already)" : "");
        if (staged)
                printf("; %u staged RAM file%s dropped", staged, staged == 1 ? "" : "s");
        printf("\n");
        return 0;
}

int verb_unlock(int argc, char **argv) {
        return unlock_verb(argc, argv);
}

int verb_lock(int argc, char **argv) {
        return lock_verb(argc, argv);
}

int cli_laptop_encryption_init(const char *passphrase_file, bool plain) {
        bool encrypted = home_keys_encrypted(cli_home());
        if (plain) {
                if (encrypted)
                        return cli_errorf("home '%s' is encrypted already (its home key stays; a plain laptop "
                                          "needs a new home)",
                                          cli_home());
                /* a plain store now: the laptop daemon then keeps it plain */
                Store *s;
                if (cli_open_store(true, false, &s))
                        return 1;
                store_free(s);
                printf("encryption: off (a plain home: chunks, RAM and overlays are not encrypted)\n");
                return 0;
        }
        if (encrypted) {
                printf("encryption: on (the home key exists; 'roam unlock' opens it)\n");
                return 0;
        }
        if (cli_store_exists())
                return cli_errorf("home '%s' has a plain store already (made before 'roam laptop init'): give "
                                  "--no-encryption to keep it plain, or start a new home",
                                  cli_home());
        _cleanup_(wipe_freep) char *pass = NULL;
        size_t len;
        const char *file = passphrase_file_default(passphrase_file);
        int r = file ? passphrase_from_file(file, &pass, &len)
                     : passphrase_ask("passphrase for this laptop's data: ", true, &pass, &len);
        if (r == -ENOTTY)
                return cli_errorf("no terminal to ask for this laptop's passphrase (give --passphrase-file FILE, "
                                  "or --no-encryption)");
        if (r >= 0)
                r = home_keys_init(cli_home(), pass, len);
        if (r < 0)
                return cli_error(r);
        printf("encryption: on (home key in %s/" HOME_KEY_FILE "; 'roam unlock' opens it with the passphrase)\n",
               cli_home());
        return 0;
}
