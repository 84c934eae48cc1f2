/* SPDX-License-Identifier: MIT */
/* roam laptop list|revoke|id: the laptops paired with this server, and this
 * laptop's own identity. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../catalog/catalog.h"
#include "../crypto/sign-key.h"
#include "../daemon/api-fleet.h"
#include "../daemon/laptop-fleet.h"
#include "../daemon/laptop-identity.h"
#include "../daemon/laptop-registry.h"

static bool want_help(int argc, char **argv) {
        return argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
}

/* The registry of this home: its catalog's, or in a fleet member's home the
 * fleet's (etcd, as an observer). Prints the error itself. */
typedef struct Registry {
        Catalog *cat;
        Fleet *fleet;
} Registry;

static void registry_done(Registry *r) {
        if (r->fleet) {
                laptop_fleet_use(r->cat, NULL);
                fleet_leave(r->fleet, false);
        }
        catalog_free(r->cat);
        *r = (Registry){ 0 };
}

static int registry_open(bool create, Registry *ret) {
        *ret = (Registry){ 0 };
        if (cli_open_catalog(create, &ret->cat))
                return 1;
        _cleanup_free_ char *etcd = NULL, *name = NULL;
        if (api_fleet_home(cli_home(), &etcd, &name) >= 0) {
                int r = fleet_join(&(FleetOptions){ .etcd = etcd, .name = name, .observe = true }, &ret->fleet);
                if (r < 0) {
                        registry_done(ret);
                        return cli_error(r);
                }
                laptop_fleet_use(ret->cat, ret->fleet);
        }
        err_clear();
        return 0;
}

static int laptop_list_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("laptop list", "[--json]",
                                "Lists the laptops paired with this server (on a fleet member's home: with\n"
                                "the fleet): id (the fingerprint of the key\n"
                                "the laptop made; give a prefix of it to 'roam laptop revoke'), display\n"
                                "name, user, when paired, when last seen (UTC), and whether revoked.\n"
                                "Two laptops may share a name; never an id.\n\n"
                                "  --json   one JSON object {\"laptops\": [...]}\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("laptop list", "unexpected argument '%s'", argv[1]);
        _cleanup_(registry_done) Registry reg = { 0 };
        if (registry_open(false, &reg))
                return 1;
        LaptopRecord *list = NULL;
        size_t n = 0;
        int r = laptop_list(reg.cat, NULL, &list, &n);
        if (r < 0)
                return cli_error(r);
        json_t *arr = as_json ? json_array() : NULL;
        if (!as_json)
                printf("%-32s %-20s %-12s %-20s %-20s %s\n", "ID", "NAME", "USER", "PAIRED", "LAST SEEN", "STATE");
        for (size_t i = 0; i < n; i++) {
                LaptopRecord *l = &list[i];
                char paired[UTC_BUF_SIZE], seen[UTC_BUF_SIZE];
                format_utc(l->paired, true, paired, sizeof paired);
                format_utc(l->last_seen, true, seen, sizeof seen);
                if (arr)
                        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", l->id, "name",
                                                             l->name, "user", l->user, "paired", (json_int_t) l->paired,
                                                             "last_seen", (json_int_t) l->last_seen, "revoked",
                                                             (json_int_t) l->revoked));
                else
                        printf("%-32s %-20s %-12s %-20s %-20s %s\n", l->id, l->name, l->user, paired, seen,
                               l->revoked ? "revoked" : "paired");
        }
        free(list);
        return arr ? cli_print_json(json_pack("{s:o}", "laptops", arr)) : 0;
}

static int laptop_revoke_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("laptop revoke", "ID",
                                "Revokes the laptop whose id starts with ID (at least 4 hex digits, from\n"
                                "'roam laptop list'): from its next request on, the server refuses it\n"
                                "every request that takes, renews or hands back a session. The sessions\n"
                                "it holds offline stay its until an admin reclaims them ('roam session\n"
                                "reclaim'); whatever it did offline stays on the laptop.\n");
        if (argc != 2)
                return cli_usage("laptop revoke", "expected one laptop ID");
        _cleanup_(registry_done) Registry reg = { 0 };
        if (registry_open(false, &reg))
                return 1;
        LaptopRecord l;
        int r = laptop_revoke(reg.cat, argv[1], &l);
        if (r == -EINVAL)
                return cli_usage("laptop revoke", "%s", err_message(r));
        if (r < 0)
                return cli_error(r);
        printf("revoked laptop '%s' (id %s) of user '%s'\n", l.name, l.id, l.user);
        return 0;
}

static int laptop_id_verb(int argc, char **argv) {
        if (want_help(argc, argv))
                return cli_help("laptop id", "",
                                "Prints this laptop's id: the fingerprint of the key that 'roam serve --role\n"
                                "laptop' made in $ROAM_HOME/" LAPTOP_KEY_FILE " on its first start.\n");
        if (argc > 1)
                return cli_usage("laptop id", "unexpected argument '%s'", argv[1]);
        _cleanup_free_ char *path = cli_home_path(LAPTOP_KEY_FILE);
        if (!path)
                return cli_error(-ENOMEM);
        _cleanup_(sign_key_freep) SignKey *k = NULL;
        int r = sign_key_load(path, &k);
        if (r == -ENOENT)
                return cli_errorf("'%s' has no laptop key (start 'roam serve --role laptop' there once)", cli_home());
        if (r < 0)
                return cli_error(r);
        uint8_t pub[SIGN_PUBLIC_SIZE];
        char id[SIGN_KEY_ID_LEN + 1];
        sign_key_public(k, pub);
        sign_key_id(pub, id);
        printf("%s\n", id);
        return 0;
}

static int laptop_init_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "passphrase-file", required_argument, NULL, 'p' },
                { "no-encryption", no_argument, NULL, 'P' },
                {},
        };
        const char *passphrase_file = NULL;
        bool plain = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("laptop init", "[--passphrase-file FILE | --no-encryption]",
                                        "Makes this laptop's key ($ROAM_HOME/" LAPTOP_KEY_FILE ") if there is none, and\n"
                                        "prints its id and public key. 'roam serve --role laptop' does this by\n"
                                        "itself and pairs over the network; a laptop that never reaches the\n"
                                        "server is registered by hand on the server ('roam laptop add').\n\n"
                                        "It also makes the laptop encrypted (the default): asks for a passphrase\n"
                                        "(twice; or the first line of FILE, default $ROAM_PASSPHRASE_FILE) and\n"
                                        "seals the home key under it ($ROAM_HOME/keys/home.key). Everything the\n"
                                        "laptop stores is then encrypted; 'roam unlock' opens it, 'roam lock'\n"
                                        "closes it (docs/store-format.md).\n\n"
                                        "  --no-encryption   a plain laptop instead (nothing is encrypted)\n");
                case 'p':
                        passphrase_file = optarg;
                        break;
                case 'P':
                        plain = true;
                        break;
                default:
                        return cli_usage("laptop init", "invalid option");
                }
        if (optind != argc)
                return cli_usage("laptop init", "unexpected argument '%s'", argv[optind]);
        if (plain && passphrase_file)
                return cli_usage("laptop init", "--no-encryption takes no passphrase");
        _cleanup_free_ char *path = cli_home_path(LAPTOP_KEY_FILE);
        if (!path)
                return cli_error(-ENOMEM);
        int r = mkdir_p(cli_home(), 0755);
        _cleanup_(sign_key_freep) SignKey *k = NULL;
        if (r >= 0)
                r = sign_key_load(path, &k);
        if (r == -ENOENT) {
                r = sign_key_generate(&k);
                if (r >= 0)
                        r = sign_key_save(k, path);
        }
        if (r < 0)
                return cli_error(r);
        uint8_t pub[SIGN_PUBLIC_SIZE];
        char id[SIGN_KEY_ID_LEN + 1], pub64[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1];
        sign_key_public(k, pub);
        sign_key_id(pub, id);
        base64url_encode(pub, sizeof pub, pub64);
        printf("laptop id:  %s\npublic key: %s\non the server (admin): roam laptop add --user USER --name NAME --key %s\n",
               id, pub64, pub64);
        return cli_laptop_encryption_init(passphrase_file, plain);
}

static int laptop_add_verb(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "user", required_argument, NULL, 'u' },
                { "name", required_argument, NULL, 'n' },
                { "key", required_argument, NULL, 'k' },
                {},
        };
        const char *user = NULL, *name = "laptop", *key = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "hu:n:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("laptop add", "--user USER [--name NAME] --key PUBLIC_KEY",
                                        "Pairs a laptop by hand (admin, on the server): PUBLIC_KEY is what 'roam\n"
                                        "laptop init' printed on the laptop (it may start with '-': give it with\n"
                                        "--key, or after '--'). For a laptop that never reaches the server: it\n"
                                        "then takes sessions offline and online by sync file.\n");
                case 'u':
                        user = optarg;
                        break;
                case 'n':
                        name = optarg;
                        break;
                case 'k':
                        key = optarg;
                        break;
                default:
                        return cli_usage("laptop add", "invalid option");
                }
        if (!key && argc - optind == 1)
                key = argv[optind++];
        if (!key || argc != optind)
                return cli_usage("laptop add", "expected --key PUBLIC_KEY");
        if (!user || !name_is_valid(user))
                return cli_usage("laptop add", "--user takes the laptop's user (" NAME_RULE ")");
        if (!name_is_valid(name))
                return cli_usage("laptop add", "--name takes a display name (" NAME_RULE ")");
        uint8_t pub[SIGN_PUBLIC_SIZE];
        if (base64url_decode_exact(key, pub, sizeof pub) < 0)
                return cli_errorf("'%s' is not an Ed25519 public key (%d base64url characters from 'roam laptop init')",
                                  key, (int) BASE64URL_LEN(SIGN_PUBLIC_SIZE));
        _cleanup_(registry_done) Registry reg = { 0 };
        if (registry_open(true, &reg))
                return 1;
        LaptopRecord l;
        bool again;
        int r = laptop_pair(reg.cat, pub, name, user, &l, &again);
        if (r < 0)
                return cli_error(r);
        printf("%s laptop '%s' (id %s) of user '%s'\n", again ? "renamed" : "paired", l.name, l.id, l.user);
        return 0;
}

static const Verb laptop_verbs[] = {
        { "list", laptop_list_verb, "[--json]", "the laptops paired with this server" },
        { "revoke", laptop_revoke_verb, "ID", "refuse a laptop's ownership requests from now on" },
        { "id", laptop_id_verb, "", "this laptop's id (the fingerprint of its key)" },
        { "init", laptop_init_verb, "", "make this laptop's key; print its id and public key" },
        { "add", laptop_add_verb, "--user USER --key PUBLIC_KEY", "pair a laptop by hand (admin, on the server)" },
};

int verb_laptop(int argc, char **argv) {
        return cli_dispatch("laptop", laptop_verbs, ELEMENTSOF(laptop_verbs), argc, argv);
}
