/* Private parts of the S3 client shared by s3.c, s3-xml.c and s3-multi.c. */
#pragma once
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>

#include "s3/s3.h"

#define S3_ERROR_BODY_MAX (64 * 1024)   /* an error document is small; keep the head */
#define S3_LIST_PAGE_MAX (32u << 20)    /* one ListObjectsV2 page of 1000 keys */
#define S3_SMALL_REPLY_MAX (4u << 20)   /* create/complete multipart replies */
#define S3_URL_MAX 8192
#define S3_QUERY_MAX 4096
/* Bytes per second an attempt must have averaged once it runs past its
 * call's deadline plus a stall window (a trickling server never stalls).
 * An attempt slower than that is still alive while the client's transfers
 * as a whole moved that much in its time (they share one link) and it got
 * at least 1/S3_LATE_SHARE_DIVISOR of its fair share (1/parallelism) of it:
 * a dozen reads on a slow link wait, a trickle beside fast transfers does
 * not. */
#define S3_MIN_LATE_RATE (4u * 1024)
#define S3_LATE_SHARE_DIVISOR 4u
/* The longest Retry-After a call waits out (within its deadline too): a
 * server asking for more is not coming back soon enough to be waited for. */
#define S3_RETRY_AFTER_MAX_MS (5u * 60 * 1000)

struct s3_client {
	struct s3_config cfg;
	char bucket[256];
	char base_url[1024]; /* up to and with the bucket, no trailing slash */
	char sigv4[128];     /* "aws:amz:REGION:s3" */
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	/* The pool: at most cfg.parallelism handles exist; callers wait for one. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	CURL **idle;
	unsigned nidle, ncreated;
	uint64_t n_requests, n_retries, n_connects, n_sent, n_received; /* atomics */
	uint64_t n_moving; /* atomic: bytes moved either way by all attempts, as they move */
	/* Atomic: some request on the bucket succeeded, so it exists (a HEAD's
	 * 404 has no body to tell a missing key from a missing bucket). */
	int bucket_seen;
};

/* One S3 operation: described by the caller, run with retries by s3_request_run. */
struct s3_request {
	const char *method; /* GET HEAD PUT POST DELETE */
	const char *key;    /* NULL: the bucket itself */
	const char *query;  /* canonical: sorted by name, every value URI-encoded */
	const void *body;
	size_t body_len;
	int has_range;
	uint64_t range_off, range_len; /* range_len S3_GET_ALL: to the end */
	const char *content_type;
	int if_none_match_any;
	const char *if_match;
	int body_may_hold_error; /* a 200 can carry <Error> (CompleteMultipartUpload) */
	struct buf *out;         /* the 2xx body; NULL: discarded */
	/* Results of the last attempt. */
	unsigned attempts;
	long status;
	struct s3_object_info info; /* etag, Last-Modified, Content-Length */
	uint64_t content_range_total; /* UINT64_MAX if not sent */
	int64_t retry_after_ms; /* the answer's Retry-After, from now; -1 if none */
};

/* Run one request, retrying what may succeed on a second try.
 * @return 0 (2xx) or a negative errno with a message. */
int s3_request_run(struct s3_client *c, struct s3_request *rq);


/* Find the text of the first <tag>...</tag> in [p, end).  The text is
 * returned raw (entities not decoded).  @return 1 found, 0 not. */
int s3_xml_find(const char *p, const char *end, const char *tag, const char **val, size_t *vlen);
/* Decode the five XML entities and numeric references into out (NUL-ended).
 * @return length, or -EBADMSG on a bad reference / -ENAMETOOLONG. */
int s3_xml_text(const char *val, size_t vlen, char *out, size_t outsz);
/* Parse one ListObjectsV2 page: call fn for each <Contents> (key decoded into
 * keybuf, S3_KEY_MAX + 1 bytes).  *more: another page follows, its token in
 * token (tokensz bytes).  A non-zero return of fn stops: it is put in
 * *fn_ret and 0 returned.  @return 0 or -EBADMSG (with a message) for any
 * page that is not a well-formed listing. */
int s3_list_parse_page(const char *page, size_t len, s3_list_fn fn, void *arg, int *fn_ret,
		       char *keybuf, char *token, size_t tokensz, int *more);
/* Parse "2024-01-31T12:34:56.000Z".  @return 0 or -EBADMSG. */
int s3_parse_iso8601(const char *s, size_t len, int64_t *sec);

/* Run fn(i, arg) for i in [0, n) on up to parallelism threads.  After the
 * first failure no new job starts (unless keep_going).  results[i] gets each
 * return (jobs never started get -ECANCELED).  @return 0 or the failure of
 * the lowest index, with its message. */
int s3_parallel(struct s3_client *c, size_t n, int (*fn)(size_t i, void *arg), void *arg,
		int keep_going, int *results);

/* After a CompleteMultipartUpload of data (in nparts parts with these
 * ETags) answered NoSuchUpload on its attempts-th try: whether found (a HEAD
 * of the key) is the object an earlier try completed, its answer lost.  Only
 * for a retried completion, of the same size, and with an ETag (when the
 * server sends one) that is the multipart ETag of our parts or the MD5 of
 * data.  @return 1 ours, 0 not. */
int s3_multipart_is_ours(unsigned attempts, const void *data, size_t len,
			 const char (*part_etags)[S3_ETAG_MAX], size_t nparts,
			 const struct s3_object_info *found);

/* Multipart upload of data (s3-multi.c). */
int s3_put_multipart(struct s3_client *c, const char *key, const void *data, size_t len,
		     int flags, const char *if_match, char *etag_out);
