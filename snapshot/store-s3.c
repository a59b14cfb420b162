/* A store on an S3 bucket prefix: "s3://bucket/prefix" (struct store_ops over s3/).
 *
 * Object names map to keys under the prefix one to one.  S3 PUTs are atomic
 * (readers see the old object or the whole new one), which is the store's
 * contract already; large objects go up as multipart uploads inside s3_put.
 * STORE_PUT_NOREPLACE is a HEAD (servers that ignore conditional headers,
 * like s3rver, are still mostly covered) followed by a PUT with
 * If-None-Match: * (which S3, R2 and MinIO enforce atomically).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"
#include "snapshot/store.h"
#include "util/error.h"

#define STORE_S3_PREFIX_MAX 512

struct store_s3 {
	struct store base;
	struct s3_client *client;
	char prefix[STORE_S3_PREFIX_MAX]; /* "" or "some/prefix/" */
	char location[STORE_S3_PREFIX_MAX + 300];
};

static struct store_s3 *to_s3(struct store *s)
{
	return (struct store_s3 *)s;
}

/* prefix + name into key, refusing names that would escape the prefix. */
static int make_key(const struct store_s3 *s, const char *name, char *key, size_t size)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || name[0] == '/' || strstr(name, "//") || !strcmp(name, "..") ||
	    !strncmp(name, "../", 3) || strstr(name, "/../") ||
	    (n >= 3 && !strcmp(name + n - 3, "/..")))
		return hb_err(-EINVAL, "bad object name \"%s\"", name ? name : "");
	if ((size_t)snprintf(key, size, "%s%s", s->prefix, name) >= size ||
	    strlen(key) > S3_KEY_MAX)
		return hb_err(-ENAMETOOLONG, "object name too long: %.64s...", name);
	return 0;
}

static int s3s_get(struct store *st, const char *name, uint64_t off, uint64_t len,
		   struct buf *out)
{
	struct store_s3 *s = to_s3(st);
	char key[S3_KEY_MAX + 1];
	int r;

	if ((r = make_key(s, name, key, sizeof(key))) < 0)
		return r;
	return s3_get(s->client, key, off, len == STORE_GET_ALL ? S3_GET_ALL : len, out, NULL);
}

static int s3s_put(struct store *st, const char *name, const void *data, size_t len, int flags)
{
	struct store_s3 *s = to_s3(st);
	char key[S3_KEY_MAX + 1];
	int r;

	if ((r = make_key(s, name, key, sizeof(key))) < 0)
		return r;
	if (flags & STORE_PUT_NOREPLACE) {
		r = s3_head(s->client, key, NULL);
		if (r == 0)
			return hb_err(-EEXIST, "%s/%s already exists", s->location, name);
		if (r != -ENOENT)
			return r;
		hb_err_clear();
	}
	r = s3_put(s->client, key, data, len, (flags & STORE_PUT_NOREPLACE) ? S3_PUT_IF_NONE_MATCH : 0,
		   NULL, NULL);
	if (r == -EEXIST)
		return hb_err(-EEXIST, "%s/%s already exists", s->location, name);
	return r;
}

static int s3s_stat(struct store *st, const char *name, uint64_t *size)
{
	struct store_s3 *s = to_s3(st);
	struct s3_object_info info;
	char key[S3_KEY_MAX + 1];
	int r;

	if ((r = make_key(s, name, key, sizeof(key))) < 0)
		return r;
	if ((r = s3_head(s->client, key, &info)) < 0)
		return r;
	if (size) /* NULL: only whether it exists */
		*size = info.size;
	return 0;
}

struct list_ctx {
	size_t strip;
	int (*fn)(const char *name, uint64_t size, int64_t mtime_sec, void *arg);
	void *arg;
};

static int list_one(const char *key, const struct s3_object_info *info, void *arg)
{
	struct list_ctx *l = arg;

	if (strlen(key) <= l->strip)
		return 0; /* the prefix itself as a "directory marker" */
	return l->fn(key + l->strip, info->size, info->mtime_sec, l->arg);
}

static int s3s_list(struct store *st, const char *prefix,
		    int (*fn)(const char *name, uint64_t size, int64_t mtime_sec, void *arg),
		    void *arg)
{
	struct store_s3 *s = to_s3(st);
	struct list_ctx l = { .strip = strlen(s->prefix), .fn = fn, .arg = arg };
	char full[S3_KEY_MAX + 1];

	if ((size_t)snprintf(full, sizeof(full), "%s%s", s->prefix, prefix ? prefix : "") >=
	    sizeof(full))
		return hb_err(-ENAMETOOLONG, "list prefix too long");
	return s3_list(s->client, full, list_one, &l);
}

static int s3s_remove(struct store *st, const char *name)
{
	struct store_s3 *s = to_s3(st);
	char key[S3_KEY_MAX + 1];
	int r;

	if ((r = make_key(s, name, key, sizeof(key))) < 0)
		return r;
	/* S3 deletes a missing key "successfully": ask first, for -ENOENT. */
	if ((r = s3_head(s->client, key, NULL)) < 0)
		return r;
	return s3_delete(s->client, key);
}

static const char *s3s_location(struct store *st)
{
	return to_s3(st)->location;
}

static void s3s_free(struct store *st)
{
	struct store_s3 *s = to_s3(st);

	s3_client_free(s->client);
	free(s);
}

static const struct store_ops store_s3_ops = {
	.get = s3s_get,
	.put = s3s_put,
	.stat = s3s_stat,
	.list = s3s_list,
	.remove = s3s_remove,
	.location = s3s_location,
	.free = s3s_free,
};

/* Transfer figures (requests, retries, bytes) for --json output; s may be
 * the S3 store or a tiered store in front of it. */
int store_s3_stats(struct store *s, struct s3_stats *out)
{
	struct store *inner = store_tiered_remote(s);

	if (inner)
		s = inner;
	if (!s || s->ops != &store_s3_ops)
		return -EINVAL;
	s3_client_stats(to_s3(s)->client, out);
	return 0;
}

int store_s3_open(const char *location, int create, struct store **out)
{
	struct s3_config cfg;
	struct store_s3 *s;
	char bucket[256];
	const char *p, *slash;
	size_t blen, plen;
	int r;

	*out = NULL;
	if (!location || strncmp(location, "s3://", 5))
		return hb_err(-EINVAL, "\"%s\" is not an s3://bucket/prefix location",
			      location ? location : "");
	p = location + 5;
	slash = strchr(p, '/');
	blen = slash ? (size_t)(slash - p) : strlen(p);
	if (blen == 0 || blen >= sizeof(bucket))
		return hb_err(-EINVAL, "%s: missing or overlong bucket name", location);
	memcpy(bucket, p, blen);
	bucket[blen] = '\0';
	if ((r = s3_config_from_env(&cfg)) < 0)
		return hb_err_ctx(r, "%s", location);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &store_s3_ops;
	/* Prefix without leading, trailing or doubled slashes, then one '/'. */
	p = slash ? slash : "";
	while (*p == '/')
		p++;
	plen = strlen(p);
	while (plen && p[plen - 1] == '/')
		plen--;
	if (plen + 2 > sizeof(s->prefix) || memmem(p, plen, "//", 2)) {
		free(s);
		return hb_err(-EINVAL, "%s: bad prefix", location);
	}
	if (plen) {
		memcpy(s->prefix, p, plen);
		s->prefix[plen] = '/';
		s->prefix[plen + 1] = '\0';
	}
	snprintf(s->location, sizeof(s->location), "s3://%s%s%.*s", bucket, plen ? "/" : "",
		 (int)plen, p);
	r = s3_client_new(&cfg, bucket, &s->client);
	explicit_bzero(&cfg, sizeof(cfg));
	if (r < 0) {
		free(s);
		return hb_err_ctx(r, "%s", location);
	}
	/* To read, the first request tells a missing bucket or wrong keys as
	 * clearly as a check would (s3.c names both): the check would only
	 * add a round trip to every command, the restore's included. */
	if (create) {
		r = s3_bucket_check(s->client);
		if (r == -ENXIO)
			r = s3_bucket_create(s->client);
		if (r < 0) {
			s3s_free(&s->base);
			return r;
		}
	}
	*out = &s->base;
	return 0;
}
