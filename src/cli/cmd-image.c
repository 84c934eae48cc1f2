/* SPDX-License-Identifier: MIT */
/* roam image import|export|list|show|rm */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/interrupt.h"
#include "../basic/macro.h"
#include "../basic/spawn.h"
#include "../basic/util.h"
#include "../store/blob.h"
#include "../store/manifest.h"
#include "../guest/image.h"
#include "../session/session.h"

static int image_ref(const char *name, char *buf, size_t size) {
        if (!name_is_valid(name))
                return cli_errorf("image name '%s' is invalid (use " NAME_RULE ")",
                                  name);
        snprintf(buf, size, "images/%s", name);
        return 0;
}

/* Formats qemu-img reads, recognized by their magic; anything else is raw. */
static const struct {
        const char *name;
        const char *magic;
        size_t len;
} formats[] = {
        { "qcow2", "QFI\xfb", 4 }, { "qed", "QED\0", 4 },         { "vmdk", "KDMV", 4 },
        { "vdi", "<<< ", 4 },      { "vhdx", "vhdxfile", 8 },    { "vpc", "conectix", 8 },
        { "parallels", "WithoutFreeSpace", 16 }, { "parallels", "WithouFreSpacExt", 16 },
};

static const char *detect_format(int fd) {
        char head[16] = { 0 };
        ssize_t n = loop_pread(fd, head, sizeof head, 0);
        for (size_t i = 0; n > 0 && i < ELEMENTSOF(formats); i++)
                if ((size_t) n >= formats[i].len && !memcmp(head, formats[i].magic, formats[i].len))
                        return formats[i].name;
        return "raw";
}

/* The first line of a helper's message, or dflt when it said nothing. */
static const char *first_line(char *msg, const char *dflt) {
        if (!msg || !*msg)
                return dflt;
        msg[strcspn(msg, "\n")] = 0;
        return msg;
}

/* The first "ERROR: ..." line of qemu-img check's report, without the prefix. */
static const char *check_reason(char *out, char *err) {
        char *e = out ? strstr(out, "ERROR") : NULL;
        if (!e && err)
                e = strstr(err, "ERROR");
        if (!e)
                return first_line(err && *err ? err : out, "no reason given");
        e += strspn(e + 5, ": ") + 5;
        return first_line(e, "no reason given");
}

/* Runs qemu-img check on file: a corrupt or truncated image (exit 2) is
 * refused with its first error; leaked clusters only (3) and formats
 * without a check (63) pass. */
static int check_image(const char *file, const char *fmt) {
        char *argv[] = { "qemu-img", "check", "-f", (char *) fmt, (char *) file, NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        int r = spawn_capture(argv, 64 * 1024, &out, &err);
        if (r == -ENOENT)
                return err_set(r, "'%s' is a %s image and reading it needs qemu-img (apt-get install qemu-utils)",
                               file, fmt);
        if (r < 0)
                return err_set(r, "cannot run qemu-img check on '%s': %s", file, strerror(-r));
        if (r == 0 || r == 3 || r == 63)
                return 0;
        if (r == 2)
                return err_set(-EBADMSG,
                               "'%s' is a corrupt %s image (truncated or damaged; qemu-img check: %s): "
                               "import an intact copy",
                               file, fmt, check_reason(out, err));
        return err_set(-EIO, "cannot check %s image '%s': qemu-img check failed (exit %d): %s", fmt, file, r,
                       first_line(err, "no message"));
}

/* A new temp file in $ROAM_HOME/tmp: its fd, its path in *ret_path. */
static int home_tmpfile(char **ret_path) {
        _cleanup_free_ char *tmpdir = cli_home_path("tmp");
        if (!tmpdir)
                return -ENOMEM;
        int r = mkdir_p(tmpdir, 0700);
        if (r < 0)
                return err_set(r, "cannot create '%s': %s", tmpdir, strerror(-r));
        int fd = tmpfile_create(tmpdir, ret_path);
        if (fd < 0)
                return err_set(fd, "cannot create a temp file in '%s': %s", tmpdir, strerror(-fd));
        return fd;
}

/* Checks file (of format fmt) and converts it into a sparse raw temp file
 * under ROAM_HOME/tmp; returns its path and an fd that holds it "in use"
 * (tmpfile_create()'s lock) until the caller closes it. */
static int convert_to_raw(const char *file, const char *fmt, char **ret_path, int *ret_fd) {
        int r = check_image(file, fmt);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = home_tmpfile(&tmp);
        if (fd < 0)
                return fd;
        char *argv[] = { "qemu-img", "convert", "-q", "-f", (char *) fmt, "-O", "raw", (char *) file, tmp, NULL };
        _cleanup_free_ char *err = NULL;
        r = spawn_capture(argv, 4096, NULL, &err);
        if (r != 0) {
                unlink(tmp);
                return err_set(r < 0 ? r : -EINVAL, "cannot convert %s image '%s': %s", fmt, file,
                               first_line(err, "qemu-img failed"));
        }
        *ret_path = TAKE_PTR(tmp);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* e2fsck from PATH or the sbin directories a user's PATH may lack. */
static const char *e2fsck_binary(void) {
        static const char *const paths[] = { "/usr/sbin/e2fsck", "/sbin/e2fsck" };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return "e2fsck";
}

/* A raw image holding ext4 is checked before anything is stored: its
 * superblock against the file (truncated, damaged), then e2fsck -fn (read
 * only) for the rest of its metadata. Anything else passes. */
static int check_raw_fs(const char *file, int fd, uint64_t size) {
        uint8_t sb[IMAGE_EXT4_SB_SIZE];
        ssize_t n = loop_pread(fd, sb, sizeof sb, IMAGE_EXT4_SB_OFFSET);
        if (n < 0)
                return err_set((int) n, "cannot read '%s': %s", file, strerror((int) -n));
        char why[256];
        int r = image_check_ext4(sb, (size_t) n, size, why, sizeof why);
        if (r < 0)
                return err_set(-EBADMSG, "'%s' is a damaged disk image: %s (import an intact copy)", file, why);
        if (r == 0)
                return 0;
        char *argv[] = { (char *) e2fsck_binary(), "-f", "-n", (char *) file, NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        r = spawn_capture(argv, 64 * 1024, &out, &err);
        if (r == -ENOENT)
                return 0; /* the superblock check is what we have */
        if (r < 0)
                return err_set(r, "cannot run e2fsck on '%s': %s", file, strerror(-r));
        if (r != 0) {
                /* e2fsck's first line that says what is wrong */
                const char *line = NULL;
                for (char *t = out ? strtok(out, "\n") : NULL; t; t = strtok(NULL, "\n"))
                        if (strncmp(t, "Pass ", 5) && strncmp(t, "e2fsck ", 7) && *t) {
                                line = t;
                                break;
                        }
                return err_set(-EBADMSG, "'%s' is a damaged disk image: e2fsck found errors in its file system (%s) "
                                         "(import an intact copy)",
                               file, line ? line : first_line(err, "exit code"));
        }
        return 0;
}

typedef struct BootArgs {
        const char *kernel, *initrd, *append;
        bool agent, profile;
} BootArgs;

/* Checks a kernel file before anything is stored. */
static int check_kernel(const char *file) {
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open kernel '%s': %s", file, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return err_set(-EINVAL, "kernel '%s' is not a regular file", file);
        uint8_t head[0x400] = { 0 };
        ssize_t n = loop_pread(fd, head, sizeof head, 0);
        if (n < 0)
                return err_set((int) n, "cannot read kernel '%s'", file);
        char why[256];
        if (image_check_kernel(head, (size_t) n, (uint64_t) st.st_size, why, sizeof why) < 0)
                return err_set(-EBADMSG, "kernel '%s' is not usable: %s", file, why);
        return 0;
}

static int import_small(Store *s, const char *what, const char *file, RoamId *ret) {
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return err_set(-errno, "cannot open %s '%s': %s", what, file, strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_size == 0)
                return err_set(-EINVAL, "%s '%s' is not a non-empty regular file", what, file);
        BlobOptions o = {};
        int r = blob_import_fd(s, fd, (uint64_t) st.st_size, &o, ret, NULL);
        if (r < 0)
                return err_set_if_none(r, "cannot import %s '%s': %s", what, file, strerror(-r));
        return 0;
}

/* The image manifest over disk with the boot files of b. */
static int put_image_manifest(Store *s, const RoamId *disk, const BootArgs *b, RoamId *ret) {
        _cleanup_(image_info_done) ImageInfo i = { .boot = true, .disk = *disk, .agent = b->agent,
                                                   .profile = b->profile };
        int r = import_small(s, "kernel", b->kernel, &i.kernel);
        if (r >= 0 && b->initrd) {
                r = import_small(s, "initrd", b->initrd, &i.initrd);
                i.has_initrd = true;
        }
        if (r < 0)
                return r;
        if (b->append && !(i.append = strdup(b->append)))
                return -ENOMEM;
        _cleanup_(json_decrefp) json_t *j = NULL;
        r = image_manifest_build(&i, &j);
        if (r < 0)
                return r;
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = manifest_serialize(j, &data, &len);
        if (r >= 0)
                r = store_object_put(s, data, len, ret);
        return r;
}

static uint64_t be64_at(const uint8_t *p) {
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
                v = v << 8 | p[k];
        return v;
}

/* The virtual size of a raw or qcow2 file; 0 when unknown. */
static uint64_t virtual_size(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        uint8_t head[32];
        if (fd < 0 || fstat(fd, &st) < 0)
                return 0;
        if (strcmp(detect_format(fd), "qcow2"))
                return (uint64_t) st.st_size;
        return loop_pread(fd, head, sizeof head, 0) == (ssize_t) sizeof head ? be64_at(head + 24) : 0;
}

static int qemu_img(char **argv, const char *what) {
        _cleanup_free_ char *err = NULL;
        int r = spawn_capture(argv, 4096, NULL, &err);
        if (r == -ENOENT)
                return err_set(r, "%s needs qemu-img (apt-get install qemu-utils)", what);
        if (r != 0)
                return err_set(r < 0 ? r : -EIO, "%s failed: %s", what, first_line(err, "qemu-img failed"));
        return 0;
}

/* The layer of file (fmt raw or qcow2: the whole disk, or a qcow2 whose
 * backing chain gives it) over the image base: a qcow2 holding only the
 * clusters that differ from base's disk, its backing file named "<base disk
 * id>.raw" (the masters' names). A temp file under ROAM_HOME/tmp, held in use
 * by *ret_fd. */
static int make_layer(CliHost *host, const ImageInfo *base, const char *file, const char *fmt, char **ret_path,
                      int *ret_fd) {
        if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2"))
                return err_set(-EINVAL, "a layer is made from a raw or qcow2 file, '%s' is %s (qemu-img convert it)",
                               file, fmt);
        int r = check_image(file, fmt);
        if (r < 0)
                return r;
        _cleanup_free_ char *abs = realpath(file, NULL);
        if (!abs)
                return err_set(-errno, "cannot resolve '%s': %s", file, strerror(errno));
        _cleanup_free_ char *base_master = NULL;
        r = session_master_file(host->host, &base->disk, &base_master);
        if (r < 0)
                return err_set_if_none(r, "cannot provide the base image's disk: %s", strerror(-r));
        uint64_t want = virtual_size(base_master), got = virtual_size(abs);
        if (want && got && want != got)
                return err_set(-EINVAL, "'%s' is a disk of %llu bytes, its base %llu: a layer has its base's size",
                               file, (unsigned long long) got, (unsigned long long) want);
        _cleanup_close_ int bfd = open(base_master, O_RDONLY | O_CLOEXEC);
        const char *base_fmt = bfd >= 0 ? detect_format(bfd) : "raw";
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = home_tmpfile(&tmp);
        if (fd < 0)
                return fd;
        char rel[ID_HEX_SIZE + 8], hex[ID_HEX_SIZE];
        snprintf(rel, sizeof rel, "%s.raw", id_to_hex(&base->disk, hex));
        /* a qcow2 over the whole disk, rebased onto the base (qemu-img writes
         * what differs), then pointed at the base by its master's name */
        char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", (char *) fmt, "-b", abs, tmp, NULL };
        char *diff[] = { "qemu-img", "rebase", "-q", "-f", "qcow2", "-F", (char *) base_fmt, "-b", base_master, tmp, NULL };
        char *name[] = { "qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-F", (char *) base_fmt, "-b", rel, tmp, NULL };
        if ((r = qemu_img(create, "making the layer")) < 0 || (r = qemu_img(diff, "comparing the layer with its base")) < 0 ||
            (r = qemu_img(name, "naming the layer's base")) < 0) {
                unlink(tmp);
                return r;
        }
        *ret_path = TAKE_PTR(tmp);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* The image manifest of a layer: disk over base, the rest as the base's. */
static int put_layer_manifest(Store *s, const RoamId *disk, const ImageInfo *base, RoamId *ret);

static int import_layer(const char *name, const char *ref, const char *file, const char *base_name, bool force,
                        bool no_check) {
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
                return cli_errorf("cannot open '%s': %s (give the path of a disk image)", file, strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
                return cli_errorf("'%s' is not a non-empty regular file (give the path of a disk image file)", file);
        const char *fmt = detect_format(fd);
        if (!strcmp(fmt, "raw") && !no_check) {
                int k = check_raw_fs(file, fd, (uint64_t) st.st_size);
                if (k < 0)
                        return cli_error(k);
        }
        _cleanup_(cli_host_done) CliHost host = {};
        if (cli_host_open(true, &host))
                return 1;
        Store *s = host.store;
        RoamId old;
        int r = store_ref_get(s, ref, &old);
        if (r == -ENOENT)
                old = ID_NULL;
        else if (r < 0 && !force)
                return cli_error(r);
        else if (r >= 0 && !force)
                return cli_errorf("image '%s' already exists (use --force to replace it, or 'roam image rm %s')",
                                  name, name);
        if (!strcmp(name, base_name))
                return cli_errorf("image '%s' cannot be a layer of itself", name);
        _cleanup_(image_info_done) ImageInfo base = {};
        r = image_lookup(s, base_name, &base);
        if (r < 0)
                return cli_error(r);
        _cleanup_free_ char *layer = NULL;
        _cleanup_close_ int layer_fd = -1;
        r = make_layer(&host, &base, file, fmt, &layer, &layer_fd);
        if (r < 0)
                return cli_error(r);
        _cleanup_close_ int lfd = open(layer, O_RDONLY | O_CLOEXEC);
        struct stat lst;
        if (lfd < 0 || fstat(lfd, &lst) < 0) {
                unlink(layer);
                return cli_errorf("cannot read the layer made from '%s': %s", file, strerror(errno));
        }
        BlobOptions o = { .cancel = interrupt_flag() };
        RoamId disk, id;
        BlobStats bs;
        r = blob_import_fd(s, lfd, (uint64_t) lst.st_size, &o, &disk, &bs);
        unlink(layer);
        if (r >= 0)
                r = put_layer_manifest(s, &disk, &base, &id);
        if (r >= 0)
                r = store_ref_set(s, ref, &id, force ? NULL : &old);
        if (r < 0)
                return cli_error(r);
        char hex[ID_HEX_SIZE], a[32], b[32];
        fprintf(stderr, "imported layer '%s' over '%s': a delta of %s, %llu new chunk%s, %s stored\n", name,
                base_name, format_bytes((uint64_t) lst.st_size, a, sizeof a), (unsigned long long) bs.new_chunks,
                bs.new_chunks == 1 ? "" : "s", format_bytes(bs.stored_bytes, b, sizeof b));
        printf("%s\n", id_to_hex(&id, hex));
        return 0;
}
static int put_layer_manifest(Store *s, const RoamId *disk, const ImageInfo *base, RoamId *ret) {
        ImageInfo i = *base;
        i.id = ID_NULL;
        i.disk = *disk;
        i.layer = true;
        i.base = base->id;
        _cleanup_(json_decrefp) json_t *j = NULL;
        int r = image_manifest_build(&i, &j);
        if (r < 0)
                return r;
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = manifest_serialize(j, &data, &len);
        if (r >= 0)
                r = store_object_put(s, data, len, ret);
        return r;
}

static int image_import(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "force", no_argument, NULL, 'f' },
                { "threads", required_argument, NULL, 't' },
                { "kernel", required_argument, NULL, 'k' },
                { "initrd", required_argument, NULL, 'r' },
                { "append", required_argument, NULL, 'a' },
                { "agent", no_argument, NULL, 'G' },
                { "profile", no_argument, NULL, 'P' },
                { "no-check", no_argument, NULL, 'N' },
                { "layer-of", required_argument, NULL, 'L' },
                {},
        };
        bool force = false, no_check = false;
        const char *layer_of = NULL;
        unsigned threads = 0;
        BootArgs boot = {};
        int c;
        while ((c = getopt_long(argc, argv, "hft:k:r:a:GPNL:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("image import", "[--force] [--threads N] [--kernel K [--initrd I] [--append A]\n"
                                        "       [--agent] [--profile]] [--layer-of BASE] NAME FILE",
                                        "Imports a disk image into the store under images/NAME and prints its id.\n"
                                        "FILE is a raw image, or any format qemu-img reads (qcow2, vmdk, vdi,\n"
                                        "vhdx, ...), converted to raw first. All-zero 64 KiB ranges are not stored.\n"
                                        "A raw image holding ext4 is checked first (superblock, e2fsck -fn): a\n"
                                        "truncated or damaged one is refused.\n\n"
                                        "With --kernel the image boots by itself: kernel, initrd, command line\n"
                                        "and devices are kept with it in the store (an image manifest, so they\n"
                                        "travel with it), and 'roam session create --image NAME' needs no --kernel.\n\n"
                                        "  -f, --force      replace an existing image of that name\n"
                                        "  -t, --threads N  worker threads (default: one per core)\n"
                                        "  -k, --kernel K   the image's kernel (bzImage or ELF)\n"
                                        "  -r, --initrd I   its initrd\n"
                                        "  -a, --append A   its kernel command line (sessions add roam.user=USER)\n"
                                        "  -G, --agent      it runs qemu-guest-agent: sessions get its port\n"
                                        "  -P, --profile    it mounts the user's profile disk (label roam-profile):\n"
                                        "                   sessions run with users/USER/profile attached\n"
                                        "  -N, --no-check   skip the file system check\n"
                                        "  -L, --layer-of BASE  an app layer over image BASE: FILE is the whole disk\n"
                                        "                   (raw, or a qcow2 whose backing chain gives it); only\n"
                                        "                   what differs from BASE is stored, as a qcow2 delta.\n"
                                        "                   Sessions of NAME run master <- layer <- their delta,\n"
                                        "                   with BASE's kernel and devices; NAME brings BASE along\n"
                                        "                   wherever it goes (pull, hoard, bundle)\n");
                case 'k':
                        boot.kernel = optarg;
                        break;
                case 'r':
                        boot.initrd = optarg;
                        break;
                case 'a':
                        boot.append = optarg;
                        break;
                case 'G':
                        boot.agent = true;
                        break;
                case 'P':
                        boot.profile = true;
                        break;
                case 'N':
                        no_check = true;
                        break;
                case 'L':
                        layer_of = optarg;
                        break;
                case 'f':
                        force = true;
                        break;
                case 't': {
                        uint64_t v;
                        if (parse_u64(optarg, &v) < 0 || v < 1 || v > 64)
                                return cli_usage("image import", "--threads takes a number from 1 to 64");
                        threads = (unsigned) v;
                        break;
                }
                default:
                        return cli_usage("image import", "invalid option");
                }
        if (argc - optind != 2)
                return cli_usage("image import", "expected NAME and FILE");
        const char *name = argv[optind], *file = argv[optind + 1];
        char ref[128];
        if (image_ref(name, ref, sizeof ref))
                return 1;
        if (!boot.kernel && (boot.initrd || boot.append || boot.agent || boot.profile))
                return cli_usage("image import", "--initrd, --append, --agent and --profile go with --kernel");
        if (boot.append && strlen(boot.append) > IMAGE_APPEND_MAX)
                return cli_usage("image import", "--append is longer than %d bytes", IMAGE_APPEND_MAX);
        if (layer_of && boot.kernel)
                return cli_usage("image import", "a layer boots with its base's kernel: --kernel goes without --layer-of");
        if (layer_of)
                return import_layer(name, ref, file, layer_of, force, no_check);
        if (boot.kernel) {
                int k = check_kernel(boot.kernel);
                if (k < 0)
                        return cli_error(k);
        }

        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return cli_errorf("cannot open '%s': %s (give the path of a disk image)", file, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return cli_errorf("cannot stat '%s': %s", file, strerror(errno));
        if (S_ISDIR(st.st_mode))
                return cli_errorf("'%s' is a directory (give the path of a disk image file)", file);
        if (!S_ISREG(st.st_mode))
                return cli_errorf("'%s' is not a regular file (give the path of a disk image file)", file);
        if (st.st_size == 0)
                return cli_errorf("'%s' is empty (give the path of a disk image)", file);

        const char *fmt = detect_format(fd);
        if (!strcmp(fmt, "raw") && st.st_size % 512 != 0)
                return cli_errorf("'%s' is not a disk image (raw images are a whole number of 512-byte sectors; "
                                  "%lld bytes is not)",
                                  file, (long long) st.st_size);

        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(true, true, &s))
                return 1;
        RoamId old;
        int r = store_ref_get(s, ref, &old);
        if (r == -ENOENT)
                old = ID_NULL;
        else if (r < 0 && !force)
                return cli_error(r);
        else if (r >= 0 && !force)
                return cli_errorf("image '%s' already exists (use --force to replace it, or 'roam image rm %s')",
                                  name, name);

        _cleanup_free_ char *converted = NULL;
        _cleanup_close_ int converted_fd = -1;
        if (strcmp(fmt, "raw")) {
                r = convert_to_raw(file, fmt, &converted, &converted_fd);
                if (r < 0)
                        return cli_error(r);
                close(fd);
                fd = open(converted, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fstat(fd, &st) < 0) {
                        unlink(converted);
                        return cli_errorf("cannot read converted image: %s", strerror(errno));
                }
        }
        if (!no_check) {
                r = check_raw_fs(converted ? converted : file, fd, (uint64_t) st.st_size);
                if (r < 0) {
                        if (converted)
                                unlink(converted);
                        return cli_error(r);
                }
        }

        Progress *p = progress_new("import", (uint64_t) st.st_size);
        /* with its page index: a master image is what guests' RAM pages are
         * pages of (page references, docs/sync-protocol.md) */
        BlobOptions o = { .threads = threads, .progress = p, .cancel = interrupt_flag(), .page_index = true };
        RoamId id;
        BlobStats bs;
        r = blob_import_fd(s, fd, (uint64_t) st.st_size, &o, &id, &bs);
        progress_free(p);
        if (converted)
                unlink(converted);
        if (r < 0)
                return cli_error(r);
        RoamId disk = id;
        if (boot.kernel) {
                r = put_image_manifest(s, &disk, &boot, &id);
                if (r < 0)
                        return cli_error(r);
        }
        r = store_ref_set(s, ref, &id, force ? NULL : &old);
        if (r < 0)
                return cli_error(r);
        char hex[ID_HEX_SIZE], a[32], b[32];
        fprintf(stderr, "imported '%s': %s in %.2fs (%.0f MB/s), %llu new chunk%s, %s stored\n", name,
                format_bytes((uint64_t) st.st_size, a, sizeof a), bs.seconds,
                bs.seconds > 0 ? (double) st.st_size / bs.seconds / 1e6 : 0.0, (unsigned long long) bs.new_chunks,
                bs.new_chunks == 1 ? "" : "s", format_bytes(bs.stored_bytes, b, sizeof b));
        printf("%s\n", id_to_hex(&id, hex));
        return 0;
}

/* The image NAME: what its ref names (*ret_info, caller frees) and its disk's index. */
static int load_image(Store *s, const char *name, ImageInfo *ret_info, Index **ret) {
        char ref[128];
        if (image_ref(name, ref, sizeof ref))
                return 1;
        ImageInfo info = {};
        int r = image_lookup(s, name, &info);
        if (r < 0)
                return cli_error(r);
        r = blob_load_index(s, &info.disk, ret);
        if (r < 0) {
                image_info_done(&info);
                return cli_error(r);
        }
        *ret_info = info;
        return 0;
}

static int image_export(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "force", no_argument, NULL, 'f' },
                {},
        };
        bool force = false;
        int c;
        while ((c = getopt_long(argc, argv, "hf", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("image export", "[--force] NAME FILE",
                                        "Writes image NAME as a sparse raw file, byte-identical to what was\n"
                                        "imported. Every chunk is verified against its hash.\n\n"
                                        "  -f, --force  overwrite FILE if it exists\n");
                case 'f':
                        force = true;
                        break;
                default:
                        return cli_usage("image export", "invalid option");
                }
        if (argc - optind != 2)
                return cli_usage("image export", "expected NAME and FILE");
        const char *name = argv[optind], *file = argv[optind + 1];
        struct stat st;
        if (stat(file, &st) == 0) {
                if (S_ISDIR(st.st_mode))
                        return cli_errorf("'%s' is a directory (give a file name to write)", file);
                if (!force)
                        return cli_errorf("'%s' exists (use --force to overwrite it)", file);
        }
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(false, false, &s))
                return 1;
        _cleanup_(image_info_done) ImageInfo info = {};
        _cleanup_(index_freep) Index *x = NULL;
        if (load_image(s, name, &info, &x))
                return 1;

        /* write beside the target, then rename: never a half-written FILE */
        _cleanup_free_ char *dir = strdup(file);
        if (!dir)
                return cli_error(-ENOMEM);
        char *slash = strrchr(dir, '/');
        if (slash)
                *slash = 0;
        else
                strcpy(dir, ".");
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(dir, &tmp);
        if (fd < 0)
                return cli_errorf("cannot write to '%s': %s", dir, strerror(-fd));
        Progress *p = progress_new("export", x->blob_size);
        BlobOptions o = { .progress = p, .cancel = interrupt_flag() };
        BlobStats bs;
        int r = blob_export_fd(s, x, fd, &o, &bs);
        progress_free(p);
        if (r >= 0 && fchmod(fd, 0644) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = err_set(-errno, "cannot write '%s': %s", file, strerror(errno));
        if (r >= 0 && rename(tmp, file) < 0)
                r = err_set(-errno, "cannot rename to '%s': %s", file, strerror(errno));
        if (r < 0) {
                unlink(tmp);
                return cli_error(r);
        }
        fsync_parent(file);
        char a[32];
        fprintf(stderr, "exported '%s': %s in %.2fs (%.0f MB/s)\n", name, format_bytes(x->blob_size, a, sizeof a),
                bs.seconds, bs.seconds > 0 ? (double) x->blob_size / bs.seconds / 1e6 : 0.0);
        return 0;
}

typedef struct ListCtx {
        Store *store;
        json_t *images; /* --json: the array, else NULL */
} ListCtx;

static int list_cb(const char *name, const RoamId *id, void *userdata) {
        ListCtx *l = userdata;
        char hex[ID_HEX_SIZE], a[32];
        _cleanup_(index_freep) Index *x = NULL;
        _cleanup_(image_info_done) ImageInfo info = {};
        err_clear();
        int r = id ? image_resolve(l->store, id, &info) : -EBADMSG;
        if (r >= 0)
                r = blob_load_index(l->store, &info.disk, &x);
        const char *problem = !id ? "malformed ref: run 'roam store fsck'" : r < 0 ? err_message(r) : NULL;
        if (l->images)
                return json_array_append_new(l->images,
                                             json_pack("{s:s, s:o, s:o, s:o, s:b}", "name", name + 7, "id",
                                                       id ? json_string(id_to_hex(id, hex)) : json_null(), "size",
                                                       x ? json_integer((json_int_t) x->blob_size) : json_null(),
                                                       "error", problem ? json_string(problem) : json_null(), "boots",
                                                       info.boot)) < 0
                               ? -ENOMEM
                               : 0;
        if (!id)
                printf("%-24s %12s  %s\n", name + 7, "?", "(malformed ref: run 'roam store fsck')");
        else if (r < 0)
                printf("%-24s %12s  %.16s  (%s)\n", name + 7, "?", id_to_hex(id, hex), problem);
        else
                printf("%-24s %12s  %.16s%s\n", name + 7, format_bytes(x->blob_size, a, sizeof a), id_to_hex(id, hex),
                       info.boot ? "  (boots: kernel, initrd)" : "");
        return 0;
}

static int image_list(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("image list", "[--json]",
                                "Lists the images in the store: name, size, id.\n\n"
                                "  --json   one JSON object {\"images\": [...]} (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc > 1)
                return cli_usage("image list", "unexpected argument '%s'", argv[1]);
        if (cli_need_home(false))
                return 1;
        bool exists = cli_store_exists();
        ListCtx l = { .images = as_json ? json_array() : NULL };
        if (as_json && !l.images)
                return cli_error(-ENOMEM);
        _cleanup_(store_freep) Store *s = NULL;
        if (exists) { /* a home without a store yet: no images */
                if (cli_open_store(false, false, &s)) {
                        json_decref(l.images);
                        return 1;
                }
                l.store = s;
                if (!as_json)
                        printf("%-24s %12s  %s\n", "NAME", "SIZE", "ID");
                int r = store_ref_foreach(s, "images/", list_cb, &l);
                if (r < 0) {
                        json_decref(l.images);
                        return cli_error(r);
                }
        }
        return as_json ? cli_print_json(json_pack("{s:o}", "images", l.images)) : 0;
}

static int image_show(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("image show", "[--json] NAME",
                                "Shows an image: id, size, chunks, bytes stored. Exits 1 when the store\n"
                                "lacks some of its chunks.\n\n"
                                "  --json   one JSON object (docs/cli-json.md)\n");
        bool as_json = cli_take_flag(&argc, argv, "--json");
        if (argc != 2)
                return cli_usage("image show", "expected NAME");
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(false, false, &s))
                return 1;
        _cleanup_(image_info_done) ImageInfo info = {};
        _cleanup_(index_freep) Index *x = NULL;
        if (load_image(s, argv[1], &info, &x))
                return 1;
        uint64_t zero = 0, stored = 0, missing = 0;
        for (uint64_t i = 0; i < x->n_chunks; i++) {
                uint64_t sz;
                if (id_is_null(&x->ids[i]))
                        zero++;
                else if (store_chunk_stat(s, &x->ids[i], &sz) == 0)
                        stored += sz;
                else
                        missing++;
        }
        char hex[ID_HEX_SIZE], dhex[ID_HEX_SIZE], khex[ID_HEX_SIZE], ihex[ID_HEX_SIZE], a[32], b[32];
        if (as_json) {
                json_t *boot = info.boot ? json_pack("{s:s, s:s?, s:s?, s:b, s:b}", "kernel",
                                                     id_to_hex(&info.kernel, khex), "initrd",
                                                     info.has_initrd ? id_to_hex(&info.initrd, ihex) : NULL,
                                                     "append", info.append, "agent", info.agent, "profile",
                                                     info.profile)
                                         : json_null();
                int k = cli_print_json(json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "name", argv[1],
                                                 "id", id_to_hex(&info.id, hex), "disk", id_to_hex(&info.disk, dhex),
                                                 "size", (json_int_t) x->blob_size, "chunk_size",
                                                 (json_int_t) x->chunk_size, "chunks", (json_int_t) x->n_chunks,
                                                 "zero_chunks", (json_int_t) zero, "stored_bytes", (json_int_t) stored,
                                                 "missing_chunks", (json_int_t) missing, "boot", boot));
                if (k || !missing)
                        return k;
        } else {
                printf("name:        %s\nid:          %s\nsize:        %s (%llu bytes)\nchunk size:  %u\n"
                       "chunks:      %llu (%llu all-zero, not stored)\nstored:      %s compressed\n",
                       argv[1], id_to_hex(&info.id, hex), format_bytes(x->blob_size, a, sizeof a),
                       (unsigned long long) x->blob_size, x->chunk_size, (unsigned long long) x->n_chunks,
                       (unsigned long long) zero, format_bytes(stored, b, sizeof b));
                if (info.boot)
                        printf("disk:        %s\nkernel:      %s\ninitrd:      %s\nappend:      %s\nagent:       %s\n"
                               "profile:     %s\n",
                               id_to_hex(&info.disk, dhex), id_to_hex(&info.kernel, khex),
                               info.has_initrd ? id_to_hex(&info.initrd, ihex) : "-", info.append ? info.append : "-",
                               info.agent ? "yes" : "no", info.profile ? "users/USER/profile at every boot" : "no");
                if (info.layer)
                        printf("layer of:    %s (a qcow2 delta over that image's disk)\n", id_to_hex(&info.base, khex));
        }
        if (missing) {
                if (!as_json)
                        printf("missing:     %llu chunks\n", (unsigned long long) missing);
                return cli_errorf("image '%s' lacks %llu chunks (run 'roam store fsck')", argv[1],
                                  (unsigned long long) missing);
        }
        return 0;
}

static int image_rm(int argc, char **argv) {
        if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
                return cli_help("image rm", "NAME...",
                                "Removes images from the store. Their chunks stay until 'roam store gc'.\n");
        if (argc < 2)
                return cli_usage("image rm", "expected NAME");
        _cleanup_(store_freep) Store *s = NULL;
        if (cli_open_store(false, true, &s))
                return 1;
        for (int i = 1; i < argc; i++) {
                char ref[128];
                if (image_ref(argv[i], ref, sizeof ref))
                        return 1;
                int r = store_ref_delete(s, ref);
                if (r == -ENOENT)
                        return cli_errorf("image '%s' not found (try 'roam image list')", argv[i]);
                if (r < 0)
                        return cli_error(r);
        }
        return 0;
}

static const Verb image_verbs[] = {
        { "import", image_import, "NAME FILE", "import a disk image (raw, qcow2, ...)" },
        { "export", image_export, "NAME FILE", "write an image as a sparse raw file" },
        { "list", image_list, "[--json]", "list images" },
        { "show", image_show, "[--json] NAME", "show an image's id, size and chunks" },
        { "rm", image_rm, "NAME...", "remove images (chunks stay until 'store gc')" },
};

int verb_image(int argc, char **argv) {
        return cli_dispatch("image", image_verbs, ELEMENTSOF(image_verbs), argc, argv);
}
