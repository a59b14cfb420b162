/* Sandboxes: run one command isolated inside a given root directory.
 *
 * This is the isolation layer the daemon stands on.  A sandbox is a process
 * tree in new user, mount, pid, ipc, uts and (optionally) net namespaces,
 * pivot_root'ed into a root directory (later the FUSE mount of a snapshot),
 * with a fresh /proc, a minimal /dev, /tmp on tmpfs, capabilities bounded to
 * Docker's default set, no_new_privs, a seccomp filter at least as strict as
 * Docker's default profile, cgroup limits (memory, pids, cpu) and rlimits.
 * PID 1 inside is a small init (manager/init.c) that reaps zombies, forwards
 * signals to the command and exits with the command's status.
 *
 * Usage:
 *	struct sandbox_spec *spec;
 *	sandbox_spec_new(&spec, "/var/lib/hiberbox/mnt/x");
 *	sandbox_spec_set_argv(spec, (const char *[]){ "/bin/sh", "-c", "id", NULL });
 *	sandbox_spec_pass_fd(spec, out_pipe, 1);
 *	struct sandbox *sb;
 *	if (sandbox_spawn(spec, &sb) < 0) ... hb_errmsg(r) ...
 *	struct sandbox_exit ex;
 *	sandbox_wait(sb, &ex);
 *	sandbox_free(sb);
 *	sandbox_spec_free(spec);
 *
 * Every function returns 0 or a negative errno with a message recorded by
 * hb_err().  The library never exits the calling process.  Spawning is safe
 * from a multi-threaded program: the child allocates nothing and calls no
 * non-async-signal-safe libc function between clone and execve.
 *
 * The child runs on a copy of the calling thread's stack: allow about 48 KiB.
 * The caller must be root on the host (it writes uid maps of an arbitrary
 * host range and creates cgroups).  The root directory and every directory
 * above it must be searchable by the host uid that root inside maps to.
 */
#pragma once
#include <stdint.h>
#include <sys/types.h>

struct sandbox_spec;
struct sandbox;

enum sandbox_network {
	SANDBOX_NET_NONE = 0, /* a new network namespace with only loopback, up */
	SANDBOX_NET_HOST = 1, /* the host's network namespace */
	/* a new network namespace like none; its outbound access (user-mode
	 * NAT) is a helper the caller starts for it: manager/network.h */
	SANDBOX_NET_NAT = 2,
};

/* 0 in any field means "no limit". */
struct sandbox_limits {
	uint64_t memory_bytes; /* memory (and memory+swap where the kernel has it) */
	uint32_t pids;         /* tasks in the sandbox, threads included */
	uint32_t cpu_millis;   /* CPU time per wall second, 1000 = one core */
};

/* A spec with defaults: argv {"/bin/sh"}, root inside = host uid/gid
 * SANDBOX_DEFAULT_ID_BASE (SANDBOX_DEFAULT_ID_COUNT ids mapped), network none,
 * hostname "sandbox", cwd "/", no limits, /tmp on tmpfs, RLIMIT_CORE 0,
 * RLIMIT_NOFILE 1024 soft (hard unchanged), stdin/stdout/stderr /dev/null
 * unless passed, PATH set if the environment has none. */
#define SANDBOX_DEFAULT_ID_BASE 100000u
#define SANDBOX_DEFAULT_ID_COUNT 65536u
#define SANDBOX_MAX_ARGS 4096
#define SANDBOX_MAX_ENV 4096
#define SANDBOX_MAX_BINDS 64
#define SANDBOX_MAX_FDS 16
#define SANDBOX_MAX_RLIMITS 16

int sandbox_spec_new(struct sandbox_spec **out, const char *rootdir);
void sandbox_spec_free(struct sandbox_spec *spec); /* NULL is fine */

/* The command: argv[0] is a path inside the sandbox, or a name looked up in
 * the PATH of the spec's environment.  The array is copied. */
int sandbox_spec_set_argv(struct sandbox_spec *spec, const char *const *argv);
/* Add "KEY=VALUE" to the command's environment (initially empty). */
int sandbox_spec_add_env(struct sandbox_spec *spec, const char *kv);
/* Working directory inside (absolute). */
int sandbox_spec_set_cwd(struct sandbox_spec *spec, const char *dir);
int sandbox_spec_set_hostname(struct sandbox_spec *spec, const char *name);
/* A name for the sandbox's cgroups ([A-Za-z0-9_.-], at most 64 bytes);
 * default "sb-<pid>-<counter>".  Two live sandboxes must not share one. */
int sandbox_spec_set_name(struct sandbox_spec *spec, const char *name);
/* Ids 0..count-1 inside are host ids base..base+count-1 (uid and gid).
 * base must be > 0: root inside is never root outside. */
int sandbox_spec_set_id_map(struct sandbox_spec *spec, uint32_t base, uint32_t count);
/* The uid/gid the command runs as inside (default 0, the sandbox's root). */
int sandbox_spec_set_user(struct sandbox_spec *spec, uint32_t uid, uint32_t gid);
int sandbox_spec_set_network(struct sandbox_spec *spec, enum sandbox_network net);
int sandbox_spec_set_limits(struct sandbox_spec *spec, const struct sandbox_limits *lim);
/* An rlimit for the command (RLIMIT_*); hard above the current hard fails. */
int sandbox_spec_set_rlimit(struct sandbox_spec *spec, int resource, uint64_t soft,
			    uint64_t hard);
/* /tmp on a fresh tmpfs of at most bytes (default on, 256 MiB); 0 = leave the
 * root's own /tmp. */
int sandbox_spec_set_tmpfs_tmp(struct sandbox_spec *spec, uint64_t bytes);
/* Bind host path read-only at inside (absolute, created if missing).  For
 * tests and tools; a sandbox from an image needs none. */
int sandbox_spec_add_ro_bind(struct sandbox_spec *spec, const char *host, const char *inside);
/* Make the caller's host_fd the command's fd child_fd (0..SANDBOX_MAX_FDS-1).
 * Every other descriptor of the caller stays outside. */
int sandbox_spec_pass_fd(struct sandbox_spec *spec, int host_fd, int child_fd);
/* Kill the sandbox (SIGKILL to its init) if the thread that spawned it dies.
 * Off by default: the daemon wants sandboxes to outlive a daemon restart. */
int sandbox_spec_set_die_with_parent(struct sandbox_spec *spec, int on);
/* Tests only: sandbox_spawn waits ms between the child's clone and letting
 * it go on (its maps and cgroups in place), so that a test can kill the
 * caller at that moment.  0 (the default): no wait. */
int sandbox_spec_set_test_go_delay(struct sandbox_spec *spec, unsigned ms);
/* Init only: PID 1 starts no command (argv is ignored); it reaps, and ends
 * on SIGTERM, SIGINT or SIGHUP (reported as killed by that signal) or
 * SIGKILL.  Commands then run with sandbox_exec().  Off by default. */
int sandbox_spec_set_init_only(struct sandbox_spec *spec, int on);
/* sandbox_exec only: the command's fd 0 is a terminal (the slave of a pty)
 * that becomes the controlling terminal of its session, so that job control,
 * ^C and window size changes reach it.  Off by default. */
int sandbox_spec_set_tty(struct sandbox_spec *spec, int on);

/* Start the sandbox.  Returns once the command has been exec'd; a failure of
 * any setup step or of execve itself is returned here (e.g. -ENOENT "exec
 * /bin/nope: ..."), with nothing left behind. */
int sandbox_spawn(const struct sandbox_spec *spec, struct sandbox **out);

/* The host pid of the sandbox's init (PID 1 inside). */
pid_t sandbox_pid(const struct sandbox *sb);
/* The root directory of the sandbox's mount namespace, as its processes see
 * it (its /tmp, /dev/shm and other mounts included): an O_PATH fd of its
 * init's /proc/PID/root, checked against the init's pidfd so that a pid
 * reused by another process is never taken for it.  -ESRCH once the init
 * has ended. */
int sandbox_root_open(const struct sandbox *sb);
/* The cgroup name chosen for the sandbox. */
const char *sandbox_name(const struct sandbox *sb);
/* The sandbox's cgroup directory for "memory", "pids", "cpu", "freezer" or
 * "cpuacct" (the same directory for all on cgroup v2), for statistics; NULL
 * if none or once the sandbox has been waited for. */
const char *sandbox_cgroup_dir(const struct sandbox *sb, const char *controller);

/* What a sandbox's processes use now, as its cgroups count it (since its
 * groups were made: this start, or this wake).  A count the host does not
 * keep is SANDBOX_USAGE_UNKNOWN. */
#define SANDBOX_USAGE_UNKNOWN UINT64_MAX
struct sandbox_usage {
	/* memory charged to it, less the file cache the kernel would drop
	 * first (inactive file pages): what docker stats and free(1) show */
	uint64_t memory_bytes;
	uint64_t memory_peak_bytes; /* the most charged at once (v2: Linux 5.19+) */
	uint64_t cpu_ns;            /* CPU time of all its processes, dead ones too */
	uint64_t tasks;             /* threads included, as --pids counts */
};
int sandbox_usage(const struct sandbox *sb, struct sandbox_usage *u);

struct sandbox_exit {
	int code;   /* exit code of the command, or -1 if killed by a signal */
	int signal; /* the signal that killed it, or 0 */
	/* tasks the OOM killer took in the sandbox: all of them (sandbox_wait),
	 * or while the command ran (sandbox_proc_wait) */
	unsigned oom_kills;
};

/* Wait for the command to end (its init exits with it; every other process
 * of the sandbox is killed then).  With timeout_ms >= 0, -ETIMEDOUT if it is
 * still running after that long; -1 waits forever.  After a successful wait
 * the sandbox's cgroups are removed. */
int sandbox_wait(struct sandbox *sb, int timeout_ms, struct sandbox_exit *ex);
/* Send sig to the command (init forwards it); SIGKILL kills the whole sandbox. */
int sandbox_kill(struct sandbox *sb, int sig);
/* Freeze / thaw every process of the sandbox (cgroup freezer); freeze returns
 * once the kernel reports the group frozen.  -ENOTSUP without a freezer. */
int sandbox_freeze(struct sandbox *sb);
int sandbox_thaw(struct sandbox *sb);
/* Kill (if running), reap, remove cgroups, free.  NULL is fine.  Commands
 * exec'd into it die with it; their handles still need sandbox_proc_free(). */
void sandbox_free(struct sandbox *sb);

/* Take over a running sandbox, e.g. after a daemon restart: name as given
 * at spawn (sandbox_name()), pid its init's host pid (sandbox_pid()).
 * -ESRCH unless pid is PID 1 of a pid namespace sitting in that sandbox's
 * cgroup.  Everything works on the handle; sandbox_wait() reports init's
 * own exit code (the command's, or 128+signal) if the caller has become
 * init's parent (a subreaper), else code -1, signal 0 (unknown). */
int sandbox_adopt(const char *name, pid_t pid, struct sandbox **out);
/* Free the handle and leave the sandbox running, its cgroups in place (for
 * a daemon that stops without stopping its sandboxes).  NULL is fine. */
void sandbox_release(struct sandbox *sb);
/* Remove the cgroups of a sandbox that ended without its handle freeing them
 * (its init died while nobody held one, e.g. with the daemon down); 0 if it
 * has none.  They must be empty, or become so within a moment. */
int sandbox_remove_cgroups(const char *name);
/* The same for groups that may still hold tasks: a sandbox whose init
 * started but was never recorded (its daemon died in between).  Every task
 * in them is killed first. */
int sandbox_kill_cgroups(const char *name);
/* Call fn with the name of each sandbox's groups whose name starts with
 * prefix (those a caller that died left too), until fn returns non-zero,
 * which is returned. */
int sandbox_list_cgroups(const char *prefix, int (*fn)(const char *name, void *arg), void *arg);
/* Put pid, a process that works for a sandbox from outside it (the fs
 * process serving its root), in groups of its own named name with limits
 * lim: what the sandbox makes it allocate is then bounded too.  Groups of
 * that name left by an earlier helper are reused, lim set again.  Remove
 * them with sandbox_remove_cgroups() once pid has ended. */
int sandbox_cgroup_confine(const char *name, const struct sandbox_limits *lim, pid_t pid);

/* A command started in a running sandbox. */
struct sandbox_proc;

/* Run a command in a running sandbox: it joins all the sandbox's namespaces
 * and cgroups (its pids and memory count against the sandbox's limits) and
 * gets the same root, id map, capabilities, no_new_privs and seccomp filter.
 * From spec only argv, env, cwd, user, rlimits, passed fds and
 * die_with_parent apply; root, binds, limits, network and id map are the
 * sandbox's.  Returns once execve succeeded (or with its error); -EBUSY
 * while the sandbox is frozen. */
int sandbox_exec(struct sandbox *sb, const struct sandbox_spec *spec, struct sandbox_proc **out);
/* Host pid of the command (a child of the caller, in the sandbox's pid
 * namespace; its orphans go to the sandbox's init). */
pid_t sandbox_proc_pid(const struct sandbox_proc *p);
/* As sandbox_wait, for one command. */
int sandbox_proc_wait(struct sandbox_proc *p, int timeout_ms, struct sandbox_exit *ex);
/* Send sig to the command. */
int sandbox_proc_kill(struct sandbox_proc *p, int sig);
/* Kill (if running), reap and free.  NULL is fine. */
void sandbox_proc_free(struct sandbox_proc *p);
