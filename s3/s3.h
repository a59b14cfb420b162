/* S3 client on libcurl: objects in one bucket of AWS S3, Cloudflare R2 or MinIO.
 *
 * Knows nothing of snapshots: keys are byte strings, objects are byte arrays.
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4); every payload's real
 * SHA-256 travels in x-amz-content-sha256 so that the server refuses a body
 * that was damaged on the way.  A client is safe to share between threads:
 * it keeps a pool of curl handles (connections stay open between requests)
 * and runs at most `parallelism` transfers at once.
 *
 * Every call retries connection errors, 429/500/502/503/504, SlowDown,
 * RequestTimeout and a 200 whose body is an error, with exponential backoff
 * and jitter, within a time budget (deadline_ms); a server's Retry-After
 * (seconds or an HTTP-date) is the least wait, and one that would end past
 * the budget, or is over 5 minutes, fails the call at once, naming it.  A
 * transfer that moves no byte for stall_timeout_ms is abandoned, as is one
 * that trickles on past the budget.  Other 4xx answers are not retried.
 * Errors carry a hint where one helps (wrong keys, missing bucket, wrong
 * region - with the bucket's own when S3 names it -, clock skew, expired
 * token, untrusted TLS certificate).
 *
 * Return contract: 0 on success or a negative errno with one line recorded
 * through hb_err() (util/error.h):
 *   -ENOENT   no such key (404 NoSuchKey, HEAD 404)
 *   -ENXIO    no such bucket ("bucket B does not exist"; a HEAD's 404, which
 *             has no body to tell, is checked against the bucket once per
 *             client, until a request has succeeded)
 *   -EACCES   403 ("access denied to bucket B: check AWS_ACCESS_KEY_ID ...", naming
 *             the profile and its files for keys from them; or
 *             for AccessDenied, where the keys were accepted: "... not allowed to
 *             PUT K (AccessDenied: check the IAM or bucket policy)"); a HEAD's
 *             403, which has no body, names the policy when the keys can list
 *             the bucket (one request more), else the keys
 *   -EEXIST   412: a conditional PUT found the object (or another ETag); an
 *             object identical to the one being written counts as success
 *             (an earlier attempt wrote it and only its answer was lost)
 *   -EAGAIN   409: a concurrent conditional write won; try again
 *   -EBADMSG  a range past the end, a short or corrupt body
 *   -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -EIO  network / server failures
 *             that outlasted the retries
 *   -EINVAL   bad arguments or configuration; -EFBIG a body over its maximum
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define S3_GET_ALL UINT64_MAX
#define S3_ETAG_MAX 128
#define S3_KEY_MAX 1024 /* S3's own limit on key length, in bytes */

/* Defaults; each can be changed through the environment (see s3_config_from_env). */
#define S3_DEFAULT_PARALLELISM 16
#define S3_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define S3_DEFAULT_STALL_TIMEOUT_MS 30000
#define S3_DEFAULT_DEADLINE_MS 120000
#define S3_DEFAULT_MAX_RETRIES 6
#define S3_DEFAULT_RETRY_BASE_MS 100
#define S3_DEFAULT_PART_BYTES ((uint64_t)16 << 20)
#define S3_DEFAULT_MULTIPART_THRESHOLD ((uint64_t)64 << 20)
#define S3_MAX_PARTS 10000

struct s3_config {
	char access_key_id[256];
	char secret_access_key[256];
	char session_token[4096]; /* "" when not using temporary credentials */
	char region[64];          /* AWS_REGION or the profile's region, default us-east-1 */
	/* AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the profile's endpoint_url
	 * ("http://127.0.0.1:9000", "https://ACCOUNT.r2.cloudflarestorage.com");
	 * "" means AWS itself: https://BUCKET.s3.REGION.amazonaws.com. */
	char endpoint[512];
	int path_style;          /* 1: ENDPOINT/BUCKET/KEY (set for custom endpoints; a bucket
	                          * with dots always goes so: a wildcard certificate
	                          * covers one label) */
	char ca_bundle[512];     /* AWS_CA_BUNDLE: PEM file of trusted CAs; "" = the system's */
	/* Where the keys came from, for the hint on refused keys: "" for the
	 * environment, else 'profile "P" (CREDENTIALS_FILE, CONFIG_FILE)'. */
	char keys_source[2304];
	unsigned parallelism;    /* HIBERBOX_S3_PARALLEL: transfers at once */
	unsigned connect_timeout_ms; /* HIBERBOX_S3_CONNECT_TIMEOUT_MS */
	/* HIBERBOX_S3_TIMEOUT_MS: a transfer that moves no byte for this long is
	 * abandoned (curl's low-speed limit; whole seconds, rounded up). */
	unsigned stall_timeout_ms;
	/* HIBERBOX_S3_DEADLINE_MS: no retry starts after one call has run this long,
	 * so a call against a dead server fails within about deadline_ms +
	 * stall_timeout_ms (+ connect_timeout_ms).  An attempt still running
	 * then goes on only while it averages 4 KiB/s (a server trickling
	 * bytes never stalls), or while the client's transfers together do
	 * and it gets its part of them (reads sharing a slow link). */
	unsigned deadline_ms;
	unsigned max_retries;    /* HIBERBOX_S3_RETRIES */
	unsigned retry_base_ms;  /* HIBERBOX_S3_RETRY_BASE_MS: first backoff */
	uint64_t part_bytes;     /* HIBERBOX_S3_PART_BYTES: multipart part size */
	uint64_t multipart_threshold; /* HIBERBOX_S3_MULTIPART_THRESHOLD */
};

/* HIBERBOX_S3_TRACE=FILE ("-": stderr) is read by s3_request_run itself:
 * one line per request (pid, start relative to the first request, duration,
 * method, key, range, status), appended with one write() each. */

/* Fill cfg from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_REGION (or AWS_DEFAULT_REGION), AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL),
 * AWS_CA_BUNDLE, HIBERBOX_S3_PATH_STYLE and the HIBERBOX_S3_* tunables above.
 * What the environment does not set comes from the AWS CLI's files, as
 * `aws configure` writes them: profile AWS_PROFILE (default "default") of
 * AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials, [NAME]) and AWS_CONFIG_FILE
 * (~/.aws/config, [profile NAME] or [default]); keys aws_access_key_id,
 * aws_secret_access_key, aws_session_token, region, endpoint_url, from either
 * file (the credentials file wins), in their simple form (a `services`
 * section and indented sub-settings are skipped).  The keys are a pair: both
 * from the environment (the token too), or both from the profile.  An empty
 * variable counts as unset.
 * @return 0, or -EINVAL with a message (missing credentials, bad number, a
 *         profile named by AWS_PROFILE in neither file: the message names
 *         both files), -EBADMSG for a malformed file ("FILE line N: ...",
 *         never a value), -ENAMETOOLONG, or a file's read error. */
int s3_config_from_env(struct s3_config *cfg);
/* The defaults with no credentials and no endpoint (for tests). */
void s3_config_defaults(struct s3_config *cfg);

struct s3_client;

/* @return 0 or -EINVAL (bad bucket name, bad endpoint) / -ENOMEM. */
int s3_client_new(const struct s3_config *cfg, const char *bucket, struct s3_client **out);
/* NULL is fine. */
void s3_client_free(struct s3_client *c);
const char *s3_client_bucket(const struct s3_client *c);

struct s3_object_info {
	uint64_t size;
	int64_t mtime_sec; /* Last-Modified, seconds since the epoch */
	char etag[S3_ETAG_MAX]; /* with its quotes, as the server sent it */
};

/* Read len bytes at off (S3_GET_ALL: to the end) into out, replacing its
 * contents; out->max bounds the size.  Fewer bytes than asked for is
 * -EBADMSG.  A whole single-part object is checked against its ETag (MD5).
 * info may be NULL. */
int s3_get(struct s3_client *c, const char *key, uint64_t off, uint64_t len, struct buf *out,
	   struct s3_object_info *info);

/* Many GETs, up to parallelism at once.  @return 0 if all succeeded, else the
 * first failure (by index) with its message; each request's own result is in
 * result. */
struct s3_get_request {
	const char *key;
	uint64_t off, len;
	struct buf *out;
	int result;
};
int s3_get_many(struct s3_client *c, struct s3_get_request *reqs, size_t n);

#define S3_PUT_IF_NONE_MATCH 0x1 /* If-None-Match: *  -> -EEXIST if the key exists */

/* Write an object.  Above cfg.multipart_threshold it is uploaded in parts of
 * cfg.part_bytes, in parallel.  if_match: an ETag the current object must
 * have (-EEXIST otherwise), or NULL.  etag_out: S3_ETAG_MAX bytes or NULL. */
int s3_put(struct s3_client *c, const char *key, const void *data, size_t len, int flags,
	   const char *if_match, char *etag_out);

/* @return 0 with info filled, or -ENOENT. */
int s3_head(struct s3_client *c, const char *key, struct s3_object_info *info);

/* Delete an object.  S3 answers success for a missing key too (store-s3
 * HEADs first to report -ENOENT). */
int s3_delete(struct s3_client *c, const char *key);

/* Call fn for every key that starts with prefix, in key order, following
 * every page of ListObjectsV2.  A non-zero return from fn stops the walk
 * and is returned. */
typedef int (*s3_list_fn)(const char *key, const struct s3_object_info *info, void *arg);
int s3_list(struct s3_client *c, const char *prefix, s3_list_fn fn, void *arg);

/* Check that the bucket exists and the credentials open it (one request).
 * @return 0, -ENXIO, -EACCES or a network error. */
int s3_bucket_check(struct s3_client *c);
/* Create the bucket (tests and first setup) in cfg.region (sent as its
 * LocationConstraint outside us-east-1, as AWS wants).  An existing bucket
 * owned by us is fine. */
int s3_bucket_create(struct s3_client *c);

/* Counters since s3_client_new (for --json output and tests). */
struct s3_stats {
	uint64_t requests;   /* HTTP requests sent, retries included */
	uint64_t retries;
	uint64_t connections; /* new connections opened (the rest reused one) */
	uint64_t bytes_sent;
	uint64_t bytes_received;
};
void s3_client_stats(struct s3_client *c, struct s3_stats *out);
