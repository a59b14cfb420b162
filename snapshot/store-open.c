/* Pick the store backend for a location string. */
#include <errno.h>
#include <string.h>

#include "snapshot/store.h"
#include "util/error.h"

int store_open_location(const char *location, int create, struct store **out)
{
	if (strncmp(location, "s3://", 5) == 0) {
#ifdef HIBERBOX_HAVE_S3
		return store_s3_open(location, create, out);
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
