/* SPDX-License-Identifier: MIT */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/hash.h"
#include "../basic/macro.h"
#include "../basic/spawn.h"
#include "../basic/util.h"

/* ---- config ---- */

static const char *const policy_names[_VM_POLICY_MAX] = {
        [VM_POLICY_PERSISTENT] = "persistent",
        [VM_POLICY_POOLED] = "pooled",
};

const char *vm_policy_to_string(VmPolicy p) {
        if ((unsigned) p >= _VM_POLICY_MAX)
                return NULL;
        return policy_names[p];
}

int vm_policy_from_string(const char *s) {
        for (int i = 0; s && i < _VM_POLICY_MAX; i++)
                if (!strcmp(s, policy_names[i]))
                        return i;
        return -EINVAL;
}

int vm_config_init(VmConfig *c) {
        *c = (VmConfig) { .ram_mib = VM_RAM_MIB_DEFAULT, .cpus = 1, .vga = true };
        c->machine = strdup(VM_MACHINE_DEFAULT);
        c->cpu = strdup(VM_CPU_DEFAULT);
        c->accel = strdup("auto");
        if (!c->machine || !c->cpu || !c->accel) {
                vm_config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void vm_config_done(VmConfig *c) {
        if (!c)
                return;
        free(c->machine);
        free(c->cpu);
        free(c->accel);
        free(c->kernel_id);
        free(c->initrd_id);
        free(c->append);
        free(c->profile_disk);
        *c = (VmConfig) {};
}

static int dup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int vm_config_copy(const VmConfig *src, VmConfig *ret) {
        VmConfig c = { .ram_mib = src->ram_mib, .cpus = src->cpus, .vga = src->vga, .agent = src->agent,
                       .profile = src->profile, .terminal_server = src->terminal_server, .policy = src->policy };
        if (dup_opt(src->machine, &c.machine) < 0 || dup_opt(src->cpu, &c.cpu) < 0 ||
            dup_opt(src->accel, &c.accel) < 0 || dup_opt(src->kernel_id, &c.kernel_id) < 0 ||
            dup_opt(src->initrd_id, &c.initrd_id) < 0 || dup_opt(src->append, &c.append) < 0 ||
            dup_opt(src->profile_disk, &c.profile_disk) < 0) {
                vm_config_done(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static bool token_ok(const char *s) {
        if (!s || !*s || strlen(s) > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

static bool id_hex_ok(const char *s) {
        RoamId id;
        return s && id_from_hex(s, &id) == 0;
}

int vm_config_validate(const VmConfig *c) {
        if (!token_ok(c->machine))
                return err_set(-EINVAL, "invalid machine type '%s'", c->machine ? c->machine : "");
        if (!token_ok(c->cpu))
                return err_set(-EINVAL, "invalid cpu model '%s'", c->cpu ? c->cpu : "");
        if (!strcmp(c->cpu, "host") || !strcmp(c->cpu, "max"))
                return err_set(-EINVAL, "cpu model '%s' differs from host to host and would break moves (use a "
                                        "named model such as qemu64)",
                               c->cpu);
        if (!c->accel || (strcmp(c->accel, "auto") && strcmp(c->accel, "kvm") && strcmp(c->accel, "tcg")))
                return err_set(-EINVAL, "invalid accelerator '%s' (use auto, kvm or tcg)", c->accel ? c->accel : "");
        if (c->cpus < 1 || c->cpus > VM_CPUS_MAX)
                return err_set(-EINVAL, "invalid number of cpus %u (use 1 to %d)", c->cpus, VM_CPUS_MAX);
        if (c->ram_mib < VM_RAM_MIB_MIN || c->ram_mib > VM_RAM_MIB_MAX)
                return err_set(-EINVAL, "invalid RAM size %llu MiB (use %d MiB to %d GiB)",
                               (unsigned long long) c->ram_mib, VM_RAM_MIB_MIN, VM_RAM_MIB_MAX / 1024);
        if (!id_hex_ok(c->kernel_id))
                return err_set(-EINVAL, "the VM config has no valid kernel id");
        if (c->initrd_id && !id_hex_ok(c->initrd_id))
                return err_set(-EINVAL, "the VM config has an invalid initrd id");
        if (c->append) {
                if (strlen(c->append) > VM_APPEND_MAX)
                        return err_set(-EINVAL, "kernel command line too long (at most %d bytes)", VM_APPEND_MAX);
                for (const char *p = c->append; *p; p++)
                        if ((unsigned char) *p < 0x20 || *p == 0x7f)
                                return err_set(-EINVAL, "kernel command line contains a control character");
        }
        if (c->profile_disk && c->profile_disk[0] != '/')
                return err_set(-EINVAL, "profile disk path '%s' is not absolute", c->profile_disk);
        if (!vm_policy_to_string(c->policy))
                return err_set(-EINVAL, "invalid policy %d (use persistent or pooled)", (int) c->policy);
        return 0;
}

int vm_config_to_json(const VmConfig *c, json_t **ret) {
        const char *policy = vm_policy_to_string(c->policy);
        if (!policy)
                return -EINVAL;
        json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:s, s:s?, s:s?, s:s?, s:s?, s:b, s:s}", "machine", c->machine,
                              "cpu", c->cpu, "ram_mib", (json_int_t) c->ram_mib, "cpus", (int) c->cpus, "accel",
                              c->accel, "kernel", c->kernel_id, "initrd", c->initrd_id, "append", c->append,
                              "profile_disk", c->profile_disk, "vga", c->vga, "policy", policy);
        if (!j)
                return -ENOMEM;
        /* only when on: configs (and checkpoints) of sessions without an agent stay as they were */
        if ((c->agent && json_object_set_new(j, "agent", json_true()) < 0) ||
            (c->profile && json_object_set_new(j, "profile", json_true()) < 0) ||
            (c->terminal_server && json_object_set_new(j, "terminal_server", json_true()) < 0)) {
                json_decref(j);
                return -ENOMEM;
        }
        *ret = j;
        return 0;
}

static int json_str(json_t *j, const char *key, bool required, char **ret) {
        json_t *v = json_object_get(j, key);
        if (!v || json_is_null(v)) {
                if (required)
                        return err_set(-EBADMSG, "VM config lacks '%s'", key);
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v))
                return err_set(-EBADMSG, "VM config member '%s' is not a string", key);
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

int vm_config_from_json(json_t *j, VmConfig *ret) {
        if (!json_is_object(j))
                return err_set(-EBADMSG, "VM config is not a JSON object");
        VmConfig c = { .vga = true };
        int r = json_str(j, "machine", true, &c.machine);
        if (r >= 0)
                r = json_str(j, "cpu", true, &c.cpu);
        if (r >= 0)
                r = json_str(j, "accel", true, &c.accel);
        if (r >= 0)
                r = json_str(j, "kernel", true, &c.kernel_id);
        if (r >= 0)
                r = json_str(j, "initrd", false, &c.initrd_id);
        if (r >= 0)
                r = json_str(j, "append", false, &c.append);
        if (r >= 0)
                r = json_str(j, "profile_disk", false, &c.profile_disk);
        if (r >= 0) {
                json_t *m = json_object_get(j, "ram_mib"), *n = json_object_get(j, "cpus"),
                       *v = json_object_get(j, "vga"), *pol = json_object_get(j, "policy"),
                       *ag = json_object_get(j, "agent"), *pr = json_object_get(j, "profile"),
                       *ts = json_object_get(j, "terminal_server");
                int pv = pol && !json_is_null(pol) ? vm_policy_from_string(json_string_value(pol))
                                                   : VM_POLICY_PERSISTENT;
                if (!json_is_integer(m) || json_integer_value(m) <= 0)
                        r = err_set(-EBADMSG, "VM config lacks a valid 'ram_mib'");
                else if (!json_is_integer(n) || json_integer_value(n) <= 0 ||
                         json_integer_value(n) > VM_CPUS_MAX)
                        r = err_set(-EBADMSG, "VM config lacks a valid 'cpus'");
                else if (v && !json_is_boolean(v))
                        r = err_set(-EBADMSG, "VM config member 'vga' is not a boolean");
                else if (ag && !json_is_boolean(ag))
                        r = err_set(-EBADMSG, "VM config member 'agent' is not a boolean");
                else if (pr && !json_is_boolean(pr))
                        r = err_set(-EBADMSG, "VM config member 'profile' is not a boolean");
                else if (ts && !json_is_boolean(ts))
                        r = err_set(-EBADMSG, "VM config member 'terminal_server' is not a boolean");
                else if (pv < 0)
                        r = err_set(-EBADMSG, "VM config member 'policy' is not 'persistent' or 'pooled'");
                else {
                        c.policy = (VmPolicy) pv;
                        c.ram_mib = (uint64_t) json_integer_value(m);
                        c.cpus = (unsigned) json_integer_value(n);
                        if (v)
                                c.vga = json_is_true(v);
                        c.agent = json_is_true(ag);
                        c.profile = json_is_true(pr);
                        c.terminal_server = json_is_true(ts);
                }
        }
        if (r >= 0) {
                r = vm_config_validate(&c);
                if (r < 0) {
                        char detail[512];
                        snprintf(detail, sizeof detail, "%s", err_message(r));
                        r = err_set(-EBADMSG, "invalid VM config: %s", detail);
                }
        }
        if (r < 0) {
                vm_config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ---- binaries, accelerator ---- */

const char *vm_qemu_binary(void) {
        const char *e = getenv("ROAM_QEMU");
        return e && *e ? e : "qemu-system-x86_64";
}

const char *vm_qemu_img_binary(void) {
        const char *e = getenv("ROAM_QEMU_IMG");
        return e && *e ? e : "qemu-img";
}

static void boot_id(char buf[static 64]) {
        _cleanup_free_ char *s = NULL;
        size_t n;
        buf[0] = 0;
        if (read_proc_file("/proc/sys/kernel/random/boot_id", 64, &s, &n) == 0) {
                snprintf(buf, 64, "%s", s);
                buf[strcspn(buf, "\n")] = 0;
        }
}

/* Boots kernel under KVM and waits for its banner on the serial port. */
static bool kvm_probe(const char *kernel) {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        close(fd);
        if (!kernel)
                return false;
        char dir[] = "/tmp/roam-probe.XXXXXX";
        if (!mkdtemp(dir))
                return false;
        char serial[64], serial_arg[80];
        snprintf(serial, sizeof serial, "%s/serial", dir);
        snprintf(serial_arg, sizeof serial_arg, "file:%s", serial);
        char *argv[] = { (char *) vm_qemu_binary(), "-M", VM_MACHINE_DEFAULT, "-accel", "kvm", "-cpu",
                         VM_CPU_DEFAULT, "-m", "128", "-nodefaults", "-display", "none", "-no-reboot", "-serial",
                         serial_arg, "-kernel", (char *) kernel, "-append",
                         "console=ttyS0 panic=-1 root=/dev/roam-probe", NULL };
        bool ok = false;
        pid_t pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                if (null >= 0) {
                        dup2(null, 0);
                        dup2(null, 1);
                        dup2(null, 2);
                }
                execvp(argv[0], argv);
                _exit(127);
        }
        if (pid > 0) {
                uint64_t end = now_ns() + (uint64_t) VM_ACCEL_PROBE_MS * 1000000;
                while (now_ns() < end) {
                        _cleanup_free_ char *s = NULL;
                        size_t n;
                        if (read_full_file(serial, 1 << 20, &s, &n) == 0 && memmem(s, n, "Linux version", 13)) {
                                ok = true;
                                break;
                        }
                        int st;
                        if (waitpid(pid, &st, WNOHANG) == pid) {
                                pid = -1;
                                break;
                        }
                        nanosleep(&(struct timespec) { 0, 50 * 1000000 }, NULL);
                }
                if (pid > 0) {
                        kill(pid, SIGKILL);
                        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                                ;
                }
        }
        unlink(serial);
        rmdir(dir);
        return ok;
}

int vm_resolve_accel(const char *want, const char *kernel, const char *cache_dir, const char **ret) {
        const char *e = getenv("ROAM_ACCEL");
        if (e && *e) {
                if (strcmp(e, "kvm") && strcmp(e, "tcg"))
                        return err_set(-EINVAL, "ROAM_ACCEL is '%s' (use kvm or tcg)", e);
                want = e;
        }
        if (!strcmp(want, "kvm")) {
                *ret = "kvm";
                return 0;
        }
        if (!strcmp(want, "tcg")) {
                *ret = "tcg";
                return 0;
        }
        if (strcmp(want, "auto"))
                return err_set(-EINVAL, "invalid accelerator '%s' (use auto, kvm or tcg)", want);

        char bid[64];
        boot_id(bid);
        _cleanup_free_ char *cache = cache_dir ? path_join(cache_dir, "accel-probe") : NULL;
        if (cache && bid[0]) {
                _cleanup_free_ char *s = NULL;
                size_t n;
                if (read_full_file(cache, 256, &s, &n) == 0) {
                        size_t bl = strlen(bid);
                        if (n > bl && !strncmp(s, bid, bl) && s[bl] == ' ') {
                                *ret = !strncmp(s + bl + 1, "kvm", 3) ? "kvm" : "tcg";
                                return 0;
                        }
                }
        }
        const char *a = kvm_probe(kernel) ? "kvm" : "tcg";
        if (cache && bid[0]) {
                char line[128];
                int len = snprintf(line, sizeof line, "%s %s\n", bid, a);
                (void) write_file_atomic(cache, line, (size_t) len, 0644);
        }
        *ret = a;
        return 0;
}

/* ---- command line ---- */

void strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

typedef struct Argv {
        char **v;
        size_t n, cap;
        bool oom;
} Argv;

/* a -drive option: see vm_build_argv() */
#define DRIVE_KEEP_CACHE "file.drop-cache=off"

static void argv_add(Argv *a, const char *fmt, ...) _printf_(2, 3);
static void argv_add(Argv *a, const char *fmt, ...) {
        if (a->oom)
                return;
        if (a->n + 2 > a->cap) {
                size_t cap = a->cap ? a->cap * 2 : 64;
                char **v = realloc(a->v, cap * sizeof *v);
                if (!v) {
                        a->oom = true;
                        return;
                }
                a->v = v;
                a->cap = cap;
        }
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&a->v[a->n], fmt, ap);
        va_end(ap);
        if (r < 0) {
                a->oom = true;
                return;
        }
        a->v[++a->n] = NULL;
}

/* QEMU option values separate key=value pairs with ',': a ',' inside a value
 * is written ",,". Caller frees. */
static char *qemu_escape(const char *s) {
        size_t n = 0;
        for (const char *p = s; *p; p++)
                n += *p == ',' ? 2 : 1;
        char *o = malloc(n + 1), *q = o;
        if (!o)
                return NULL;
        for (const char *p = s; *p; p++) {
                *q++ = *p;
                if (*p == ',')
                        *q++ = ',';
        }
        *q = 0;
        return o;
}

int vm_build_argv(const char *qemu, const VmConfig *c, const char *accel, const VmPaths *p, bool incoming,
                  char ***ret) {
        if (!p->kernel || !p->overlay || !p->master || !p->ram || !p->serial || !p->qmp || !p->pidfile)
                return -EINVAL;
        char fd_path[32], prof_fd_path[32];
        snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", p->overlay_fd);
        snprintf(prof_fd_path, sizeof prof_fd_path, "/proc/self/fd/%d", p->profile_fd);
        _cleanup_free_ char *ram = qemu_escape(p->ram), *serial = qemu_escape(p->serial),
                            *qmp = qemu_escape(p->qmp), *ov = qemu_escape(p->overlay_fd > 0 ? fd_path : p->overlay),
                            *master = qemu_escape(p->master),
                            *vnc = p->vnc ? qemu_escape(p->vnc) : NULL,
                            *prof = c->profile_disk ? qemu_escape(c->profile_disk) : NULL,
                            *agent = c->agent && p->agent ? qemu_escape(p->agent) : NULL,
                            *uprof = c->profile && p->profile
                                             ? qemu_escape(p->profile_fd > 0 ? prof_fd_path : p->profile)
                                             : NULL,
                            *xfer = c->terminal_server && p->xfer ? qemu_escape(p->xfer) : NULL;
        if (c->terminal_server && !xfer)
                return p->xfer ? -ENOMEM : -EINVAL;
        if (!ram || !serial || !qmp || !ov || !master || (p->vnc && !vnc) || (c->profile_disk && !prof))
                return -ENOMEM;
        if (c->agent && !agent)
                return p->agent ? -ENOMEM : -EINVAL;
        if (c->profile && !uprof)
                return p->profile ? -ENOMEM : -EINVAL;
        if (c->profile && c->profile_disk)
                return -EINVAL; /* one second disk */
        Argv a = {};
        argv_add(&a, "%s", qemu);
        argv_add(&a, "-M");
        argv_add(&a, "%s,memory-backend=mem", c->machine);
        argv_add(&a, "-accel");
        argv_add(&a, "%s", accel);
        argv_add(&a, "-cpu");
        argv_add(&a, "%s", c->cpu);
        argv_add(&a, "-m");
        argv_add(&a, "%llu", (unsigned long long) c->ram_mib);
        argv_add(&a, "-smp");
        argv_add(&a, "%u", c->cpus);
        argv_add(&a, "-object");
        argv_add(&a, "memory-backend-file,id=mem,size=%lluM,mem-path=%s,share=on", (unsigned long long) c->ram_mib,
                 ram);
        argv_add(&a, "-nodefaults");
        argv_add(&a, "-no-reboot");
        argv_add(&a, "-no-shutdown");
        argv_add(&a, "-display");
        argv_add(&a, "none");
        if (c->vga) {
                argv_add(&a, "-device");
                argv_add(&a, "VGA");
        }
        argv_add(&a, "-chardev");
        argv_add(&a, "file,id=serial0,path=%s,append=on", serial);
        argv_add(&a, "-serial");
        argv_add(&a, "chardev:serial0");
        argv_add(&a, "-qmp");
        argv_add(&a, "unix:%s,server=on,wait=off", qmp);
        if (vnc) {
                argv_add(&a, "-vnc");
                argv_add(&a, "unix:%s", vnc);
        }
        if (agent) {
                argv_add(&a, "-chardev");
                argv_add(&a, "socket,id=agent0,path=%s,server=on,wait=off", agent);
                argv_add(&a, "-device");
                argv_add(&a, "virtio-serial-pci,id=vser0");
                argv_add(&a, "-device");
                argv_add(&a, "virtserialport,bus=vser0.0,chardev=agent0,name=org.qemu.guest_agent.0");
                /* a terminal server's desk displays: one byte stream per open
                 * viewer, next to the transfer disk (src/desk/: desk_vnc_open()) */
                for (unsigned k = 0; xfer && k < VM_DESK_VNC_PORTS; k++) {
                        _cleanup_free_ char *sock = vm_desk_vnc_path(p->xfer, k, "sock"), *esc = NULL;
                        if (!sock || !(esc = qemu_escape(sock))) {
                                a.oom = true;
                                break;
                        }
                        argv_add(&a, "-chardev");
                        argv_add(&a, "socket,id=deskvnc%u,path=%s,server=on,wait=off", k, esc);
                        argv_add(&a, "-device");
                        argv_add(&a, "virtserialport,bus=vser0.0,chardev=deskvnc%u,name=org.roam.deskvnc.%u", k, k);
                }
        }
        argv_add(&a, "-kernel");
        argv_add(&a, "%s", p->kernel);
        if (p->initrd) {
                argv_add(&a, "-initrd");
                argv_add(&a, "%s", p->initrd);
        }
        if (c->append) {
                argv_add(&a, "-append");
                argv_add(&a, "%s", c->append);
        }
        /* drop-cache=off on every file: an incoming migration (a restore's
         * device state) otherwise makes QEMU drop the page cache of each
         * image as it activates them, there for images on storage that
         * another host wrote. Here every one is a local file: the master,
         * never written after its import, and the overlay and profile disks
         * written on this host by roam itself (a restore's patches), through
         * the same page cache. Dropping it cost a desktop's restore 90-120
         * ms in the pause (perf: posix_fadvise -> try_to_free_buffers) and
         * the guest its cached master image after. */
        argv_add(&a, "-drive");
        argv_add(&a, "file=%s,format=qcow2,if=virtio,cache=writeback,discard=unmap," DRIVE_KEEP_CACHE
                 ",backing.driver=%s,backing.file.filename=%s,backing." DRIVE_KEEP_CACHE,
                 ov, p->master_format ? p->master_format : "raw", master);
        if (prof) {
                argv_add(&a, "-drive");
                argv_add(&a, "file=%s,format=raw,if=virtio,cache=writeback," DRIVE_KEEP_CACHE, prof);
        }
        if (uprof) {
                argv_add(&a, "-drive");
                argv_add(&a, "file=%s,format=raw,if=virtio,cache=writeback,discard=unmap," DRIVE_KEEP_CACHE, uprof);
        }
        if (xfer) {
                argv_add(&a, "-drive");
                argv_add(&a, "file=%s,format=raw,if=none,id=xfer0,cache=writeback," DRIVE_KEEP_CACHE, xfer);
                argv_add(&a, "-device");
                argv_add(&a, "virtio-blk-pci,drive=xfer0,serial=roam-xfer,addr=0x1e"); /* after the system disk: vda stays vda */
        }
        argv_add(&a, "-daemonize");
        argv_add(&a, "-pidfile");
        argv_add(&a, "%s", p->pidfile);
        if (incoming) {
                argv_add(&a, "-incoming");
                argv_add(&a, "defer");
        }
        if (a.oom) {
                strv_free(a.v);
                return -ENOMEM;
        }
        *ret = a.v;
        return 0;
}

char *vm_desk_vnc_path(const char *xfer, unsigned k, const char *ext) {
        const char *slash = strrchr(xfer, '/');
        char *s;
        if (!slash || asprintf(&s, "%.*s/deskvnc-%u.%s", (int) (slash - xfer), xfer, k, ext) < 0)
                return NULL;
        return s;
}

/* ---- process ---- */

static int read_pidfile(const char *pidfile, pid_t *ret) {
        _cleanup_free_ char *s = NULL;
        size_t n;
        int r = read_full_file(pidfile, 64, &s, &n);
        if (r < 0)
                return r;
        s[strcspn(s, "\n")] = 0;
        uint64_t v;
        if (parse_u64(s, &v) < 0 || v < 2 || v > INT32_MAX)
                return -EBADMSG;
        *ret = (pid_t) v;
        return 0;
}

int vm_launch(char **argv, const VmPaths *p, pid_t *ret_pid) {
        if (strlen(p->qmp) > VM_SUN_PATH_MAX || (p->vnc && strlen(p->vnc) > VM_SUN_PATH_MAX) ||
            (p->agent && strlen(p->agent) > VM_SUN_PATH_MAX))
                return err_set(-ENAMETOOLONG,
                               "socket path '%s' is too long for a unix socket (use a shorter ROAM_HOME)",
                               p->qmp);
        (void) unlink(p->qmp);
        if (p->vnc)
                (void) unlink(p->vnc);
        if (p->agent)
                (void) unlink(p->agent);
        (void) unlink(p->pidfile);
        _cleanup_free_ char *err = NULL;
        int keep[2];
        size_t n_keep = 0;
        if (p->overlay_fd > 0)
                keep[n_keep++] = p->overlay_fd;
        if (p->profile_fd > 0)
                keep[n_keep++] = p->profile_fd;
        int r = spawn_capture_keep(argv, 8192, NULL, &err, keep, n_keep);
        if (r == -ENOENT)
                return err_set(-ENOENT, "qemu '%s' not found (apt-get install qemu-system-x86, or set ROAM_QEMU)",
                               argv[0]);
        if (r < 0)
                return err_set(r, "cannot run qemu '%s': %s", argv[0], strerror(-r));
        if (r != 0) {
                /* QEMU's first meaningful line, e.g. "qemu-system-x86_64: -kernel x: ..." */
                const char *line = err ? err : "";
                char *first = NULL;
                for (char *t = err ? strtok(err, "\n") : NULL; t; t = strtok(NULL, "\n"))
                        if (!strstr(t, "warning:")) {
                                first = t;
                                break;
                        }
                if (first)
                        line = first;
                return err_set(-EIO, "qemu failed to start (exit %d): %s", r, *line ? line : "no message");
        }
        pid_t pid;
        r = read_pidfile(p->pidfile, &pid);
        if (r < 0)
                return err_set(-EIO, "qemu started but wrote no pid file '%s'", p->pidfile);
        *ret_pid = pid;
        return 0;
}

int vm_alive(const char *pidfile, const char *also, pid_t *ret_pid) {
        pid_t pid;
        if (read_pidfile(pidfile, &pid) < 0)
                return 0;
        if (!proc_pid_runs(pid))
                return 0;
        char path[64];
        _cleanup_free_ char *cmd = NULL;
        size_t cn;
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        if (read_proc_file(path, 1 << 16, &cmd, &cn) < 0)
                return 0;
        /* a recycled pid is somebody else: the command line must name our pidfile */
        bool ours = false;
        for (size_t i = 0; i < cn; i += strlen(cmd + i) + 1)
                if (!strcmp(cmd + i, pidfile) || (also && !strcmp(cmd + i, also))) {
                        ours = true;
                        break;
                }
        if (!ours)
                return 0;
        if (ret_pid)
                *ret_pid = pid;
        return 1;
}

static bool pid_gone(pid_t pid) {
        /* reap it if it is our child (a QEMU started without -daemonize) */
        (void) waitpid(pid, NULL, WNOHANG);
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return true;
        return !proc_pid_runs(pid);
}

int vm_wait_exit(pid_t pid, int timeout_ms) {
        uint64_t end = now_ns() + (uint64_t) timeout_ms * 1000000;
        /* a pidfd says at once when it ends (QEMU is not our child: no waitpid) */
        _cleanup_close_ int pfd = (int) syscall(SYS_pidfd_open, pid, 0);
        for (;;) {
                if (pid_gone(pid))
                        return 0;
                uint64_t now = now_ns();
                if (now >= end)
                        return -ETIMEDOUT;
                if (pfd >= 0) {
                        struct pollfd p = { .fd = pfd, .events = POLLIN };
                        (void) poll(&p, 1, (int) MIN((end - now) / 1000000 + 1, (uint64_t) 1000));
                } else
                        nanosleep(&(struct timespec) { 0, 20 * 1000000 }, NULL);
        }
}

int vm_end_saved(pid_t pid) {
        (void) kill(pid, SIGKILL);
        return vm_wait_exit(pid, 5000);
}

int vm_end_saved_nowait(pid_t pid) {
        int pfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pfd < 0) {
                (void) vm_end_saved(pid); /* gone already, or no pidfds: wait as before */
                return -1;
        }
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, WNOHANG); /* our child: reaped when it is gone (else by init) */
        return pfd;
}

int vm_connect(const VmPaths *p, int timeout_ms, Qmp **ret) {
        Qmp *q;
        int r = qmp_connect(p->qmp, timeout_ms, &q);
        if (r < 0)
                return err_set_if_none(r, "cannot connect to qemu's qmp socket '%s': %s", p->qmp, strerror(-r));
        *ret = q;
        return 0;
}

int vm_powerdown(Qmp *q, pid_t pid, int timeout_ms) {
        int r = qmp_system_powerdown(q);
        if (r < 0)
                return r;
        return vm_wait_poweroff(q, pid, timeout_ms, NULL);
}

/* The "reason" of a SHUTDOWN event (a copy), or "unknown". */
static char *shutdown_reason(json_t *ev) {
        const char *s = json_string_value(json_object_get(json_object_get(ev, "data"), "reason"));
        return strdup(s ? s : "unknown");
}

int vm_wait_poweroff(Qmp *q, pid_t pid, int timeout_ms, char **ret_reason) {
        int r;
        _cleanup_free_ char *reason = NULL;
        uint64_t end = now_ns() + (uint64_t) timeout_ms * 1000000;
        for (;;) {
                if (pid_gone(pid)) {
                        reason = strdup("gone");
                        break;
                }
                /* SHUTDOWN arrives when the guest powered off (-no-shutdown keeps QEMU) */
                json_t *ev = NULL;
                r = qmp_wait_event(q, "SHUTDOWN", 200, &ev);
                if (r >= 0) {
                        reason = shutdown_reason(ev);
                        json_decref(ev);
                        break;
                }
                if (r == -ECONNRESET) {
                        r = vm_wait_exit(pid, 5000);
                        if (r < 0)
                                return r;
                        reason = strdup("gone");
                        break;
                }
                if (r != -ETIMEDOUT)
                        return r;
                _cleanup_free_ char *st = NULL;
                if (qmp_query_status(q, &st) >= 0 && !strcmp(st, "shutdown")) {
                        /* the event may have come in meanwhile: it says why */
                        if (qmp_wait_event(q, "SHUTDOWN", 1000, &ev) >= 0) {
                                reason = shutdown_reason(ev);
                                json_decref(ev);
                        } else
                                reason = strdup("unknown");
                        break;
                }
                if (now_ns() >= end)
                        return -ETIMEDOUT;
        }
        if (!reason)
                return -ENOMEM;
        if (ret_reason)
                *ret_reason = TAKE_PTR(reason);
        return 0;
}

int vm_kill(Qmp *q, pid_t pid) {
        if (q) {
                (void) qmp_quit(q);
                if (vm_wait_exit(pid, 5000) == 0)
                        return 0;
        }
        (void) kill(pid, SIGTERM);
        if (vm_wait_exit(pid, 5000) == 0)
                return 0;
        (void) kill(pid, SIGKILL);
        return vm_wait_exit(pid, 5000);
}

/* Device state goes to and from a file QEMU is handed over QMP ("fd:" URI),
 * without QEMU's default rate limit for migrations (32 MiB/s: a desktop's
 * 4.5 MB of VGA memory took 110-130 ms to save with it, 11 ms without) and
 * without a shell and cat between QEMU and the file (exec:, ~30 ms more to
 * save and 40-70 ms more to load the desktop's state). RAM stays in its file
 * (x-ignore-shared). */
#define DEVSTATE_FD_NAME "roam-devstate"
#define DEVSTATE_MAX_BANDWIDTH (INT64_C(64) << 30) /* bytes/s: no limit in practice */

static int devstate_channel(Qmp *q, bool save, const char *file) {
        int r = qmp_set_migrate_capability(q, "x-ignore-shared", true);
        if (r >= 0 && save)
                r = qmp_set_migrate_parameter(q, "max-bandwidth", DEVSTATE_MAX_BANDWIDTH);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = save ? open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                                      : open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, "cannot open the device state file '%s': %m", file);
        return qmp_send_fd(q, fd, DEVSTATE_FD_NAME);
}

int vm_save_devstate(Qmp *q, const char *file, int timeout_ms) {
        int r = devstate_channel(q, true, file);
        if (r >= 0)
                r = qmp_migrate(q, "fd:" DEVSTATE_FD_NAME);
        return r < 0 ? r : qmp_wait_migration(q, timeout_ms, NULL);
}

int vm_load_devstate(Qmp *q, const char *file, int timeout_ms) {
        int r = devstate_channel(q, false, file);
        if (r >= 0)
                r = qmp_migrate_incoming(q, "fd:" DEVSTATE_FD_NAME);
        if (r < 0)
                return r;
        uint64_t end = now_ns() + (uint64_t) timeout_ms * 1000000;
        long poll_ns = 1000000; /* 1 ms, doubling to 4: a device state loads in 20-130 ms */
        for (;;) {
                _cleanup_free_ char *st = NULL;
                r = qmp_query_status(q, &st);
                if (r < 0)
                        return r;
                if (!strcmp(st, "paused") || !strcmp(st, "postmigrate") || !strcmp(st, "running"))
                        return 0;
                if (strcmp(st, "inmigrate"))
                        return err_set(-EIO, "loading the device state left qemu in state '%s'", st);
                /* a failed incoming migration ends QEMU; the caller sees that as a dead QEMU */
                json_t *info = NULL;
                if (qmp_execute(q, "query-migrate", NULL, 2000, &info) >= 0) {
                        const char *ms = json_string_value(json_object_get(info, "status"));
                        if (ms && !strcmp(ms, "failed")) {
                                const char *d = json_string_value(json_object_get(info, "error-desc"));
                                r = err_set(-EIO, "loading the device state failed: %s", d ? d : "unknown error");
                                json_decref(info);
                                return r;
                        }
                        json_decref(info);
                }
                if (now_ns() >= end)
                        return err_set(-ETIMEDOUT, "loading the device state did not finish within %d ms",
                                       timeout_ms);
                nanosleep(&(struct timespec) { 0, poll_ns }, NULL);
                poll_ns = MIN(poll_ns * 2, 4 * 1000000L);
        }
}
