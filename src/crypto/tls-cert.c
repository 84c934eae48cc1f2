/* SPDX-License-Identifier: MIT */
#include "tls-cert.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"

static inline void x509_freep(X509 **x) {
        X509_free(*x);
}
static inline void pkey_freep(EVP_PKEY **k) {
        EVP_PKEY_free(*k);
}

/* Reads a PEM file of at most TLS_PEM_MAX; what: "certificate" or "key". */
static int read_pem(const char *path, const char *what, char **ret, size_t *ret_len) {
        int r = read_full_file(path, TLS_PEM_MAX, ret, ret_len);
        if (r == -EFBIG)
                return err_set(-EINVAL, "TLS %s '%s' is not a PEM %s (it is larger than 1 MiB)", what, path, what);
        if (r < 0)
                return err_set(r, "cannot read TLS %s '%s': %s", what, path, strerror(-r));
        return 0;
}

static int load_cert(const char *path, X509 **ret) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_pem(path, "certificate", &text, &len);
        if (r < 0)
                return r;
        BIO *bio = BIO_new_mem_buf(text, (int) len);
        X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!x)
                return err_set(-EINVAL, "TLS certificate '%s' is not a PEM certificate (give the '-----BEGIN "
                               "CERTIFICATE-----' file)", path);
        *ret = x;
        return 0;
}

/* A callback that refuses to ask for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
        return -1;
}

static int load_key(const char *path, EVP_PKEY **ret) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_pem(path, "key", &text, &len);
        if (r < 0)
                return r;
        BIO *bio = BIO_new_mem_buf(text, (int) len);
        EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        explicit_bzero(text, len);
        if (!k)
                return err_set(-EINVAL, "TLS key '%s' is not an unencrypted PEM private key (give the '-----BEGIN "
                               "PRIVATE KEY-----' file of the certificate)", path);
        *ret = k;
        return 0;
}

static int cert_fingerprint(X509 *x, Fingerprint *ret) {
        unsigned n = 0;
        uint8_t md[EVP_MAX_MD_SIZE];
        if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != FINGERPRINT_SIZE)
                return err_set(-EIO, "cannot hash a certificate (OpenSSL)");
        memcpy(ret->b, md, FINGERPRINT_SIZE);
        return 0;
}

int tls_cert_file_fingerprint(const char *cert_path, Fingerprint *ret_fp) {
        _cleanup_(x509_freep) X509 *x = NULL;
        int r = load_cert(cert_path, &x);
        if (r < 0)
                return r;
        return cert_fingerprint(x, ret_fp);
}

int tls_cert_check_pair(const char *cert_path, const char *key_path, Fingerprint *ret_fp) {
        _cleanup_(x509_freep) X509 *x = NULL;
        _cleanup_(pkey_freep) EVP_PKEY *k = NULL;
        int r = load_cert(cert_path, &x);
        if (r >= 0)
                r = load_key(key_path, &k);
        if (r < 0)
                return r;
        if (X509_check_private_key(x, k) != 1)
                return err_set(-EINVAL, "TLS key '%s' does not belong to certificate '%s' (give the key the "
                               "certificate was made for)", key_path, cert_path);
        return cert_fingerprint(x, ret_fp);
}

/* ---- the home's own pair ---- */

static int add_ext(X509 *x, int nid, const char *value) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        int ok = e && X509_add_ext(x, e, -1) == 1;
        X509_EXTENSION_free(e);
        return ok ? 0 : -EIO;
}

/* The host name if it is a DNS name a certificate may carry, else NULL. */
static const char *dns_host_name(char *buf, size_t size) {
        if (gethostname(buf, size - 1) < 0)
                return NULL;
        buf[size - 1] = 0;
        if (!*buf || strlen(buf) > 63 || *buf == '-' || *buf == '.')
                return NULL;
        for (const char *p = buf; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '.'))
                        return NULL;
        return buf;
}

static int make_cert(EVP_PKEY *k, X509 **ret) {
        _cleanup_(x509_freep) X509 *x = X509_new();
        if (!x)
                return -ENOMEM;
        uint8_t serial[16];
        if (RAND_bytes(serial, sizeof serial) != 1)
                return err_set(-EIO, "cannot get random bytes for a certificate (OpenSSL)");
        serial[0] &= 0x7f; /* a positive serial number */
        serial[0] |= 0x01; /* of full length */
        BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
        bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
        BN_free(bn);
        char host[256], cn[64 + 8], san[512];
        const char *h = dns_host_name(host, sizeof host);
        snprintf(cn, sizeof cn, "roam %s", h ? h : "server");
        cn[63] = 0;
        snprintf(san, sizeof san, "DNS:localhost,%s%s%sIP:127.0.0.1,IP:::1", h ? "DNS:" : "", h ? h : "", h ? "," : "");
        X509_NAME *name = X509_get_subject_name(x);
        ok = ok && X509_set_version(x, X509_VERSION_3) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -86400) &&
             X509_time_adj_ex(X509_getm_notAfter(x), TLS_CERT_DAYS, 0, NULL) && X509_set_pubkey(x, k) == 1 &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *) "roam", -1, -1, 0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *) cn, -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, name) == 1 && add_ext(x, NID_basic_constraints, "critical,CA:FALSE") >= 0 &&
             add_ext(x, NID_key_usage, "critical,digitalSignature") >= 0 &&
             add_ext(x, NID_ext_key_usage, "serverAuth") >= 0 && add_ext(x, NID_subject_key_identifier, "hash") >= 0 &&
             add_ext(x, NID_subject_alt_name, san) >= 0 && X509_sign(x, k, EVP_sha256()) > 0;
        if (!ok)
                return err_set(-EIO, "cannot make a TLS certificate (OpenSSL)");
        *ret = TAKE_PTR(x);
        return 0;
}

static int write_pem(const char *path, BIO *bio, mode_t mode, const char *what) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        if (n <= 0)
                return err_set(-EIO, "cannot encode the TLS %s (OpenSSL)", what);
        int r = write_file_atomic(path, data, (size_t) n, mode);
        if (r < 0)
                return err_set(r, "cannot write TLS %s '%s': %s (check the state directory)", what, path,
                               strerror(-r));
        return 0;
}

static int save_key(EVP_PKEY *k, const char *path) {
        BIO *bio = BIO_new(BIO_s_secmem());
        if (!bio)
                return -ENOMEM;
        int r = PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) == 1 ? write_pem(path, bio, 0600, "key")
                                                                                 : err_set(-EIO, "cannot encode the TLS key (OpenSSL)");
        BIO_free(bio);
        return r;
}

static int save_cert(X509 *x, const char *path) {
        BIO *bio = BIO_new(BIO_s_mem());
        if (!bio)
                return -ENOMEM;
        int r = PEM_write_bio_X509(bio, x) == 1 ? write_pem(path, bio, 0644, "certificate")
                                                : err_set(-EIO, "cannot encode the TLS certificate (OpenSSL)");
        BIO_free(bio);
        return r;
}

static int home_paths(const char *home, char **ret_dir, char **ret_cert, char **ret_key) {
        *ret_dir = path_join(home, TLS_HOME_DIR);
        *ret_cert = path_join(home, TLS_HOME_CERT);
        *ret_key = path_join(home, TLS_HOME_KEY);
        return *ret_dir && *ret_cert && *ret_key ? 0 : -ENOMEM;
}

int tls_home_cert_fingerprint(const char *home, Fingerprint *ret_fp) {
        _cleanup_free_ char *dir = NULL, *cert = NULL, *key = NULL;
        int r = home_paths(home, &dir, &cert, &key);
        if (r < 0)
                return r;
        if (access(cert, F_OK) < 0 || access(key, F_OK) < 0)
                return -ENOENT;
        return tls_cert_file_fingerprint(cert, ret_fp);
}

int tls_home_cert_ensure(const char *home, char **ret_cert, char **ret_key, Fingerprint *ret_fp, bool *ret_created) {
        _cleanup_free_ char *dir = NULL, *cert = NULL, *key = NULL;
        int r = home_paths(home, &dir, &cert, &key);
        if (r < 0)
                return r;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return err_set(r, "cannot create '%s': %s (check the state directory)", dir, strerror(-r));
        _cleanup_close_ int lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lock < 0 || flock(lock, LOCK_EX) < 0)
                return err_set(-errno, "cannot lock '%s': %m", dir);

        bool have_cert = access(cert, F_OK) == 0, have_key = access(key, F_OK) == 0, created = false;
        if (have_cert && !have_key)
                return err_set(-ENOENT, "TLS certificate '%s' has no key '%s' (remove the certificate, and roam "
                               "serve makes a new pair; clients then need its new fingerprint)", cert, key);
        _cleanup_(pkey_freep) EVP_PKEY *k = NULL;
        if (have_key)
                r = load_key(key, &k);
        else {
                k = EVP_EC_gen("P-256");
                r = k ? save_key(k, key) : err_set(-EIO, "cannot generate a TLS key (OpenSSL)");
        }
        if (r < 0)
                return r;
        if (!have_cert) {
                _cleanup_(x509_freep) X509 *x = NULL;
                r = make_cert(k, &x);
                if (r >= 0)
                        r = save_cert(x, cert);
                if (r < 0)
                        return r;
                created = true;
        }
        Fingerprint fp;
        r = tls_cert_check_pair(cert, key, &fp);
        if (r < 0)
                return r;
        if (ret_cert)
                *ret_cert = TAKE_PTR(cert);
        if (ret_key)
                *ret_key = TAKE_PTR(key);
        *ret_fp = fp;
        if (ret_created)
                *ret_created = created;
        return 0;
}
