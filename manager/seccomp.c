/* Seccomp: which system calls a sandbox may make.
 *
 * Two filters, both compiled by libseccomp in the parent and loaded raw in
 * the child (loading through libseccomp would allocate after clone):
 *
 * 1. An allow-list, default action EPERM: Docker's default profile for
 *    x86_64 (the unconditional list plus what its conditions grant with the
 *    default capabilities), minus ptrace, process_vm_readv/writev and kcmp
 *    (Docker allows these on kernels >= 4.8; we do not), and never
 *    io_uring_*, userfaultfd, perf_event_open, bpf, keyctl/add_key/
 *    request_key, open_by_handle_at, unshare, setns, mount/umount/
 *    pivot_root, kexec, module loading, reboot, swapon, acct, ...: those are
 *    simply absent.  clone3 gets ENOSYS so that libc falls back to clone,
 *    whose flags the second filter can see.
 * 2. A deny-list for the calls that are allowed only with some arguments:
 *    clone with any namespace flag, ioctl TIOCSTI/TIOCLINUX (compared on the
 *    low 32 bits, which is all the kernel reads), socket(AF_VSOCK).
 *    A separate filter because the kernel takes the strictest verdict of all
 *    filters, so an unconditional allow in (1) and a conditional deny in (2)
 *    compose exactly.
 *
 * Any other ABI (i386 via int 0x80, x32) kills the process: both filters
 * have the native architecture only, and libseccomp's bad-arch action is
 * KILL_PROCESS (x32 numbers on x86_64 fall under it too).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manager/sandbox-int.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

#define SECCOMP_PROG_MAX_BYTES ((size_t)1 << 20)

/* Docker's default allow-list (moby profiles/seccomp/default.json), names
 * of every architecture: libseccomp ignores those that x86_64 lacks. */
static const char *const allowed_syscalls[] = {
	"accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat",
	"capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
	"clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
	"clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
	"connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
	"epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
	"epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
	"exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
	"fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32",
	"fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
	"fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
	"fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64",
	"futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents",
	"getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
	"getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
	"getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
	"getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname",
	"getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32",
	"getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
	"io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
	"io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc",
	"kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
	"lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
	"_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
	"map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
	"mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
	"mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
	"mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
	"msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
	"name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat",
	"openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
	"pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64",
	"preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64",
	"pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
	"recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
	"removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
	"rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
	"rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
	"sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
	"sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
	"sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
	"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
	"semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64",
	"sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
	"setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid",
	"setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
	"setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
	"setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
	"shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
	"signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
	"stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
	"sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
	"timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
	"timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
	"timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill",
	"truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat",
	"utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4",
	"waitid", "waitpid", "write", "writev",
	/* Docker: amd64 only */
	"arch_prctl", "modify_ldt",
	/* Docker: granted by default capabilities (CAP_SYS_CHROOT) */
	"chroot",
	/* Docker: memory policy calls, allowed unconditionally since moby 23 */
	"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
	/* argument checks in the second filter */
	"clone", "socket",
};

/* personality(2): the values Docker's profile allows. */
static const unsigned long allowed_personalities[] = { 0x0, 0x0008, 0x20000, 0x20008,
						       0xffffffff };

/* Namespace flags clone must not carry (Docker's mask, 0x7E020000). */
static const unsigned long clone_ns_flags[] = { CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,
						CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
						CLONE_NEWCGROUP };

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* SCMP_A0() and friends leave datum_b unset, which clang warns about. */
static struct scmp_arg_cmp arg_eq(unsigned arg, uint64_t val)
{
	return (struct scmp_arg_cmp){ .arg = arg, .op = SCMP_CMP_EQ, .datum_a = val, .datum_b = 0 };
}

static struct scmp_arg_cmp arg_masked_eq(unsigned arg, uint64_t mask, uint64_t val)
{
	return (struct scmp_arg_cmp){ .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask,
				      .datum_b = val };
}

static int export_prog(scmp_filter_ctx ctx, struct sock_fprog *out)
{
	int fd = memfd_create("hiberbox-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return hb_err(-errno, "memfd_create: %s", strerror(errno));
	int r = seccomp_export_bpf(ctx, fd);
	if (r < 0) {
		close(fd);
		return hb_err(r, "seccomp_export_bpf: %s", strerror(-r));
	}
	struct buf b = { .max = SECCOMP_PROG_MAX_BYTES };
	uint8_t chunk[4096];
	ssize_t n;
	if (lseek(fd, 0, SEEK_SET) < 0)
		r = -errno;
	while (r >= 0 && (n = read_full(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0)
			r = (int)n;
		else
			r = buf_append(&b, chunk, (size_t)n);
	}
	close(fd);
	if (r < 0 || b.len == 0 || b.len % sizeof(struct sock_filter) != 0 ||
	    b.len / sizeof(struct sock_filter) > 0xffff) {
		buf_free(&b);
		return hb_err(r < 0 ? r : -EINVAL, "seccomp: bad exported program (%zu bytes)",
			      b.len);
	}
	out->len = (unsigned short)(b.len / sizeof(struct sock_filter));
	out->filter = (struct sock_filter *)buf_steal(&b, NULL);
	return 0;
}

static scmp_filter_ctx new_filter(uint32_t def_action)
{
	scmp_filter_ctx ctx = seccomp_init(def_action);
	if (!ctx)
		return NULL;
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) {
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

static int build_allow_list(struct sock_fprog *out)
{
	scmp_filter_ctx ctx = new_filter(SCMP_ACT_ERRNO(EPERM));
	if (!ctx)
		return hb_err(-ENOMEM, "seccomp_init failed");
	int r = 0;
	for (size_t i = 0; i < sizeof(allowed_syscalls) / sizeof(allowed_syscalls[0]); i++) {
		int nr = seccomp_syscall_resolve_name(allowed_syscalls[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* unknown to this libseccomp */
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (r < 0 && r != -EDOM) {
			r = hb_err(r, "seccomp rule for %s: %s", allowed_syscalls[i], strerror(-r));
			goto out;
		}
		r = 0;
	}
	for (size_t i = 0; i < sizeof(allowed_personalities) / sizeof(allowed_personalities[0]);
	     i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
				     arg_eq(0, allowed_personalities[i]));
		if (r < 0) {
			r = hb_err(r, "seccomp rule for personality: %s", strerror(-r));
			goto out;
		}
	}
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r < 0) {
		r = hb_err(r, "seccomp rule for clone3: %s", strerror(-r));
		goto out;
	}
	r = export_prog(ctx, out);
out:
	seccomp_release(ctx);
	return r;
}

static int build_arg_denies(struct sock_fprog *out)
{
	scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
	if (!ctx)
		return hb_err(-ENOMEM, "seccomp_init failed");
	int r = 0;
	const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
	for (size_t i = 0; i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++) {
		r = seccomp_rule_add(ctx, deny, SCMP_SYS(clone), 1,
				     arg_masked_eq(0, clone_ns_flags[i], clone_ns_flags[i]));
		if (r < 0)
			goto fail;
	}
	static const unsigned long bad_ioctls[] = { TIOCSTI, TIOCLINUX };
	for (size_t i = 0; i < 2; i++) {
		r = seccomp_rule_add(ctx, deny, SCMP_SYS(ioctl), 1,
				     arg_masked_eq(1, 0xffffffffUL, bad_ioctls[i]));
		if (r < 0)
			goto fail;
	}
	r = seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 1,
			     arg_masked_eq(0, 0xffffffffUL, AF_VSOCK));
	if (r < 0)
		goto fail;
	r = export_prog(ctx, out);
	seccomp_release(ctx);
	return r;
fail:
	seccomp_release(ctx);
	return hb_err(r, "seccomp argument rule: %s", strerror(-r));
}

int seccomp_filters_build(struct sandbox_seccomp *out)
{
	memset(out, 0, sizeof(*out));
	int r = build_allow_list(&out->progs[0]);
	if (r < 0)
		return r;
	out->n = 1;
	r = build_arg_denies(&out->progs[1]);
	if (r < 0) {
		seccomp_filters_free(out);
		return r;
	}
	out->n = 2;
	return 0;
}

void seccomp_filters_free(struct sandbox_seccomp *sc)
{
	for (unsigned i = 0; i < sc->n; i++)
		free(sc->progs[i].filter);
	memset(sc, 0, sizeof(*sc));
}

int seccomp_child_apply(struct child_ctx *c)
{
	for (unsigned i = 0; i < c->seccomp->n; i++) {
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &c->seccomp->progs[i], 0, 0) < 0)
			return child_err(c, -errno, "load seccomp filter", NULL);
	}
	return 0;
}
