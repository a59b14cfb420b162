/* SHA-256 and MD5 through libcrypto, loaded the first time one is needed.
 *
 * Only the S3 client hashes (payload checksums, ETags), and libcurl loads
 * OpenSSL for TLS then anyway; linked up front, libcrypto cost every process
 * of the binary ~14 ms of start-up with a cold page cache (a CLI command, a
 * mount's fs process), most of which never talk to a bucket. */
#include <errno.h>
#include <stdbool.h>

#include "util/digest.h"
#include "util/dl-bind.h"
#include "util/error.h"

struct evp_md; /* libcrypto's EVP_MD, opaque here */

static struct {
	int (*digest)(const void *, size_t, unsigned char *, unsigned int *, const struct evp_md *,
		      void *);
	const struct evp_md *(*sha256)(void);
	const struct evp_md *(*md5)(void);
} fn;

static const struct dl_sym syms[] = {
	{ (void **)&fn.digest, "EVP_Digest" },
	{ (void **)&fn.sha256, "EVP_sha256" },
	{ (void **)&fn.md5, "EVP_md5" },
};
DL_LAZY(libcrypto, "libcrypto.so.3", syms);

static int run(const void *data, size_t len, unsigned char *out, bool sha256)
{
	unsigned int n = 0;

	if (!dl_lazy_ready(&libcrypto))
		return hb_err(-ENOSYS, "cannot hash: %s", libcrypto.error);
	if (!fn.digest(data ? data : "", len, out, &n, sha256 ? fn.sha256() : fn.md5(), NULL) ||
	    n != (sha256 ? 32u : 16u))
		return hb_err(-EIO, "libcrypto failed to hash %zu bytes", len);
	return 0;
}

int digest_sha256(const void *data, size_t len, unsigned char out[32])
{
	return run(data, len, out, true);
}

int digest_md5(const void *data, size_t len, unsigned char out[16])
{
	return run(data, len, out, false);
}
