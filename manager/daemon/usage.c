/* What a running sandbox uses now: memory, CPU time and tasks as its
 * cgroups count them (sandbox_usage), and its disk as its fs process counts
 * it against --disk, and the memory of the processes the host runs for it
 * (its fs process, its NAT helper).  For GET /sandboxes/NAME and
 * `hiberbox stats`.
 *
 * A count this host does not keep (no cpuacct hierarchy, a kernel without
 * memory.peak, a sandbox without --disk) is null rather than 0, so that a
 * client never shows an unknown as an idle sandbox. */
#include <errno.h>

#include "fs/fs.h"
#include "manager/daemon/daemon-int.h"
#include "util/error.h"
#include "util/proc.h"

/* Short: the answer sits in a reply to a GET that holds the sandbox's lock.
 * The fs answers from memory; only a commit in progress holds it up. */
#define USAGE_DISK_TIMEOUT_MS 1000

static json_t *count_or_null(uint64_t v)
{
	return v == SANDBOX_USAGE_UNKNOWN ? json_null() : json_integer((json_int_t)v);
}

json_t *sbx_usage_json_locked(struct hbd *d, struct sbx *s)
{
	struct sandbox_usage u;
	uint64_t used = 0, limit = 0, fs_rss = SANDBOX_USAGE_UNKNOWN;
	uint64_t nat_rss = SANDBOX_USAGE_UNKNOWN;
	char root[4200];
	json_t *j;

	if (!s->sb || sandbox_usage(s->sb, &u) < 0) {
		hb_err_clear();
		return NULL;
	}
	if (sbx_state_dir(d, s->rec.name, "root", root, sizeof(root)) < 0 ||
	    hbfs_usage(root, USAGE_DISK_TIMEOUT_MS, &used, &limit, &fs_rss) < 0)
		limit = 0;
	if (!s->rec.disk_bytes || !limit)
		used = SANDBOX_USAGE_UNKNOWN;
	/* The processes the host runs for the sandbox, outside its cgroups:
	 * what it costs beyond memory_bytes. */
	if (s->nat && proc_rss_bytes(nat_helper_pid(s->nat), &nat_rss) < 0)
		nat_rss = SANDBOX_USAGE_UNKNOWN;
	hb_err_clear();
	j = json_object();
	json_object_set_new(j, "memory_bytes", count_or_null(u.memory_bytes));
	json_object_set_new(j, "memory_peak_bytes", count_or_null(u.memory_peak_bytes));
	json_object_set_new(j, "cpu_ns", count_or_null(u.cpu_ns));
	json_object_set_new(j, "tasks", count_or_null(u.tasks));
	json_object_set_new(j, "disk_bytes", count_or_null(used));
	json_object_set_new(j, "fs_memory_bytes", count_or_null(fs_rss));
	json_object_set_new(j, "network_memory_bytes", count_or_null(nat_rss));
	return j;
}
