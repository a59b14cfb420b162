/* POSIX ACLs in their xattr form (system.posix_acl_access/_default: a
 * little-endian version 2 header, then {tag, perm, id} entries), and the
 * rules that keep them and a file's mode in step, as ext4 keeps them: the
 * kernel leaves all of it to a FUSE filesystem that takes FUSE_POSIX_ACL.
 * Values are changed in place; ids are never looked at, so stored and
 * presented (shifted) values work alike. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACL_XATTR_ACCESS "system.posix_acl_access"
#define ACL_XATTR_DEFAULT "system.posix_acl_default"

/* Whether v is a well-formed ACL value (header, whole entries, known tags). */
int acl_check(const uint8_t *v, size_t len);

/* Whether v is an ACL of no entries (a header alone): the kernel and ext4
 * take it for no ACL at all (a lower tree may hold one, the kernel never
 * sets one). */
bool acl_empty(const uint8_t *v, size_t len);

/* The permission bits the ACL v stands for, put into *mode (other bits of
 * *mode kept): owner, group (the mask's when there is one) and other.
 * Returns 0 when v says nothing the mode cannot (only the three base
 * entries: the xattr is then dropped), 1 when it does, -EINVAL when v is
 * malformed.  The kernel's posix_acl_equiv_mode. */
int acl_equiv_mode(const uint8_t *v, size_t len, uint32_t *mode);

/* A new entry's access ACL from its directory's default ACL v (a copy,
 * changed in place) and the mode the caller asked for: the entries are
 * limited by the mode and the mode by the entries.  Returns 1 when the
 * result needs keeping as an ACL, 0 when the mode says it all, -EINVAL when
 * v is malformed.  The kernel's posix_acl_create_masq. */
int acl_create_masq(uint8_t *v, size_t len, uint32_t *mode);

/* A chmod to mode: the owner, other and mask (group without a mask)
 * entries of the access ACL v take its bits.  0, or -EINVAL when v is
 * malformed.  The kernel's __posix_acl_chmod. */
int acl_chmod(uint8_t *v, size_t len, uint32_t mode);
