/* Capabilities: what root inside the sandbox may still do.
 *
 * Root of the sandbox's user namespace holds every capability over objects
 * that namespace owns.  We cut that down to Docker's default set, in the
 * bounding set (so that no later execve of a root or file-capability binary
 * gets more), in the permitted and effective sets, with empty inheritable
 * and ambient sets, and then set no_new_privs (setuid bits and file
 * capabilities confer nothing, and seccomp may be loaded without
 * CAP_SYS_ADMIN).  Raw syscalls only: see sandbox-int.h.
 */
#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manager/sandbox-int.h"

/* Docker's default capability set (moby oci/caps/defaults.go). */
static const int default_caps[] = {
	CAP_CHOWN,	  CAP_DAC_OVERRIDE, CAP_FSETID,		  CAP_FOWNER,
	CAP_MKNOD,	  CAP_NET_RAW,	    CAP_SETGID,		  CAP_SETUID,
	CAP_SETFCAP,	  CAP_SETPCAP,	    CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
	CAP_KILL,	  CAP_AUDIT_WRITE,
};

static uint64_t default_cap_mask(void)
{
	uint64_t m = 0;
	for (size_t i = 0; i < sizeof(default_caps) / sizeof(default_caps[0]); i++)
		m |= (uint64_t)1 << default_caps[i];
	return m;
}

static int set_cap_sets(struct child_ctx *c, uint64_t mask)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	data[0].effective = data[0].permitted = (uint32_t)mask;
	data[1].effective = data[1].permitted = (uint32_t)(mask >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return child_err(c, -errno, "capset", NULL);
	return 0;
}

int caps_child_limit(struct child_ctx *c)
{
	uint64_t keep = default_cap_mask();
	for (int cap = 0; cap < 64; cap++) {
		if (keep & ((uint64_t)1 << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			return child_err(c, -errno, "PR_CAPBSET_DROP", NULL);
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return child_err(c, -errno, "clear ambient capabilities", NULL);
	int r = set_cap_sets(c, keep);
	if (r < 0)
		return r;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return child_err(c, -errno, "PR_SET_NO_NEW_PRIVS", NULL);
	return 0;
}

/* Switch the command to uid/gid (inside ids).  A non-zero uid loses its
 * capabilities here by the kernel's usual rules. */
int caps_child_set_ids(struct child_ctx *c, uint32_t uid, uint32_t gid)
{
	if (uid == 0 && gid == 0)
		return 0;
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return child_err(c, -errno, "setgroups", NULL);
	if (syscall(SYS_setresgid, gid, gid, gid) < 0)
		return child_err(c, -errno, "setresgid", NULL);
	if (syscall(SYS_setresuid, uid, uid, uid) < 0)
		return child_err(c, -errno, "setresuid", NULL);
	return 0;
}
