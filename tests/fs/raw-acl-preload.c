/* LD_PRELOAD shim for making crafted snapshots: a read of
 * system.posix_acl_access or _default returns the bytes of the entry's
 * user.raw.posix_acl_access or _default instead, when it has one.
 *
 * The kernel checks every ACL set on the host (setfattr of raw bytes to a
 * system.posix_acl_* name is refused, an empty one removes the ACL), so a
 * malformed lower ACL, as an old, foreign or crafted repository may hold,
 * cannot be made on the host directly: `hiberbox snapshot create` run with
 * this shim stores the raw bytes under the real name (the entry needs a real
 * ACL of that kind too, so that the name is listed). */
#include <dlfcn.h>
#include <string.h>
#include <sys/types.h>
#include <sys/xattr.h>

/* the project builds with -fvisibility=hidden: these must be seen to stand
 * in for libc's */
#define EXPORTED __attribute__((visibility("default")))

static const char *raw_name(const char *name)
{
	if (!strcmp(name, "system.posix_acl_access"))
		return "user.raw.posix_acl_access";
	if (!strcmp(name, "system.posix_acl_default"))
		return "user.raw.posix_acl_default";
	return NULL;
}

EXPORTED ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
	ssize_t (*real)(const char *, const char *, void *, size_t) = dlsym(RTLD_NEXT, "getxattr");
	const char *raw = raw_name(name);
	ssize_t r;

	if (raw) {
		r = real(path, raw, value, size);
		if (r >= 0)
			return r;
	}
	return real(path, name, value, size);
}

EXPORTED ssize_t fgetxattr(int fd, const char *name, void *value, size_t size)
{
	ssize_t (*real)(int, const char *, void *, size_t) = dlsym(RTLD_NEXT, "fgetxattr");
	const char *raw = raw_name(name);
	ssize_t r;

	if (raw) {
		r = real(fd, raw, value, size);
		if (r >= 0)
			return r;
	}
	return real(fd, name, value, size);
}
