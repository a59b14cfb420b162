/* Cgroups: one group per sandbox for memory, pids and cpu limits and freezing.
 *
 * cgroup v2 when /sys/fs/cgroup is the unified hierarchy; otherwise the v1
 * hierarchies of the memory, pids, cpu and freezer controllers, found in
 * /proc/self/mountinfo.  Each sandbox gets <caller's group>/hiberbox/<name>
 * in every hierarchy, so limits nest under whatever the service manager gave
 * the caller.  The parent creates the groups and writes the limits before
 * the child runs a single instruction of its own (it waits on a pipe until
 * it has been moved in); the groups are removed after the sandbox's init has
 * been reaped, when the pid namespace is already empty.
 *
 * On v2 a group with processes cannot hand controllers to children ("no
 * internal processes"), so if the caller sits in its group it moves itself
 * into a leaf <group>/hiberboxd first.  <group> stays the base of every
 * later path: the leaf is where the caller lives, not where its groups go.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "manager/sandbox-int.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

/* -DHB_CGROUP_V2_ON_HYBRID exercises the v2 code on a hybrid host (its
 * unified hierarchy usually lacks controllers: limits report -ENOTSUP). */
#ifdef HB_CGROUP_V2_ON_HYBRID
#define CGROUP_ROOT "/sys/fs/cgroup/unified"
#else
#define CGROUP_ROOT "/sys/fs/cgroup"
#endif
#define CGROUP2_MAGIC 0x63677270
#define CGROUP_INFO_MAX_BYTES ((size_t)1 << 20)
#define CGROUP_CPU_PERIOD_US 100000u
#define CGROUP_FREEZE_TIMEOUT_MS 5000
#define CGROUP_RMDIR_TIMEOUT_MS 2000

/* cpuacct only counts (usage): v1 hosts often mount it apart from cpu. */
enum { CG_MEMORY, CG_PIDS, CG_CPU, CG_FREEZER, CG_CPUACCT, CG_N };
static const char *const cg_names[CG_N] = { "memory", "pids", "cpu", "freezer", "cpuacct" };

struct sandbox_cgroup {
	int v2;
	/* v2: all the same string, owned by dirs[0]; v1: controllers mounted
	 * together ("cpu,cpuacct") share the first one's string */
	char *dirs[CG_N];
};

/* dirs[i] is the string of an earlier controller (or none): not to be
 * written, removed or freed twice. */
static bool dir_is_alias(const struct sandbox_cgroup *cg, int i)
{
	if (!cg->dirs[i])
		return true;
	for (int j = 0; j < i; j++)
		if (cg->dirs[j] == cg->dirs[i])
			return true;
	return false;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int write_value(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return hb_err(-ENAMETOOLONG, "cgroup path too long: %s", dir);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return hb_err(-errno, "open %s: %s", path, strerror(errno));
	int r = write_all(fd, val, strlen(val));
	close(fd);
	if (r < 0)
		return hb_err(r, "write '%s' to %s: %s", val, path, strerror(-r));
	return 0;
}

static int read_value(const char *dir, const char *file, char *out, size_t size)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read_full(fd, out, size - 1);
	close(fd);
	if (n < 0)
		return (int)n;
	out[n] = '\0';
	return 0;
}

static int read_text(const char *path, struct buf *b)
{
	b->max = CGROUP_INFO_MAX_BYTES;
	int r = read_file(AT_FDCWD, path, CGROUP_INFO_MAX_BYTES, b);
	if (r < 0)
		return hb_err(r, "read %s: %s", path, strerror(-r));
	if ((r = buf_append(b, "", 1)) < 0)
		return hb_err(r, "read %s: out of memory", path);
	return 0;
}

static int has_word(const char *list, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == wl && memcmp(p, word, wl) == 0)
			return 1;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

/* Our path in the hierarchy of controller ctl (v1), or in the unified one
 * (ctl NULL), from /proc/self/cgroup.  Returns a malloc'd string. */
static int self_cgroup_path(const char *ctl, char **out)
{
	struct buf b = BUF_INIT;
	int r = read_text("/proc/self/cgroup", &b);
	if (r < 0)
		return r;
	r = hb_err(-ENOENT, "no %s line in /proc/self/cgroup", ctl ? ctl : "unified");
	char *save = NULL;
	for (char *line = strtok_r((char *)b.data, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		int match = ctl ? has_word(c1 + 1, ctl) : (c1[1] == '\0' && strncmp(line, "0:", 2) == 0);
		if (!match)
			continue;
		*out = strdup(c2 + 1);
		r = *out ? 0 : hb_err(-ENOMEM, "out of memory");
		break;
	}
	buf_free(&b);
	return r;
}

/* Mount point of the v1 hierarchy holding controller ctl, and the root of
 * that mount within the hierarchy.  malloc'd strings. */
static int v1_mount_of(const char *ctl, char **mnt, char **mroot)
{
	struct buf b = BUF_INIT;
	int r = read_text("/proc/self/mountinfo", &b);
	if (r < 0)
		return r;
	r = hb_err(-ENOENT, "no cgroup v1 hierarchy has the %s controller", ctl);
	char *save = NULL;
	for (char *line = strtok_r((char *)b.data, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		/* id parent maj:min root mountpoint opts... - fstype source superopts */
		char *f[5];
		char *p = line;
		int nf = 0;
		while (nf < 5 && p) {
			f[nf++] = p;
			p = strchr(p, ' ');
			if (p)
				*p++ = '\0';
		}
		char *dash = p ? strstr(p, " - ") : NULL;
		if (nf < 5 || !dash)
			continue;
		char *fstype = dash + 3;
		char *src = strchr(fstype, ' ');
		if (!src)
			continue;
		*src++ = '\0';
		char *opts = strchr(src, ' ');
		if (!opts || strcmp(fstype, "cgroup") != 0)
			continue;
		if (!has_word(opts + 1, ctl))
			continue;
		*mnt = strdup(f[4]);
		*mroot = strdup(f[3]);
		if (!*mnt || !*mroot) {
			free(*mnt);
			free(*mroot);
			r = hb_err(-ENOMEM, "out of memory");
		} else {
			r = 0;
		}
		break;
	}
	buf_free(&b);
	return r;
}

static int mkdir_ok(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return hb_err(-errno, "mkdir %s: %s", path, strerror(errno));
	return 0;
}

/* base/hiberbox/name, creating it (and the hiberbox level), or with
 * create 0 finding the existing one. */
static int make_group(const char *base, const char *name, char **out, int create)
{
	char *mid = NULL;
	if (asprintf(&mid, "%s/hiberbox", base) < 0)
		return hb_err(-ENOMEM, "out of memory");
	int r = create ? mkdir_ok(mid) : 0;
	if (r < 0) {
		free(mid);
		return r;
	}
	if (asprintf(out, "%s/%s", mid, name) < 0) {
		free(mid);
		return hb_err(-ENOMEM, "out of memory");
	}
	free(mid);
	if (!create) {
		struct stat st;
		if (stat(*out, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		r = hb_err(-ENOENT, "no cgroup %s", *out);
		free(*out);
		*out = NULL;
		return r;
	}
	if (mkdir(*out, 0755) < 0) {
		r = hb_err(-errno, "mkdir %s: %s", *out,
			   errno == EEXIST ? "a sandbox of that name is running" : strerror(errno));
		free(*out);
		*out = NULL;
		return r;
	}
	return 0;
}

/* Our group in the v1 hierarchy of controller ctl, mounted at mnt (its
 * root in the hierarchy mroot): a malloc'd path. */
static int v1_base(const char *ctl, const char *mnt, const char *mroot, char **base)
{
	char *self = NULL;
	int r = self_cgroup_path(ctl, &self);

	if (r < 0)
		return r;
	/* a mount of a sub-tree: strip its root from our path */
	const char *rel = self;
	size_t rl = strlen(mroot);
	if (strcmp(mroot, "/") != 0 && strncmp(self, mroot, rl) == 0)
		rel = self + rl;
	if (asprintf(base, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel) < 0)
		r = hb_err(-ENOMEM, "out of memory");
	free(self);
	return r;
}

static int create_v1(struct sandbox_cgroup *cg, const char *name, int create)
{
	char *mnts[CG_N] = { NULL };
	int r = 0;

	for (int i = 0; i < CG_N && r == 0; i++) {
		char *mroot = NULL, *base = NULL;
		bool optional = i == CG_FREEZER || i == CG_CPUACCT;

		r = v1_mount_of(cg_names[i], &mnts[i], &mroot);
		if (r == -ENOENT && optional) {
			/* no freezer: freezing reports -ENOTSUP later; no
			 * cpuacct: usage has no CPU time */
			hb_err_clear();
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		for (int j = 0; j < i; j++) {
			if (mnts[j] && cg->dirs[j] && !strcmp(mnts[j], mnts[i])) {
				cg->dirs[i] = cg->dirs[j];
				break;
			}
		}
		if (cg->dirs[i]) {
			free(mroot);
			continue;
		}
		r = v1_base(cg_names[i], mnts[i], mroot, &base);
		if (r == 0)
			r = make_group(base, name, &cg->dirs[i], create);
		/* a sandbox started before its daemon counted CPU time */
		if (r == -ENOENT && !create && i == CG_CPUACCT) {
			hb_err_clear();
			r = 0;
		}
		free(base);
		free(mroot);
	}
	for (int i = 0; i < CG_N; i++)
		free(mnts[i]);
	return r;
}

/* The group this process left for its leaf <group>/hiberboxd (NULL while
 * it has not moved), under v2_moved_lock.  /proc/self/cgroup then names
 * the leaf, and paths based on it would nest every later sandbox one level
 * deeper (hiberboxd/hiberbox/NAME, then hiberboxd/hiberboxd/...): groups by
 * name (an fs process's, at rm or at the next daemon's start) would be
 * looked for where they are not, and the leaf, holding the processes this
 * one started since, could not hand controllers down (EBUSY). */
static pthread_mutex_t v2_moved_lock = PTHREAD_MUTEX_INITIALIZER;
static char *v2_moved_from;

/* v2: let base hand the controllers in want ("+memory +pids") down. */
static int v2_enable_controllers(const char *base, const char *want)
{
	int r = write_value(base, "cgroup.subtree_control", want);
	if (r != -EBUSY)
		return r;
	/* We live in base: move into a leaf, then try again. */
	hb_err_clear();
	char *leaf = NULL, *from = NULL;
	if (asprintf(&leaf, "%s/hiberboxd", base) < 0 || !(from = strdup(base))) {
		free(leaf);
		return hb_err(-ENOMEM, "out of memory");
	}
	r = mkdir_ok(leaf);
	pthread_mutex_lock(&v2_moved_lock);
	if (r == 0)
		r = write_value(leaf, "cgroup.procs", "0");
	if (r == 0 && !v2_moved_from) {
		v2_moved_from = from;
		from = NULL;
	}
	pthread_mutex_unlock(&v2_moved_lock);
	free(leaf);
	free(from);
	if (r < 0)
		return r;
	return write_value(base, "cgroup.subtree_control", want);
}

/* The v2 controllers to enable: those of memory, pids and cpu that base
 * has; a limit whose controller is missing is an error. */
static int v2_wanted(const char *base, const struct sandbox_limits *lim, char *want, size_t size)
{
	char avail[512];
	int r = read_value(base, "cgroup.controllers", avail, sizeof(avail));
	if (r < 0)
		return hb_err(r, "read %s/cgroup.controllers: %s", base, strerror(-r));
	const struct {
		const char *name;
		int needed;
	} ctl[] = { { "memory", lim->memory_bytes != 0 },
		    { "pids", lim->pids != 0 },
		    { "cpu", lim->cpu_millis != 0 } };
	want[0] = '\0';
	for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
		int have = 0;
		size_t nl = strlen(ctl[i].name);
		for (const char *p = avail; (p = strstr(p, ctl[i].name)); p += nl) {
			if ((p == avail || p[-1] == ' ') && (p[nl] == ' ' || p[nl] == '\n' || !p[nl])) {
				have = 1;
				break;
			}
		}
		if (!have && ctl[i].needed)
			return hb_err(-ENOTSUP, "cgroup v2 controller %s is not available in %s",
				      ctl[i].name, base);
		if (have) {
			size_t l = strlen(want);
			snprintf(want + l, size - l, "%s+%s", l ? " " : "", ctl[i].name);
		}
	}
	return 0;
}

/* Our group in the unified hierarchy (the one we left for our leaf, if we
 * did): a malloc'd path. */
static int v2_base(char **base)
{
	char *self = NULL;
	int r = 0;

	pthread_mutex_lock(&v2_moved_lock);
	if (v2_moved_from) {
		if (!(*base = strdup(v2_moved_from)))
			r = hb_err(-ENOMEM, "out of memory");
		pthread_mutex_unlock(&v2_moved_lock);
		return r;
	}
	r = self_cgroup_path(NULL, &self);
	if (r == 0 && asprintf(base, "%s%s", CGROUP_ROOT, strcmp(self, "/") == 0 ? "" : self) < 0)
		r = hb_err(-ENOMEM, "out of memory");
	pthread_mutex_unlock(&v2_moved_lock);
	free(self);
	return r;
}

static int create_v2(struct sandbox_cgroup *cg, const char *name,
		     const struct sandbox_limits *lim, int create)
{
	char *base = NULL, *mid = NULL;
	char want[64];
	int r = v2_base(&base);
	if (r < 0)
		return r;
	if (asprintf(&mid, "%s/hiberbox", base) < 0) {
		r = hb_err(-ENOMEM, "out of memory");
		goto out;
	}
	if (!create) {
		r = make_group(base, name, &cg->dirs[0], 0);
		goto fill;
	}
	if ((r = v2_wanted(base, lim, want, sizeof(want))) < 0)
		goto out;
	if (want[0] && (r = v2_enable_controllers(base, want)) < 0)
		goto out;
	if ((r = mkdir_ok(mid)) < 0)
		goto out;
	if (want[0] && (r = write_value(mid, "cgroup.subtree_control", want)) < 0)
		goto out;
	r = make_group(base, name, &cg->dirs[0], 1);
fill:
	for (int i = 1; i < CG_N && r == 0; i++)
		cg->dirs[i] = cg->dirs[0];
out:
	free(base);
	free(mid);
	return r;
}

static int set_limits(struct sandbox_cgroup *cg, const struct sandbox_limits *lim)
{
	char v[64];
	int r;
	if (lim->memory_bytes) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_bytes);
		if (cg->v2) {
			if ((r = write_value(cg->dirs[CG_MEMORY], "memory.max", v)) < 0)
				return r;
			r = write_value(cg->dirs[CG_MEMORY], "memory.swap.max", "0");
			if (r < 0 && r != -ENOENT)
				return r;
		} else {
			if ((r = write_value(cg->dirs[CG_MEMORY], "memory.limit_in_bytes", v)) < 0)
				return r;
			/* memory+swap, where the kernel accounts swap: no escape to swap */
			r = write_value(cg->dirs[CG_MEMORY], "memory.memsw.limit_in_bytes", v);
			if (r < 0 && r != -ENOENT)
				return r;
		}
		hb_err_clear();
	}
	if (lim->pids) {
		snprintf(v, sizeof(v), "%u", lim->pids);
		if ((r = write_value(cg->dirs[CG_PIDS], "pids.max", v)) < 0)
			return r;
	}
	if (lim->cpu_millis) {
		unsigned long long quota = (unsigned long long)lim->cpu_millis * CGROUP_CPU_PERIOD_US / 1000;
		if (cg->v2) {
			snprintf(v, sizeof(v), "%llu %u", quota, CGROUP_CPU_PERIOD_US);
			if ((r = write_value(cg->dirs[CG_CPU], "cpu.max", v)) < 0)
				return r;
		} else {
			snprintf(v, sizeof(v), "%u", CGROUP_CPU_PERIOD_US);
			if ((r = write_value(cg->dirs[CG_CPU], "cpu.cfs_period_us", v)) < 0)
				return r;
			snprintf(v, sizeof(v), "%llu", quota);
			if ((r = write_value(cg->dirs[CG_CPU], "cpu.cfs_quota_us", v)) < 0)
				return r;
		}
	}
	return 0;
}

int cgroup_create(struct sandbox_cgroup **out, const char *name, const struct sandbox_limits *lim)
{
	struct statfs sf;
	struct sandbox_cgroup *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return hb_err(-ENOMEM, "out of memory");
	cg->v2 = statfs(CGROUP_ROOT, &sf) == 0 && sf.f_type == CGROUP2_MAGIC;
	int r = cg->v2 ? create_v2(cg, name, lim, 1) : create_v1(cg, name, 1);
	if (r == 0)
		r = set_limits(cg, lim);
	if (r < 0) {
		int saved = r;
		char msg[512];
		hb_err_save(msg, sizeof(msg));
		cgroup_destroy(cg);
		return hb_err(saved, "cgroup %s: %s", name, msg);
	}
	*out = cg;
	return 0;
}

int cgroup_open(struct sandbox_cgroup **out, const char *name)
{
	struct statfs sf;
	static const struct sandbox_limits none;
	struct sandbox_cgroup *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return hb_err(-ENOMEM, "out of memory");
	cg->v2 = statfs(CGROUP_ROOT, &sf) == 0 && sf.f_type == CGROUP2_MAGIC;
	int r = cg->v2 ? create_v2(cg, name, &none, 0) : create_v1(cg, name, 0);
	if (r < 0) {
		cgroup_forget(cg); /* not ours to remove */
		return r;
	}
	*out = cg;
	return 0;
}

int cgroup_list_names(const char *prefix, int (*fn)(const char *name, void *arg), void *arg)
{
	struct statfs sf;
	char *base = NULL, *dir = NULL;
	DIR *d = NULL;
	int r;

	/* v1: the pids hierarchy, where every group has a directory */
	if (statfs(CGROUP_ROOT, &sf) == 0 && sf.f_type == CGROUP2_MAGIC) {
		r = v2_base(&base);
	} else {
		char *mnt = NULL, *mroot = NULL;
		if ((r = v1_mount_of(cg_names[CG_PIDS], &mnt, &mroot)) == 0)
			r = v1_base(cg_names[CG_PIDS], mnt, mroot, &base);
		free(mnt);
		free(mroot);
	}
	if (r < 0)
		return r;
	if (asprintf(&dir, "%s/hiberbox", base) < 0) {
		free(base);
		return hb_err(-ENOMEM, "out of memory");
	}
	free(base);
	if (!(d = opendir(dir))) {
		r = errno == ENOENT ? 0 : hb_err(-errno, "opendir %s: %s", dir, strerror(errno));
		free(dir);
		return r;
	}
	for (struct dirent *e; r == 0 && (e = readdir(d));) {
		if (e->d_type == DT_DIR && strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
		    !name_is_dot_or_dotdot(e->d_name))
			r = fn(e->d_name, arg);
	}
	closedir(d);
	free(dir);
	return r;
}

int cgroup_set_limits(struct sandbox_cgroup *cg, const struct sandbox_limits *lim)
{
	return set_limits(cg, lim);
}

int cgroup_add_pid(struct sandbox_cgroup *cg, pid_t pid)
{
	char v[32];
	snprintf(v, sizeof(v), "%d", (int)pid);
	for (int i = 0; i < CG_N; i++) {
		if (dir_is_alias(cg, i))
			continue;
		int r = write_value(cg->dirs[i], "cgroup.procs", v);
		if (r < 0)
			return r;
	}
	return 0;
}

static int freezer_state(struct sandbox_cgroup *cg, int *frozen)
{
	char v[256];
	int r;
	if (cg->v2) {
		if ((r = read_value(cg->dirs[0], "cgroup.events", v, sizeof(v))) < 0)
			return hb_err(r, "read cgroup.events: %s", strerror(-r));
		*frozen = strstr(v, "frozen 1") != NULL;
	} else {
		if ((r = read_value(cg->dirs[CG_FREEZER], "freezer.state", v, sizeof(v))) < 0)
			return hb_err(r, "read freezer.state: %s", strerror(-r));
		*frozen = strncmp(v, "FROZEN", 6) == 0;
	}
	return 0;
}

int cgroup_is_frozen(struct sandbox_cgroup *cg, int *frozen)
{
	*frozen = 0;
	return cg->dirs[CG_FREEZER] ? freezer_state(cg, frozen) : 0;
}

int cgroup_set_frozen(struct sandbox_cgroup *cg, int frozen)
{
	if (!cg->dirs[CG_FREEZER])
		return hb_err(-ENOTSUP, "no cgroup freezer on this host");
	const char *file = cg->v2 ? "cgroup.freeze" : "freezer.state";
	const char *val = cg->v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
	int r = write_value(cg->dirs[CG_FREEZER], file, val);
	if (r < 0 || !frozen)
		return r;
	/* v1 may stay FREEZING while a task sleeps uninterruptibly: rewrite. */
	for (unsigned waited = 0; waited < CGROUP_FREEZE_TIMEOUT_MS; waited += 5) {
		int is_frozen = 0;
		if ((r = freezer_state(cg, &is_frozen)) < 0)
			return r;
		if (is_frozen)
			return 0;
		sleep_ms(5);
		if (!cg->v2 && (r = write_value(cg->dirs[CG_FREEZER], file, val)) < 0)
			return r;
	}
	write_value(cg->dirs[CG_FREEZER], file, cg->v2 ? "0" : "THAWED");
	return hb_err(-ETIMEDOUT, "freezing %s did not finish in %d ms", cg->dirs[CG_FREEZER],
		      CGROUP_FREEZE_TIMEOUT_MS);
}

/* A number alone in a file (memory.current, pids.current). */
static uint64_t read_count(const char *dir, const char *file)
{
	char v[64], *end;
	unsigned long long x;

	if (!dir || read_value(dir, file, v, sizeof(v)) < 0)
		return SANDBOX_USAGE_UNKNOWN;
	errno = 0;
	x = strtoull(v, &end, 10);
	return end == v || errno ? SANDBOX_USAGE_UNKNOWN : x;
}

/* key's number in a "key value" per line file (memory.stat, cpu.stat). */
static uint64_t read_keyed_count(const char *dir, const char *file, const char *key)
{
	char v[16384];
	size_t kl = strlen(key);

	if (!dir || read_value(dir, file, v, sizeof(v)) < 0)
		return SANDBOX_USAGE_UNKNOWN;
	for (const char *p = v; p && *p;) {
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return strtoull(p + kl + 1, NULL, 10);
		if ((p = strchr(p, '\n')))
			p++;
	}
	return SANDBOX_USAGE_UNKNOWN;
}

void cgroup_usage(const struct sandbox_cgroup *cg, struct sandbox_usage *u)
{
	const char *mem = cg->dirs[CG_MEMORY];
	uint64_t inactive;

	u->memory_bytes = read_count(mem, cg->v2 ? "memory.current" : "memory.usage_in_bytes");
	/* v1's total_ counts the group's children too, as usage_in_bytes does */
	inactive = read_keyed_count(mem, "memory.stat", cg->v2 ? "inactive_file" : "total_inactive_file");
	if (u->memory_bytes != SANDBOX_USAGE_UNKNOWN && inactive != SANDBOX_USAGE_UNKNOWN)
		u->memory_bytes = inactive < u->memory_bytes ? u->memory_bytes - inactive : 0;
	u->memory_peak_bytes = read_count(mem, cg->v2 ? "memory.peak" : "memory.max_usage_in_bytes");
	if (cg->v2) {
		uint64_t us = read_keyed_count(cg->dirs[CG_CPU], "cpu.stat", "usage_usec");

		u->cpu_ns = us == SANDBOX_USAGE_UNKNOWN ? us : us * 1000;
	} else {
		u->cpu_ns = read_count(cg->dirs[CG_CPUACCT], "cpuacct.usage");
	}
	u->tasks = read_count(cg->dirs[CG_PIDS], "pids.current");
}

unsigned cgroup_oom_kills(struct sandbox_cgroup *cg)
{
	int fd = cgroup_oom_counter_open(cg);
	unsigned n = cgroup_oom_counter_read(fd);

	if (fd >= 0)
		close(fd);
	return n;
}

int cgroup_oom_counter_open(struct sandbox_cgroup *cg)
{
	char path[PATH_MAX];

	/* v1: memory.oom_control "oom_kill N" (kernel >= 4.13); v2: memory.events */
	if (!cg->dirs[CG_MEMORY] ||
	    snprintf(path, sizeof(path), "%s/%s", cg->dirs[CG_MEMORY],
		     cg->v2 ? "memory.events" : "memory.oom_control") >= (int)sizeof(path))
		return -1;
	return open(path, O_RDONLY | O_CLOEXEC);
}

unsigned cgroup_oom_counter_read(int fd)
{
	char v[1024];
	ssize_t n = fd < 0 ? -1 : pread(fd, v, sizeof(v) - 1, 0);

	if (n <= 0)
		return 0;
	v[n] = '\0';
	for (const char *p = v; (p = strstr(p, "oom_kill ")); p += 9)
		if (p == v || p[-1] == '\n')
			return (unsigned)strtoul(p + 9, NULL, 10);
	return 0;
}

void cgroup_forget(struct sandbox_cgroup *cg)
{
	if (!cg)
		return;
	for (int i = CG_N - 1; i >= 0; i--) {
		if (!dir_is_alias(cg, i))
			free(cg->dirs[i]);
	}
	free(cg);
}

const char *cgroup_dir(const struct sandbox_cgroup *cg, const char *controller)
{
	for (int i = 0; i < CG_N; i++) {
		if (strcmp(controller, cg_names[i]) == 0)
			return cg->dirs[i];
	}
	return NULL;
}

void cgroup_kill_all(struct sandbox_cgroup *cg)
{
	char procs[65536];

	/* a frozen task takes SIGKILL only once thawed */
	cgroup_set_frozen(cg, 0);
	for (int i = 0; i < CG_N; i++) {
		if (!cg->dirs[i] || read_value(cg->dirs[i], "cgroup.procs", procs, sizeof(procs)) < 0)
			continue;
		for (char *p = procs, *end; *p; p = end) {
			long pid = strtol(p, &end, 10);
			if (end == p)
				break;
			if (pid > 1)
				kill((pid_t)pid, SIGKILL);
		}
	}
	hb_err_clear();
}

int cgroup_destroy(struct sandbox_cgroup *cg)
{
	if (!cg)
		return 0;
	int ret = 0;
	for (int i = 0; i < CG_N; i++) {
		if (dir_is_alias(cg, i))
			continue;
		unsigned waited = 0;
		while (rmdir(cg->dirs[i]) < 0) {
			if (errno == ENOENT)
				break;
			if (errno != EBUSY || waited >= CGROUP_RMDIR_TIMEOUT_MS) {
				if (!ret)
					ret = hb_err(-errno, "rmdir %s: %s", cg->dirs[i], strerror(errno));
				break;
			}
			sleep_ms(10);
			waited += 10;
		}
	}
	for (int i = CG_N - 1; i >= 0; i--) {
		if (!dir_is_alias(cg, i))
			free(cg->dirs[i]);
	}
	free(cg);
	return ret;
}
