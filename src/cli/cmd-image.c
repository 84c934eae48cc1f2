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

/* Checks file (of format fmt) and converts it into a sparse raw temp file
 * under ROAM_HOME/tmp; returns its path and an fd that holds it "in use"
 * (tmpfile_create()'s lock) until the caller closes it. */
static int convert_to_raw(const char *file, const char *fmt, char **ret_path, int *ret_fd) {
        int r = check_image(file, fmt);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmpdir = cli_home_path("tmp");
        if (!tmpdir)
                return -ENOMEM;
        r = mkdir_p(tmpdir, 0700);
        if (r < 0)
                return err_set(r, "cannot create '%s': %s", tmpdir, strerror(-r));
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = tmpfile_create(tmpdir, &tmp);
        if (fd < 0)
                return err_set(fd, "cannot create a temp file in '%s': %s", tmpdir, strerror(-fd));
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

static int image_import(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "force", no_argument, NULL, 'f' },
                { "threads", required_argument, NULL, 't' },
                {},
        };
        bool force = false;
        unsigned threads = 0;
        int c;
        while ((c = getopt_long(argc, argv, "hft:", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return cli_help("image import", "[--force] [--threads N] NAME FILE",
                                        "Imports a disk image into the store under images/NAME and prints its id.\n"
                                        "FILE is a raw image, or any format qemu-img reads (qcow2, vmdk, vdi,\n"
                                        "vhdx, ...), converted to raw first. All-zero 64 KiB ranges are not stored.\n\n"
                                        "  -f, --force      replace an existing image of that name\n"
                                        "  -t, --threads N  worker threads (default: one per core)\n");
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

static int load_image(Store *s, const char *name, RoamId *ret_id, Index **ret) {
        char ref[128];
        if (image_ref(name, ref, sizeof ref))
                return 1;
        int r = store_ref_get(s, ref, ret_id);
        if (r == -ENOENT)
                return cli_errorf("image '%s' not found (try 'roam image list')", name);
        if (r < 0)
                return cli_error(r);
        r = blob_load_index(s, ret_id, ret);
        if (r < 0)
                return cli_error(r);
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
        RoamId id;
        _cleanup_(index_freep) Index *x = NULL;
        if (load_image(s, name, &id, &x))
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
        err_clear();
        int r = id ? blob_load_index(l->store, id, &x) : -EBADMSG;
        const char *problem = !id ? "malformed ref: run 'roam store fsck'" : r < 0 ? err_message(r) : NULL;
        if (l->images)
                return json_array_append_new(l->images,
                                             json_pack("{s:s, s:o, s:o, s:o}", "name", name + 7, "id",
                                                       id ? json_string(id_to_hex(id, hex)) : json_null(), "size",
                                                       x ? json_integer((json_int_t) x->blob_size) : json_null(),
                                                       "error", problem ? json_string(problem) : json_null())) < 0
                               ? -ENOMEM
                               : 0;
        if (!id)
                printf("%-24s %12s  %s\n", name + 7, "?", "(malformed ref: run 'roam store fsck')");
        else if (r < 0)
                printf("%-24s %12s  %.16s  (%s)\n", name + 7, "?", id_to_hex(id, hex), problem);
        else
                printf("%-24s %12s  %.16s\n", name + 7, format_bytes(x->blob_size, a, sizeof a), id_to_hex(id, hex));
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
        char *dir = cli_home_path("store/config");
        bool exists = dir && access(dir, F_OK) == 0;
        free(dir);
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
        RoamId id;
        _cleanup_(index_freep) Index *x = NULL;
        if (load_image(s, argv[1], &id, &x))
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
        char hex[ID_HEX_SIZE], a[32], b[32];
        if (as_json) {
                int k = cli_print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "name", argv[1], "id",
                                                 id_to_hex(&id, hex), "size", (json_int_t) x->blob_size,
                                                 "chunk_size", (json_int_t) x->chunk_size, "chunks",
                                                 (json_int_t) x->n_chunks, "zero_chunks", (json_int_t) zero,
                                                 "stored_bytes", (json_int_t) stored, "missing_chunks",
                                                 (json_int_t) missing));
                if (k || !missing)
                        return k;
        } else
                printf("name:        %s\nid:          %s\nsize:        %s (%llu bytes)\nchunk size:  %u\n"
                       "chunks:      %llu (%llu all-zero, not stored)\nstored:      %s compressed\n",
                       argv[1], id_to_hex(&id, hex), format_bytes(x->blob_size, a, sizeof a),
                       (unsigned long long) x->blob_size, x->chunk_size, (unsigned long long) x->n_chunks,
                       (unsigned long long) zero, format_bytes(stored, b, sizeof b));
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
