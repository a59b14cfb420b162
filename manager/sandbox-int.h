/* Private interfaces between the files of the sandbox layer.
 *
 * Two halves: the parent (sandbox.c, cgroup.c, seccomp_build, ns_write_id_maps)
 * runs in the caller and may allocate and use hb_err(); the child (child.c,
 * mounts.c, caps.c, init.c, the child functions of namespaces.c and
 * seccomp.c) runs between a raw clone() and execve() of a possibly
 * multi-threaded caller, so it allocates nothing, takes no libc lock, uses raw
 * syscalls for credentials (glibc's setxid would wait for threads that do
 * not exist in the child) and reports failure as a fixed-size record over a
 * pipe.  Child functions return 0 or -errno after child_err() noted which
 * step failed.
 */
#pragma once
#include <linux/filter.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "manager/sandbox.h"

#define SANDBOX_SETUP_TIMEOUT_MS 30000
#define SANDBOX_NAME_MAX 64
#define SANDBOX_DEFAULT_TMP_BYTES ((uint64_t)256 << 20)

struct sandbox_rlimit {
	int resource;
	struct rlimit rl;
};

struct sandbox_bind {
	char *host;
	char *inside; /* absolute */
};

struct sandbox_spec {
	char *rootdir;
	char **argv; /* NULL-terminated */
	char **envp; /* NULL-terminated */
	size_t envc;
	char *cwd;
	char *hostname;
	char name[SANDBOX_NAME_MAX + 1];
	uint32_t id_base, id_count;
	uint32_t uid, gid;
	enum sandbox_network net;
	struct sandbox_limits lim;
	struct sandbox_rlimit rlimits[SANDBOX_MAX_RLIMITS];
	unsigned n_rlimits;
	uint64_t tmp_bytes;
	struct sandbox_bind binds[SANDBOX_MAX_BINDS];
	unsigned n_binds;
	int fds[SANDBOX_MAX_FDS]; /* host fd for child fd i, or -1 */
	int die_with_parent;
	int init_only;
	int tty; /* exec only: fd 0 becomes the controlling terminal */
	unsigned test_go_delay_ms; /* sandbox_spec_set_test_go_delay */
};

/* Compiled seccomp programs, applied in order (the kernel enforces the
 * strictest verdict of all of them). */
#define SANDBOX_SECCOMP_MAX_PROGS 2
struct sandbox_seccomp {
	struct sock_fprog progs[SANDBOX_SECCOMP_MAX_PROGS];
	unsigned n;
};

/* What the child sends back when a step fails. */
struct child_report {
	int32_t err; /* positive errno */
	char step[64];
	char detail[256];
};

/* Everything the child needs, prepared by the parent before clone. */
struct child_ctx {
	const struct sandbox_spec *spec;
	const struct sandbox_seccomp *seccomp;
	char *const *envp;    /* spec env plus PATH if it had none */
	const char *path_env; /* PATH value used to find argv[0] */
	int sync_fd;   /* read end: the parent writes one byte when maps and cgroups are set */
	int err_fd;    /* write end, O_CLOEXEC: a child_report on failure, EOF on exec */
	int status_fd; /* write end, O_CLOEXEC: init writes the command's wait status;
			* an exec's joiner, the command's pid */
	int is_exec;    /* joining a running sandbox rather than creating one */
	int join_pidfd; /* exec: pidfd of the sandbox's init whose namespaces to join */
	int init_fd;    /* spawn: memfd holding the sandbox-init program */
	int join_net;   /* exec: the sandbox has a network namespace of its own */
	/* the caller's argv and environment strings, wiped in the child's copy
	 * (init's /proc/1/cmdline would show them inside) */
	char *argv_area, *env_area;
	size_t argv_len, env_len;
	int fd_copies[SANDBOX_MAX_FDS]; /* passed fds, moved above every target */
	/* set by child_err() */
	const char *fail_step;
	const char *fail_detail;
};

/* child.c */
int child_err(struct child_ctx *c, int err, const char *step, const char *detail);
_Noreturn void child_fail(struct child_ctx *c, int err);
_Noreturn void child_main(struct child_ctx *c);
size_t child_strlcpy(char *dst, const char *src, size_t size);

/* namespaces.c */
int ns_clone_flags(const struct sandbox_spec *spec);
int ns_write_id_maps(pid_t pid, uint32_t base, uint32_t count); /* parent */
int ns_child_join(struct child_ctx *c);
int ns_child_become_root(struct child_ctx *c);
int ns_child_set_hostname(struct child_ctx *c);
int ns_child_loopback_up(struct child_ctx *c);

/* mounts.c (child) */
int mounts_child_setup(struct child_ctx *c);

/* caps.c (child) */
int caps_child_limit(struct child_ctx *c);
int caps_child_set_ids(struct child_ctx *c, uint32_t uid, uint32_t gid);

/* seccomp.c */
int seccomp_filters_build(struct sandbox_seccomp *out); /* parent */
void seccomp_filters_free(struct sandbox_seccomp *sc);
int seccomp_child_apply(struct child_ctx *c);

/* init.c (in the sandbox-init program): PID 1 starts the command, never returns */
_Noreturn void init_child_run(struct child_ctx *c);
/* exec (child, joined): starts the command as the caller's child, writes
 * its host pid on the status pipe and exits */
_Noreturn void exec_child_run(struct child_ctx *c);

/* The sandbox-init program (init-main.c), embedded at build time. */
extern const unsigned char sandbox_init_blob[];
extern const size_t sandbox_init_blob_len;

/* cgroup.c (parent) */
struct sandbox_cgroup;
int cgroup_create(struct sandbox_cgroup **out, const char *name, const struct sandbox_limits *lim);
/* The groups of a running sandbox (after a restart): -ENOENT if absent. */
int cgroup_open(struct sandbox_cgroup **out, const char *name);
/* Call fn with the name of each of our groups (<caller's group>/hiberbox/
 * NAME) that starts with prefix, until it returns non-zero (returned). */
int cgroup_list_names(const char *prefix, int (*fn)(const char *name, void *arg), void *arg);
int cgroup_add_pid(struct sandbox_cgroup *cg, pid_t pid);
/* Limits of a group cgroup_open() found (0: that limit left as it is). */
int cgroup_set_limits(struct sandbox_cgroup *cg, const struct sandbox_limits *lim);
int cgroup_is_frozen(struct sandbox_cgroup *cg, int *frozen);
/* sandbox_usage() of the groups; never fails (unknown counts say so). */
void cgroup_usage(const struct sandbox_cgroup *cg, struct sandbox_usage *u);
/* How many tasks the kernel's OOM killer killed in the memory group. */
unsigned cgroup_oom_kills(struct sandbox_cgroup *cg);
/* The same count through a file kept open (-1 if there is no memory group):
 * an exec'd command compares it at its start and end, and the file stays
 * readable without the sandbox's handle; a removed group reads as 0. */
int cgroup_oom_counter_open(struct sandbox_cgroup *cg);
unsigned cgroup_oom_counter_read(int fd);
/* Free the handle, leave the groups. */
void cgroup_forget(struct sandbox_cgroup *cg);
/* frozen = 1 freezes and waits until frozen; 0 thaws. */
int cgroup_set_frozen(struct sandbox_cgroup *cg, int frozen);
/* SIGKILL every task in the groups (thawed first). */
void cgroup_kill_all(struct sandbox_cgroup *cg);
/* Remove the groups (retrying briefly while dying tasks leave) and free. */
int cgroup_destroy(struct sandbox_cgroup *cg);
/* The directory of controller ("memory", "pids", "cpu", "freezer",
 * "cpuacct") or NULL. */
const char *cgroup_dir(const struct sandbox_cgroup *cg, const char *controller);
