/* Pick the store backend for a location string.
 *
 * A remote repository always sits behind the local cache under
 * $HIBERBOX_HOME/cache (size: $HIBERBOX_CACHE_SIZE, e.g. "20G"; default a
 * tenth of the free disk), so that a wake reads each chunk from the network
 * once and a second wake on the same host reads none.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapshot.h"
#include "snapshot/store.h"
#include "util/error.h"
#include "util/size.h"

#ifdef HIBERBOX_HAVE_S3
static int open_remote(const char *location, int create, struct store **out)
{
	const char *size_env = getenv("HIBERBOX_CACHE_SIZE");
	char home[PATH_MAX], cache[PATH_MAX + 16];
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
	snprintf(cache, sizeof(cache), "%s/cache", home);
	return store_tiered_open(remote, cache, cache_bytes, out);
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
