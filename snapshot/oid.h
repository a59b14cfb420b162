/* Object ids: 128-bit names of chunks, packs and snapshots.
 *
 * A chunk's id is XXH3-128 of its plain bytes keyed with the repository's
 * secret (so nobody without the key can craft colliding chunks); packs and
 * manifests are named by the keyed hash of their stored bytes.  Shown as 32
 * lower-case hex digits; users may abbreviate a snapshot id to a unique prefix.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OID_BYTES 16
#define OID_HEX_BYTES (2 * OID_BYTES + 1) /* with the NUL */
#define OID_SHORT_HEX 12                  /* digits shown in listings */
#define REPO_KEY_BYTES 192                /* XXH3 custom secret size */

struct oid {
	uint8_t b[OID_BYTES];
};

struct repo_key {
	uint8_t secret[REPO_KEY_BYTES];
};

_Static_assert(sizeof(struct oid) == OID_BYTES, "struct oid must be packed");

/* Keyed XXH3-128 of data. */
void oid_compute(const struct repo_key *key, const void *data, size_t len, struct oid *out);
/* 32 hex digits + NUL into out; returns out. */
char *oid_format(const struct oid *id, char out[OID_HEX_BYTES]);
/* Parse exactly 32 hex digits.  @return 0 or -EINVAL. */
int oid_parse(const char *hex, struct oid *out);
static inline bool oid_equal(const struct oid *a, const struct oid *b)
{
	for (int i = 0; i < OID_BYTES; i++)
		if (a->b[i] != b->b[i])
			return false;
	return true;
}
/* Bytewise order, for sorting and binary search. */
static inline int oid_cmp(const struct oid *a, const struct oid *b)
{
	for (int i = 0; i < OID_BYTES; i++)
		if (a->b[i] != b->b[i])
			return a->b[i] < b->b[i] ? -1 : 1;
	return 0;
}
/* The all-zero id marks a hole (a run of zero bytes) in a file's chunk list. */
static inline bool oid_is_zero(const struct oid *a)
{
	for (int i = 0; i < OID_BYTES; i++)
		if (a->b[i])
			return false;
	return true;
}
/* 64 well-mixed bits of an id, for hash tables. */
static inline uint64_t oid_hash64(const struct oid *a)
{
	uint64_t h = 0;

	for (int i = 0; i < 8; i++)
		h |= (uint64_t)a->b[i] << (8 * i);
	return h;
}
