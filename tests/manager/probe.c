/* probe: tries one thing a sandbox must (or must not) allow, from inside.
 *
 * Built static so that it runs in a root directory holding nothing else.
 * `probe TEST [ARG]` prints one line and exits:
 *   0  the operation was refused (for escape probes: the sandbox held),
 *      or the positive check passed;
 *   1  the operation succeeded (an escape), or the positive check failed;
 *   2  the probe itself could not run.
 * The errno of a refusal is printed so that the test can insist on the
 * mechanism (EPERM from seccomp, EROFS from a read-only mount, ...).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int refused(const char *what, int err)
{
	printf("%s: refused %s (%d)\n", what, strerrorname_np(err) ? strerrorname_np(err) : "?", err);
	return 0;
}

static int allowed(const char *what)
{
	printf("%s: ALLOWED\n", what);
	return 1;
}

/* r < 0 with errno: refused; else allowed */
static int verdict(const char *what, long r)
{
	return r < 0 ? refused(what, errno) : allowed(what);
}

static long arg_num(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "probe %s: needs a number\n", argv[1]);
		exit(2);
	}
	return strtol(argv[2], NULL, 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run fn in a child; report how the child ended.  For ABI probes whose
 * expected outcome is death by SIGSYS. */
static int child_killed_by_sigsys(const char *what, void (*fn)(void))
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		fn();
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) {
		printf("%s: refused SIGSYS\n", what);
		return 0;
	}
	if (WIFSIGNALED(st)) {
		/* not refused, but not run either: e.g. int 0x80 on a kernel
		 * without IA32 emulation faults (SIGSEGV) before any filter */
		printf("%s: killed by signal %d\n", what, WTERMSIG(st));
		return 3;
	}
	printf("%s: ALLOWED (exit %d)\n", what, WEXITSTATUS(st));
	return 1;
}

static void do_int80(void)
{
	long ret = 20; /* i386 getpid */
	__asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
}

static void do_x32(void)
{
	syscall(0x40000000 | 39); /* x32 getpid */
}

static int count_procs(int print)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9') {
			n++;
			if (print) {
				char path[64], st[256] = "";
				snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
				FILE *f = fopen(path, "r");
				if (f) {
					if (!fgets(st, sizeof(st), f))
						st[0] = '\0';
					fclose(f);
				}
				char *paren = strrchr(st, ')');
				printf(" %s(%c)", e->d_name, paren && paren[1] ? paren[2] : '?');
			}
		}
	}
	closedir(d);
	return n;
}

static int status_field(const char *name, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	size_t nl = strlen(name);
	int found = -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
			char *v = line + nl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			snprintf(out, size, "%s", v);
			found = 0;
		}
	}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: probe TEST [ARG]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *t = argv[1];

	/* ---- positive checks ---- */
	if (!strcmp(t, "id")) {
		char cwd[256] = "?", host[65] = "?";
		if (!getcwd(cwd, sizeof(cwd)))
			snprintf(cwd, sizeof(cwd), "?");
		gethostname(host, sizeof(host));
		const char *foo = getenv("FOO");
		printf("uid=%d gid=%d euid=%d cwd=%s host=%s FOO=%s\n", (int)getuid(), (int)getgid(),
		       (int)geteuid(), cwd, host, foo ? foo : "");
		return 0;
	}
	if (!strcmp(t, "exit"))
		return (int)arg_num(argc, argv);
	if (!strcmp(t, "status")) {
		static const char *const fields[] = { "CapEff", "CapPrm", "CapBnd", "CapInh",
						      "CapAmb", "NoNewPrivs", "Seccomp" };
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			char v[64] = "";
			status_field(fields[i], v, sizeof(v));
			printf("%s=%s\n", fields[i], v);
		}
		return 0;
	}
	if (!strcmp(t, "write")) {
		if (argc < 3)
			return 2;
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, "hello\n", 6) != 6 || close(fd) < 0) {
			printf("write %s: %s\n", argv[2], strerror(errno));
			return 1;
		}
		printf("wrote %s\n", argv[2]);
		return 0;
	}
	if (!strcmp(t, "cmdline")) {
		/* a process's command line as ps shows it: NULs as spaces */
		char path[64], buf[4096];
		ssize_t n;
		int fd;

		if (argc < 3)
			return 2;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", argv[2]);
		if ((fd = open(path, O_RDONLY)) < 0 || (n = read(fd, buf, sizeof(buf) - 1)) < 0)
			return refused("read cmdline", errno);
		while (n > 0 && !buf[n - 1])
			n--;
		for (ssize_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[n] = 0;
		printf("cmdline=[%s]\n", buf);
		return 0;
	}
	if (!strcmp(t, "exists")) {
		if (argc < 3)
			return 2;
		struct stat st;
		int r = stat(argv[2], &st);
		printf("%s: %s\n", argv[2], r == 0 ? "exists" : strerror(errno));
		return r == 0 ? 0 : 1;
	}
	if (!strcmp(t, "sleep")) {
		long ms = arg_num(argc, argv);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		return 0;
	}
	if (!strcmp(t, "ticker")) {
		/* one line every 10 ms, forever: for freeze/thaw */
		for (unsigned long i = 0;; i++) {
			printf("tick %lu\n", i);
			usleep(10000);
		}
	}
	if (!strcmp(t, "spin")) {
		long ms = arg_num(argc, argv);
		uint64_t end = now_ms() + (uint64_t)ms;
		volatile unsigned long x = 0;
		while (now_ms() < end)
			x++;
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		long cpu = ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
			   ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
		printf("cpu_ms=%ld\n", cpu);
		return 0;
	}
	if (!strcmp(t, "loopback")) {
		/* loopback must be up in a network namespace of its own */
		int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t al = sizeof(a);
		if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&a, &al) < 0 ||
		    connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
			printf("loopback: %s\n", strerror(errno));
			return 1;
		}
		printf("loopback: ok\n");
		return 0;
	}
	if (!strcmp(t, "signals")) {
		/* wait for SIGTERM (forwarded by init), then exit 42 */
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGTERM);
		sigprocmask(SIG_BLOCK, &s, NULL);
		printf("ready\n");
		int sig = 0;
		sigwait(&s, &sig);
		printf("got %d\n", sig);
		return 42;
	}
	if (!strcmp(t, "zombies")) {
		/* orphans must be reaped by init: make 20 and exit at once */
		for (int i = 0; i < 20; i++) {
			if (fork() == 0) {
				if (fork() == 0)
					_exit(0);
				_exit(0);
			}
		}
		while (wait(NULL) > 0)
			;
		usleep(100000);
		int n = count_procs(0);
		printf("procs=%d\n", n);
		return n <= 2 ? 0 : 1;
	}

	/* ---- escape probes: 0 means refused ---- */
	if (!strcmp(t, "mount"))
		return verdict("mount tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
	if (!strcmp(t, "umount"))
		return verdict("umount /proc", umount2("/proc", MNT_DETACH));
	if (!strcmp(t, "pivot_root"))
		return verdict("pivot_root", syscall(SYS_pivot_root, "/", "/"));
	if (!strcmp(t, "ptrace")) {
		long pid = arg_num(argc, argv);
		return verdict("ptrace attach", ptrace(PTRACE_ATTACH, (pid_t)pid, 0, 0));
	}
	if (!strcmp(t, "ptrace-child")) {
		/* even a process of its own may not be traced */
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
		int e = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		errno = e;
		return verdict("ptrace own child", r);
	}
	if (!strcmp(t, "kill")) {
		long pid = arg_num(argc, argv);
		return verdict("kill host pid", kill((pid_t)pid, 0));
	}
	if (!strcmp(t, "module")) {
		int fd = open("/proc/self/exe", O_RDONLY);
		long r = syscall(SYS_finit_module, fd, "", 0);
		int e = errno;
		long r2 = syscall(SYS_init_module, "\x7f" "ELF", 4, "");
		if (r >= 0 || r2 >= 0)
			return allowed("module load");
		errno = e;
		return verdict("finit_module/init_module", -1);
	}
	if (!strcmp(t, "delete_module"))
		return verdict("delete_module", syscall(SYS_delete_module, "loop", O_NONBLOCK));
	if (!strcmp(t, "keyctl")) {
		long r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
		int e = errno;
		long r2 = syscall(SYS_add_key, "user", "hb", "x", 1, KEY_SPEC_PROCESS_KEYRING);
		long r3 = syscall(SYS_request_key, "user", "hb", NULL, 0);
		if (r >= 0 || r2 >= 0 || r3 >= 0)
			return allowed("keyctl/add_key/request_key");
		errno = e;
		return verdict("keyctl/add_key/request_key", -1);
	}
	if (!strcmp(t, "bpf")) {
		union bpf_attr attr;
		memset(&attr, 0, sizeof(attr));
		attr.map_type = BPF_MAP_TYPE_ARRAY;
		attr.key_size = 4;
		attr.value_size = 4;
		attr.max_entries = 1;
		return verdict("bpf map create", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
	}
	if (!strcmp(t, "userns")) {
		if (unshare(CLONE_NEWUSER) == 0)
			return allowed("unshare(CLONE_NEWUSER)");
		int e = errno;
		/* raw clone with the flag, and with the flag in the upper bits */
		long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			waitpid((pid_t)pid, NULL, 0);
			return allowed("clone(CLONE_NEWUSER)");
		}
		errno = e;
		return verdict("unshare/clone CLONE_NEWUSER", -1);
	}
	if (!strcmp(t, "unshare-mnt"))
		return verdict("unshare(CLONE_NEWNS)", unshare(CLONE_NEWNS));
	if (!strcmp(t, "setns")) {
		int fd = open("/proc/self/ns/mnt", O_RDONLY);
		return verdict("setns", fd < 0 ? -1 : setns(fd, 0));
	}
	if (!strcmp(t, "io_uring")) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		return verdict("io_uring_setup", syscall(SYS_io_uring_setup, 4, &p));
	}
	if (!strcmp(t, "userfaultfd"))
		return verdict("userfaultfd", syscall(SYS_userfaultfd, 0));
	if (!strcmp(t, "perf")) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof(a));
		a.type = PERF_TYPE_SOFTWARE;
		a.size = sizeof(a);
		a.config = PERF_COUNT_SW_CPU_CLOCK;
		return verdict("perf_event_open", syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
	}
	if (!strcmp(t, "open_by_handle")) {
		struct {
			struct file_handle fh;
			unsigned char data[128];
		} h;
		h.fh.handle_bytes = 128;
		int mnt;
		if (name_to_handle_at(AT_FDCWD, "/", &h.fh, &mnt, 0) < 0) {
			/* synthesize one: the call must be refused whatever the handle */
			h.fh.handle_bytes = 8;
			h.fh.handle_type = 1;
			memset(h.fh.f_handle, 0, 8);
		}
		int dfd = open("/", O_RDONLY | O_DIRECTORY);
		return verdict("open_by_handle_at", open_by_handle_at(dfd, &h.fh, O_RDONLY));
	}
	if (!strcmp(t, "procsys")) {
		int fd = open("/proc/sys/kernel/hostname", O_WRONLY);
		if (fd < 0)
			return refused("write /proc/sys", errno);
		return verdict("write /proc/sys", write(fd, "x", 1));
	}
	if (!strcmp(t, "sysfs")) {
		int fd = open("/sys/kernel/uevent_helper", O_WRONLY);
		if (fd >= 0)
			return verdict("write /sys", write(fd, "", 0));
		if (errno == ENOENT) /* sysfs absent is fine too */
			return verdict("mkdir in /sys", mkdir("/sys/x", 0755));
		return refused("write /sys", errno);
	}
	if (!strcmp(t, "connect")) {
		long port = arg_num(argc, argv);
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		return verdict("connect host 127.0.0.1", s < 0 ? -1 : connect(s, (struct sockaddr *)&a, sizeof(a)));
	}
	if (!strcmp(t, "vsock"))
		return verdict("socket(AF_VSOCK)", socket(40, SOCK_STREAM, 0));
	if (!strcmp(t, "procs")) {
		long max = arg_num(argc, argv);
		printf("pids:");
		int n = count_procs(1);
		printf("\nprocs=%d\n", n);
		return n >= 1 && n <= max ? 0 : 1;
	}
	if (!strcmp(t, "mknod")) {
		long r = mknod("/tmp/blk", S_IFBLK | 0600, makedev(8, 0));
		int e = errno;
		long r2 = mknod("/tmp/chr", S_IFCHR | 0600, makedev(1, 1)); /* /dev/mem */
		if (r >= 0 || r2 >= 0)
			return allowed("mknod device");
		errno = e;
		return verdict("mknod block device", -1);
	}
	if (!strcmp(t, "devfuse")) {
		int fd = open("/dev/fuse", O_RDWR);
		return verdict("open /dev/fuse", fd);
	}
	if (!strcmp(t, "tiocsti")) {
		int m = open("/dev/ptmx", O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
			printf("tiocsti: no pty: %s\n", strerror(errno));
			return 2;
		}
		int s = open(ptsname(m), O_RDWR);
		if (s < 0) {
			printf("tiocsti: open pts: %s\n", strerror(errno));
			return 2;
		}
		/* make it our controlling terminal, so that only seccomp stands
		 * in the way */
		setsid();
		if (ioctl(s, TIOCSCTTY, 0) < 0)
			printf("(TIOCSCTTY: %s)\n", strerror(errno));
		char ch = 'x';
		long r = syscall(SYS_ioctl, s, (unsigned long)TIOCSTI, &ch);
		int e = errno;
		long r2 = syscall(SYS_ioctl, s, (unsigned long)TIOCSTI | (1UL << 32), &ch);
		long r3 = syscall(SYS_ioctl, s, 0x541CUL /* TIOCLINUX */, &ch);
		if (r >= 0 || r2 >= 0)
			return allowed("TIOCSTI");
		if (r3 >= 0)
			return allowed("TIOCLINUX");
		errno = e;
		return verdict("TIOCSTI/TIOCLINUX", -1);
	}
	if (!strcmp(t, "i386"))
		return child_killed_by_sigsys("int 0x80 (i386 ABI)", do_int80);
	if (!strcmp(t, "x32"))
		return child_killed_by_sigsys("x32 syscall", do_x32);
	if (!strcmp(t, "fds")) {
		/* no descriptor beyond stdin/out/err may be open */
		DIR *d = opendir("/proc/self/fd");
		if (!d)
			return 2;
		int extra = 0;
		struct dirent *e;
		while ((e = readdir(d))) {
			int fd = atoi(e->d_name);
			if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
				continue;
			char target[256] = "";
			char p[64];
			snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
			ssize_t n = readlink(p, target, sizeof(target) - 1);
			if (n > 0)
				target[n] = '\0';
			printf("leaked fd %d -> %s\n", fd, target);
			extra++;
		}
		closedir(d);
		if (argc > 2) {
			long fd = strtol(argv[2], NULL, 0);
			if (fcntl((int)fd, F_GETFD) >= 0) {
				printf("fd %ld is open\n", fd);
				extra++;
			}
		}
		if (extra)
			return 1;
		printf("fds: none leaked\n");
		return 0;
	}
	if (!strcmp(t, "ptys")) {
		/* how many terminals this sandbox may hold, up to N */
		long max = arg_num(argc, argv), n = 0;
		while (n < max && open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC) >= 0)
			n++;
		printf("ptys=%ld (%s)\n", n, n < max ? strerrorname_np(errno) ?: "?" : "all");
		return 0;
	}
	if (!strcmp(t, "inotify-hold")) {
		/* every inotify instance this user may have, held for a while */
		long ms = arg_num(argc, argv);
		int n = 0;
		while (inotify_init1(IN_CLOEXEC) >= 0)
			n++;
		printf("held=%d (then %s)\n", n, strerrorname_np(errno) ?: "?");
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		return 0;
	}
	if (!strcmp(t, "forkbomb")) {
		long max = arg_num(argc, argv);
		static pid_t kids[4096];
		if (max > 4096)
			max = 4096;
		long n = 0;
		for (; n < max; n++) {
			pid_t pid = fork();
			if (pid == 0) {
				pause();
				_exit(0);
			}
			if (pid < 0)
				break;
			kids[n] = pid;
		}
		int e = errno;
		printf("forked=%ld\n", n);
		/* no orphans left holding our stdout */
		for (long i = 0; i < n; i++)
			kill(kids[i], SIGKILL);
		while (wait(NULL) > 0)
			;
		if (n == max)
			return allowed("fork bomb");
		return refused("fork bomb", e);
	}
	if (!strcmp(t, "memhog")) {
		long mb = arg_num(argc, argv);
		for (long i = 0; i < mb; i++) {
			char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				return refused("memory hog mmap", errno);
			memset(p, (int)i | 1, 1 << 20);
		}
		return allowed("memory hog");
	}
	fprintf(stderr, "probe: unknown test %s\n", t);
	return 2;
}
