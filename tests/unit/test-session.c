/* SPDX-License-Identifier: MIT */
/* Unit tests for src/session without QEMU: the QEMU command line, the VM
 * config and its JSON form (with the policy), validation of names and RAM
 * sizes, the sessions table of the catalog, the ownership check, the log-off
 * helpers, profile disks, powered-off checkpoint manifests and the refusals
 * of adopt and finalize. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "catalog/catalog.h"
#include "store/blob.h"
#include "store/manifest.h"
#include "session/history.h"
#include "session/session-db.h"
#include "session/session-internal.h"
#include "session/session.h"
#include "session/vm.h"

#define KERNEL_ID "3ee2431090a3815c4fce0569ca02edb03951141706ed089f466c45488c76276a"
#define INITRD_ID "b0c32ab1782c2e15631098e2dfda33659112d918b04b973f221449a13b6b0188"

static void config_sample(VmConfig *c) {
        assert_int_equal(vm_config_init(c), 0);
        c->ram_mib = 256;
        c->cpus = 2;
        c->kernel_id = strdup(KERNEL_ID);
        c->initrd_id = strdup(INITRD_ID);
        c->append = strdup("console=ttyS0 quiet panic=-1");
        assert_non_null(c->kernel_id);
}

static int argv_index(char **argv, const char *s) {
        for (int i = 0; argv[i]; i++)
                if (!strcmp(argv[i], s))
                        return i;
        return -1;
}

/* the value after option opt */
static const char *argv_after(char **argv, const char *opt) {
        int i = argv_index(argv, opt);
        return i >= 0 && argv[i + 1] ? argv[i + 1] : NULL;
}

static void test_argv(void **state) {
        VmConfig c;
        config_sample(&c);
        VmPaths p = {
                .kernel = "/h/boot/k",
                .initrd = "/h/boot/i",
                .overlay = "/h/sessions/s,1/overlay.qcow2",
                .master = "/h/masters/m,1.raw",
                .ram = "/dev/shm/roam-x/s,1.ram",
                .serial = "/h/sessions/s,1/serial.log",
                .qmp = "/h/sessions/s,1/qmp.sock",
                .vnc = "/h/sessions/s,1/vnc.sock",
                .pidfile = "/h/sessions/s,1/qemu.pid",
        };
        char **argv = NULL;
        assert_int_equal(vm_build_argv("qemu-x", &c, "tcg", &p, false, &argv), 0);
        assert_string_equal(argv[0], "qemu-x");
        assert_string_equal(argv_after(argv, "-M"), "pc-q35-7.2,memory-backend=mem");
        assert_string_equal(argv_after(argv, "-accel"), "tcg");
        assert_string_equal(argv_after(argv, "-cpu"), "qemu64");
        assert_string_equal(argv_after(argv, "-m"), "256");
        assert_string_equal(argv_after(argv, "-smp"), "2");
        /* commas in paths are doubled inside option values */
        assert_string_equal(argv_after(argv, "-object"),
                            "memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/roam-x/s,,1.ram,share=on");
        assert_string_equal(argv_after(argv, "-qmp"), "unix:/h/sessions/s,,1/qmp.sock,server=on,wait=off");
        assert_string_equal(argv_after(argv, "-vnc"), "unix:/h/sessions/s,,1/vnc.sock");
        assert_string_equal(argv_after(argv, "-chardev"), "file,id=serial0,path=/h/sessions/s,,1/serial.log,append=on");
        assert_string_equal(argv_after(argv, "-kernel"), "/h/boot/k");
        assert_string_equal(argv_after(argv, "-initrd"), "/h/boot/i");
        assert_string_equal(argv_after(argv, "-append"), "console=ttyS0 quiet panic=-1");
        assert_string_equal(argv_after(argv, "-drive"),
                            "file=/h/sessions/s,,1/overlay.qcow2,format=qcow2,if=virtio,cache=writeback,discard=unmap,"
                            "file.drop-cache=off,backing.driver=raw,backing.file.filename=/h/masters/m,,1.raw,"
                            "backing.file.drop-cache=off");
        assert_string_equal(argv_after(argv, "-pidfile"), "/h/sessions/s,1/qemu.pid");
        assert_true(argv_index(argv, "-daemonize") > 0);
        assert_true(argv_index(argv, "-nodefaults") > 0);
        assert_true(argv_index(argv, "-no-reboot") > 0);
        assert_true(argv_index(argv, "-no-shutdown") > 0);
        assert_int_equal(argv_index(argv, "-incoming"), -1);
        assert_int_equal(argv_index(argv, "host"), -1);
        strv_free(argv);

        /* restore: -incoming defer; a profile disk is the second drive; no VNC, no VGA */
        c.profile_disk = strdup("/data/profile.img");
        c.vga = false;
        p.vnc = NULL;
        assert_int_equal(vm_build_argv("qemu-x", &c, "kvm", &p, true, &argv), 0);
        assert_string_equal(argv_after(argv, "-incoming"), "defer");
        assert_string_equal(argv_after(argv, "-accel"), "kvm");
        assert_int_equal(argv_index(argv, "-vnc"), -1);
        assert_int_equal(argv_index(argv, "VGA"), -1);
        int d1 = argv_index(argv, "-drive");
        assert_true(d1 > 0);
        assert_string_equal(argv[d1 + 2], "-drive");
        assert_string_equal(argv[d1 + 3], "file=/data/profile.img,format=raw,if=virtio,cache=writeback,file.drop-cache=off");
        strv_free(argv);

        /* a terminal server: the transfer disk, and its desks' display ports next to it */
        c.terminal_server = true;
        c.agent = true;
        p.agent = "/h/sessions/s,1/agent.sock";
        p.xfer = "/h/sessions/s,1/xfer.raw";
        assert_int_equal(vm_build_argv("qemu-x", &c, "tcg", &p, false, &argv), 0);
        int ch = argv_index(argv, "socket,id=deskvnc0,path=/h/sessions/s,,1/deskvnc-0.sock,server=on,wait=off");
        assert_true(ch > 0);
        assert_string_equal(argv[ch + 2], "virtserialport,bus=vser0.0,chardev=deskvnc0,name=org.roam.deskvnc.0");
        assert_true(argv_index(argv, "virtserialport,bus=vser0.0,chardev=deskvnc3,name=org.roam.deskvnc.3") > 0);
        assert_int_equal(argv_index(argv, "virtserialport,bus=vser0.0,chardev=deskvnc4,name=org.roam.deskvnc.4"), -1);
        strv_free(argv);
        c.terminal_server = c.agent = false;
        p.agent = p.xfer = NULL;

        /* a missing path is a programming error */
        p.kernel = NULL;
        assert_int_equal(vm_build_argv("qemu-x", &c, "tcg", &p, false, &argv), -EINVAL);
        vm_config_done(&c);
}

static void test_config_json(void **state) {
        VmConfig c, back;
        config_sample(&c);
        c.profile_disk = strdup("/p.img");
        json_t *j = NULL;
        assert_int_equal(vm_config_to_json(&c, &j), 0);
        assert_int_equal(vm_config_from_json(j, &back), 0);
        assert_string_equal(back.machine, c.machine);
        assert_string_equal(back.cpu, c.cpu);
        assert_string_equal(back.accel, "auto");
        assert_int_equal(back.ram_mib, 256);
        assert_int_equal(back.cpus, 2);
        assert_string_equal(back.kernel_id, KERNEL_ID);
        assert_string_equal(back.initrd_id, INITRD_ID);
        assert_string_equal(back.append, c.append);
        assert_string_equal(back.profile_disk, "/p.img");
        assert_true(back.vga);
        vm_config_done(&back);

        /* text round trip, as stored in the catalog */
        char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_t *j2 = json_loads(text, 0, NULL);
        assert_true(json_equal(j, j2));
        free(text);
        json_decref(j2);

        /* optional members may be null; unknown members are ignored */
        json_object_set_new(j, "initrd", json_null());
        json_object_set_new(j, "profile_disk", json_null());
        json_object_set_new(j, "future", json_string("x"));
        assert_int_equal(vm_config_from_json(j, &back), 0);
        assert_null(back.initrd_id);
        assert_null(back.profile_disk);
        vm_config_done(&back);

        /* broken configs */
        json_t *bad = json_deep_copy(j);
        json_object_del(bad, "machine");
        assert_int_equal(vm_config_from_json(bad, &back), -EBADMSG);
        json_decref(bad);
        bad = json_deep_copy(j);
        json_object_set_new(bad, "ram_mib", json_string("256"));
        assert_int_equal(vm_config_from_json(bad, &back), -EBADMSG);
        json_decref(bad);
        bad = json_deep_copy(j);
        json_object_set_new(bad, "cpu", json_string("host"));
        assert_int_equal(vm_config_from_json(bad, &back), -EBADMSG);
        json_decref(bad);
        bad = json_deep_copy(j);
        json_object_set_new(bad, "kernel", json_string("not-an-id"));
        assert_int_equal(vm_config_from_json(bad, &back), -EBADMSG);
        json_decref(bad);
        bad = json_string("x");
        assert_int_equal(vm_config_from_json(bad, &back), -EBADMSG);
        json_decref(bad);
        json_decref(j);
        vm_config_done(&c);
}

static void test_config_validate(void **state) {
        VmConfig c;
        config_sample(&c);
        assert_int_equal(vm_config_validate(&c), 0);
        c.ram_mib = 8;
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        c.ram_mib = VM_RAM_MIB_MAX + 1;
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        c.ram_mib = 256;
        c.cpus = 0;
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        c.cpus = VM_CPUS_MAX + 1;
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        c.cpus = 1;
        free(c.accel);
        c.accel = strdup("hvf");
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        free(c.accel);
        c.accel = strdup("tcg");
        free(c.cpu);
        c.cpu = strdup("host");
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        free(c.cpu);
        c.cpu = strdup("qemu64,+x");
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        free(c.cpu);
        c.cpu = strdup("qemu64");
        free(c.append);
        c.append = strdup("console=ttyS0\nevil");
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        free(c.append);
        c.append = NULL;
        c.profile_disk = strdup("relative.img");
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        free(c.profile_disk);
        c.profile_disk = NULL;
        assert_int_equal(vm_config_validate(&c), 0);
        vm_config_done(&c);
}

static void test_accel(void **state) {
        const char *a;
        setenv("ROAM_ACCEL", "tcg", 1);
        assert_int_equal(vm_resolve_accel("kvm", NULL, NULL, &a), 0);
        assert_string_equal(a, "tcg");
        assert_int_equal(vm_resolve_accel("auto", NULL, NULL, &a), 0);
        assert_string_equal(a, "tcg");
        setenv("ROAM_ACCEL", "fast", 1);
        assert_int_equal(vm_resolve_accel("auto", NULL, NULL, &a), -EINVAL);
        unsetenv("ROAM_ACCEL");
        assert_int_equal(vm_resolve_accel("tcg", NULL, NULL, &a), 0);
        assert_string_equal(a, "tcg");
        assert_int_equal(vm_resolve_accel("bogus", NULL, NULL, &a), -EINVAL);
        /* auto without a kernel to probe with: never kvm */
        assert_int_equal(vm_resolve_accel("auto", NULL, NULL, &a), 0);
        assert_string_equal(a, "tcg");
}

static void test_ram_check(void **state) {
        assert_int_equal(session_check_ram("/dev/shm/roam-unit-test", 64), 0);
        err_clear();
        assert_int_equal(session_check_ram("/dev/shm/roam-unit-test", VM_RAM_MIB_MAX), -ENOMEM);
        assert_non_null(strstr(err_message(-ENOMEM), "more than this host can give"));
}

/* ---- policy, log-off helpers ---- */

static void test_policy(void **state) {
        assert_string_equal(vm_policy_to_string(VM_POLICY_PERSISTENT), "persistent");
        assert_string_equal(vm_policy_to_string(VM_POLICY_POOLED), "pooled");
        assert_null(vm_policy_to_string(_VM_POLICY_MAX));
        assert_int_equal(vm_policy_from_string("pooled"), VM_POLICY_POOLED);
        assert_int_equal(vm_policy_from_string("Pooled"), -EINVAL);
        assert_int_equal(vm_policy_from_string(NULL), -EINVAL);

        VmConfig c, back;
        config_sample(&c);
        assert_int_equal(c.policy, VM_POLICY_PERSISTENT); /* the default */
        c.policy = VM_POLICY_POOLED;
        json_t *j = NULL;
        assert_int_equal(vm_config_to_json(&c, &j), 0);
        assert_string_equal(json_string_value(json_object_get(j, "policy")), "pooled");
        assert_int_equal(vm_config_from_json(j, &back), 0);
        assert_int_equal(back.policy, VM_POLICY_POOLED);
        vm_config_done(&back);
        VmConfig copy;
        assert_int_equal(vm_config_copy(&c, &copy), 0);
        assert_int_equal(copy.policy, VM_POLICY_POOLED);
        vm_config_done(&copy);

        /* a config from before the policy existed is persistent */
        json_object_del(j, "policy");
        assert_int_equal(vm_config_from_json(j, &back), 0);
        assert_int_equal(back.policy, VM_POLICY_PERSISTENT);
        vm_config_done(&back);
        json_object_set_new(j, "policy", json_null());
        assert_int_equal(vm_config_from_json(j, &back), 0);
        assert_int_equal(back.policy, VM_POLICY_PERSISTENT);
        vm_config_done(&back);
        json_object_set_new(j, "policy", json_string("sticky"));
        err_clear();
        assert_int_equal(vm_config_from_json(j, &back), -EBADMSG);
        assert_non_null(strstr(err_message(-EBADMSG), "'policy'"));
        json_object_set_new(j, "policy", json_integer(1));
        assert_int_equal(vm_config_from_json(j, &back), -EBADMSG);
        json_decref(j);

        c.policy = (VmPolicy) 7;
        assert_int_equal(vm_config_validate(&c), -EINVAL);
        assert_int_equal(vm_config_to_json(&c, &j), -EINVAL);
        vm_config_done(&c);
}

static void test_logoff_append(void **state) {
        char *s = NULL;
        assert_int_equal(session_logoff_append(SESSION_APPEND_DEFAULT, "alice", &s), 0);
        assert_string_equal(s, "console=ttyS0 quiet panic=-1 roam.logoff=1 roam.user=alice");
        free(s);
        assert_int_equal(session_logoff_append(NULL, "bob", &s), 0);
        assert_string_equal(s, "roam.logoff=1 roam.user=bob");
        free(s);
        /* earlier roam.logoff= and roam.user= words go; spacing is normalized */
        assert_int_equal(session_logoff_append("  a  roam.logoff=0 b roam.user=eve roam.userx=1 ", "bob", &s), 0);
        assert_string_equal(s, "a b roam.userx=1 roam.logoff=1 roam.user=bob");
        free(s);
        assert_int_equal(session_logoff_append("", "bob", &s), 0);
        assert_string_equal(s, "roam.logoff=1 roam.user=bob");
        free(s);
        s = NULL;
        assert_int_equal(session_logoff_append("x", "a b", &s), -EINVAL);
        assert_int_equal(session_logoff_append("x", "../x", &s), -EINVAL);
        assert_int_equal(session_logoff_append("x", NULL, &s), -EINVAL);
        assert_null(s);
        char *big = malloc(VM_APPEND_MAX + 1);
        memset(big, 'x', VM_APPEND_MAX - 10);
        big[VM_APPEND_MAX - 10] = 0;
        assert_int_equal(session_logoff_append(big, "alice", &s), -E2BIG);
        assert_null(s);
        free(big);
}

static void test_logoff_line(void **state) {
        static const char log[] = "Booting from ROM..\r\n"
                                  "roam-guest: logoff done (no profile disk)\r\n"
                                  "tick 3\r\n"
                                  "xroam-guest: logoff fake\n"
                                  "roam-guest: logoff done user=alice last='tick 3 boot=b'\r\n"
                                  "roam-guest: powered off cleanly\r\n";
        char buf[256];
        assert_int_equal(session_logoff_line(log, strlen(log), buf, sizeof buf), 1);
        assert_string_equal(buf, "roam-guest: logoff done user=alice last='tick 3 boot=b'");
        /* truncated to the buffer */
        char small[12];
        assert_int_equal(session_logoff_line(log, strlen(log), small, sizeof small), 1);
        assert_string_equal(small, "roam-guest:");
        /* a last line without a newline counts; a bare tag without a word does not */
        static const char tail[] = "roam-guest: logoff failed user=bob";
        assert_int_equal(session_logoff_line(tail, strlen(tail), buf, sizeof buf), 1);
        assert_string_equal(buf, tail);
        static const char none[] = "tick 1\nroam-guest: logoff\nroam-guest: ready\n";
        assert_int_equal(session_logoff_line(none, strlen(none), buf, sizeof buf), 0);
        assert_string_equal(buf, "");
        assert_int_equal(session_logoff_line("", 0, buf, sizeof buf), 0);
}

/* ---- catalog ---- */

typedef struct Fixture {
        char dir[64];
        Catalog *catalog;
        SessionHost *host;
        Store *store; /* NULL unless setup_store() */
} Fixture;

static int setup_catalog(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/roam-test-session.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        char path[128];
        snprintf(path, sizeof path, "%s/catalog.db", f->dir);
        if (catalog_open(path, &f->catalog) < 0)
                return -1;
        setenv("ROAM_RAM_DIR", f->dir, 1);
        if (session_host_new(f->dir, NULL, f->catalog, &f->host) < 0)
                return -1;
        unsetenv("ROAM_RAM_DIR");
        *state = f;
        return 0;
}

static void write_pattern(const char *path, uint8_t v) {
        uint8_t buf[65536];
        memset(buf, v, sizeof buf);
        assert_int_equal(write_file_atomic(path, buf, sizeof buf, 0600), 0);
}

/* A RAM file stays mapped between imports: the same mapping for the same
 * file, a new one for a file replaced, none kept for a file removed, and a
 * mapping dropped while held stays readable until given back. */
static void test_ram_map(void **state) {
        Fixture *f = *state;
        char path[256];
        snprintf(path, sizeof path, "%s/s1.ram", f->dir);
        write_pattern(path, 0x11);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        RamMap *a, *b;
        assert_int_equal(ram_map_get(f->host, path, fd, &a), 0);
        assert_int_equal(ram_map_size(a), 65536);
        assert_int_equal(((const uint8_t *) ram_map_addr(a))[100], 0x11);
        assert_int_equal(ram_map_get(f->host, path, fd, &b), 0);
        assert_ptr_equal(a, b);
        ram_map_put(f->host, b);
        close(fd);
        /* replaced (a new inode under the name): mapped afresh */
        write_pattern(path, 0x22);
        fd = open(path, O_RDONLY);
        assert_int_equal(ram_map_get(f->host, path, fd, &b), 0);
        assert_ptr_not_equal(a, b);
        assert_int_equal(((const uint8_t *) ram_map_addr(b))[100], 0x22);
        /* the old one, dropped from the table, is still readable while held */
        assert_int_equal(((const uint8_t *) ram_map_addr(a))[100], 0x11);
        ram_map_put(f->host, a);
        close(fd);
        /* removed: the mapping goes with it, held or not */
        assert_int_equal(ram_unlink(f->host, path), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(((const uint8_t *) ram_map_addr(b))[100], 0x22);
        ram_map_put(f->host, b);
        write_pattern(path, 0x33);
        fd = open(path, O_RDONLY);
        assert_int_equal(ram_map_get(f->host, path, fd, &a), 0);
        assert_int_equal(((const uint8_t *) ram_map_addr(a))[100], 0x33);
        ram_map_put(f->host, a);
        close(fd);
        assert_int_equal(ram_unlink(f->host, path), 0);
        assert_int_equal(ram_unlink(f->host, path), -ENOENT);
}

static int teardown_catalog(void **state) {
        Fixture *f = *state;
        session_host_free(f->host);
        catalog_free(f->catalog);
        rm_rf(f->dir);
        free(f);
        return 0;
}

static char *sample_config_text(void) {
        VmConfig c;
        config_sample(&c);
        json_t *j;
        assert_int_equal(vm_config_to_json(&c, &j), 0);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        vm_config_done(&c);
        return s;
}

static void test_db(void **state) {
        Fixture *f = *state;
        assert_true(catalog_schema_version(f->catalog) >= 2);
        char *cfg = sample_config_text();
        SessionRow row = { .name = "s1", .user = "alice", .image = "deb", .image_id = KERNEL_ID, .config = cfg,
                           .state = SESSION_CREATED };
        assert_int_equal(session_db_insert(f->catalog, &row), 0);
        err_clear();
        assert_int_equal(session_db_insert(f->catalog, &row), -EEXIST);
        assert_non_null(strstr(err_message(-EEXIST), "session 's1' already exists"));
        row.name = "s0";
        row.user = "bob";
        assert_int_equal(session_db_insert(f->catalog, &row), 0);

        SessionRow got = {};
        assert_int_equal(session_db_get(f->catalog, "s1", &got), 0);
        assert_string_equal(got.user, "alice");
        assert_string_equal(got.owner, SESSION_OWNER_LOCAL);
        assert_int_equal(got.state, SESSION_CREATED);
        assert_int_equal(got.epoch, 0);
        assert_null(got.last_checkpoint);
        assert_true(got.created > 0);
        session_row_done(&got);
        err_clear();
        assert_int_equal(session_db_get(f->catalog, "nope", &got), -ENOENT);
        assert_non_null(strstr(err_message(-ENOENT), "session 'nope' not found"));

        assert_int_equal(session_db_set_state(f->catalog, "s1", SESSION_RUNNING), 0);
        assert_int_equal(session_db_set_checkpoint(f->catalog, "s1", INITRD_ID, 3), 0);
        assert_int_equal(session_db_set_state(f->catalog, "nope", SESSION_RUNNING), -ENOENT);

        SessionRow *rows;
        size_t n;
        assert_int_equal(session_db_list(f->catalog, &rows, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(rows[0].name, "s0"); /* by name */
        assert_string_equal(rows[1].name, "s1");
        assert_int_equal(rows[1].state, SESSION_RUNNING);
        assert_string_equal(rows[1].last_checkpoint, INITRD_ID);
        assert_int_equal(rows[1].checkpoints, 3);
        session_rows_free(rows, n);

        /* owner changes are compare-and-swap on the epoch */
        assert_int_equal(session_db_set_owner(f->catalog, "s1", "https://b.example:7450", 1, 0), 0);
        assert_int_equal(session_db_set_owner(f->catalog, "s1", "https://c.example:7450", 2, 0), -ESTALE);
        assert_int_equal(session_db_get(f->catalog, "s1", &got), 0);
        assert_string_equal(got.owner, "https://b.example:7450");
        assert_int_equal(got.epoch, 1);
        assert_int_equal(got.state, SESSION_AWAY);
        session_row_done(&got);

        assert_int_equal(session_db_delete(f->catalog, "s0"), 0);
        assert_int_equal(session_db_delete(f->catalog, "s0"), -ENOENT);
        free(cfg);
}

static void test_states(void **state) {
        for (int s = 0; s < _SESSION_STATE_MAX; s++)
                assert_int_equal(session_state_from_string(session_state_to_string((SessionState) s)), s);
        assert_int_equal(session_state_from_string("zombie"), -EINVAL);
        assert_null(session_state_to_string(_SESSION_STATE_MAX));
}

/* A session owned by another host cannot be started or restored here; bad
 * names are refused before anything is looked up. */
static void test_ownership_and_names(void **state) {
        Fixture *f = *state;
        char *cfg = sample_config_text();
        SessionRow row = { .name = "away1", .user = "alice", .image = "deb", .image_id = KERNEL_ID, .config = cfg,
                           .state = SESSION_CREATED };
        assert_int_equal(session_db_insert(f->catalog, &row), 0);
        assert_int_equal(session_db_set_owner(f->catalog, "away1", "https://srv2:7450", 4, 0), 0);
        err_clear();
        assert_int_equal(session_start(f->host, "away1"), -EREMOTE);
        assert_string_equal(err_message(-EREMOTE), "session 'away1' is owned by https://srv2:7450 since epoch 4");
        assert_int_equal(session_pause(f->host, "away1"), -EREMOTE);

        SessionInfo i;
        assert_int_equal(session_get(f->host, "away1", &i), 0);
        assert_int_equal(i.row.state, SESSION_AWAY);
        assert_int_equal(i.pid, 0);
        session_info_done(&i);

        static const char *const bad[] = { "a/b", "..", ".x", "-x", "", "tab\t" };
        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                assert_int_equal(session_get(f->host, bad[k], &i), -EINVAL);
                assert_int_equal(session_start(f->host, bad[k]), -EINVAL);
        }
        /* create needs the store */
        SessionCreate a = { .name = "x", .user = "alice", .image = "deb", .kernel = "/nonexistent" };
        assert_int_equal(session_create(f->host, &a, NULL), -EINVAL);
        free(cfg);
}

/* ---- with a store: profile disks, powered-off manifests, adopt and finalize refusals ---- */

static int setup_store(void **state) {
        if (setup_catalog(state) < 0)
                return -1;
        Fixture *f = *state;
        char path[128];
        snprintf(path, sizeof path, "%s/store", f->dir);
        StoreOptions so = { .create = true };
        Store *st;
        if (store_open(path, &so, &st) < 0)
                return -1;
        f->store = st;
        session_host_free(f->host);
        setenv("ROAM_RAM_DIR", f->dir, 1);
        if (session_host_new(f->dir, f->store, f->catalog, &f->host) < 0)
                return -1;
        unsetenv("ROAM_RAM_DIR");
        return 0;
}

static int teardown_store(void **state) {
        Fixture *f = *state;
        session_host_free(f->host);
        f->host = NULL;
        store_free(f->store);
        return teardown_catalog(state);
}

/* Imports len bytes of byte c as a blob; its id in hex. */
static void put_blob(Fixture *f, char c, size_t len, char hex[static ID_HEX_SIZE]) {
        char path[160];
        snprintf(path, sizeof path, "%s/blob-%c", f->dir, c);
        char *buf = malloc(len);
        memset(buf, c, len);
        assert_int_equal(write_file_atomic(path, buf, len, 0600), 0);
        free(buf);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        RoamId id;
        BlobOptions o = {};
        assert_int_equal(blob_import_fd(f->store, fd, len, &o, &id, NULL), 0);
        close(fd);
        id_to_hex(&id, hex);
}

static void put_manifest_json(Fixture *f, json_t *j, char hex[static ID_HEX_SIZE]) {
        void *data;
        size_t len;
        assert_int_equal(manifest_serialize(j, &data, &len), 0);
        RoamId id;
        assert_int_equal(store_object_put(f->store, data, len, &id), 0);
        free(data);
        id_to_hex(&id, hex);
}

static void insert_row(Fixture *f, const char *name, const char *user, SessionState st) {
        char *cfg = sample_config_text();
        SessionRow row = { .name = (char *) name, .user = (char *) user, .image = "deb", .image_id = KERNEL_ID,
                           .config = cfg, .state = st };
        assert_int_equal(session_db_insert(f->catalog, &row), 0);
        free(cfg);
        char dir[160];
        snprintf(dir, sizeof dir, "%s/sessions/%s", f->dir, name);
        assert_int_equal(mkdir_p(dir, 0700), 0);
}

static void test_profile_disk(void **state) {
        Fixture *f = *state;
        char *path = NULL, want[160];
        snprintf(want, sizeof want, "%s/profiles/alice.img", f->dir);
        int r = session_profile_disk(f->host, "alice", &path);
        if (r == -ENOENT) {
                print_message("mke2fs missing: %s\n", err_message(r));
                skip();
        }
        assert_int_equal(r, 0);
        assert_string_equal(path, want);
        struct stat st1, st2;
        assert_int_equal(stat(path, &st1), 0);
        assert_int_equal(st1.st_size, (off_t) SESSION_PROFILE_MIB << 20);
        assert_true((uint64_t) st1.st_blocks * 512 < ((uint64_t) SESSION_PROFILE_MIB << 20) / 2); /* sparse */
        /* an ext4 superblock: magic 0xEF53 at byte 1024 + 56 */
        int fd = open(path, O_RDONLY);
        unsigned char magic[2];
        assert_int_equal(pread(fd, magic, 2, 1080), 2);
        close(fd);
        assert_int_equal(magic[0], 0x53);
        assert_int_equal(magic[1], 0xef);
        free(path);
        /* the second call uses it as it is */
        assert_int_equal(session_profile_disk(f->host, "alice", &path), 0);
        assert_int_equal(stat(path, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);
        free(path);
        path = NULL;
        assert_int_equal(session_profile_disk(f->host, "../alice", &path), -EINVAL);
        assert_null(path);
        /* no temp files left beside it */
        char dir[160];
        snprintf(dir, sizeof dir, "%s/profiles", f->dir);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = alice.img", dir);
        assert_int_equal(system(cmd), 0);

        /* a profile directory that cannot be made */
        assert_int_equal(rm_rf(dir), 0);
        assert_int_equal(write_file_atomic(dir, "x", 1, 0600), 0);
        err_clear();
        r = session_profile_disk(f->host, "bob", &path);
        assert_true(r < 0);
        assert_non_null(strstr(err_message(r), "cannot create the profile disk of user 'bob'"));
        assert_null(path);
}

static void test_finalize_refusals(void **state) {
        Fixture *f = *state;
        SessionFinalizeResult res;
        err_clear();
        assert_int_equal(session_finalize(f->host, "nope", &res), -ENOENT);
        assert_non_null(strstr(err_message(-ENOENT), "session 'nope' not found"));
        assert_int_equal(session_finalize(f->host, "a/b", &res), -EINVAL);

        insert_row(f, "f1", "alice", SESSION_STOPPED);
        /* the profile disk cannot be made: nothing boots, nothing changes */
        char dir[160];
        snprintf(dir, sizeof dir, "%s/profiles", f->dir);
        assert_int_equal(write_file_atomic(dir, "x", 1, 0600), 0);
        err_clear();
        int r = session_finalize(f->host, "f1", &res);
        assert_true(r < 0);
        assert_non_null(strstr(err_message(r), "cannot finalize session 'f1': cannot create the profile disk of "
                                               "user 'alice'"));
        SessionInfo i;
        assert_int_equal(session_get(f->host, "f1", &i), 0);
        assert_int_equal(i.row.state, SESSION_STOPPED);
        session_info_done(&i);

        assert_int_equal(session_db_set_state(f->catalog, "f1", SESSION_CRASHED), 0);
        err_clear();
        assert_int_equal(session_finalize(f->host, "f1", &res), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "session 'f1' crashed"));
        /* nor a powered-off checkpoint of a crashed session */
        err_clear();
        assert_int_equal(session_checkpoint(f->host, "f1", 0, NULL), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "session 'f1' crashed"));

        assert_int_equal(session_db_set_owner(f->catalog, "f1", "https://srv2:7450", 1, 0), 0);
        assert_int_equal(session_finalize(f->host, "f1", &res), -EREMOTE);
}

static void test_powered_off_manifest(void **state) {
        Fixture *f = *state;
        char ov[ID_HEX_SIZE], kernel[ID_HEX_SIZE], image[ID_HEX_SIZE], hex[ID_HEX_SIZE], other[ID_HEX_SIZE];
        put_blob(f, 'o', 200000, ov);
        put_blob(f, 'k', 70000, kernel);
        put_blob(f, 'i', 300000, image);
        VmConfig c;
        config_sample(&c);
        free(c.kernel_id);
        c.kernel_id = strdup(kernel);
        free(c.initrd_id);
        c.initrd_id = NULL;
        c.policy = VM_POLICY_POOLED;
        json_t *cfg;
        assert_int_equal(vm_config_to_json(&c, &cfg), 0);
        vm_config_done(&c);
        json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:o, s:b, s:I, s:I}", "kind", "checkpoint",
                              "session", "s9", "user", "alice", "image", image, "objects", "overlay", ov, "kernel",
                              kernel, "image", image, "config", cfg, "powered_off", 1, "epoch", (json_int_t) 2,
                              "seq", (json_int_t) 5);
        assert_non_null(m);
        put_manifest_json(f, m, hex);
        RoamId id;
        assert_int_equal(id_from_hex(hex, &id), 0);
        json_t *got = NULL;
        assert_int_equal(session_checkpoint_verify(f->store, &id, &got), 0);
        assert_true(json_is_true(json_object_get(got, "powered_off")));
        json_decref(got);

        /* without powered_off it lacks its RAM; a malformed flag is refused */
        json_t *m2 = json_deep_copy(m);
        json_object_del(m2, "powered_off");
        put_manifest_json(f, m2, other);
        assert_int_equal(id_from_hex(other, &id), 0);
        err_clear();
        assert_int_equal(session_checkpoint_verify(f->store, &id, NULL), -EBADMSG);
        assert_non_null(strstr(err_message(-EBADMSG), "lacks its ram"));
        json_object_set_new(m2, "powered_off", json_string("yes"));
        put_manifest_json(f, m2, other);
        assert_int_equal(id_from_hex(other, &id), 0);
        assert_int_equal(session_checkpoint_verify(f->store, &id, NULL), -EBADMSG);
        json_decref(m2);
        /* powered off but without its overlay */
        m2 = json_deep_copy(m);
        json_object_del(json_object_get(m2, "objects"), "overlay");
        put_manifest_json(f, m2, other);
        assert_int_equal(id_from_hex(other, &id), 0);
        err_clear();
        assert_int_equal(session_checkpoint_verify(f->store, &id, NULL), -EBADMSG);
        assert_non_null(strstr(err_message(-EBADMSG), "lacks its overlay"));
        json_decref(m2);
        json_decref(m);

        /* adopt: every refusal comes before anything changes */
        SessionInfo i;
        err_clear();
        assert_int_equal(session_adopt(f->host, "s8", hex, 3, &i), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "belongs to session 's9', not 's8'"));
        assert_int_equal(session_adopt(f->host, "s9", "xyz", 3, &i), -EINVAL);
        assert_int_equal(session_adopt(f->host, "s9", NULL, 3, &i), -EINVAL);
        assert_int_equal(session_adopt(f->host, "s9", KERNEL_ID, 3, &i), -ENOENT); /* not in the store */
        assert_int_equal(session_get(f->host, "s9", &i), -ENOENT);

        insert_row(f, "s9", "alice", SESSION_STOPPED);
        err_clear();
        assert_int_equal(session_adopt(f->host, "s9", hex, 3, &i), -EBUSY);
        assert_non_null(strstr(err_message(-EBUSY), "session 's9' is owned here already"));
        assert_int_equal(session_db_set_owner(f->catalog, "s9", "https://laptop:7450", 4, 0), 0);
        assert_int_equal(session_adopt(f->host, "s9", hex, 4, &i), -ESTALE);
        assert_int_equal(session_adopt(f->host, "s9", hex, 2, &i), -ESTALE);
        assert_int_equal(session_db_delete(f->catalog, "s9"), 0);
        insert_row(f, "s9", "bob", SESSION_STOPPED);
        assert_int_equal(session_db_set_owner(f->catalog, "s9", "https://laptop:7450", 4, 0), 0);
        err_clear();
        assert_int_equal(session_adopt(f->host, "s9", hex, 5, &i), -EINVAL);
        assert_non_null(strstr(err_message(-EINVAL), "belongs to user 'alice'"));
        assert_int_equal(session_get(f->host, "s9", &i), 0);
        assert_string_equal(i.row.owner, "https://laptop:7450");
        assert_int_equal(i.row.epoch, 4);
        session_info_done(&i);
}

/* retention: newest first; a checkpoint stays if any rule keeps it */
static void test_retention(void **state) {
        const int64_t now = 1000000;
        /* ages: 10 s, 20 min, 50 min, 1.5 h, 2.5 h, 1.2 d, 1.5 d, 3 d */
        const int64_t created[] = { now - 10, now - 1200, now - 3000, now - 5400, now - 9000,
                                    now - 103680, now - 129600, now - 259200 };
        const size_t n = ELEMENTSOF(created);
        bool keep[8];
        RetentionPolicy all = { 0 };
        retention_select(created, n, &all, now, keep);
        for (size_t i = 0; i < n; i++)
                assert_true(keep[i]);
        RetentionPolicy last2 = { .keep_last = 2 };
        retention_select(created, n, &last2, now, keep);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(keep[i], i < 2);
        /* hourly, 3 hours: the newest of hour 0 (10 s), hour 1 (1.5 h), hour 2 (2.5 h) */
        RetentionPolicy hourly = { .keep_hourly = 3 };
        retention_select(created, n, &hourly, now, keep);
        const bool want_h[] = { 1, 0, 0, 1, 1, 0, 0, 0 };
        for (size_t i = 0; i < n; i++)
                assert_int_equal(keep[i], want_h[i]);
        /* daily, 2 days, with last 1: day 0 (10 s) and day 1 (1.2 d) */
        RetentionPolicy daily = { .keep_last = 1, .keep_daily = 2 };
        retention_select(created, n, &daily, now, keep);
        const bool want_d[] = { 1, 0, 0, 0, 0, 1, 0, 0 };
        for (size_t i = 0; i < n; i++)
                assert_int_equal(keep[i], want_d[i]);
        /* a clock that went back: treated as age 0, kept by the first bucket */
        const int64_t future[] = { now + 50, now - 10 };
        retention_select(future, 2, &hourly, now, keep);
        assert_true(keep[0]);
        assert_false(keep[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_retention),
                cmocka_unit_test(test_argv),
                cmocka_unit_test(test_config_json),
                cmocka_unit_test(test_config_validate),
                cmocka_unit_test(test_accel),
                cmocka_unit_test(test_ram_check),
                cmocka_unit_test(test_states),
                cmocka_unit_test(test_policy),
                cmocka_unit_test(test_logoff_append),
                cmocka_unit_test(test_logoff_line),
                cmocka_unit_test_setup_teardown(test_db, setup_catalog, teardown_catalog),
                cmocka_unit_test_setup_teardown(test_ram_map, setup_catalog, teardown_catalog),
                cmocka_unit_test_setup_teardown(test_ownership_and_names, setup_catalog, teardown_catalog),
                cmocka_unit_test_setup_teardown(test_profile_disk, setup_store, teardown_store),
                cmocka_unit_test_setup_teardown(test_finalize_refusals, setup_store, teardown_store),
                cmocka_unit_test_setup_teardown(test_powered_off_manifest, setup_store, teardown_store),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
