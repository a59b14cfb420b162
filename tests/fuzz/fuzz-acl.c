/* Fuzz target: any bytes as a POSIX ACL xattr value (after two bytes of
 * mode), through every function of fs/acl.h and through xattr_shift_ids.
 *
 * ACL values reach the filesystem unchecked by the kernel from a snapshot's
 * lower tree (a crafted, old or foreign repository): nothing may read or
 * write past the value, a value one function refuses every other refuses
 * too, and what they make of a well-formed ACL is what the kernel would.
 */
#include <stdlib.h>
#include <string.h>

#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <linux/capability.h>

#include "fs/acl.h"
#include "fs/fs-int.h"

#define HEAD sizeof(struct posix_acl_xattr_header)
#define ENT sizeof(struct posix_acl_xattr_entry)
#define PERMS 0777u

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Exactly one owner, owning group and other entry, at most one mask: the
 * ACLs whose mode bits mean one thing (the kernel's posix_acl_valid asks
 * for more, sorting and a mask beside named entries, that does not matter
 * here). */
static int base_entries_once(const uint8_t *v, size_t len)
{
	int user_obj = 0, group_obj = 0, other = 0, mask = 0;

	for (size_t off = HEAD; off < len; off += ENT)
		switch (le16(v + off)) {
		case ACL_USER_OBJ: user_obj++; break;
		case ACL_GROUP_OBJ: group_obj++; break;
		case ACL_OTHER: other++; break;
		case ACL_MASK: mask++; break;
		}
	return user_obj == 1 && group_obj == 1 && other == 1 && mask <= 1;
}

static uint8_t *dup(const uint8_t *v, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	if (!c)
		abort();
	memcpy(c, v, len);
	return c;
}

static void fuzz_acl(const uint8_t *v, size_t len, uint32_t mode)
{
	int ok = acl_check(v, len) == 0;
	uint32_t m = mode;
	uint8_t *c;
	int r;

	if (acl_empty(v, len) && (!ok || len != HEAD))
		abort();
	r = acl_equiv_mode(v, len, &m);
	if ((r >= 0) != ok || (m & ~PERMS) != (mode & ~PERMS))
		abort();

	c = dup(v, len);
	m = mode;
	r = acl_create_masq(c, len, &m);
	if (r >= 0 && (!ok || (m & ~mode) || acl_check(c, len) < 0))
		abort(); /* the mode is only ever narrowed, the value stays an ACL */
	free(c);

	c = dup(v, len);
	r = acl_chmod(c, len, mode);
	if (r == 0) {
		uint32_t after = 0;

		if (!ok || acl_equiv_mode(c, len, &after) < 0)
			abort();
		if (base_entries_once(c, len) && (after & PERMS) != (mode & PERMS))
			abort(); /* a chmod's bits are the ACL's bits */
	}
	free(c);
}

/* Stored -> presented -> stored gives back every id the shift covers, and
 * nothing is touched past the value. */
static void fuzz_shift(const uint8_t *v, size_t len)
{
	static const char *const names[] = { ACL_XATTR_ACCESS, ACL_XATTR_DEFAULT,
					     "security.capability", "user.other" };
	struct hbfs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		abort();
	fs->opts.uid_shift = 100000;
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		uint8_t *c = dup(v, len);
		int in_range = 1;

		if (len >= HEAD && (len - HEAD) % ENT == 0)
			for (size_t off = HEAD; off < len; off += ENT)
				if (le32(v + off + 4) >= HBFS_UID_SHIFT_RANGE)
					in_range = 0;
		if (len == XATTR_CAPS_SZ_3 && le32(v + len - 4) >= HBFS_UID_SHIFT_RANGE)
			in_range = 0;
		xattr_shift_ids(fs, names[k], c, len, true);
		xattr_shift_ids(fs, names[k], c, len, false);
		if (in_range && memcmp(c, v, len))
			abort();
		free(c);
	}
	free(fs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t mode = S_IFREG | 0644;

	if (size >= 2) {
		mode = (data[0] & 1 ? S_IFDIR : S_IFREG) | (le16(data) >> 1 & 07777);
		data += 2;
		size -= 2;
	}
	fuzz_acl(data, size, mode);
	fuzz_shift(data, size);
	return 0;
}
