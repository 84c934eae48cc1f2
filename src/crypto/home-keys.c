/* SPDX-License-Identifier: MIT */
#include "home-keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <termios.h>
#include <unistd.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/hash.h"
#include "../basic/macro.h"
#include "../basic/util.h"

static void wipe_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

int home_runtime_dir(const char *home, char **ret) {
        const char *e = getenv("ROAM_RAM_DIR");
        char *d = NULL;
        if (e && *e)
                d = strdup(e);
        else {
                /* the same directory however home is spelled (session.c) */
                char real[PATH_MAX], cwd[PATH_MAX];
                const char *abs = home;
                _cleanup_free_ char *joined = NULL;
                if (home[0] != '/') {
                        if (!getcwd(cwd, sizeof cwd))
                                return -errno;
                        abs = joined = path_join(cwd, home);
                        if (!abs)
                                return -ENOMEM;
                }
                if (realpath(abs, real))
                        abs = real;
                RoamId hid;
                char hex[ID_HEX_SIZE];
                sha256(abs, strlen(abs), &hid);
                id_to_hex(&hid, hex);
                if (asprintf(&d, "/dev/shm/roam-%.12s", hex) < 0)
                        d = NULL;
        }
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int check_on_tmpfs(const char *dir, const char *what) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s", dir);
        struct statfs sf;
        while (statfs(p, &sf) < 0) {
                char *slash = strrchr(p, '/');
                if (errno != ENOENT || !slash || slash == p)
                        return err_set(-errno, "cannot check where '%s' is: %m", dir);
                *slash = 0;
        }
        if (sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC)
                return err_set(-EXDEV,
                               "%s '%s' is not on tmpfs: on an encrypted laptop nothing plain may reach the disk "
                               "(set ROAM_RAM_DIR to a directory on tmpfs, e.g. under /dev/shm)",
                               what, dir);
        return 0;
}

static char *home_file(const char *home, const char *rel) {
        return path_join(home, rel);
}

bool home_keys_encrypted(const char *home) {
        _cleanup_free_ char *p = home_file(home, HOME_KEY_FILE);
        return p && access(p, F_OK) == 0;
}

bool home_keys_have_data_key(const char *home) {
        _cleanup_free_ char *p = home_file(home, HOME_DATA_KEY_FILE);
        return p && access(p, F_OK) == 0;
}

/* Writes a new file that must not replace one: temp file, fsync, link()
 * (EEXIST when someone was first), fsync of the directory. */
static int write_new_file(const char *path, const void *data, size_t len) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return fd;
        r = loop_write(fd, data, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && link(tmp, path) < 0)
                r = -errno;
        (void) unlink(tmp);
        if (r >= 0)
                r = fsync_dir(dir);
        return r;
}

static int read_exact(const char *path, void *buf, size_t len) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        int r = read_full_file(path, len, &data, &n);
        if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;
        if (n != len) {
                explicit_bzero(data, n);
                return -EBADMSG;
        }
        memcpy(buf, data, len);
        explicit_bzero(data, n);
        return 0;
}

static int load_home_key(const char *home, HomeKey *ret) {
        _cleanup_free_ char *p = home_file(home, HOME_KEY_FILE);
        if (!p)
                return -ENOMEM;
        uint8_t buf[HOME_KEY_SIZE];
        int r = read_exact(p, buf, sizeof buf);
        if (r == -ENOENT)
                return err_set(r, "home '%s' has no home key (run 'roam laptop init' to encrypt it)", home);
        if (r >= 0)
                r = home_key_parse(buf, sizeof buf, ret);
        if (r == -EBADMSG)
                return err_set(r, "home key '%s' is malformed (restore it from a backup; without it the laptop's "
                                  "store cannot be read)",
                               p);
        if (r < 0)
                return err_set(r, "cannot read home key '%s': %s", p, strerror(-r));
        return 0;
}

int home_keys_init(const char *home, const char *passphrase, size_t len) {
        if (home_keys_encrypted(home))
                return err_set(-EEXIST, "home '%s' has a home key already (change its passphrase with 'roam unlock "
                                        "--new-passphrase')",
                               home);
        if (len < PASSPHRASE_MIN || len > PASSPHRASE_MAX)
                return err_set(-EINVAL, "a passphrase has %d to %d characters", PASSPHRASE_MIN, PASSPHRASE_MAX);
        uint8_t buf[HOME_KEY_SIZE];
        int r = home_key_make(passphrase, len, KDF_PARAMS_DEFAULT, buf);
        if (r < 0)
                return err_set(r, "cannot make a home key: %s", strerror(-r));
        _cleanup_free_ char *p = home_file(home, HOME_KEY_FILE);
        if (!p)
                return -ENOMEM;
        r = write_new_file(p, buf, sizeof buf);
        if (r == -EEXIST)
                return err_set(r, "home '%s' has a home key already", home);
        if (r < 0)
                return err_set(r, "cannot write home key '%s': %s", p, strerror(-r));
        return 0;
}

int home_keys_public(const char *home, uint8_t ret[static X25519_KEY_SIZE]) {
        HomeKey k;
        int r = load_home_key(home, &k);
        if (r < 0)
                return r;
        memcpy(ret, k.public_key, X25519_KEY_SIZE);
        return 0;
}

int home_keys_save_wrapped(const char *home, const uint8_t wrapped[static WRAPPED_KEY_SIZE]) {
        WrappedKey w;
        if (wrapped_key_parse(wrapped, WRAPPED_KEY_SIZE, &w) < 0)
                return err_set(-EBADMSG, "the wrapped data key is malformed");
        _cleanup_free_ char *p = home_file(home, HOME_DATA_KEY_FILE);
        if (!p)
                return -ENOMEM;
        int r = write_new_file(p, wrapped, WRAPPED_KEY_SIZE);
        if (r == -EEXIST)
                return r;
        if (r < 0)
                return err_set(r, "cannot write data key '%s': %s", p, strerror(-r));
        return 0;
}

static int runtime_path(const char *home, char **ret) {
        _cleanup_free_ char *d = NULL;
        int r = home_runtime_dir(home, &d);
        if (r < 0)
                return r;
        char *p = path_join(d, RUNTIME_KEY_NAME);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int open_data_key(const char *home, const uint8_t priv[static X25519_KEY_SIZE], const uint8_t pub[static 32],
                         uint8_t ret[static DATA_KEY_SIZE]) {
        _cleanup_free_ char *p = home_file(home, HOME_DATA_KEY_FILE);
        if (!p)
                return -ENOMEM;
        uint8_t buf[WRAPPED_KEY_SIZE];
        int r = read_exact(p, buf, sizeof buf);
        if (r == -ENOENT) {
                /* no server gave one: a key of this laptop's own */
                uint8_t dk[DATA_KEY_SIZE];
                r = random_bytes(dk, sizeof dk);
                if (r >= 0)
                        r = wrapped_key_make(pub, dk, KEY_ORIGIN_LOCAL, buf);
                explicit_bzero(dk, sizeof dk);
                if (r >= 0)
                        r = write_new_file(p, buf, sizeof buf);
                if (r < 0 && r != -EEXIST)
                        return err_set(r, "cannot write data key '%s': %s", p, strerror(-r));
                r = read_exact(p, buf, sizeof buf);
        }
        WrappedKey w;
        if (r >= 0)
                r = wrapped_key_parse(buf, sizeof buf, &w);
        if (r == -EBADMSG)
                return err_set(r, "data key '%s' is malformed (pair the laptop again to get it back)", p);
        if (r < 0)
                return err_set(r, "cannot read data key '%s': %s", p, strerror(-r));
        r = wrapped_key_open(&w, priv, ret);
        if (r == -EACCES)
                return err_set(r, "data key '%s' was not wrapped for this home's key (remove it and pair the "
                                  "laptop again)",
                               p);
        return r;
}

static int runtime_save(const char *home, const uint8_t dk[static DATA_KEY_SIZE]) {
        _cleanup_free_ char *d = NULL, *p = NULL;
        int r = home_runtime_dir(home, &d);
        if (r < 0)
                return r;
        r = check_on_tmpfs(d, "the RAM directory");
        if (r < 0)
                return r;
        r = mkdir_p(d, 0700);
        if (r < 0)
                return err_set(r, "cannot create the RAM directory '%s': %s", d, strerror(-r));
        p = path_join(d, RUNTIME_KEY_NAME);
        if (!p)
                return -ENOMEM;
        r = write_file_replace(p, dk, DATA_KEY_SIZE, 0600, false);
        if (r < 0)
                return err_set(r, "cannot write the unlocked key to '%s': %s", p, strerror(-r));
        return 0;
}

int home_keys_unlock(const char *home, const char *passphrase, size_t len, uint8_t ret[static DATA_KEY_SIZE]) {
        HomeKey k;
        int r = load_home_key(home, &k);
        if (r < 0)
                return r;
        uint8_t priv[X25519_KEY_SIZE], dk[DATA_KEY_SIZE];
        r = home_key_open(&k, passphrase, len, priv);
        if (r == -EACCES)
                return err_set(r, "wrong passphrase for home '%s' (try again)", home);
        if (r < 0)
                return err_set(r, "cannot open the home key of '%s': %s", home, strerror(-r));
        r = open_data_key(home, priv, k.public_key, dk);
        explicit_bzero(priv, sizeof priv);
        if (r >= 0)
                r = runtime_save(home, dk);
        if (r >= 0)
                memcpy(ret, dk, DATA_KEY_SIZE);
        explicit_bzero(dk, sizeof dk);
        return r;
}

int home_keys_change_passphrase(const char *home, const char *old_pass, size_t old_len, const char *new_pass,
                                size_t new_len) {
        HomeKey k;
        int r = load_home_key(home, &k);
        if (r < 0)
                return r;
        if (new_len < PASSPHRASE_MIN || new_len > PASSPHRASE_MAX)
                return err_set(-EINVAL, "a passphrase has %d to %d characters", PASSPHRASE_MIN, PASSPHRASE_MAX);
        uint8_t priv[X25519_KEY_SIZE], buf[HOME_KEY_SIZE];
        r = home_key_open(&k, old_pass, old_len, priv);
        if (r == -EACCES)
                return err_set(r, "wrong passphrase for home '%s' (try again)", home);
        if (r >= 0)
                r = home_key_reseal(&k, priv, new_pass, new_len, KDF_PARAMS_DEFAULT, buf);
        explicit_bzero(priv, sizeof priv);
        if (r < 0)
                return err_set(r, "cannot seal the home key: %s", strerror(-r));
        _cleanup_free_ char *p = home_file(home, HOME_KEY_FILE);
        if (!p)
                return -ENOMEM;
        r = write_file_atomic(p, buf, sizeof buf, 0600);
        return r < 0 ? err_set(r, "cannot write home key '%s': %s", p, strerror(-r)) : 0;
}

int home_keys_unlocked(const char *home, uint8_t ret[static DATA_KEY_SIZE]) {
        _cleanup_free_ char *p = NULL;
        int r = runtime_path(home, &p);
        if (r < 0)
                return r;
        r = read_exact(p, ret, DATA_KEY_SIZE);
        if (r == -ENOENT)
                return err_set(-ENOKEY, "this laptop is locked (run 'roam unlock')");
        if (r < 0)
                return err_set(r, "cannot read the unlocked key '%s': %s (run 'roam unlock' again)", p, strerror(-r));
        return 0;
}

int home_keys_lock(const char *home) {
        _cleanup_free_ char *p = NULL;
        int r = runtime_path(home, &p);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(p, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : err_set(-errno, "cannot remove the unlocked key '%s': %m", p);
        static const uint8_t zeros[DATA_KEY_SIZE];
        (void) loop_write(fd, zeros, sizeof zeros);
        if (unlink(p) < 0 && errno != ENOENT)
                return err_set(-errno, "cannot remove the unlocked key '%s': %m", p);
        return 1;
}

/* ---- passphrases ---- */

const char *passphrase_file_default(const char *arg) {
        if (arg)
                return arg;
        const char *e = getenv("ROAM_PASSPHRASE_FILE");
        return e && *e ? e : NULL;
}

int passphrase_from_file(const char *path, char **ret, size_t *ret_len) {
        _cleanup_(wipe_freep) char *text = NULL;
        size_t len;
        int r = read_full_file(path, PASSPHRASE_MAX + 2, &text, &len);
        if (r < 0)
                return err_set(r, "cannot read passphrase file '%s': %s", path, strerror(-r));
        char *nl = memchr(text, '\n', len);
        if (nl) {
                *nl = 0;
                len = (size_t) (nl - text);
        }
        if (strlen(text) != len || len < PASSPHRASE_MIN || len > PASSPHRASE_MAX)
                return err_set(-EINVAL, "passphrase file '%s' must hold one line of %d to %d characters", path,
                               PASSPHRASE_MIN, PASSPHRASE_MAX);
        *ret = TAKE_PTR(text);
        *ret_len = len;
        return 0;
}

static int ask_once(FILE *tty, const char *prompt, char **ret) {
        fprintf(tty, "%s", prompt);
        fflush(tty);
        struct termios old, quiet;
        bool echo_off = tcgetattr(fileno(tty), &old) == 0;
        if (echo_off) {
                quiet = old;
                quiet.c_lflag &= (tcflag_t) ~ECHO;
                (void) tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, tty);
        if (echo_off)
                (void) tcsetattr(fileno(tty), TCSAFLUSH, &old);
        fprintf(tty, "\n");
        if (n < 0) {
                free(line);
                return err_set(-EIO, "no passphrase was given");
        }
        if (n > 0 && line[n - 1] == '\n')
                line[--n] = 0;
        *ret = line;
        return 0;
}

int passphrase_ask(const char *prompt, bool confirm, char **ret, size_t *ret_len) {
        FILE *tty = fopen("/dev/tty", "r+e");
        if (!tty)
                return err_set(-ENOTTY, "no terminal to ask for the passphrase (give --passphrase-file FILE)");
        _cleanup_(wipe_freep) char *a = NULL, *b = NULL;
        int r = ask_once(tty, prompt, &a);
        if (r >= 0 && confirm)
                r = ask_once(tty, "again: ", &b);
        fclose(tty);
        if (r < 0)
                return r;
        size_t len = strlen(a);
        if (confirm && strcmp(a, b))
                return err_set(-EINVAL, "the two passphrases differ (try again)");
        if (len < PASSPHRASE_MIN || len > PASSPHRASE_MAX)
                return err_set(-EINVAL, "a passphrase has %d to %d characters", PASSPHRASE_MIN, PASSPHRASE_MAX);
        *ret = TAKE_PTR(a);
        *ret_len = len;
        return 0;
}

/* ---- a server's keys of its users ---- */

int user_data_key(const char *home, const char *user, uint8_t ret[static DATA_KEY_SIZE]) {
        if (!name_is_valid(user))
                return err_set(-EINVAL, "user name '%s' is invalid", user);
        char rel[128];
        snprintf(rel, sizeof rel, HOME_KEYS_DIR "/users/%s.key", user);
        _cleanup_free_ char *p = home_file(home, rel);
        if (!p)
                return -ENOMEM;
        int r = read_exact(p, ret, DATA_KEY_SIZE);
        if (r == -ENOENT) {
                uint8_t dk[DATA_KEY_SIZE];
                r = random_bytes(dk, sizeof dk);
                if (r >= 0)
                        r = write_new_file(p, dk, sizeof dk);
                explicit_bzero(dk, sizeof dk);
                if (r < 0 && r != -EEXIST)
                        return err_set(r, "cannot write the data key of user '%s' to '%s': %s", user, p,
                                       strerror(-r));
                r = read_exact(p, ret, DATA_KEY_SIZE); /* the first writer's */
        }
        if (r < 0)
                return err_set(r, "cannot read the data key of user '%s' ('%s'): %s", user, p, strerror(-r));
        return 0;
}
