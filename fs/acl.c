/* POSIX ACL values and the mode (see acl.h). */
#include <endian.h>
#include <errno.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/acl.h"

#define HEAD sizeof(struct posix_acl_xattr_header)
#define ENT sizeof(struct posix_acl_xattr_entry)

static uint16_t le16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void le16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t tag_at(const uint8_t *e)
{
	return le16_get(e + offsetof(struct posix_acl_xattr_entry, e_tag));
}

static uint8_t *perm_at(uint8_t *e)
{
	return e + offsetof(struct posix_acl_xattr_entry, e_perm);
}

static uint32_t perm_get(const uint8_t *e)
{
	return le16_get(e + offsetof(struct posix_acl_xattr_entry, e_perm)) & 07;
}

int acl_check(const uint8_t *v, size_t len)
{
	uint32_t version;

	if (len < HEAD || (len - HEAD) % ENT)
		return -EINVAL;
	memcpy(&version, v, sizeof(version));
	if (le32toh(version) != POSIX_ACL_XATTR_VERSION)
		return -EINVAL;
	for (size_t off = HEAD; off < len; off += ENT)
		switch (tag_at(v + off)) {
		case ACL_USER_OBJ:
		case ACL_USER:
		case ACL_GROUP_OBJ:
		case ACL_GROUP:
		case ACL_MASK:
		case ACL_OTHER:
			break;
		default:
			return -EINVAL;
		}
	return 0;
}

bool acl_empty(const uint8_t *v, size_t len)
{
	return len == HEAD && acl_check(v, len) == 0;
}

int acl_equiv_mode(const uint8_t *v, size_t len, uint32_t *mode)
{
	uint32_t bits = 0, mask = 0;
	int extended = 0, has_mask = 0;

	if (acl_check(v, len) < 0)
		return -EINVAL;
	for (size_t off = HEAD; off < len; off += ENT) {
		const uint8_t *e = v + off;

		switch (tag_at(e)) {
		case ACL_USER_OBJ:
			bits |= perm_get(e) << 6;
			break;
		case ACL_GROUP_OBJ:
			bits |= perm_get(e) << 3;
			break;
		case ACL_OTHER:
			bits |= perm_get(e);
			break;
		case ACL_MASK:
			mask = perm_get(e);
			has_mask = extended = 1;
			break;
		default: /* named users and groups */
			extended = 1;
			break;
		}
	}
	if (has_mask)
		bits = (bits & ~(uint32_t)S_IRWXG) | mask << 3;
	*mode = (*mode & ~(uint32_t)(S_IRWXU | S_IRWXG | S_IRWXO)) | bits;
	return extended;
}

/* The entry that holds the group class's bits: the mask, or without one
 * the owning group's (NULL: neither).  Of several (a lower value only: the
 * kernel refuses to set such an ACL), the last, as the kernel's
 * posix_acl_create_masq and __posix_acl_chmod take it from ext4's disk. */
static uint8_t *group_class(uint8_t *v, size_t len)
{
	uint8_t *group_obj = NULL, *mask = NULL;

	for (size_t off = HEAD; off < len; off += ENT) {
		if (tag_at(v + off) == ACL_MASK)
			mask = v + off;
		if (tag_at(v + off) == ACL_GROUP_OBJ)
			group_obj = v + off;
	}
	return mask ? mask : group_obj;
}

int acl_create_masq(uint8_t *v, size_t len, uint32_t *mode)
{
	uint32_t m = *mode, p;
	uint8_t *g;
	int extended = 0;

	if (acl_check(v, len) < 0 || !(g = group_class(v, len)))
		return -EINVAL;
	for (size_t off = HEAD; off < len; off += ENT) {
		uint8_t *e = v + off;

		p = perm_get(e);
		switch (tag_at(e)) {
		case ACL_USER_OBJ:
			p &= m >> 6;
			m &= p << 6 | ~(uint32_t)S_IRWXU;
			le16_put(perm_at(e), (uint16_t)p);
			break;
		case ACL_OTHER:
			p &= m;
			m &= p | ~(uint32_t)S_IRWXO;
			le16_put(perm_at(e), (uint16_t)p);
			break;
		case ACL_GROUP_OBJ:
			break;
		default: /* named users and groups, the mask */
			extended = 1;
			break;
		}
	}
	/* the mask, or without one the owning group, limits and is limited by
	 * the group bits */
	p = perm_get(g) & (m >> 3 & 07);
	le16_put(perm_at(g), (uint16_t)p);
	m &= p << 3 | ~(uint32_t)S_IRWXG;
	*mode = m;
	return extended;
}

int acl_chmod(uint8_t *v, size_t len, uint32_t mode)
{
	uint8_t *g;

	if (acl_check(v, len) < 0 || !(g = group_class(v, len)))
		return -EINVAL;
	for (size_t off = HEAD; off < len; off += ENT) {
		uint8_t *e = v + off;

		if (tag_at(e) == ACL_USER_OBJ)
			le16_put(perm_at(e), (uint16_t)(mode >> 6 & 07));
		else if (tag_at(e) == ACL_OTHER)
			le16_put(perm_at(e), (uint16_t)(mode & 07));
	}
	le16_put(perm_at(g), (uint16_t)(mode >> 3 & 07));
	return 0;
}
