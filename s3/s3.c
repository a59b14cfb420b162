/* S3 client core: configuration, the curl handle pool, one request with its
 * retries, the single place where curl and HTTP outcomes become errnos, and
 * the simple object operations (GET, PUT, HEAD, DELETE, list).
 *
 * Why a pool and not curl multi: callers (FUSE threads, restore workers) are
 * already threads that want to block on one object; a handle per in-flight
 * request, handed back after use, keeps its connection open for the next
 * request and bounds the number of transfers at once.  DNS answers and TLS
 * sessions are shared between the handles through one CURLSH.
 */
#include "s3/s3-int.h"

#include <stdbool.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "s3/aws-profile.h"
#include "util/curl-lazy.h"
#include "util/digest.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/uri.h"

static const char EMPTY_SHA256[] =
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- configuration ---- */

void s3_config_defaults(struct s3_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->region, sizeof(cfg->region), "us-east-1");
	cfg->parallelism = S3_DEFAULT_PARALLELISM;
	cfg->connect_timeout_ms = S3_DEFAULT_CONNECT_TIMEOUT_MS;
	cfg->stall_timeout_ms = S3_DEFAULT_STALL_TIMEOUT_MS;
	cfg->deadline_ms = S3_DEFAULT_DEADLINE_MS;
	cfg->max_retries = S3_DEFAULT_MAX_RETRIES;
	cfg->retry_base_ms = S3_DEFAULT_RETRY_BASE_MS;
	cfg->part_bytes = S3_DEFAULT_PART_BYTES;
	cfg->multipart_threshold = S3_DEFAULT_MULTIPART_THRESHOLD;
}

static int env_string(const char *name, char *dst, size_t size)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return 0;
	if (strlen(v) >= size)
		return hb_err(-EINVAL, "%s is too long (at most %zu bytes)", name, size - 1);
	memcpy(dst, v, strlen(v) + 1);
	return 1;
}

static int env_u64(const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long x;

	if (!v || !*v)
		return 0;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end || x < min || x > max || *v == '-')
		return hb_err(-EINVAL, "%s=%s: expected a number from %" PRIu64 " to %" PRIu64,
			      name, v, min, max);
	*out = x;
	return 1;
}

static int env_uint(const char *name, uint64_t min, uint64_t max, unsigned *out)
{
	uint64_t x;
	int r = env_u64(name, min, max, &x);

	if (r > 0)
		*out = (unsigned)x;
	return r;
}

/* The keys are a pair: from the environment when it has both (the session
 * token then only from there too, as the AWS CLI does), else from the
 * profile; one of them alone in the environment is a mistake to name, not
 * to patch with the other from a file. */
static int credentials_from(struct s3_config *cfg, const struct aws_profile *p)
{
	const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
	bool have_id = id && *id, have_secret = secret && *secret;
	int r;

	if (have_id != have_secret)
		return hb_err(-EINVAL, "%s is set but %s is not (set both, or neither to use "
				       "profile \"%s\")",
			      have_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
			      have_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID", p->name);
	if (have_id) {
		if ((r = env_string("AWS_ACCESS_KEY_ID", cfg->access_key_id,
				    sizeof(cfg->access_key_id))) < 0 ||
		    (r = env_string("AWS_SECRET_ACCESS_KEY", cfg->secret_access_key,
				    sizeof(cfg->secret_access_key))) < 0 ||
		    (r = env_string("AWS_SESSION_TOKEN", cfg->session_token,
				    sizeof(cfg->session_token))) < 0)
			return r;
		return 0;
	}
	if (!p->access_key_id[0] || !p->secret_access_key[0])
		return hb_err(-EINVAL, "S3 needs credentials: set AWS_ACCESS_KEY_ID and "
				       "AWS_SECRET_ACCESS_KEY, or aws_access_key_id and "
				       "aws_secret_access_key in profile \"%s\" of %s (aws configure)",
			      p->name, p->credentials_file[0] ? p->credentials_file : "~/.aws/credentials");
	snprintf(cfg->keys_source, sizeof(cfg->keys_source), "profile \"%s\" (%s, %s)", p->name,
		 p->credentials_file, p->config_file);
	memcpy(cfg->access_key_id, p->access_key_id, sizeof(cfg->access_key_id));
	memcpy(cfg->secret_access_key, p->secret_access_key, sizeof(cfg->secret_access_key));
	memcpy(cfg->session_token, p->session_token, sizeof(cfg->session_token));
	return 0;
}

int s3_config_from_env(struct s3_config *cfg)
{
	struct aws_profile *profile;
	unsigned path_style = 0;
	int r, has_ps;

	s3_config_defaults(cfg);
	/* 6 KiB: off the stack of the threads that open stores. */
	profile = calloc(1, sizeof(*profile));
	if (!profile)
		return -ENOMEM;
	r = aws_profile_load(profile);
	if (r == 0)
		r = credentials_from(cfg, profile);
	if (r == 0) {
		if (profile->region[0])
			memcpy(cfg->region, profile->region, sizeof(cfg->region));
		memcpy(cfg->endpoint, profile->endpoint, sizeof(cfg->endpoint));
	}
	explicit_bzero(profile, sizeof(*profile));
	free(profile);
	if (r < 0)
		return r;
	/* The environment wins over the profile; the S3-only endpoint over the
	 * one for every service. */
	if ((r = env_string("AWS_DEFAULT_REGION", cfg->region, sizeof(cfg->region))) < 0 ||
	    (r = env_string("AWS_REGION", cfg->region, sizeof(cfg->region))) < 0 ||
	    (r = env_string("AWS_ENDPOINT_URL", cfg->endpoint, sizeof(cfg->endpoint))) < 0 ||
	    (r = env_string("AWS_ENDPOINT_URL_S3", cfg->endpoint, sizeof(cfg->endpoint))) < 0 ||
	    (r = env_string("AWS_CA_BUNDLE", cfg->ca_bundle, sizeof(cfg->ca_bundle))) < 0)
		return r;
	cfg->path_style = cfg->endpoint[0] != '\0';
	if ((has_ps = env_uint("HIBERBOX_S3_PATH_STYLE", 0, 1, &path_style)) < 0)
		return has_ps;
	if (has_ps)
		cfg->path_style = (int)path_style;
	if ((r = env_uint("HIBERBOX_S3_PARALLEL", 1, 256, &cfg->parallelism)) < 0 ||
	    (r = env_uint("HIBERBOX_S3_CONNECT_TIMEOUT_MS", 1, 600000, &cfg->connect_timeout_ms)) < 0 ||
	    (r = env_uint("HIBERBOX_S3_TIMEOUT_MS", 1, 3600000, &cfg->stall_timeout_ms)) < 0 ||
	    (r = env_uint("HIBERBOX_S3_DEADLINE_MS", 1, 86400000, &cfg->deadline_ms)) < 0 ||
	    (r = env_uint("HIBERBOX_S3_RETRIES", 0, 100, &cfg->max_retries)) < 0 ||
	    (r = env_uint("HIBERBOX_S3_RETRY_BASE_MS", 1, 60000, &cfg->retry_base_ms)) < 0 ||
	    /* S3 refuses parts under 5 MiB (but the last). */
	    (r = env_u64("HIBERBOX_S3_PART_BYTES", (uint64_t)5 << 20, (uint64_t)5 << 30,
			 &cfg->part_bytes)) < 0 ||
	    (r = env_u64("HIBERBOX_S3_MULTIPART_THRESHOLD", 1, (uint64_t)5 << 30,
			 &cfg->multipart_threshold)) < 0)
		return r;
	return 0;
}

/* ---- the client and its handle pool ---- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct s3_client *c = arg;

	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
	struct s3_client *c = arg;

	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

static int bucket_name_ok(const char *b)
{
	size_t n = strlen(b);

	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= 'A' && b[i] <= 'Z') ||
		      (b[i] >= '0' && b[i] <= '9') || b[i] == '.' || b[i] == '-' || b[i] == '_'))
			return 0;
	return 1;
}

int s3_client_new(const struct s3_config *cfg, const char *bucket, struct s3_client **out)
{
	struct s3_client *c;
	const char *ep = cfg->endpoint;
	size_t eplen = strlen(ep);
	int n;

	*out = NULL;
	if (curl_lazy_error())
		return hb_err(-ENOPKG, "S3 needs libcurl: %s", curl_lazy_error());
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return hb_err(-ENOMEM, "curl_global_init: %s", curl_easy_strerror(curl_init_result));
	if (!bucket_name_ok(bucket))
		return hb_err(-EINVAL, "bad S3 bucket name \"%s\"", bucket);
	if (!cfg->region[0] || strspn(cfg->region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
				       strlen(cfg->region))
		return hb_err(-EINVAL, "bad AWS_REGION \"%s\"", cfg->region);
	while (eplen > 0 && ep[eplen - 1] == '/')
		eplen--;
	if (eplen && strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8))
		return hb_err(-EINVAL, "AWS_ENDPOINT_URL \"%s\" must start with http:// or https://",
			      ep);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	if (c->cfg.parallelism == 0)
		c->cfg.parallelism = 1;
	if (c->cfg.part_bytes == 0)
		c->cfg.part_bytes = S3_DEFAULT_PART_BYTES;
	snprintf(c->bucket, sizeof(c->bucket), "%s", bucket);
	snprintf(c->sigv4, sizeof(c->sigv4), "aws:amz:%s:s3", cfg->region);
	/* Virtual-hosted style puts the bucket in the TLS name: not possible
	 * with dots in it (a wildcard certificate covers one label), so those
	 * go path-style too, on any endpoint. */
	if (eplen && (cfg->path_style || strchr(bucket, '.')))
		n = snprintf(c->base_url, sizeof(c->base_url), "%.*s/%s", (int)eplen, ep, bucket);
	else if (eplen) {
		const char *host = strstr(ep, "://") + 3;
		n = snprintf(c->base_url, sizeof(c->base_url), "%.*s%s.%.*s", (int)(host - ep), ep,
			     bucket, (int)(eplen - (size_t)(host - ep)), host);
	} else if (cfg->path_style || strchr(bucket, '.'))
		n = snprintf(c->base_url, sizeof(c->base_url), "https://s3.%s.amazonaws.com/%s",
			     cfg->region, bucket);
	else
		n = snprintf(c->base_url, sizeof(c->base_url), "https://%s.s3.%s.amazonaws.com",
			     bucket, cfg->region);
	if (n < 0 || (size_t)n >= sizeof(c->base_url)) {
		free(c);
		return hb_err(-EINVAL, "S3 endpoint URL too long");
	}
	c->idle = calloc(c->cfg.parallelism, sizeof(*c->idle));
	c->share = curl_share_init();
	if (!c->idle || !c->share) {
		if (c->share)
			curl_share_cleanup(c->share);
		free(c->idle);
		free(c);
		return -ENOMEM;
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	/* Waits for a free handle end at a monotonic deadline. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->pool_cond, &ca);
	pthread_condattr_destroy(&ca);
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = c;
	return 0;
}

void s3_client_free(struct s3_client *c)
{
	if (!c)
		return;
	/* Easy handles first: they still point at the share. */
	for (unsigned i = 0; i < c->nidle; i++)
		curl_easy_cleanup(c->idle[i]);
	curl_share_cleanup(c->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_cond_destroy(&c->pool_cond);
	free(c->idle);
	explicit_bzero(&c->cfg, sizeof(c->cfg));
	free(c);
}

const char *s3_client_bucket(const struct s3_client *c)
{
	return c->bucket;
}

void s3_client_stats(struct s3_client *c, struct s3_stats *out)
{
	out->requests = __atomic_load_n(&c->n_requests, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&c->n_retries, __ATOMIC_RELAXED);
	out->connections = __atomic_load_n(&c->n_connects, __ATOMIC_RELAXED);
	out->bytes_sent = __atomic_load_n(&c->n_sent, __ATOMIC_RELAXED);
	out->bytes_received = __atomic_load_n(&c->n_received, __ATOMIC_RELAXED);
}

/* A handle, waiting at most until deadline_ns (monotonic) for one to be free.
 * @return 0, -ETIMEDOUT or -ENOMEM. */
static int pool_get(struct s3_client *c, uint64_t deadline_ns, CURL **out)
{
	CURL *h = NULL;
	int timed_out = 0;

	pthread_mutex_lock(&c->pool_lock);
	while (c->nidle == 0 && c->ncreated >= c->cfg.parallelism && !timed_out) {
		struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000),
				       .tv_nsec = (long)(deadline_ns % 1000000000) };
		timed_out = pthread_cond_timedwait(&c->pool_cond, &c->pool_lock, &ts) == ETIMEDOUT &&
			    c->nidle == 0;
	}
	if (c->nidle > 0) {
		h = c->idle[--c->nidle];
	} else if (!timed_out) {
		h = curl_easy_init();
		if (h)
			c->ncreated++;
	}
	pthread_mutex_unlock(&c->pool_lock);
	*out = h;
	if (!h)
		return timed_out ? -ETIMEDOUT : -ENOMEM;
	return 0;
}

static void pool_put(struct s3_client *c, CURL *h)
{
	pthread_mutex_lock(&c->pool_lock);
	c->idle[c->nidle++] = h;
	pthread_cond_signal(&c->pool_cond);
	pthread_mutex_unlock(&c->pool_lock);
}


static int sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	int r;

	if (!data || len == 0) {
		memcpy(out, EMPTY_SHA256, 65);
		return 0;
	}
	r = digest_sha256(data, len, md);
	if (r == 0)
		hex_format(md, 32, out);
	return r;
}

/* ---- one attempt ---- */

struct attempt {
	struct s3_client *c;
	struct s3_request *rq;
	long status;
	int overflow;
	uint64_t stall_ns, last_move_ns; /* stall detection */
	curl_off_t last_down, last_up;
	int stalled;
	uint64_t start_ns, late_ns; /* past late_ns, too slow is given up */
	uint64_t link_start; /* the client's n_moving at start_ns */
	uint64_t link_moved; /* ... and how much it had grown when given up */
	int too_slow;
	int etag_not_md5; /* SSE-KMS and SSE-C objects have other ETags */
	char bucket_region[64]; /* x-amz-bucket-region of a redirect */
	struct buf errbody;
	char code[128], message[512];
};

static int header_is(const char *line, size_t len, const char *name, const char **val,
		     size_t *vlen)
{
	size_t n = strlen(name);

	if (len <= n || strncasecmp(line, name, n) || line[n] != ':')
		return 0;
	line += n + 1;
	len -= n + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	*val = line;
	*vlen = len;
	return 1;
}

static uint64_t parse_u64(const char *s, size_t len, int *ok)
{
	uint64_t v = 0;

	*ok = len > 0 && len <= 19;
	for (size_t i = 0; i < len && *ok; i++) {
		if (s[i] < '0' || s[i] > '9')
			*ok = 0;
		else
			v = v * 10 + (uint64_t)(s[i] - '0');
	}
	return v;
}

/* Retry-After (RFC 9110): delta-seconds, or an HTTP-date taken against our
 * own clock.  @return milliseconds from now (0 for a date already past), or
 * -1 for a value that is neither. */
static int64_t parse_retry_after(const char *v, size_t vlen)
{
	char tmp[64];
	int ok;
	uint64_t secs = parse_u64(v, vlen, &ok);

	if (ok)
		return secs > INT64_MAX / 2000 ? INT64_MAX / 2 : (int64_t)secs * 1000;
	if (vlen >= sizeof(tmp))
		return -1;
	memcpy(tmp, v, vlen);
	tmp[vlen] = '\0';
	time_t when = curl_getdate(tmp, NULL), now = time(NULL);
	if (when == (time_t)-1)
		return -1;
	return when <= now ? 0 : ((int64_t)when - (int64_t)now) * 1000;
}

static size_t on_header(char *p, size_t size, size_t nitems, void *arg)
{
	struct attempt *a = arg;
	struct s3_request *rq = a->rq;
	size_t len = size * nitems;
	const char *v;
	size_t vlen;
	int ok;

	if (len > 5 && !memcmp(p, "HTTP/", 5)) {
		/* A new response (after 100 Continue, or a retry): start over. */
		/* (Header data is not NUL-terminated: parse within len.) */
		const char *sp = memchr(p, ' ', len);
		a->status = 0;
		for (size_t i = sp ? (size_t)(sp + 1 - p) : len, k = 0; i < len && k < 3; i++, k++) {
			if (p[i] < '0' || p[i] > '9')
				break;
			a->status = a->status * 10 + (p[i] - '0');
		}
		memset(&rq->info, 0, sizeof(rq->info));
		rq->content_range_total = UINT64_MAX;
		rq->retry_after_ms = -1;
		a->etag_not_md5 = 0;
		a->bucket_region[0] = '\0';
		return len;
	}
	if (header_is(p, len, "x-amz-bucket-region", &v, &vlen)) {
		/* Kept only if it could be a region name (it goes into a message). */
		size_t ok = 0;
		while (ok < vlen && ((v[ok] >= 'a' && v[ok] <= 'z') || (v[ok] >= '0' && v[ok] <= '9') ||
				     v[ok] == '-'))
			ok++;
		if (vlen > 0 && ok == vlen && vlen < sizeof(a->bucket_region)) {
			memcpy(a->bucket_region, v, vlen);
			a->bucket_region[vlen] = '\0';
		}
		return len;
	}
	if (header_is(p, len, "x-amz-server-side-encryption", &v, &vlen)) {
		if (vlen >= 7 && !strncmp(v, "aws:kms", 7))
			a->etag_not_md5 = 1;
	} else if (header_is(p, len, "x-amz-server-side-encryption-customer-algorithm", &v,
			     &vlen)) {
		a->etag_not_md5 = 1;
	} else if (header_is(p, len, "ETag", &v, &vlen)) {
		if (vlen < sizeof(rq->info.etag)) {
			memcpy(rq->info.etag, v, vlen);
			rq->info.etag[vlen] = '\0';
		}
	} else if (header_is(p, len, "Content-Length", &v, &vlen)) {
		uint64_t n = parse_u64(v, vlen, &ok);
		if (ok)
			rq->info.size = n;
	} else if (header_is(p, len, "Last-Modified", &v, &vlen)) {
		char tmp[64];
		if (vlen < sizeof(tmp)) {
			memcpy(tmp, v, vlen);
			tmp[vlen] = '\0';
			time_t t = curl_getdate(tmp, NULL);
			if (t != (time_t)-1)
				rq->info.mtime_sec = t;
		}
	} else if (header_is(p, len, "Retry-After", &v, &vlen)) {
		rq->retry_after_ms = parse_retry_after(v, vlen);
	} else if (header_is(p, len, "Content-Range", &v, &vlen)) {
		const char *slash = memchr(v, '/', vlen);
		if (slash) {
			uint64_t n = parse_u64(slash + 1, vlen - (size_t)(slash + 1 - v), &ok);
			if (ok)
				rq->content_range_total = n;
		}
	}
	return len;
}

static size_t on_body(char *p, size_t size, size_t nitems, void *arg)
{
	struct attempt *a = arg;
	size_t len = size * nitems;

	if (a->status >= 200 && a->status < 300 && a->rq->out) {
		if (buf_append(a->rq->out, p, len) < 0) {
			a->overflow = 1;
			return 0;
		}
	} else if (a->status >= 200 && a->status < 300 && !a->rq->body_may_hold_error) {
		/* discarded */
	} else if (a->errbody.len < S3_ERROR_BODY_MAX) {
		size_t room = S3_ERROR_BODY_MAX - a->errbody.len;
		if (buf_append(&a->errbody, p, len < room ? len : room) < 0)
			return 0;
	}
	return len;
}

/* A transfer that moves no byte, either way, for stall_timeout_ms is given
 * up.  curl's own low-speed check averages over seconds, so after a burst it
 * notices a dead peer only several seconds late. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct attempt *a = arg;
	uint64_t now = now_ns();

	if (dlnow != a->last_down || ulnow != a->last_up || a->last_move_ns == 0) {
		curl_off_t moved = (dlnow - a->last_down) + (ulnow - a->last_up);
		if (moved > 0)
			__atomic_fetch_add(&a->c->n_moving, (uint64_t)moved, __ATOMIC_RELAXED);
		a->last_down = dlnow;
		a->last_up = ulnow;
		a->last_move_ns = now;
		return 0;
	}
	if (now - a->last_move_ns > a->stall_ns) {
		a->stalled = 1;
		return 1;
	}
	/* A trickle never stalls: past the call's deadline and a stall window,
	 * an attempt must have averaged S3_MIN_LATE_RATE or it is given up
	 * (without a retry: the deadline has passed).  Unless it shares a slow
	 * but moving link: then the link is judged, and the attempt's part of
	 * it, not the attempt alone (a dozen reads on 32 KiB/s get under
	 * 3 KiB/s each, and all would fail together). */
	uint64_t need = (now - a->start_ns) / 1000000 * S3_MIN_LATE_RATE / 1000;
	uint64_t own = (uint64_t)(dlnow + ulnow);
	if (now > a->late_ns && own < need) {
		uint64_t link = __atomic_load_n(&a->c->n_moving, __ATOMIC_RELAXED) - a->link_start;
		if (link < need ||
		    own * S3_LATE_SHARE_DIVISOR * a->c->cfg.parallelism < link) {
			a->link_moved = link;
			a->too_slow = 1;
			return 1;
		}
	}
	return 0;
}

static void parse_error_body(struct attempt *a, const struct buf *body)
{
	const char *p = (const char *)body->data, *end = p + body->len, *v;
	size_t vlen;

	a->code[0] = a->message[0] = '\0';
	if (!body->len)
		return;
	if (s3_xml_find(p, end, "Code", &v, &vlen))
		s3_xml_text(v, vlen, a->code, sizeof(a->code));
	if (s3_xml_find(p, end, "Message", &v, &vlen))
		s3_xml_text(v, vlen, a->message, sizeof(a->message));
}

#define S3_TARGET_MAX (sizeof(((struct s3_client *)0)->bucket) + 1 + S3_KEY_MAX + 1)

/* What a message names: "BUCKET/KEY", or the bucket alone for a request on
 * the bucket itself (list, the bucket probe, create), not "BUCKET/". */
static const char *request_target(const struct s3_client *c, const char *key,
				  char out[S3_TARGET_MAX])
{
	snprintf(out, S3_TARGET_MAX, "%s%s%s", c->bucket, key && *key ? "/" : "", key ? key : "");
	return out;
}

/* The one place where a curl result and an HTTP answer become an errno and
 * a message.  *retry says whether another attempt may succeed. */
static int s3_map_result(struct s3_client *c, const struct s3_request *rq, CURLcode cc,
			 const struct attempt *a, const char *curlmsg, int *retry)
{
	const char *what = rq->key ? rq->key : "";
	char target[S3_TARGET_MAX];
	const char *code = a->code;
	long st = a->status;

	*retry = 0;
	request_target(c, rq->key, target);
	if (cc != CURLE_OK) {
		if (a->too_slow)
			return hb_err(-ETIMEDOUT, "s3 %s %s: too slow: %" PRIu64 " bytes in %.1f s, "
				      "%" PRIu64 " by all transfers to the endpoint (at least %u KiB/s "
				      "is needed past the %u ms deadline, HIBERBOX_S3_DEADLINE_MS)",
				      rq->method, target,
				      (uint64_t)(a->last_down + a->last_up),
				      (double)(now_ns() - a->start_ns) / 1e9, a->link_moved,
				      S3_MIN_LATE_RATE / 1024, c->cfg.deadline_ms);
		if (a->stalled) {
			*retry = 1;
			return hb_err(-ETIMEDOUT, "s3 %s %s: no data moved for %u ms", rq->method,
				      target, c->cfg.stall_timeout_ms);
		}
		switch (cc) {
		case CURLE_WRITE_ERROR:
			if (a->overflow)
				return hb_err(-EFBIG, "s3 %s %s: reply larger than %zu bytes",
					      rq->method, target,
					      rq->out->max ? rq->out->max : BUF_DEFAULT_MAX_BYTES);
			return hb_err(-ENOMEM, "s3 %s %s: out of memory", rq->method, target);
		case CURLE_OPERATION_TIMEDOUT:
			*retry = 1;
			return hb_err(-ETIMEDOUT, "s3 %s %s: timed out (%s)", rq->method,
				      target, curlmsg);
		case CURLE_COULDNT_CONNECT:
			*retry = 1;
			return hb_err(-ECONNREFUSED, "s3 %s %s: cannot connect: %s", rq->method,
				      target, curlmsg);
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			*retry = 1;
			return hb_err(-EHOSTUNREACH, "s3 %s %s: %s", rq->method, target,
				      curlmsg);
		case CURLE_PEER_FAILED_VERIFICATION:
			return hb_err(-EACCES, "s3 %s %s: the server's TLS certificate is not "
					       "trusted (%s); AWS_CA_BUNDLE names extra CAs",
				      rq->method, target, curlmsg);
		case CURLE_SSL_CACERT_BADFILE:
			return hb_err(-EINVAL, "s3: cannot use the CA bundle %s: %s",
				      c->cfg.ca_bundle[0] ? c->cfg.ca_bundle : "(system)", curlmsg);
		case CURLE_OUT_OF_MEMORY:
			return -ENOMEM;
		case CURLE_URL_MALFORMAT:
		case CURLE_UNSUPPORTED_PROTOCOL:
			return hb_err(-EINVAL, "s3: bad URL for %s: %s", target, curlmsg);
		default:
			/* Resets, truncated bodies, TLS hiccups: the network's fault. */
			*retry = 1;
			return hb_err(-EIO, "s3 %s %s: %s", rq->method, target, curlmsg);
		}
	}
	if (st >= 200 && st < 300 && !code[0])
		return 0;
	if (!strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
	    !strcmp(code, "InternalError") || st == 429 || st == 500 || st == 502 || st == 503 ||
	    st == 504 || (st >= 200 && st < 300)) {
		*retry = 1;
		return hb_err(-EIO, "s3 %s %s: server error: HTTP %ld%s%s%s%s", rq->method,
			      target, st, code[0] ? " " : "", code, a->message[0] ? ": " : "",
			      a->message);
	}
	if (!strcmp(code, "RequestTimeTooSkewed"))
		return hb_err(-EACCES, "s3: this machine's clock is too far from the server's "
				       "(RequestTimeTooSkewed): fix the time and retry");
	if (!strcmp(code, "ExpiredToken") || !strcmp(code, "TokenRefreshRequired"))
		return hb_err(-EACCES, "s3: the temporary credentials (AWS_SESSION_TOKEN) have "
				       "expired");
	if ((st == 301 || !strcmp(code, "PermanentRedirect")) && a->bucket_region[0] &&
	    strcmp(a->bucket_region, c->cfg.region))
		return hb_err(-EINVAL, "bucket %s is in region %s, not %s: set AWS_REGION=%s",
			      c->bucket, a->bucket_region, c->cfg.region, a->bucket_region);
	if (st == 301 || !strcmp(code, "PermanentRedirect") ||
	    !strcmp(code, "AuthorizationHeaderMalformed"))
		return hb_err(-EINVAL, "bucket %s does not answer in region %s: check AWS_REGION "
				       "(%s%s%s)", c->bucket, c->cfg.region, code[0] ? code : "HTTP 301",
			      a->message[0] ? ": " : "", a->message);
	if (st == 403 && !strcmp(code, "AccessDenied"))
		/* The keys were accepted (a bad key or secret has codes of its
		 * own); a policy refuses this operation. */
		return hb_err(-EACCES,
			      "access denied to bucket %s: these credentials are not allowed to "
			      "%s %s (AccessDenied: check the IAM or bucket policy)",
			      c->bucket, rq->method, what[0] ? what : "the bucket");
	if ((st == 403 || st == 401) && c->cfg.keys_source[0])
		return hb_err(-EACCES,
			      "access denied to bucket %s: check aws_access_key_id and "
			      "aws_secret_access_key in %s (%s %s: %s)",
			      c->bucket, c->cfg.keys_source, rq->method, what[0] ? what : c->bucket,
			      code[0] ? code : "HTTP 403");
	if (st == 403 || st == 401)
		return hb_err(-EACCES,
			      "access denied to bucket %s: check AWS_ACCESS_KEY_ID and "
			      "AWS_SECRET_ACCESS_KEY (%s %s: %s)",
			      c->bucket, rq->method, what[0] ? what : c->bucket,
			      code[0] ? code : "HTTP 403");
	if (st == 404 && !strcmp(code, "NoSuchBucket"))
		return hb_err(-ENXIO, "bucket %s does not exist", c->bucket);
	if (st == 404 && !strcmp(code, "NoSuchUpload"))
		return hb_err(-ENOENT, "s3 %s %s: multipart upload vanished (NoSuchUpload)",
			      rq->method, target);
	if (st == 404)
		return hb_err(-ENOENT, "s3: %s does not exist", target);
	if (st == 412)
		return hb_err(-EEXIST, "s3 %s %s: precondition failed (object exists or changed)",
			      rq->method, target);
	if (st == 409)
		return hb_err(-EAGAIN, "s3 %s %s: conflicting concurrent write (%s)", rq->method,
			      target, code[0] ? code : "HTTP 409");
	if (st == 416)
		return hb_err(-EBADMSG, "s3 GET %s: range starts past the end of the object",
			      target);
	if (st == 405 || st == 501)
		return hb_err(-EOPNOTSUPP, "s3 %s %s: not supported by the server (HTTP %ld%s%s)",
			      rq->method, target, st, code[0] ? " " : "", code);
	return hb_err(-EINVAL, "s3 %s %s: HTTP %ld %s%s%s", rq->method, target, st,
		      code[0] ? code : "(no details)", a->message[0] ? ": " : "", a->message);
}

static int verify_md5(const struct s3_request *rq)
{
	unsigned char md[16];
	char hex[33];
	const char *e = rq->info.etag;
	size_t n = strlen(e);

	/* A single-part ETag is the MD5 of the object in quotes; multipart
	 * ("...-3") and SSE-KMS ETags are something else and are not checked. */
	if (n != 34 || e[0] != '"' || e[33] != '"' ||
	    strspn(e + 1, "0123456789abcdef") != 32)
		return 0;
	if (digest_md5(rq->out->data, rq->out->len, md) < 0)
		return -EIO; /* (message set) */
	hex_format(md, 16, hex);
	return memcmp(hex, e + 1, 32) ? -EBADMSG : 0;
}

static int perform_once(struct s3_client *c, struct s3_request *rq, const char *url,
			struct curl_slist *headers, uint64_t deadline_ns, int *retry)
{
	struct attempt a = { .c = c, .rq = rq,
			     .stall_ns = (uint64_t)c->cfg.stall_timeout_ms * 1000000 };
	char errbuf[CURL_ERROR_SIZE] = "", range[64], target[S3_TARGET_MAX];
	long stall_s = (long)((c->cfg.stall_timeout_ms + 999) / 1000);
	curl_off_t up = 0, down = 0;
	long connects = 0;
	CURLcode cc;
	CURL *h;
	int r;

	*retry = 0;
	a.late_ns = deadline_ns + a.stall_ns;
	if ((r = pool_get(c, deadline_ns, &h)) == -ETIMEDOUT)
		return hb_err(r, "s3 %s %s: all %u connections stayed busy for %u ms", rq->method,
			      request_target(c, rq->key, target), c->cfg.parallelism,
			      c->cfg.deadline_ms);
	if (r < 0)
		return hb_err(r, "curl_easy_init failed");
	a.start_ns = now_ns(); /* the transfer's rate, not counting the wait for a handle */
	a.link_start = __atomic_load_n(&c->n_moving, __ATOMIC_RELAXED);
	curl_easy_reset(h);
	rq->status = 0;
	rq->content_range_total = UINT64_MAX;
	rq->retry_after_ms = -1;
	memset(&rq->info, 0, sizeof(rq->info));
	if (rq->out)
		rq->out->len = 0;
	curl_easy_setopt(h, CURLOPT_SHARE, c->share);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, c->cfg.access_key_id);
	curl_easy_setopt(h, CURLOPT_PASSWORD, c->cfg.secret_access_key);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &a);
	/* Backstop in case progress callbacks stop coming. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_s + 10);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (c->cfg.ca_bundle[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_bundle);
	/* A server that ignores "Expect: 100-continue" costs at most this. */
	curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 200L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &a);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
	if (!strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(rq->method, "PUT") || !strcmp(rq->method, "POST")) {
		/* The body from memory (POSTFIELDS), also for PUT: nothing to rewind
		 * on a retry, and no "Expect: 100-continue" round trip under 1 MiB. */
		if (!strcmp(rq->method, "PUT"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? (const char *)rq->body : "");
	} else if (!strcmp(rq->method, "DELETE")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		if (rq->has_range) {
			if (rq->range_len == S3_GET_ALL)
				snprintf(range, sizeof(range), "%" PRIu64 "-", rq->range_off);
			else
				snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, rq->range_off,
					 rq->range_off + rq->range_len - 1);
			curl_easy_setopt(h, CURLOPT_RANGE, range);
		}
	}
	__atomic_fetch_add(&c->n_requests, 1, __ATOMIC_RELAXED);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
	__atomic_fetch_add(&c->n_connects, (uint64_t)connects, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->n_sent, (uint64_t)up, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->n_received, (uint64_t)down, __ATOMIC_RELAXED);
	pool_put(c, h);

	rq->status = a.status;
	if (cc == CURLE_OK && (a.status < 200 || a.status >= 300 || rq->body_may_hold_error)) {
		/* The error document, or the 200 reply that may hold one. */
		if (a.status >= 200 && a.status < 300 && rq->out)
			parse_error_body(&a, rq->out);
		else
			parse_error_body(&a, &a.errbody);
		if (a.status >= 200 && a.status < 300 && a.code[0] && rq->out) {
			const char *p = (const char *)rq->out->data;
			/* "<Code>" inside a successful reply's own data is not an error:
			 * only an <Error> document is. */
			if (!memmem(p, rq->out->len, "<Error>", 7))
				a.code[0] = '\0';
		}
	}
	buf_free(&a.errbody);
	r = s3_map_result(c, rq, cc, &a, errbuf[0] ? errbuf : curl_easy_strerror(cc), retry);
	if (r < 0)
		return r;
	if (!strcmp(rq->method, "GET") && rq->out && !rq->has_range && !a.etag_not_md5 &&
	    verify_md5(rq) < 0) {
		*retry = 1;
		return hb_err(-EBADMSG, "s3 GET %s: body does not match its ETag (corrupted on "
					"the way)", request_target(c, rq->key, target));
	}
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t backoff_ms(const struct s3_config *cfg, unsigned attempt)
{
	uint64_t cap = (uint64_t)cfg->retry_base_ms << (attempt < 16 ? attempt : 16);
	uint32_t rnd = 0;

	if (cap > 20000)
		cap = 20000;
	/* Equal jitter: at least half the backoff, so a SlowDown is respected,
	 * and a random rest, so parallel clients do not retry in step. */
	random_bytes(&rnd, sizeof(rnd));
	return cap / 2 + (cap / 2 + 1) * rnd / UINT32_MAX;
}

static int build_headers(const struct s3_client *c, const struct s3_request *rq,
			 struct curl_slist **out)
{
	char line[4200], sha[65];
	struct curl_slist *l = NULL, *t;
	const char *lines[8];
	int n = 0, r;

	r = sha256_hex(rq->body, rq->body_len, sha);
	if (r < 0)
		return r;
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", sha);
	if (!(l = curl_slist_append(l, line)))
		return -ENOMEM;
	/* No "Expect:" line to suppress 100-continue: curl 7.88 would sign the
	 * empty header without sending it, and every PUT would be refused. */
	if (rq->key && (!strcmp(rq->method, "PUT") || !strcmp(rq->method, "POST")))
		lines[n++] = rq->content_type ? rq->content_type : "Content-Type: application/octet-stream";
	if (rq->if_none_match_any)
		lines[n++] = "If-None-Match: *";
	for (int i = 0; i < n; i++) {
		if (!(t = curl_slist_append(l, lines[i])))
			goto nomem;
		l = t;
	}
	if (rq->if_match) {
		snprintf(line, sizeof(line), "If-Match: %s", rq->if_match);
		if (!(t = curl_slist_append(l, line)))
			goto nomem;
		l = t;
	}
	if (c->cfg.session_token[0]) {
		snprintf(line, sizeof(line), "x-amz-security-token: %s", c->cfg.session_token);
		if (!(t = curl_slist_append(l, line)))
			goto nomem;
		l = t;
	}
	*out = l;
	return 0;
nomem:
	curl_slist_free_all(l);
	return -ENOMEM;
}

/* HIBERBOX_S3_TRACE=FILE (or "-" for stderr): one line per request, so that a
 * slow wake can be read as the chain of round trips it made.  The file is
 * opened for each line (O_APPEND, one write()): a descriptor kept open would
 * not survive the fs daemon's fork, which closes what it inherits, and its
 * number could then name another file.  Tracing is for diagnosis; a
 * syscall more per request does not matter then. */
static const char *trace_path;
static pthread_once_t trace_once = PTHREAD_ONCE_INIT;
static uint64_t trace_epoch;

static void trace_open(void)
{
	const char *path = getenv("HIBERBOX_S3_TRACE");

	trace_epoch = now_ns();
	trace_path = path && *path ? path : NULL;
}

static void trace_request(const struct s3_request *rq, uint64_t start, int result)
{
	char line[512];
	uint64_t end;
	int n;

	if (!trace_path)
		return;
	end = now_ns();
	n = snprintf(line, sizeof(line), "s3 %d +%.1fms %.1fms %s %s", (int)getpid(),
		     (double)(start - trace_epoch) / 1e6, (double)(end - start) / 1e6, rq->method,
		     rq->key ? rq->key : "/");
	if (rq->has_range && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " bytes=%" PRIu64 "+%" PRIu64,
			      rq->range_off, rq->range_len);
	if (n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " -> %ld%s%s\n", rq->status,
			      result < 0 ? " error " : "", result < 0 ? strerror(-result) : "");
	if (n > 0 && (size_t)n < sizeof(line)) {
		int fd = strcmp(trace_path, "-") == 0
				 ? STDERR_FILENO
				 : open(trace_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			(void)!write(fd, line, (size_t)n);
			if (fd != STDERR_FILENO)
				close(fd);
		}
	}
}

int s3_request_run(struct s3_client *c, struct s3_request *rq)
{
	char *url, msg[1024], target[S3_TARGET_MAX];
	struct curl_slist *headers = NULL;
	uint64_t start;
	unsigned corrupt = 0;
	int n, r, retry;

	pthread_once(&trace_once, trace_open);
	start = now_ns();
	url = malloc(S3_URL_MAX);
	if (!url)
		return -ENOMEM;
	if (rq->key) {
		char *enc = malloc(S3_URL_MAX);
		if (!enc) {
			free(url);
			return -ENOMEM;
		}
		r = uri_encode(rq->key, 1, enc, S3_URL_MAX);
		n = r < 0 ? -1 : snprintf(url, S3_URL_MAX, "%s/%s%s%s", c->base_url, enc,
					  rq->query ? "?" : "", rq->query ? rq->query : "");
		free(enc);
	} else {
		/* The bucket itself: AWS wants "/" as the path of a virtual host. */
		n = snprintf(url, S3_URL_MAX, "%s%s%s%s", c->base_url,
			     c->cfg.path_style || strchr(c->bucket, '.') ? "" : "/",
			     rq->query ? "?" : "", rq->query ? rq->query : "");
	}
	if (n < 0 || n >= S3_URL_MAX) {
		free(url);
		return hb_err(-ENAMETOOLONG, "s3: key too long: %.64s...", rq->key ? rq->key : "");
	}
	if ((r = build_headers(c, rq, &headers)) < 0) {
		free(url);
		return r;
	}
	for (unsigned attempt = 0;; attempt++) {
		rq->attempts = attempt + 1;
		r = perform_once(c, rq, url, headers, start + (uint64_t)c->cfg.deadline_ms * 1000000,
				 &retry);
		if (r == 0 || !retry)
			break;
		/* A body that arrives corrupt is fetched once more, not forever;
		 * the same mismatch twice is most likely the stored object. */
		if (r == -EBADMSG && ++corrupt > 1) {
			r = hb_err(r, "s3 GET %s: body does not match its ETag twice: the object "
				   "stored in the bucket is damaged (or every transfer damages it)",
				   request_target(c, rq->key, target));
			break;
		}
		if (attempt >= c->cfg.max_retries) {
			hb_err_save(msg, sizeof(msg));
			r = hb_err(r, "%s (gave up after %u attempts)", msg, attempt + 1);
			break;
		}
		uint64_t wait = backoff_ms(&c->cfg, attempt);
		uint64_t spent = (now_ns() - start) / 1000000;
		if (rq->retry_after_ms >= 0) {
			/* The server said when to come back (503 SlowDown from MinIO,
			 * 429): sooner is refused again, so that is the least wait.
			 * A wait past the deadline or the cap is not slept through
			 * only to fail then. */
			uint64_t asked = (uint64_t)rq->retry_after_ms;
			if (asked > S3_RETRY_AFTER_MAX_MS || spent + asked > c->cfg.deadline_ms) {
				char why[128];
				if (spent + asked > c->cfg.deadline_ms)
					snprintf(why, sizeof(why), "past the %u ms deadline "
						 "(HIBERBOX_S3_DEADLINE_MS)", c->cfg.deadline_ms);
				else
					snprintf(why, sizeof(why), "longer than the %u s waited at most",
						 S3_RETRY_AFTER_MAX_MS / 1000);
				hb_err_save(msg, sizeof(msg));
				r = hb_err(r, "%s (the server's Retry-After asks to wait %.1f s, %s: "
					   "gave up at once)", msg, (double)asked / 1000, why);
				break;
			}
			if (asked > wait)
				wait = asked;
		}
		if (spent + wait > c->cfg.deadline_ms) {
			hb_err_save(msg, sizeof(msg));
			r = hb_err(r, "%s (gave up after %u attempts in %" PRIu64 " ms)", msg,
				   attempt + 1, spent);
			break;
		}
		__atomic_fetch_add(&c->n_retries, 1, __ATOMIC_RELAXED);
		sleep_ms(wait);
	}
	if (r == 0)
		__atomic_store_n(&c->bucket_seen, 1, __ATOMIC_RELAXED);
	trace_request(rq, start, r);
	curl_slist_free_all(headers);
	free(url);
	return r;
}

/* ---- object operations ---- */

static int key_ok(const char *key)
{
	size_t n = key ? strlen(key) : 0;

	if (n == 0 || n > S3_KEY_MAX)
		return hb_err(-EINVAL, "bad S3 key (empty or over %d bytes)", S3_KEY_MAX);
	return 0;
}

int s3_get(struct s3_client *c, const char *key, uint64_t off, uint64_t len, struct buf *out,
	   struct s3_object_info *info)
{
	struct s3_request rq = { .method = "GET", .key = key, .out = out };
	int r;

	if ((r = key_ok(key)) < 0)
		return r;
	out->len = 0;
	if (len == 0) {
		/* No byte range means "nothing": still say whether it exists. */
		struct s3_object_info tmp;
		if ((r = s3_head(c, key, &tmp)) < 0)
			return r;
		if (off > tmp.size)
			return hb_err(-EBADMSG, "s3: %s/%s is %" PRIu64 " bytes, read at %" PRIu64,
				      c->bucket, key, tmp.size, off);
		if (info)
			*info = tmp;
		return 0;
	}
	if (len != S3_GET_ALL && off + len < off)
		return hb_err(-EINVAL, "s3 GET %s: range overflows", key);
	if (off > 0 || len != S3_GET_ALL) {
		rq.has_range = 1;
		rq.range_off = off;
		rq.range_len = len;
	}
	if (len != S3_GET_ALL && (r = buf_reserve(out, len)) < 0)
		return hb_err(r, "s3 GET %s/%s: cannot hold %" PRIu64 " bytes", c->bucket, key, len);
	r = s3_request_run(c, &rq);
	if (r == -EBADMSG && rq.status == 416 && len == S3_GET_ALL) {
		/* "From off to the end" with off at the very end is empty, not an error. */
		struct s3_object_info tmp;
		char saved[1024];
		hb_err_save(saved, sizeof(saved));
		if (s3_head(c, key, &tmp) == 0 && tmp.size == off) {
			if (info)
				*info = tmp;
			out->len = 0;
			return 0;
		}
		return hb_err(-EBADMSG, "%s", saved);
	}
	if (r < 0)
		return r;
	if (rq.has_range && rq.status == 200) {
		/* The server ignored Range and sent everything: cut it here. */
		uint64_t total = out->len;
		if (off > total || (len != S3_GET_ALL && off + len > total))
			return hb_err(-EBADMSG,
				      "s3: %s/%s is %" PRIu64 " bytes, range %" PRIu64 "+%" PRIu64
				      " is past its end", c->bucket, key, total, off, len);
		uint64_t n = len == S3_GET_ALL ? total - off : len;
		memmove(out->data, out->data + off, n);
		out->len = n;
	} else if (rq.has_range && len != S3_GET_ALL && out->len != len) {
		return hb_err(-EBADMSG,
			      "s3: %s/%s: range %" PRIu64 "+%" PRIu64 " is past its end (got %zu "
			      "bytes, object is %" PRIu64 ")", c->bucket, key, off, len, out->len,
			      rq.content_range_total);
	}
	if (info) {
		*info = rq.info;
		info->size = rq.content_range_total != UINT64_MAX ? rq.content_range_total : out->len;
	}
	return 0;
}

int s3_head(struct s3_client *c, const char *key, struct s3_object_info *info)
{
	struct s3_request rq = { .method = "HEAD", .key = key };
	int r;

	if ((r = key_ok(key)) < 0)
		return r;
	r = s3_request_run(c, &rq);
	if (r == -ENOENT && !__atomic_load_n(&c->bucket_seen, __ATOMIC_RELAXED)) {
		/* A 404 without a body: the key or the whole bucket may be
		 * missing.  Asked once per client; after any success the bucket
		 * is taken to be there. */
		char saved[1024];
		hb_err_save(saved, sizeof(saved));
		if (s3_bucket_check(c) == -ENXIO)
			return -ENXIO; /* "bucket B does not exist" */
		return hb_err(-ENOENT, "%s", saved);
	}
	if (r == -EACCES && rq.status == 403) {
		/* Nor has a 403 a body to say whether the keys were refused or a
		 * policy (S3 also answers 403 for a missing key to credentials
		 * without s3:ListBucket): keys that can list the bucket work. */
		char saved[1024];
		hb_err_save(saved, sizeof(saved));
		if (s3_bucket_check(c) == 0)
			return hb_err(-EACCES, "access denied to bucket %s: these credentials are not "
				      "allowed to HEAD %s (check the IAM or bucket policy; without "
				      "s3:ListBucket a missing object is denied too)", c->bucket, key);
		return hb_err(-EACCES, "%s", saved);
	}
	if (r < 0)
		return r;
	if (info)
		*info = rq.info;
	return 0;
}

int s3_delete(struct s3_client *c, const char *key)
{
	struct s3_request rq = { .method = "DELETE", .key = key };
	int r;

	if ((r = key_ok(key)) < 0)
		return r;
	return s3_request_run(c, &rq);
}

int s3_put(struct s3_client *c, const char *key, const void *data, size_t len, int flags,
	   const char *if_match, char *etag_out)
{
	struct s3_request rq = { .method = "PUT", .key = key, .body = data, .body_len = len };
	int r;

	if ((r = key_ok(key)) < 0)
		return r;
	if (if_match && (strlen(if_match) >= S3_ETAG_MAX || strpbrk(if_match, "\r\n")))
		return hb_err(-EINVAL, "s3 PUT %s: bad If-Match value", key);
	if (len > c->cfg.multipart_threshold && len > c->cfg.part_bytes)
		return s3_put_multipart(c, key, data, len, flags, if_match, etag_out);
	rq.if_none_match_any = !!(flags & S3_PUT_IF_NONE_MATCH);
	rq.if_match = if_match;
	r = s3_request_run(c, &rq);
	if (r == -EEXIST && (rq.if_none_match_any || rq.if_match)) {
		/* An earlier attempt (ours, or curl's own retry on a dropped
		 * connection) may have written the object and lost only its answer.
		 * An object that is ours byte for byte (its ETag is our MD5) counts
		 * as written. */
		struct s3_object_info info;
		unsigned char md[16];
		char want[40], saved[1024];
		hb_err_save(saved, sizeof(saved));
		if (digest_md5(data, len, md) < 0)
			return r; /* -EEXIST as it came */
		want[0] = '"';
		hex_format(md, 16, want + 1);
		want[33] = '"';
		want[34] = '\0';
		if (s3_head(c, key, &info) == 0 && info.size == len && !strcmp(info.etag, want)) {
			hb_err_clear();
			if (etag_out)
				snprintf(etag_out, S3_ETAG_MAX, "%s", info.etag);
			return 0;
		}
		return hb_err(-EEXIST, "%s", saved);
	}
	if (r < 0)
		return r;
	if (etag_out)
		snprintf(etag_out, S3_ETAG_MAX, "%s", rq.info.etag);
	return 0;
}

struct list_state {
	s3_list_fn fn;
	void *arg;
};

int s3_list(struct s3_client *c, const char *prefix, s3_list_fn fn, void *arg)
{
	struct buf page = { .max = S3_LIST_PAGE_MAX };
	char *token = NULL, *query = NULL, *enc = NULL, *key = NULL, *last_token = NULL;
	int r = 0;

	query = malloc(S3_QUERY_MAX);
	enc = malloc(S3_QUERY_MAX);
	token = calloc(1, S3_QUERY_MAX);
	key = malloc(S3_KEY_MAX + 1);
	last_token = calloc(1, S3_QUERY_MAX / 4);
	if (!query || !enc || !token || !key || !last_token) {
		r = -ENOMEM;
		goto out;
	}
	if (uri_encode(prefix ? prefix : "", 0, enc, S3_QUERY_MAX / 2) < 0) {
		r = hb_err(-ENAMETOOLONG, "s3 list: prefix too long");
		goto out;
	}
	for (unsigned pages = 0;; pages++) {
		struct s3_request rq = { .method = "GET", .query = query, .out = &page };
		char tokenc[S3_QUERY_MAX / 2];

		/* Parameters in canonical (sorted) order: curl 7.88 signs the query as given. */
		if (token[0]) {
			if (!strcmp(token, last_token)) {
				r = hb_err(-EBADMSG, "s3 list %s: the server repeats its continuation "
					   "token", c->bucket);
				goto out;
			}
			snprintf(last_token, S3_QUERY_MAX / 4, "%s", token);
			if (uri_encode(token, 0, tokenc, sizeof(tokenc)) < 0) {
				r = hb_err(-EBADMSG, "s3 list: continuation token too long");
				goto out;
			}
			snprintf(query, S3_QUERY_MAX, "continuation-token=%s&list-type=2&max-keys=1000"
				 "&prefix=%s", tokenc, enc);
		} else {
			snprintf(query, S3_QUERY_MAX, "list-type=2&max-keys=1000&prefix=%s", enc);
		}
		if ((r = s3_request_run(c, &rq)) < 0)
			goto out;
		int more = 0, fn_ret = 0;
		r = s3_list_parse_page((const char *)page.data, page.len, fn, arg, &fn_ret, key, token,
				       S3_QUERY_MAX / 4, &more);
		if (r < 0) {
			char target[S3_TARGET_MAX];

			r = hb_err_ctx(r, "s3 list %s", request_target(c, prefix, target));
			goto out;
		}
		if (fn_ret) {
			r = fn_ret;
			goto out;
		}
		if (!more)
			break;
		if (pages > 10000000) {
			r = hb_err(-ELOOP, "s3 list %s: too many pages", c->bucket);
			goto out;
		}
	}
out:
	buf_free(&page);
	free(query);
	free(enc);
	free(token);
	free(last_token);
	free(key);
	return r;
}

int s3_bucket_check(struct s3_client *c)
{
	struct buf page = { .max = S3_LIST_PAGE_MAX };
	struct s3_request rq = { .method = "GET", .query = "list-type=2&max-keys=1",
				 .out = &page };
	int r = s3_request_run(c, &rq);

	buf_free(&page);
	if (r == -ENOENT)
		return hb_err(-ENXIO, "bucket %s does not exist", c->bucket);
	return r;
}

int s3_bucket_create(struct s3_client *c)
{
	struct s3_request rq = { .method = "PUT" };
	char conf[256];
	int r;

	/* AWS makes a bucket in the region named by LocationConstraint and
	 * refuses one that is not the endpoint's own; us-east-1 takes none (it
	 * refuses its own name), nor does R2's "auto". */
	if (strcmp(c->cfg.region, "us-east-1") && strcmp(c->cfg.region, "auto")) {
		rq.body = conf;
		rq.body_len = (size_t)snprintf(
			conf, sizeof(conf),
			"<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			"<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
			c->cfg.region);
	}
	r = s3_request_run(c, &rq);

	/* 409: BucketAlreadyOwnedByYou, or (some servers) BucketAlreadyExists for
	 * our own bucket: fine if we can list it. */
	if (r == -EAGAIN) {
		char saved[1024];
		hb_err_save(saved, sizeof(saved));
		if (s3_bucket_check(c) == 0)
			return 0;
		return hb_err(-EEXIST, "%s", saved);
	}
	return r;
}
