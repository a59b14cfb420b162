/* Object ids: keyed XXH3-128, formatted as 32 lower-case hex digits.
 *
 * The 128-bit hash is stored in XXH3's canonical (big-endian) byte order so
 * that an id's bytes, its hex form and its on-disk form never depend on the
 * host's endianness.
 */
#include "snapshot/oid.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "util/fileio.h"

_Static_assert(REPO_KEY_BYTES >= XXH3_SECRET_SIZE_MIN, "repo key too short for XXH3");
_Static_assert(sizeof(XXH128_canonical_t) == OID_BYTES, "XXH128 canonical form is 16 bytes");

void oid_compute(const struct repo_key *key, const void *data, size_t len, struct oid *out)
{
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, key->secret, sizeof(key->secret));
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(out->b, c.digest, OID_BYTES);
}

char *oid_format(const struct oid *id, char out[OID_HEX_BYTES])
{
	hex_format(id->b, OID_BYTES, out);
	return out;
}

int oid_parse(const char *hex, struct oid *out)
{
	struct oid tmp;

	if (!hex || strnlen(hex, 2 * OID_BYTES + 1) != 2 * OID_BYTES)
		return -EINVAL;
	if (hex_parse(hex, tmp.b, OID_BYTES) < 0)
		return -EINVAL;
	*out = tmp;
	return 0;
}
