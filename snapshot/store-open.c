/* Pick the store backend for a location string.
 *
 * A remote repository always sits behind a local cache, one directory per
 * remote: $HIBERBOX_HOME/cache/<16 hex digits of a hash of the location and
 * $AWS_ENDPOINT_URL> (size: $HIBERBOX_CACHE_SIZE per directory, e.g. "20G";
 * default a tenth of the free disk), so that a wake reads each chunk from
 * the network once and a second wake on the same host reads none, and so
 * that repositories never evict each other's caches.
 */
#define XXH_INLINE_ALL
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "snapshot/repo-int.h"
#include "snapshot/snapshot.h"
#include "snapshot/store.h"
#include "util/error.h"
#include "util/size.h"

#ifdef HIBERBOX_HAVE_S3
/* top/<hash>: of the normalised location ("s3://b/p", whatever slashes were
 * typed) and the endpoint, since bucket names are unique per provider
 * account (R2, MinIO), not across endpoints. */
static void cache_dir_name(const char *top, const char *location, char *out, size_t size)
{
	const char *endpoint = getenv("AWS_ENDPOINT_URL");
	size_t elen = endpoint ? strlen(endpoint) : 0;
	XXH3_state_t st;

	while (elen && endpoint[elen - 1] == '/')
		elen--;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, location, strlen(location));
	if (elen) {
		XXH3_64bits_update(&st, " ", 1);
		XXH3_64bits_update(&st, endpoint, elen);
	}
	snprintf(out, size, "%s/%016" PRIx64, top, XXH3_64bits_digest(&st));
}

static int open_remote(const char *location, int create, struct store **out)
{
	const char *size_env = getenv("HIBERBOX_CACHE_SIZE");
	char home[PATH_MAX], top[PATH_MAX + 16], cache[PATH_MAX + 48];
	uint64_t cache_bytes = 0;
	struct store *remote;
	int r;

	if (size_env && size_env[0] && size_parse(size_env, &cache_bytes) < 0)
		return hb_err(-EINVAL, "HIBERBOX_CACHE_SIZE=%s: not a size (e.g. 512M, 20G)", size_env);
	r = repo_default_home(home, sizeof(home));
	if (r < 0)
		return r;
	r = store_s3_open(location, create, &remote);
	if (r < 0)
		return r;
	snprintf(top, sizeof(top), "%s/cache", home);
	cache_dir_name(top, store_location(remote), cache, sizeof(cache));
	/* Earlier versions shared $HIBERBOX_HOME/cache itself between all
	 * remotes: its files go once no older process is using them. */
	store_tiered_remove_unused(top);
	r = store_tiered_open(remote, cache, cache_bytes, out);
	/* The cache is keyed by location, not by repository: init asks whether
	 * a repository is there, and after one was deleted at this location
	 * the cache would still say yes (and serve its config and secret). */
	if (r == 0 && create)
		store_invalidate(*out, REPO_CONFIG_NAME);
	return r;
}
#endif

int store_open_location(const char *location, int create, struct store **out)
{
	if (strncmp(location, "s3://", 5) == 0) {
#ifdef HIBERBOX_HAVE_S3
		return open_remote(location, create, out);
#else
		(void)create;
		(void)out;
		return hb_err(-EPROTONOSUPPORT, "%s: this hiberbox was built without S3 support",
			      location);
#endif
	}
	if (strstr(location, "://"))
		return hb_err(-EINVAL, "%s: unknown repository scheme (use a path or s3://bucket/prefix)",
			      location);
	return store_local_open(location, create, out);
}
