/* SPDX-License-Identifier: MIT */
#pragma once

/* The QEMU side of a session: the command line, launching a detached QEMU,
 * telling whether it still runs, and the QMP sequences roam needs.
 *
 * A VM is described by two things:
 *   VmConfig  what the guest sees and what must match on both ends of a move
 *             (machine type, CPU model, RAM, CPUs, kernel command line, ...);
 *             stored as JSON in the catalog and in every checkpoint manifest.
 *   VmPaths   where this host keeps the files of one run (overlay, RAM file,
 *             sockets, ...). All paths absolute: QEMU runs with -daemonize,
 *             which changes its working directory to "/".
 *
 * QEMU runs detached (-daemonize -pidfile): it outlives the roam process that
 * started it, and vm_launch() still sees its start-up errors, because QEMU's
 * first process waits until the VM is set up and exits 1 on failure.
 *
 * Machine: -M pc-q35-7.2 and -cpu qemu64 by default (versioned and named, so
 * both ends of a move agree); never "-cpu host". Guest RAM lives in a shared
 * file (memory-backend-file, share=on) so that a checkpoint saves only the
 * device state (x-ignore-shared) and reads RAM from the file.
 *
 * The guest powering itself off does not end QEMU (-no-shutdown): QEMU stays
 * in state "shutdown" until roam sees it and quits it, so a QEMU that vanished
 * is a crash and a guest that powered off is not.
 *
 * Accelerator: "kvm", "tcg" or "auto". $ROAM_ACCEL (kvm or tcg) overrides the
 * configuration (the tests set ROAM_ACCEL=tcg). "auto" is kvm when a real
 * probe passes: /dev/kvm must open and the session's kernel, booted under
 * KVM, must print its banner on the serial port within VM_ACCEL_PROBE_MS.
 * (Some hosts expose a /dev/kvm that runs nothing: the nested PVM flavour
 * accepts KVM_RUN but a Linux guest never prints a line.) The answer is cached
 * per host boot in $ROAM_HOME/accel-probe.
 *
 * The QEMU binary is $ROAM_QEMU, else qemu-system-x86_64 from PATH; qemu-img
 * is $ROAM_QEMU_IMG, else qemu-img from PATH. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../qmp/qmp.h"

#define VM_MACHINE_DEFAULT "pc-q35-7.2"
#define VM_CPU_DEFAULT "qemu64"
#define VM_RAM_MIB_DEFAULT 512
#define VM_RAM_MIB_MIN 32
#define VM_RAM_MIB_MAX (1024 * 1024) /* 1 TiB */
#define VM_CPUS_MAX 64
#define VM_APPEND_MAX 4096
#define VM_ACCEL_PROBE_MS 3000
#define VM_QMP_TIMEOUT_MS 10000  /* connecting to a freshly started QEMU */
#define VM_SUN_PATH_MAX 107      /* bytes of a unix socket path */

/* What happens to a session's disk delta when it is finalized after a
 * power-off (session_finalize()): a persistent session keeps it, a pooled one
 * is reset to its master image (the user's files live on the profile disk). */
typedef enum VmPolicy {
        VM_POLICY_PERSISTENT, /* the default */
        VM_POLICY_POOLED,
        _VM_POLICY_MAX,
} VmPolicy;

/* "persistent", "pooled"; NULL for an invalid value. */
const char *vm_policy_to_string(VmPolicy p);
/* The policy, or -EINVAL. */
int vm_policy_from_string(const char *s);

typedef struct VmConfig {
        char *machine;      /* "pc-q35-7.2" */
        char *cpu;          /* "qemu64" */
        uint64_t ram_mib;
        unsigned cpus;
        char *accel;        /* "auto", "kvm", "tcg" */
        char *kernel_id;    /* hex index id of the kernel in the store (the file: VmPaths) */
        char *initrd_id;    /* hex index id of the initrd, or NULL */
        char *append;       /* kernel command line, or NULL */
        char *profile_disk; /* absolute path of a raw second disk, or NULL (host-local) */
        bool vga;           /* a VGA device for the VNC console */
        bool agent;         /* a virtio-serial port for qemu-guest-agent (VmPaths.agent) */
        bool profile;       /* the user's profile disk (VmPaths.profile) attached at every boot */
        bool terminal_server; /* a terminal server of desks: the transfer disk (VmPaths.xfer), roam.ts=1 */
        VmPolicy policy;    /* not seen by the guest; travels with the config */
} VmConfig;

#define VM_DESK_VNC_PORTS 4
/* The file next to a terminal server's transfer disk xfer for its display
 * port k: "deskvnc-K.EXT" (sock: the port's host end, which QEMU serves;
 * lock: held by the viewer that has it). NULL when out of memory or xfer
 * has no directory. Caller frees. */
char *vm_desk_vnc_path(const char *xfer, unsigned k, const char *ext);

typedef struct VmPaths {
        const char *kernel;  /* required */
        const char *initrd;  /* NULL if none */
        const char *overlay; /* qcow2 system disk */
        int overlay_fd;      /* > 0: QEMU opens the overlay as /proc/self/fd/N (an
                              * open file it inherits), so that it finds it again
                              * when the file is renamed (warm.c) */
        int profile_fd;      /* > 0: the profile disk likewise */
        const char *master_format; /* "raw" (NULL), or "qcow2": an app layer over its own base */
        const char *master;  /* its backing file, given to QEMU explicitly: the
                              * path in the overlay's header is not used, so an
                              * overlay from another host needs no rebase to run */
        const char *ram;     /* memory-backend-file */
        const char *serial;  /* serial console log (appended) */
        const char *qmp;     /* unix socket */
        const char *vnc;     /* unix socket, or NULL for no VNC */
        const char *agent;   /* unix socket of the guest agent's port (VmConfig.agent) */
        const char *profile; /* raw disk: the user's profile (VmConfig.profile), the second virtio disk */
        const char *pidfile;
        const char *xfer;    /* raw disk: a terminal server's transfer disk (serial roam-xfer; src/desk/);
                              * next to it deskvnc-K.sock, the virtio-serial ports org.roam.deskvnc.K
                              * (K < VM_DESK_VNC_PORTS) of its desks' displays */
} VmPaths;

/* Sets the defaults (machine, cpu, 512 MiB, 1 CPU, accel auto, vga, persistent). */
int vm_config_init(VmConfig *c);
/* Frees the strings; the struct may be reused after vm_config_init(). Accepts zeroed. */
void vm_config_done(VmConfig *c);
int vm_config_copy(const VmConfig *src, VmConfig *ret);

/* Checks a config: known accel, 1..VM_CPUS_MAX CPUs, RAM within
 * VM_RAM_MIB_MIN..MAX, ids well-formed, append bounded and free of control
 * characters, machine and cpu simple tokens. -EINVAL with detail. */
int vm_config_validate(const VmConfig *c);

/* JSON form: {"machine","cpu","ram_mib","cpus","accel","kernel","initrd",
 * "append","profile_disk","vga","policy"}, plus "agent": true and "profile":
 * true when on (absent otherwise); absent optional members are null.
 * An absent "policy" (configs written before it existed) reads as
 * "persistent". The caller owns *ret (json_decref). */
int vm_config_to_json(const VmConfig *c, json_t **ret);
/* Parses and validates; unknown members are ignored. -EBADMSG with detail
 * for a missing or mistyped member. On success the caller owns *ret
 * (vm_config_done()). */
int vm_config_from_json(json_t *j, VmConfig *ret);

/* $ROAM_QEMU or "qemu-system-x86_64"; $ROAM_QEMU_IMG or "qemu-img". Borrowed. */
const char *vm_qemu_binary(void);
const char *vm_qemu_img_binary(void);

/* Chooses the accelerator for want ("auto", "kvm", "tcg"): $ROAM_ACCEL wins;
 * "auto" runs the probe (kernel: the guest kernel to boot for it; cache_dir:
 * where accel-probe is cached, may be NULL). *ret is a static string. */
int vm_resolve_accel(const char *want, const char *kernel, const char *cache_dir, const char **ret);

/* The full QEMU command line (argv[0] = qemu) with accelerator accel (already
 * resolved), plus "-incoming defer" when incoming. NULL-terminated; the caller
 * frees it with strv_free(). */
int vm_build_argv(const char *qemu, const VmConfig *c, const char *accel, const VmPaths *p, bool incoming,
                  char ***ret);
void strv_free(char **v);
static inline void strv_freep(char ***v) {
        if (*v)
                strv_free(*v);
}

/* Starts QEMU with argv (built by vm_build_argv: it must contain -daemonize
 * and -pidfile p->pidfile). Removes stale qmp/vnc sockets and the pidfile
 * first. Returns once QEMU is set up and detached; *ret_pid is its pid.
 * -ENOENT when the binary is missing, -EIO with QEMU's own first error line
 * when it refuses to start. */
int vm_launch(char **argv, const VmPaths *p, pid_t *ret_pid);

/* Reads the pidfile and checks that the process is alive and is the QEMU of
 * this pidfile (its command line names the pidfile, or also when not NULL: a
 * QEMU started under another pidfile whose file was moved here; a zombie
 * counts as dead). 1 and *ret_pid when alive, 0 when not (no pidfile, or
 * dead). */
int vm_alive(const char *pidfile, const char *also, pid_t *ret_pid);

/* Waits up to timeout_ms for pid to be gone (or a zombie). 0 or -ETIMEDOUT. */
int vm_wait_exit(pid_t pid, int timeout_ms);

/* Connects to the QMP socket of a running QEMU. */
int vm_connect(const VmPaths *p, int timeout_ms, Qmp **ret);

/* Presses the ACPI power button and waits up to timeout_ms for the guest to
 * power off (status "shutdown", or QEMU gone). -ETIMEDOUT if it did not. */
int vm_powerdown(Qmp *q, pid_t pid, int timeout_ms);
/* Waits up to timeout_ms for the guest to power off by itself, as above,
 * without pressing anything. -ETIMEDOUT if it did not. *ret_reason (may be
 * NULL; caller frees) says why it stopped: the SHUTDOWN event's reason
 * ("guest-shutdown" for a power-off; "guest-reset", "guest-panic", ... when
 * -no-reboot turned a reboot or panic into a stop), "gone" if QEMU exited,
 * "unknown" if QEMU did not say. */
int vm_wait_poweroff(Qmp *q, pid_t pid, int timeout_ms, char **ret_reason);

/* Ends QEMU: quit over QMP (q may be NULL), then SIGTERM and SIGKILL if it
 * lingers. Returns once pid is gone. */
int vm_kill(Qmp *q, pid_t pid);
/* Ends a QEMU whose guest is stopped and whose state is saved (its device
 * state written by a migration, which also flushed and released its disks):
 * SIGKILL, without QEMU's own clean-up. Returns once pid is gone. */
int vm_end_saved(pid_t pid);
/* The same without waiting for the end: SIGKILL (nothing of the guest runs
 * after it), and a pidfd that becomes readable once pid is gone, or -1 when
 * there is none to be had (then it waited). */
int vm_end_saved_nowait(pid_t pid);

/* Saves the device state (without RAM: x-ignore-shared) to file. The VM must
 * be stopped; afterwards it is in "postmigrate" (cont resumes it). */
int vm_save_devstate(Qmp *q, const char *file, int timeout_ms);
/* Loads device state from file into a QEMU started with -incoming defer and
 * waits until it is loaded (status "paused"). */
int vm_load_devstate(Qmp *q, const char *file, int timeout_ms);


