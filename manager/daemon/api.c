/* hiberboxd: the daemon's main loop, the list of sandboxes, the idle
 * sleeper and the HTTP/1.1 + JSON API (libmicrohttpd on a unix socket,
 * one thread per connection so that an exec can stream for as long as its
 * command runs).  Endpoints and the exec stream framing: docs/api.md. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "manager/daemon/daemon-int.h"
#include "manager/daemon/subid.h"
#include "manager/network.h"
#include "manager/sandbox.h"
#include "snapshot/snapshot.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/json-text.h"

#define API_JSON_MAX_BYTES (1u << 20)
#define API_UPLOAD_MAX_BYTES (64u << 20)
#define API_EXEC_ARGS_MAX 1024
/* What the HTTP library may use for one connection's request: the request
 * line and an entry for every query parameter live there.  Its default
 * (32 KiB) ran out at about 500 exec args (4 KiB of query), and the
 * connection was closed with no reply ('Broken pipe' in the CLI).  With
 * 1 MiB, 10 000 args still reach the handler (API_EXEC_ARGS_MAX answers,
 * 400); a request line that does not fit gets the library's 414.  Pages
 * are touched only as used. */
#define API_CONNECTION_MEMORY_BYTES (1u << 20)
#define API_READ_CHUNK_BYTES 65536
#define API_POLL_MS 200
#define IDLE_TICK_MS 500
/* How long a stopping daemon lets file downloads in progress go on (a
 * service manager's stop timeout must leave room for it and the sleeps). */
#define HBD_STOP_DOWNLOAD_WAIT_MS 30000
/* d->upload_idle_ms unless a test sets it */
#define HBD_UPLOAD_IDLE_MS (10 * 60 * 1000)
#define SHUTDOWN_POLL_MS 100
#define PASSWD_MAX_BYTES (1u << 20)

/* The list. */

struct sbx *hbd_get(struct hbd *d, const char *name)
{
	struct sbx *found = NULL;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->count; i++)
		if (strcmp(d->list[i]->rec.name, name) == 0) {
			found = d->list[i];
			found->refs++;
			break;
		}
	pthread_mutex_unlock(&d->lock);
	if (!found)
		hb_err(-ENOENT, "no sandbox named '%.64s'", name);
	return found;
}

void hbd_put(struct hbd *d, struct sbx *s)
{
	int last;

	if (!s)
		return;
	pthread_mutex_lock(&d->lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (last) {
		json_decref(s->shown);
		sandbox_free(s->sb);
		sbx_detached_free_all(s);
		sbx_uploads_free(s);
		sbx_record_clear(&s->rec);
		pthread_mutex_destroy(&s->lock);
		free(s);
	}
}

static bool id_base_used(struct hbd *d, uint32_t base)
{
	for (size_t i = 0; i < d->count; i++)
		if (d->list[i]->rec.id_base == base)
			return true;
	return false;
}

uint32_t hbd_free_id_base(struct hbd *d)
{
	for (uint32_t slot = 0; slot < SBX_SLOTS_MAX; slot++) {
		uint32_t base = SBX_ID_BASE_FIRST + slot * SBX_ID_RANGE;
		/* not ids a host user may take on (subid.h) */
		if (!id_base_used(d, base) && !subid_overlaps(base, SBX_ID_RANGE))
			return base;
	}
	return 0;
}

/* A listed sandbox that publishes a host port s wants (under d->lock):
 * -EADDRINUSE naming both, or 0.  Every listed one counts, asleep too: its
 * next wake takes the port again. */
static int publish_conflict(struct hbd *d, const struct sbx *s)
{
	for (size_t i = 0; i < d->count; i++) {
		const struct sbx *o = d->list[i];

		/* publish is set at creation and never changed: no lock needed */
		for (unsigned a = 0; a < s->rec.publish_count; a++)
			for (unsigned b = 0; b < o->rec.publish_count; b++) {
				const struct nat_port *p = &s->rec.publish[a];
				char text[NAT_PORT_TEXT_MAX];

				if (!nat_port_overlaps(p, &o->rec.publish[b]))
					continue;
				/* its state is o's lock's, which is not taken under
				 * the list's: read as it is, for the message alone */
				bool removing = __atomic_load_n(&o->rec.removing, __ATOMIC_RELAXED);
				bool running = __atomic_load_n(&o->rec.state, __ATOMIC_RELAXED) ==
					       SBX_RUNNING;
				nat_port_format(p, text, sizeof(text));
				return hb_err(-EADDRINUSE, "publish %s: host port %u/%s is published "
					      "by sandbox '%s' (%s)", text, (unsigned)p->host_port,
					      p->udp ? "udp" : "tcp", o->rec.name,
					      removing ? "being removed" :
					      running ? "running" : "asleep");
			}
	}
	return 0;
}

int hbd_add(struct hbd *d, struct sbx *s, bool new_sandbox)
{
	int r = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->count; i++)
		if (strcmp(d->list[i]->rec.name, s->rec.name) == 0)
			r = hb_err(-EEXIST, "a sandbox named '%s' exists already", s->rec.name);
	/* Checked and listed under one hold of the list's lock: of two
	 * creates wanting one port, the second sees the first. */
	if (r == 0 && new_sandbox)
		r = publish_conflict(d, s);
	if (r == 0 && s->rec.id_base == 0 && !(s->rec.id_base = hbd_free_id_base(d)))
		r = hb_err(-ENOSPC, "no free id range for another sandbox");
	if (r == 0 && d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		void *p = realloc(d->list, cap * sizeof(*d->list));
		if (!p)
			r = hb_err(-ENOMEM, "out of memory");
		else {
			d->list = p;
			d->cap = cap;
		}
	}
	if (r == 0)
		d->list[d->count++] = s;
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Drop the list's reference (the caller still holds its own). */
void hbd_unlist(struct hbd *d, struct sbx *s)
{
	bool found = false;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->count; i++)
		if (d->list[i] == s) {
			d->list[i] = d->list[--d->count];
			found = true;
			break;
		}
	pthread_mutex_unlock(&d->lock);
	if (found)
		hbd_put(d, s);
}

/* A referenced copy of the list, sorted by name. */
static int cmp_sbx(const void *a, const void *b)
{
	return strcmp((*(struct sbx *const *)a)->rec.name, (*(struct sbx *const *)b)->rec.name);
}

static struct sbx **hbd_all(struct hbd *d, size_t *n)
{
	struct sbx **all;

	pthread_mutex_lock(&d->lock);
	all = calloc(d->count + 1, sizeof(*all));
	*n = 0;
	if (all)
		for (size_t i = 0; i < d->count; i++) {
			all[(*n)++] = d->list[i];
			d->list[i]->refs++;
		}
	pthread_mutex_unlock(&d->lock);
	if (all)
		qsort(all, *n, sizeof(*all), cmp_sbx);
	return all;
}

static void hbd_put_all(struct hbd *d, struct sbx **all, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hbd_put(d, all[i]);
	free(all);
}

/* Whether s was removed while a request waited for its lock (its row is
 * gone; one whose removal is unfinished is still shown, as "removing"). */
static bool sbx_gone(const struct sbx *s)
{
	return s->removed && !s->rec.removing;
}

json_t *sbx_to_json(struct sbx *s)
{
	const struct sbx_record *r = &s->rec;
	json_t *env = json_loads(r->env_json ? r->env_json : "[]", 0, NULL);
	json_t *procs = json_array();

	for (struct sbx_detached *x = s->detached; x; x = x->next)
		if (sbx_detached_running(x))
			json_array_append_new(procs, json_integer(x->pid));
	json_t *publish = sbx_publish_json(r);

	return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:{s:I, s:I, s:I, s:f}, s:s, s:o, s:o,"
			 " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
			 "name", r->name, "image", r->image, "base", r->base,
			 "latest", r->latest[0] ? r->latest : r->base,
			 "mounted", r->lower[0] ? r->lower : NULL,
			 "state", r->removing ? "removing" :
				  r->state == SBX_RUNNING ? "running" : "sleeping",
			 "limits", "memory_bytes", (json_int_t)r->memory_bytes,
			 "disk_bytes", (json_int_t)r->disk_bytes,
			 "pids", (json_int_t)r->pids, "cpus", r->cpu_millis / 1000.0,
			 "network", sandbox_network_name(r->network) ?: "none",
			 "publish", publish ? publish : json_array(),
			 "env", env ? env : json_array(),
			 "idle_timeout_s", (json_int_t)r->idle_timeout_s,
			 "id_base", (json_int_t)r->id_base,
			 "init_pid", (json_int_t)(s->sb ? sandbox_pid(s->sb) : 0),
			 "created", (json_int_t)r->created, "slept_at", (json_int_t)r->slept_at,
			 "woken_at", (json_int_t)r->woken_at,
			 "sleep_ms", (json_int_t)r->last_sleep_ms,
			 "wake_ms", (json_int_t)r->last_wake_ms,
			 "detached_pids", procs);
}

#define SHOWN_LOCK_WAIT_MS 100

/* Take s->lock (0), unless a slow step (sleep, wake, commit, removal, file
 * upload) holds it: then 1, s not locked, and *shown a copy of s as it was
 * when the step began, which ls and inspect show rather than wait for it.
 * A lock held briefly (an exec's start, an idle tick) is waited for, so
 * nothing else is ever shown stale. */
static int sbx_lock_or_shown(struct hbd *d, struct sbx *s, json_t **shown)
{
	for (;;) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += SHOWN_LOCK_WAIT_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		if (pthread_mutex_clocklock(&s->lock, CLOCK_MONOTONIC, &until) == 0)
			return 0;
		pthread_mutex_lock(&d->lock);
		*shown = s->shown ? json_deep_copy(s->shown) : NULL;
		pthread_mutex_unlock(&d->lock);
		if (*shown)
			return 1;
	}
}

/* A sandbox as ls shows it, or NULL if it was removed meanwhile. */
static json_t *list_one(struct hbd *d, struct sbx *s)
{
	json_t *j = NULL;

	if (sbx_lock_or_shown(d, s, &j))
		return j;
	if (!sbx_gone(s))
		j = sbx_to_json(s);
	pthread_mutex_unlock(&s->lock);
	return j;
}

/* Idle sleeper: a running sandbox with no exec, no detached process, no
 * process besides init and no file download for idle_timeout_s goes to
 * sleep. */
static void *idle_main(void *arg)
{
	struct hbd *d = arg;

	while (!d->stopping) {
		struct timespec ts = { 0, IDLE_TICK_MS * 1000000L };
		size_t n;
		struct sbx **all;

		nanosleep(&ts, NULL);
		if (!(all = hbd_all(d, &n)))
			continue;
		for (size_t i = 0; i < n && !d->stopping; i++) {
			struct sbx *s = all[i];

			if (pthread_mutex_trylock(&s->lock) != 0)
				continue;
			int busy = sbx_reap_locked(d, s);
			if (s->sb && !s->removed)
				sbx_check_init_locked(d, s);
			hb_err_clear();
			if (s->sb && !s->removed && s->rec.idle_timeout_s) {
				busy += s->active_execs + sbx_process_count_locked(s) +
					hbd_transfers_open(d, s, NULL, 0);
				if (busy)
					s->last_activity_ns = now_ns();
				else if (now_ns() - s->last_activity_ns >=
					 s->rec.idle_timeout_s * 1000000000ull) {
					uint64_t ms;
					int r = sbx_sleep_locked(d, s, "idle", &ms, NULL);
					if (r < 0) {
						fprintf(stderr, "hiberboxd: idle sleep %s: %s\n",
							s->rec.name, hb_errmsg(r));
						/* tried again after another idle
						 * timeout, not at every tick */
						s->last_activity_ns = now_ns();
					} else {
						fprintf(stderr, "hiberboxd: %s idle: asleep in %llu ms\n",
							s->rec.name, (unsigned long long)ms);
					}
					hb_err_clear();
				}
			}
			pthread_mutex_unlock(&s->lock);
		}
		hbd_put_all(d, all, n);
	}
	return NULL;
}

/* HTTP plumbing. */

struct request {
	struct buf body;
	bool too_big;
	bool started;
	bool has_nul; /* its path or query decoded to a NUL byte */
};

/* A %00 in a request's path or query: the handler gets the decoded text
 * cut at the NUL, so "/sandboxes/a%00x" addressed sandbox a (a DELETE
 * too) and "path=/etc/passwd%00.txt" read /etc/passwd.  The library
 * decodes them in the connection's own thread (one per connection) before
 * it calls the handler, which takes this flag for its request. */
static _Thread_local bool request_has_nul;

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	size_t n = MHD_http_unescape(s);

	if (memchr(s, 0, n))
		request_has_nul = true;
	return n;
}

static int status_of(int r)
{
	switch (-r) {
	case ENOENT: case ESRCH: return MHD_HTTP_NOT_FOUND;
	case EEXIST: case EBUSY: case EPIPE: return MHD_HTTP_CONFLICT;
	case EINVAL: case ENAMETOOLONG: case E2BIG: case EISDIR: case ENOTDIR:
		return MHD_HTTP_BAD_REQUEST;
	case EACCES: case EPERM: return MHD_HTTP_FORBIDDEN;
	case EFBIG: return MHD_HTTP_CONTENT_TOO_LARGE;
	case ESHUTDOWN: return MHD_HTTP_SERVICE_UNAVAILABLE;
	/* a full disk, the sandbox's --disk or a quota: nothing the daemon got wrong */
	case ENOSPC: case EDQUOT: return MHD_HTTP_INSUFFICIENT_STORAGE;
	case ENOPKG: return MHD_HTTP_NOT_IMPLEMENTED; /* a mode whose helper is not installed */
	case EADDRINUSE: return MHD_HTTP_CONFLICT; /* a published port taken on the host */
	case EADDRNOTAVAIL: return MHD_HTTP_BAD_REQUEST; /* not an address of the host */
	default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	struct MHD_Response *resp;
	enum MHD_Result ret;

	json_decref(j);
	if (!s)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_err(struct MHD_Connection *c, int r)
{
	/* The message may quote a path or name that is not UTF-8 (a Latin-1
	 * file name asked for by its bytes): json_text escapes it, where a
	 * plain JSON string would fail and leave the client no reply at all. */
	json_t *j = json_pack("{s:o?, s:i}", "error", json_text(hb_errmsg(r)), "errno", -r);

	hb_err_clear();
	return reply_json(c, status_of(r), j);
}

static enum MHD_Result reply_ok(struct MHD_Connection *c, json_t *j, int r)
{
	if (r < 0) {
		json_decref(j);
		return reply_err(c, r);
	}
	return reply_json(c, MHD_HTTP_OK, j ? j : json_object());
}

static const char *arg(struct MHD_Connection *c, const char *key)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

/* A query flag: present and not "0"/"false". */
static bool flag(struct MHD_Connection *c, const char *key)
{
	const char *v = arg(c, key);
	return v && strcmp(v, "0") && strcmp(v, "false");
}

static json_t *body_json(struct request *rq, int *r)
{
	json_error_t e;
	json_t *j;

	if (rq->body.len == 0)
		return json_object();
	j = json_loadb((const char *)rq->body.data, rq->body.len, 0, &e);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		*r = hb_err(-EINVAL, "request body: %s", j ? "not a JSON object" : e.text);
		return NULL;
	}
	return j;
}

/* Durations are counted in nanoseconds later on: 100 years keeps that far
 * from overflowing (2^64 ns is 584 years). */
#define API_MAX_DURATION_S (100ull * 366 * 86400)
#define API_DEFAULT_PIDS 4096u
#define API_MAX_PIDS 4194304u /* the kernel's PID_MAX_LIMIT: pids.max takes no more */
#define API_MIN_DISK_BYTES (1u << 20)

/* "5m", "30s", "2h", "90" (seconds), "0" (never). */
static int parse_duration(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return hb_err(-EINVAL, "empty duration");
	errno = 0;
	v = strtoull(s, &end, 10);
	/* strtoull takes "-1" as 2^64-1 */
	if (errno || end == s || strchr(s, '-'))
		return hb_err(-EINVAL, "bad duration '%.32s'", s);
	uint64_t mul = !*end || !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 :
		!strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : 0;
	if (!mul)
		return hb_err(-EINVAL, "bad duration '%.32s' (use 30s, 5m, 2h)", s);
	if (v > API_MAX_DURATION_S / mul)
		return hb_err(-EINVAL, "duration '%.32s' is over 100 years", s);
	*out = v * mul;
	return 0;
}

/* create's "publish": an array of "[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]",
 * none wanting a host port another one has. */
static int parse_publish(json_t *v, struct sbx_record *rec)
{
	size_t n = json_array_size(v);
	int r;

	if (!json_is_array(v) || n > SBX_PUBLISH_MAX)
		return hb_err(-EINVAL, "publish must be an array of at most %d "
			      "\"[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]\"", SBX_PUBLISH_MAX);
	for (size_t i = 0; i < n; i++) {
		struct nat_port *p = &rec->publish[i];

		if ((r = nat_port_parse(json_string_value(json_array_get(v, i)), p)) < 0)
			return r;
		for (size_t j = 0; j < i; j++)
			if (nat_port_overlaps(&rec->publish[j], p))
				return hb_err(-EINVAL, "publish: the host's port %u/%s is published "
					      "twice", (unsigned)p->host_port, p->udp ? "udp" : "tcp");
	}
	rec->publish_count = (unsigned)n;
	return 0;
}

/* POST /sandboxes */
static int do_create(struct hbd *d, json_t *req, json_t **out)
{
	struct sbx_record rec = { 0 };
	json_t *v, *env;
	struct sbx *s = NULL;
	int r = 0;

	const char *name = json_string_value(json_object_get(req, "name"));
	const char *image = json_string_value(json_object_get(req, "image"));
	if (!name || !image)
		return hb_err(-EINVAL, "create needs \"name\" and \"image\"");
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	if (strlen(name) > SBX_NAME_MAX)
		return sbx_name_valid(name);
	snprintf(rec.image, sizeof(rec.image), "%s", image);
	if ((v = json_object_get(req, "memory_bytes"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return hb_err(-EINVAL, "memory_bytes must be a number of bytes");
		rec.memory_bytes = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(req, "disk_bytes"))) {
		/* (below a megabyte the journal's first records and a few files
		 * fill it: surely a unit forgotten) */
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    (json_integer_value(v) > 0 && json_integer_value(v) < API_MIN_DISK_BYTES))
			return hb_err(-EINVAL, "disk_bytes must be 0 (no limit) or at least %u bytes",
				      API_MIN_DISK_BYTES);
		rec.disk_bytes = (uint64_t)json_integer_value(v);
	}
	/* Not unlimited unless asked: a fork bomb in a sandbox without a
	 * limit takes every pid of the host (pid_max, 32768 by default, is
	 * below the RLIMIT_NPROC root passes on), and nothing on the host can
	 * fork any more. */
	rec.pids = API_DEFAULT_PIDS;
	if ((v = json_object_get(req, "pids"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > API_MAX_PIDS)
			return hb_err(-EINVAL, "pids must be a count of at most %u (0: no limit)",
				      API_MAX_PIDS);
		rec.pids = (uint32_t)json_integer_value(v);
	}
	if ((v = json_object_get(req, "cpus"))) {
		if (!json_is_number(v))
			return hb_err(-EINVAL, "cpus must be a number");
		double c = json_number_value(v);
		/* (0 is no limit; a fraction that rounds to it would be none too) */
		if (c < 0 || c > 1024 || (c > 0 && c < 0.001))
			return hb_err(-EINVAL, "cpus must be 0 (no limit) or between 0.001 and 1024");
		rec.cpu_millis = (uint32_t)(c * 1000 + 0.5);
	}
	if ((v = json_object_get(req, "network"))) {
		enum sandbox_network net;
		int r = sandbox_network_parse(json_string_value(v), &net);
		if (r < 0)
			return r;
		rec.network = (int)net;
	}
	if ((v = json_object_get(req, "publish")) && (r = parse_publish(v, &rec)) < 0)
		return r;
	if ((v = json_object_get(req, "idle_timeout"))) {
		if (json_is_integer(v) && json_integer_value(v) >= 0) {
			if ((uint64_t)json_integer_value(v) > API_MAX_DURATION_S)
				return hb_err(-EINVAL, "idle_timeout is over 100 years");
			rec.idle_timeout_s = (uint64_t)json_integer_value(v);
		}
		else if (!json_is_string(v))
			return hb_err(-EINVAL, "idle_timeout must be whole seconds or a duration "
				      "such as \"5m\"");
		else if ((r = parse_duration(json_string_value(v), &rec.idle_timeout_s)) < 0)
			return r;
	}
	env = json_object_get(req, "env");
	if (env && !json_is_array(env))
		return hb_err(-EINVAL, "env must be an array of \"K=V\" strings");
	for (size_t i = 0; env && i < json_array_size(env); i++) {
		const char *kv = json_string_value(json_array_get(env, i));
		if (!kv || !strchr(kv, '=') || kv[0] == '=' || i >= SBX_ENV_MAX)
			return hb_err(-EINVAL, "env entries are \"K=V\" (at most %d)", SBX_ENV_MAX);
	}
	rec.env_json = env ? json_dumps(env, JSON_COMPACT) : strdup("[]");
	if (!rec.env_json)
		return hb_err(-ENOMEM, "out of memory");
	uint64_t t0 = now_ns();
	r = sbx_create(d, &rec, true, &s);
	sbx_record_clear(&rec);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	*out = sbx_to_json(s);
	json_object_set_new(*out, "create_ms", json_integer((json_int_t)((now_ns() - t0) / 1000000)));
	pthread_mutex_unlock(&s->lock);
	hbd_put(d, s);
	return 0;
}

/* Exec stream. */

struct exec_stream {
	struct hbd *d;
	struct sbx *s;
	struct sandbox_proc *proc;
	int out_fd, err_fd;
	int client_fd;        /* the connection, watched for the client leaving */
	uint64_t deadline_ns; /* 0: none */
	unsigned stops_at_start; /* s->stops when the command started */
	bool timed_out, done, exited, client_gone;
	struct sandbox_exit ex;
	struct buf pending;
	size_t pending_off;
	/* stdin=stream: the pipe's write end, fed by POST .../exec/ID/stdin;
	 * tty=1: a copy of the terminal's master (stdin, eof and resize) */
	uint64_t id;
	int stdin_w;
	bool tty;
	struct exec_stream *next; /* in live_streams */
};

/* Execs whose stdin streams in: found by id when a stdin request comes. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct exec_stream *live_streams;
static uint64_t live_next_id = 1;

static void live_add(struct exec_stream *x)
{
	pthread_mutex_lock(&live_lock);
	x->id = live_next_id++;
	x->next = live_streams;
	live_streams = x;
	pthread_mutex_unlock(&live_lock);
}

static void live_remove(struct exec_stream *x)
{
	pthread_mutex_lock(&live_lock);
	for (struct exec_stream **p = &live_streams; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	if (x->stdin_w >= 0)
		close(x->stdin_w);
	x->stdin_w = -1;
	pthread_mutex_unlock(&live_lock);
}

static int frame(struct buf *b, int type, const void *data, size_t len)
{
	uint8_t h[HBD_FRAME_HEADER_BYTES] = { (uint8_t)type, 0, 0, 0, (uint8_t)(len >> 24),
					      (uint8_t)(len >> 16), (uint8_t)(len >> 8),
					      (uint8_t)len };
	int r = buf_append(b, h, sizeof(h));
	return r < 0 ? r : buf_append(b, data, len);
}

static void exec_finish(struct exec_stream *x)
{
	/* A SIGKILL the sandbox's stop sent (counted before it was sent) is
	 * told apart from one the command got from inside. */
	const char *killed_by = NULL;
	if (x->timed_out)
		killed_by = "timeout";
	else if (x->ex.signal == SIGKILL && atomic_load(&x->s->stops) != x->stops_at_start)
		killed_by = atomic_load(&x->s->stop_reason);
	else if (x->ex.signal == SIGKILL && x->ex.oom_kills)
		killed_by = "oom";
	json_t *j = json_pack("{s:i, s:i, s:b, s:s?}", "exit_code", x->ex.code, "signal",
			      x->ex.signal, "timed_out", x->timed_out, "killed_by", killed_by);
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	if (s)
		frame(&x->pending, HBD_FRAME_EXIT, s, strlen(s));
	free(s);
	json_decref(j);
	x->done = true;
}

/* Read what one pipe has; 0 at its end. */
static ssize_t drain_one(struct exec_stream *x, int *fd, int type, size_t room)
{
	uint8_t data[API_READ_CHUNK_BYTES];
	size_t want = room < sizeof(data) ? room : sizeof(data);
	ssize_t n;

	if (*fd < 0 || want == 0)
		return 0;
	n = read(*fd, data, want);
	if (n > 0) {
		frame(&x->pending, type, data, (size_t)n);
		return n;
	}
	if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		close(*fd);
		*fd = -1;
	}
	return n < 0 ? -1 : 0;
}

static void exec_step(struct exec_stream *x, size_t room)
{
	struct pollfd p[3] = { { x->out_fd, POLLIN, 0 }, { x->err_fd, POLLIN, 0 },
			       { x->client_fd, POLLRDHUP, 0 } };
	int timeout = API_POLL_MS;

	if (room <= HBD_FRAME_HEADER_BYTES)
		room = HBD_FRAME_HEADER_BYTES + 1;
	room -= HBD_FRAME_HEADER_BYTES;
	if (x->out_fd < 0 && x->err_fd < 0) {
		/* Both pipes closed: the command's end is its exit. */
		int r = sandbox_proc_wait(x->proc, API_POLL_MS, &x->ex);
		hb_err_clear();
		if (r == -ETIMEDOUT) {
			struct pollfd cp = { x->client_fd, POLLRDHUP, 0 };
			if (poll(&cp, 1, 0) > 0 && (cp.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
				sandbox_proc_kill(x->proc, SIGKILL);
				x->client_gone = true;
				x->done = true;
			} else if (x->deadline_ns && now_ns() >= x->deadline_ns && !x->timed_out) {
				sandbox_proc_kill(x->proc, SIGKILL);
				x->timed_out = true;
			}
			return;
		}
		if (r < 0) {
			x->ex.code = -1;
			x->ex.signal = SIGKILL;
		}
		exec_finish(x);
		return;
	}
	if (x->deadline_ns) {
		uint64_t now = now_ns();
		if (now >= x->deadline_ns) {
			if (!x->timed_out)
				sandbox_proc_kill(x->proc, SIGKILL);
			x->timed_out = true;
		} else if ((x->deadline_ns - now) / 1000000 < (uint64_t)timeout) {
			timeout = (int)((x->deadline_ns - now) / 1000000) + 1;
		}
	}
	int n = poll(p, 3, timeout);
	if (n > 0 && (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		/* Nobody reads the output any more: the command goes (as with
		 * a terminal that closes). */
		sandbox_proc_kill(x->proc, SIGKILL);
		x->client_gone = true;
		x->done = true;
		return;
	}
	if (n > 0) {
		if (p[0].revents)
			drain_one(x, &x->out_fd, HBD_FRAME_STDOUT, room);
		if (p[1].revents && x->pending.len == 0)
			drain_one(x, &x->err_fd, HBD_FRAME_STDERR, room);
		return;
	}
	/* Quiet pipes: the command may have ended while its children hold
	 * them open (a background job); its exit ends the stream. */
	if (sandbox_proc_wait(x->proc, 0, &x->ex) == 0) {
		while (x->out_fd >= 0 && drain_one(x, &x->out_fd, HBD_FRAME_STDOUT, room) > 0 &&
		       x->pending.len < room)
			;
		while (x->err_fd >= 0 && x->pending.len < room &&
		       drain_one(x, &x->err_fd, HBD_FRAME_STDERR, room) > 0)
			;
		if (x->out_fd >= 0)
			close(x->out_fd);
		if (x->err_fd >= 0)
			close(x->err_fd);
		x->out_fd = x->err_fd = -1;
		exec_finish(x);
	}
	hb_err_clear();
}

static ssize_t exec_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct exec_stream *x = cls;

	for (;;) {
		if (x->pending_off < x->pending.len) {
			size_t n = x->pending.len - x->pending_off;
			if (n > max)
				n = max;
			memcpy(out, x->pending.data + x->pending_off, n);
			x->pending_off += n;
			if (x->pending_off == x->pending.len) {
				x->pending.len = 0;
				x->pending_off = 0;
			}
			return (ssize_t)n;
		}
		if (x->done)
			return x->client_gone ? MHD_CONTENT_READER_END_WITH_ERROR :
						MHD_CONTENT_READER_END_OF_STREAM;
		exec_step(x, max);
	}
}

static void exec_free(void *cls)
{
	struct exec_stream *x = cls;

	if (!x->done && x->proc)
		sandbox_proc_kill(x->proc, SIGKILL);
	live_remove(x);
	sandbox_proc_free(x->proc);
	if (x->out_fd >= 0)
		close(x->out_fd);
	if (x->err_fd >= 0)
		close(x->err_fd);
	buf_free(&x->pending);
	pthread_mutex_lock(&x->s->lock);
	x->s->active_execs--;
	x->s->last_activity_ns = now_ns();
	pthread_mutex_unlock(&x->s->lock);
	hbd_put(x->d, x->s);
	free(x);
}

struct exec_args {
	const char *argv[API_EXEC_ARGS_MAX + 1];
	const char *env[API_EXEC_ARGS_MAX + 1];
	size_t argc, envc;
	bool overflow;
};

static enum MHD_Result collect_args(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	struct exec_args *a = cls;

	if (!strcmp(key, "arg")) {
		if (a->argc < API_EXEC_ARGS_MAX)
			a->argv[a->argc++] = value ? value : "";
		else
			a->overflow = true;
	} else if (!strcmp(key, "env")) {
		if (a->envc < API_EXEC_ARGS_MAX && value && strchr(value, '='))
			a->env[a->envc++] = value;
		else
			a->overflow = true;
	}
	return MHD_YES;
}

/* --user: "uid[:gid]" or a name from the sandbox's /etc/passwd. */
static int resolve_user(struct hbd *d, struct sbx *s, const char *user, uint32_t *uid,
			uint32_t *gid)
{
	char *end;
	unsigned long u, g;

	*uid = *gid = 0;
	if (!user || !*user)
		return 0;
	u = strtoul(user, &end, 10);
	if (end != user && (*end == 0 || *end == ':')) {
		g = u;
		if (*end == ':') {
			const char *gs = end + 1;
			g = strtoul(gs, &end, 10);
			if (end == gs || *end)
				return hb_err(-EINVAL, "bad user '%.64s' (uid[:gid] or a name)", user);
		}
		if (u >= SBX_ID_RANGE || g >= SBX_ID_RANGE)
			return hb_err(-EINVAL, "user ids must be below %u", SBX_ID_RANGE);
		*uid = (uint32_t)u;
		*gid = (uint32_t)g;
		return 0;
	}
	int fd = sbx_open_inside(d, s, "/etc/passwd", O_RDONLY);
	struct buf b = { .max = PASSWD_MAX_BYTES };
	int r;

	if (fd < 0)
		return hb_err_ctx(fd, "user %.64s", user);
	r = read_fd(fd, PASSWD_MAX_BYTES, &b);
	close(fd);
	if (r < 0)
		return hb_err(r, "reading /etc/passwd of %s", s->rec.name);
	r = hb_err(-ENOENT, "no user '%.64s' in %s's /etc/passwd", user, s->rec.name);
	size_t ulen = strlen(user);
	for (size_t i = 0; i < b.len;) {
		const char *line = (const char *)b.data + i;
		const char *nl = memchr(line, '\n', b.len - i);
		size_t len = nl ? (size_t)(nl - line) : b.len - i;
		i += len + 1;
		if (len > ulen + 1 && !memcmp(line, user, ulen) && line[ulen] == ':') {
			char tmp[512];
			snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 511 ? len : 511), line);
			/* name:password:uid:gid:...; fields may be empty (no
			 * password), so split at every ':' (strtok would skip
			 * them and shift the ids) */
			char *f[4] = { 0 }, *t = tmp, *end_u = NULL, *end_g = NULL;
			for (int k = 0; k < 4 && t; k++) {
				f[k] = t;
				if ((t = strchr(t, ':')))
					*t++ = '\0';
			}
			if (f[2] && f[3] && *f[2] && *f[3]) {
				u = strtoul(f[2], &end_u, 10);
				g = strtoul(f[3], &end_g, 10);
				if (!*end_u && !*end_g && u < SBX_ID_RANGE && g < SBX_ID_RANGE) {
					*uid = (uint32_t)u;
					*gid = (uint32_t)g;
					hb_err_clear();
					r = 0;
				}
			}
			break;
		}
	}
	buf_free(&b);
	return r;
}

static int parse_size_param(struct MHD_Connection *c, const char *key, unsigned *out)
{
	const char *v = arg(c, key);
	char *end;
	unsigned long n;

	if (!v)
		return 0;
	n = strtoul(v, &end, 10);
	if (end == v || *end || n == 0 || n > 10000)
		return hb_err(-EINVAL, "%s must be 1..10000, not '%.32s'", key, v);
	*out = (unsigned)n;
	return 0;
}

/* A terminal for a tty exec: a pty of the sandbox's own devpts instance, so
 * that the command's ttyname() is a /dev/pts/N that exists inside.  The
 * sandbox's root is reached through its init's /proc root, with every link
 * resolved inside it, and whatever is found must be a pty master; the slave
 * comes from the master (TIOCGPTPEER), not from a path.  It belongs to the
 * command's user, as after a login. */
static int open_tty(struct hbd *d, struct sbx *s, const struct sbx_exec_req *req, unsigned rows,
		    unsigned cols, int *master, int *slave)
{
	struct open_how how = {
		.flags = O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	char path[64];
	struct stat st;
	int root, m, sl = -1, unlock = 0, r;

	if ((r = sbx_wake_locked(d, s, NULL)) < 0)
		return r;
	snprintf(path, sizeof(path), "/proc/%d/root", (int)sandbox_pid(s->sb));
	if ((root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return hb_err(-errno, "terminal: %s: %s", path, strerror(errno));
	m = (int)syscall(SYS_openat2, root, "dev/pts/ptmx", &how, sizeof(how));
	r = m < 0 ? -errno : 0;
	close(root);
	if (r < 0)
		return hb_err(r, "terminal: /dev/pts/ptmx in %s: %s", s->rec.name, strerror(-r));
	if (fstat(m, &st) < 0 || !S_ISCHR(st.st_mode) || ioctl(m, TIOCSPTLCK, &unlock) < 0 ||
	    (sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		close(m);
		return hb_err(-ENOTTY, "terminal: /dev/pts/ptmx in %s is not a pty multiplexer",
			      s->rec.name);
	}
	if (ioctl(m, TIOCSWINSZ, &ws) < 0 ||
	    fchown(sl, s->rec.id_base + req->uid, s->rec.id_base + req->gid) < 0) {
		r = hb_err(-errno, "terminal: %s", strerror(errno));
		close(sl);
		close(m);
		return r;
	}
	*master = m;
	*slave = sl;
	return 0;
}

static int stdin_fd_from(struct request *rq)
{
	int fd;

	if (rq->body.len == 0)
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	fd = memfd_create("hiberbox-stdin", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write_all(fd, rq->body.data, rq->body.len) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		close(fd);
		return -EIO;
	}
	return fd;
}

static enum MHD_Result do_exec(struct hbd *d, struct sbx *s, struct MHD_Connection *c,
			       struct request *rq)
{
	struct exec_args *a = calloc(1, sizeof(*a));
	struct sbx_exec_req req = { .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };
	const char *t = arg(c, "timeout"), *detach = arg(c, "detach"), *in = arg(c, "stdin");
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, inp[2] = { -1, -1 }, r;
	uint64_t timeout_s = 0;
	struct sandbox_proc *proc = NULL;
	char logs[4200], tmp[4300], final[4300];
	bool detached = detach && strcmp(detach, "0") && strcmp(detach, "false");

	if (!a)
		return reply_err(c, hb_err(-ENOMEM, "out of memory"));
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_args, a);
	if (a->overflow || a->argc == 0) {
		r = hb_err(-EINVAL, a->argc ? "too many or malformed arg/env parameters" :
			   "exec needs at least one arg parameter");
		goto fail;
	}
	if (t && (r = parse_duration(t, &timeout_s)) < 0)
		goto fail;
	bool stream_in = in && !strcmp(in, "stream");
	if (in && !stream_in) {
		r = hb_err(-EINVAL, "stdin must be \"stream\" (or absent: the body is stdin)");
		goto fail;
	}
	if (stream_in && (detached || rq->body.len)) {
		r = hb_err(-EINVAL, "stdin=stream takes no body and no detach");
		goto fail;
	}
	bool tty = flag(c, "tty");
	unsigned rows = 24, cols = 80;
	if (tty && (detached || rq->body.len)) {
		r = hb_err(-EINVAL, "tty=1 takes no body and no detach (its input comes by .../stdin)");
		goto fail;
	}
	if (tty && ((r = parse_size_param(c, "rows", &rows)) < 0 ||
		    (r = parse_size_param(c, "cols", &cols)) < 0))
		goto fail;
	req.argv = a->argv;
	req.env = a->env;
	req.cwd = arg(c, "cwd");
	pthread_mutex_lock(&s->lock);
	r = resolve_user(d, s, arg(c, "user"), &req.uid, &req.gid);
	if (r < 0)
		goto fail_locked;
	if (tty) {
		int slave = -1;
		if ((r = open_tty(d, s, &req, rows, cols, &out[0], &slave)) < 0)
			goto fail_locked;
		req.stdin_fd = req.stdout_fd = req.stderr_fd = slave;
		req.tty = true;
	} else if (stream_in) {
		if (pipe2(inp, O_CLOEXEC) < 0) {
			r = hb_err_sys(-errno, "pipe");
			goto fail_locked;
		}
		req.stdin_fd = inp[0];
	} else if ((req.stdin_fd = stdin_fd_from(rq)) < 0) {
		r = hb_err(req.stdin_fd, "stdin");
		goto fail_locked;
	}
	if (detached) {
		if ((r = sbx_state_dir(d, s->rec.name, "logs", logs, sizeof(logs))) < 0 ||
		    (r = mkdir_p(AT_FDCWD, logs, 0700)) < 0)
			goto fail_locked;
		snprintf(tmp, sizeof(tmp), "%s/new-XXXXXX", logs);
		if ((out[1] = mkostemp(tmp, O_CLOEXEC | O_APPEND)) < 0) {
			r = hb_err_sys(-errno, "log file in %s", logs);
			goto fail_locked;
		}
		req.stdout_fd = req.stderr_fd = out[1];
	} else if (!tty) {
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
			r = hb_err_sys(-errno, "pipe");
			goto fail_locked;
		}
		req.stdout_fd = out[1];
		req.stderr_fd = err[1];
	}
	r = sbx_exec_start_locked(d, s, &req, &proc);
	if (r < 0) {
		if (detached)
			unlink(tmp);
		goto fail_locked;
	}
	if (detached) {
		pid_t pid = sandbox_proc_pid(proc);

		snprintf(final, sizeof(final), "%s/%d.log", logs, (int)pid);
		if (rename(tmp, final) < 0) {
			r = hb_err_sys(-errno, "log file %s", final);
			unlink(tmp);
			sandbox_proc_free(proc); /* kills it: its output would go nowhere */
			goto fail_locked;
		}
		/* recorded to cap the log's size (sbx_reap_locked) */
		uint64_t deadline = timeout_s ? now_ns() + timeout_s * 1000000000ull : 0;
		if ((r = sbx_detached_add(d, s, proc, out[1], final, deadline)) < 0) {
			sandbox_proc_free(proc);
			/* nobody would ever list, cap or remove it */
			unlink(final);
			goto fail_locked;
		}
		pthread_mutex_unlock(&s->lock);
		close(out[1]);
		close(req.stdin_fd);
		free(a);
		hbd_put(d, s);
		return reply_json(c, MHD_HTTP_OK, json_pack("{s:i, s:s}", "pid", (int)pid,
							     "log", final));
	}
	s->active_execs++;
	unsigned stops = atomic_load(&s->stops);
	pthread_mutex_unlock(&s->lock);
	/* The terminal's slave (or the pipes' other ends) now belong to the
	 * command alone: its exit is then the end of the output. */
	if (!tty) {
		close(out[1]);
		close(err[1]);
	}
	close(req.stdin_fd);
	free(a);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	if (err[0] >= 0)
		fcntl(err[0], F_SETFL, O_NONBLOCK);
	if (tty && (inp[1] = fcntl(out[0], F_DUPFD_CLOEXEC, 0)) < 0) {
		sandbox_proc_free(proc); /* kills it: without a copy nobody could type */
		close(out[0]);
		pthread_mutex_lock(&s->lock);
		s->active_execs--;
		pthread_mutex_unlock(&s->lock);
		hbd_put(d, s);
		return reply_err(c, hb_err_sys(-errno, "terminal"));
	}

	struct exec_stream *x = calloc(1, sizeof(*x));
	if (!x) { /* the process runs on with nobody listening: stop it */
		sandbox_proc_free(proc);
		close(out[0]);
		if (err[0] >= 0)
			close(err[0]);
		if (inp[1] >= 0)
			close(inp[1]);
		pthread_mutex_lock(&s->lock);
		s->active_execs--;
		pthread_mutex_unlock(&s->lock);
		hbd_put(d, s);
		return reply_err(c, hb_err(-ENOMEM, "out of memory"));
	}
	x->d = d;
	x->s = s; /* the reference passes to the stream */
	x->proc = proc;
	x->out_fd = out[0];
	x->err_fd = err[0];
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	x->client_fd = ci ? ci->connect_fd : -1;
	x->pending.max = 4 * API_READ_CHUNK_BYTES;
	x->deadline_ns = timeout_s ? now_ns() + timeout_s * 1000000000ull : 0;
	x->stops_at_start = stops;
	x->stdin_w = inp[1];
	x->tty = tty;
	if (stream_in || tty) {
		char started[64];

		/* the write end must not block the stream's thread: a command
		 * that never reads stdin only stalls the stdin requests */
		live_add(x);
		snprintf(started, sizeof(started), "{\"exec\":%llu}", (unsigned long long)x->id);
		frame(&x->pending, HBD_FRAME_STARTED, started, strlen(started));
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, API_READ_CHUNK_BYTES + HBD_FRAME_HEADER_BYTES, exec_read, x,
		exec_free);
	if (!resp) {
		exec_free(x);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/vnd.hiberbox.stream");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
fail_locked:
	pthread_mutex_unlock(&s->lock);
fail:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	if (req.stdin_fd >= 0)
		close(req.stdin_fd);
	if (inp[1] >= 0)
		close(inp[1]);
	free(a);
	hbd_put(d, s);
	return reply_err(c, r);
}

/* The live exec id of s, or NULL (live_lock held). */
static struct exec_stream *live_find(struct sbx *s, uint64_t id)
{
	struct exec_stream *x = live_streams;

	while (x && !(x->id == id && x->s == s))
		x = x->next;
	return x;
}

/* Whether exec id of s is still live (its stdin or terminal may be
 * written). */
static bool exec_live(struct sbx *s, uint64_t id)
{
	bool live;

	pthread_mutex_lock(&live_lock);
	live = live_find(s, id) != NULL;
	pthread_mutex_unlock(&live_lock);
	return live;
}

/* Write all of data to an exec's stdin pipe (blocking) or terminal
 * (non-blocking: waits while its input queue is full, for as long as the
 * exec lives). */
static int exec_input(struct sbx *s, uint64_t id, int fd, const uint8_t *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { fd, POLLOUT, 0 };
			if (poll(&p, 1, API_POLL_MS) == 0 && !exec_live(s, id))
				return -EPIPE;
			continue;
		}
		return n < 0 ? -errno : -EIO;
	}
	return 0;
}

/* POST .../exec/ID/stdin[?eof=1]: the body goes to the command's stdin (this
 * request waits while the pipe is full: the command sets the pace); eof=1
 * closes it after the body, or on a terminal types its end-of-file
 * character (closing a terminal would hang it up).
 * POST .../exec/ID/resize?rows=R&cols=C: a tty exec's window size (the
 * command gets SIGWINCH). */
static int do_exec_input(struct sbx *s, struct MHD_Connection *c, const char *idstr,
			 struct request *rq, json_t **out)
{
	bool close_after = flag(c, "eof"), resize = false, tty = false;
	char *end;
	unsigned long long id = strtoull(idstr, &end, 10);
	unsigned rows = 0, cols = 0;
	int fd = -1, r = 0;
	struct exec_stream *x;
	bool found;

	if (end != idstr && !strcmp(end, "/resize")) {
		resize = true;
		if ((r = parse_size_param(c, "rows", &rows)) < 0 ||
		    (r = parse_size_param(c, "cols", &cols)) < 0)
			return r;
		if (!rows || !cols)
			return hb_err(-EINVAL, "resize needs rows and cols");
	} else if (end == idstr || strcmp(end, "/stdin")) {
		return hb_err(-ENOENT, "no endpoint POST .../exec/%.32s", idstr);
	}
	pthread_mutex_lock(&live_lock);
	x = live_find(s, id);
	found = x != NULL;
	if (x) {
		tty = x->tty;
		if (resize && !tty)
			r = hb_err(-EINVAL, "exec %llu has no terminal to resize", id);
		else if (x->stdin_w >= 0 && (rq->body.len || resize || (tty && close_after)))
			fd = fcntl(x->stdin_w, F_DUPFD_CLOEXEC, 0);
		if (r == 0 && !resize && !tty && x->stdin_w >= 0 && close_after) {
			close(x->stdin_w);
			x->stdin_w = -1;
		} else if (r == 0 && !resize && x->stdin_w < 0 && rq->body.len) {
			r = hb_err(-EPIPE, "stdin of exec %llu is already closed", id);
		}
	}
	pthread_mutex_unlock(&live_lock);
	if (!found)
		return hb_err(-ENOENT, "no exec %llu with streamed stdin in %s (it has ended?)", id,
			      s->rec.name);
	if (r == 0 && fd < 0 && (rq->body.len || resize || (tty && close_after)))
		r = hb_err_sys(-errno, "stdin of exec %llu", id);
	if (r == 0 && resize) {
		struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
		if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
			r = hb_err_sys(-errno, "resizing the terminal of exec %llu", id);
		else
			*out = json_pack("{s:i, s:i}", "rows", (int)rows, "cols", (int)cols);
		close(fd);
		return r;
	}
	if (r == 0 && rq->body.len)
		r = exec_input(s, id, fd, rq->body.data, rq->body.len);
	if (r == 0 && tty && close_after) {
		struct termios t;
		uint8_t eof = 4; /* ^D, unless the terminal says otherwise */
		if (tcgetattr(fd, &t) == 0 && t.c_cc[VEOF])
			eof = t.c_cc[VEOF];
		r = exec_input(s, id, fd, &eof, 1);
	}
	if (fd >= 0)
		close(fd);
	if (r == -EPIPE)
		return hb_err(r, "the command of exec %llu no longer reads its stdin", id);
	if (r < 0)
		return hb_err(-EIO, "writing stdin of exec %llu", id);
	*out = json_pack("{s:I, s:b}", "written", (json_int_t)rq->body.len, "closed",
			 close_after);
	return 0;
}

/* fd's size and mode if it is a regular file; else fd is closed and the
 * error says what it is. */
static int regular_file(int fd, struct stat *st)
{
	int r = 0;

	if (fstat(fd, st) < 0)
		r = hb_err_sys(-errno, "fstat");
	else if (S_ISDIR(st->st_mode))
		r = hb_err(-EISDIR, "a directory: only files can be copied");
	else if (!S_ISREG(st->st_mode))
		r = hb_err(-EINVAL, "not a regular file");
	if (r < 0)
		close(fd);
	return r;
}

static enum MHD_Result queue_file(struct MHD_Connection *c, struct MHD_Response *resp,
				  mode_t mode)
{
	char m[16];
	enum MHD_Result ret;

	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	snprintf(m, sizeof(m), "%04o", (unsigned)(mode & 07777));
	MHD_add_response_header(resp, "X-Hiberbox-Mode", m);
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_fd(struct MHD_Connection *c, int fd)
{
	struct stat st;
	struct MHD_Response *resp;
	int r = regular_file(fd, &st);

	if (r < 0)
		return reply_err(c, r);
	resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (!resp) {
		close(fd);
		return MHD_NO;
	}
	return queue_file(c, resp, st.st_mode);
}

/* A file download from a sandbox's root, open from the moment its file is
 * opened (under the sandbox's lock) until its reply is done or its client
 * went away: a sleep must not pull the mount from under it. */
struct sbx_transfer {
	struct hbd *d;
	struct sbx *s; /* a reference, let go at the end */
	int fd;
	struct sbx_transfer *next;
	char path[];
};

int hbd_transfers_open(struct hbd *d, struct sbx *s, char *path_out, size_t size)
{
	int n = 0;

	pthread_mutex_lock(&d->lock);
	for (struct sbx_transfer *x = s->transfers; x; x = x->next)
		n++;
	if (n && path_out)
		snprintf(path_out, size, "%s", s->transfers->path);
	pthread_mutex_unlock(&d->lock);
	return n;
}

static ssize_t transfer_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sbx_transfer *x = cls;
	ssize_t n;

	do
		n = pread(x->fd, buf, max, (off_t)pos);
	while (n < 0 && errno == EINTR);
	/* 0: the file is shorter than when the reply began.  The connection is
	 * cut, so the client cannot take what it got for the whole file. */
	return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void transfer_end(void *cls)
{
	struct sbx_transfer *x = cls;

	close(x->fd); /* before it is unlisted: then nothing holds the mount */
	pthread_mutex_lock(&x->d->lock);
	for (struct sbx_transfer **p = &x->s->transfers; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	pthread_mutex_unlock(&x->d->lock);
	hbd_put(x->d, x->s);
	free(x);
}

/* Reply fd, a file of s's root opened under s's lock, which is held and let
 * go here (the download is listed first); s's reference passes to it. */
static enum MHD_Result reply_download(struct hbd *d, struct sbx *s, struct MHD_Connection *c,
				      int fd, const char *path)
{
	struct sbx_transfer *x = NULL;
	struct MHD_Response *resp;
	struct stat st;
	int r = regular_file(fd, &st);

	if (r == 0 && !(x = calloc(1, sizeof(*x) + strlen(path) + 1))) {
		close(fd);
		r = hb_err(-ENOMEM, "out of memory");
	}
	if (r < 0) {
		pthread_mutex_unlock(&s->lock);
		hbd_put(d, s);
		return reply_err(c, r);
	}
	x->d = d;
	x->s = s;
	x->fd = fd;
	strcpy(x->path, path);
	pthread_mutex_lock(&d->lock);
	x->next = s->transfers;
	s->transfers = x;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&s->lock);
	resp = MHD_create_response_from_callback((uint64_t)st.st_size, API_READ_CHUNK_BYTES * 4,
						 transfer_read, x, transfer_end);
	if (!resp) {
		transfer_end(x);
		return MHD_NO;
	}
	return queue_file(c, resp, st.st_mode);
}

static int latest_log(const char *dir, char *out, size_t size)
{
	char path[4400];
	int r = hb_err(-ENOENT, "no logs: start a process with 'exec -d'");
	struct timespec best = { 0, 0 };
	DIR *dh = opendir(dir);
	struct dirent *e;

	if (!dh)
		return r;
	while ((e = readdir(dh))) {
		struct stat st;
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".log") || !strncmp(e->d_name, "new-", 4))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0 && (st.st_mtim.tv_sec > best.tv_sec ||
		    (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec))) {
			best = st.st_mtim;
			snprintf(out, size, "%s", path);
			hb_err_clear();
			r = 0;
		}
	}
	closedir(dh);
	return r;
}

/* GET .../logs?follow=1: the log as it grows, until nothing writes it any
 * more (its command and what it left running ended, or the sandbox slept
 * or went), the client leaves or the daemon stops. */

/* trim_log keeps about 16 MiB when it collapses a log; a log found this
 * small behind a follower's position started again. */
#define LOG_RESTARTED_BYTES (1u << 20)

struct log_follow {
	struct hbd *d;
	struct sbx *s; /* a reference, let go at the end */
	int client_fd;
	pid_t pid;
	uint64_t offset;
	bool ending; /* its writers are gone: what is left, then the end */
	char path[];
};

/* Whether pid is still a detached process of the sandbox (listed while it
 * or a background child of it writes its log).  A sandbox busy in a sleep
 * or a commit counts as yes: asked again at the next poll. */
static bool log_writer_listed(struct log_follow *f)
{
	bool listed = false;

	if (pthread_mutex_trylock(&f->s->lock) != 0)
		return true;
	if (!f->s->removed) {
		sbx_reap_locked(f->d, f->s);
		hb_err_clear();
		for (struct sbx_detached *x = f->s->detached; x && !listed; x = x->next)
			listed = x->pid == f->pid;
	}
	pthread_mutex_unlock(&f->s->lock);
	return listed;
}

static ssize_t log_follow_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	static const char cut_note[] = "\n[hiberbox: the log was cut while followed; "
				       "output may be missing here]\n";
	struct log_follow *f = cls;

	for (;;) {
		/* Opened for each read: the daemon tells whether anything still
		 * writes a log by whether it is the file's only opener
		 * (log_still_written), and a follower must not look like a writer. */
		int fd = open(f->path, O_RDONLY | O_CLOEXEC);
		int open_errno = errno;
		ssize_t n = fd < 0 ? 0 : pread(fd, buf, max, (off_t)f->offset);
		struct pollfd p = { f->client_fd, POLLRDHUP, 0 };
		struct stat st;
		bool shrank = fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size < f->offset;

		if (fd >= 0)
			close(fd);
		if ((fd < 0 && open_errno != ENOENT) || n < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (n > 0) {
			f->offset += (uint64_t)n;
			return n;
		}
		/* the end; also once the log went with its sandbox */
		if (f->ending || f->d->stopping || fd < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (shrank) {
			/* the size cap (trim_log) took the oldest part out, which
			 * moved the rest by an amount not known here; a log that
			 * started again (with a note) is read whole */
			f->offset = (uint64_t)st.st_size <= LOG_RESTARTED_BYTES ? 0 : (uint64_t)st.st_size;
			if (max < sizeof(cut_note) - 1)
				continue;
			memcpy(buf, cut_note, sizeof(cut_note) - 1);
			return (ssize_t)sizeof(cut_note) - 1;
		}
		if (!log_writer_listed(f)) {
			f->ending = true; /* what it wrote last is in the file by now */
			continue;
		}
		if (poll(&p, 1, API_POLL_MS) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void log_follow_free(void *cls)
{
	struct log_follow *f = cls;

	hbd_put(f->d, f->s);
	free(f);
}

static enum MHD_Result reply_log_follow(struct hbd *d, struct sbx *s, struct MHD_Connection *c,
					const char *path)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct log_follow *f = calloc(1, sizeof(*f) + strlen(path) + 1);
	const char *base = strrchr(path, '/');
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (!f) {
		hbd_put(d, s);
		return reply_err(c, hb_err(-ENOMEM, "out of memory"));
	}
	f->d = d;
	f->s = s;
	f->client_fd = ci ? ci->connect_fd : -1;
	f->pid = (pid_t)strtol(base ? base + 1 : path, NULL, 10);
	strcpy(f->path, path);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, API_READ_CHUNK_BYTES,
						 log_follow_read, f, log_follow_free);
	if (!resp) {
		log_follow_free(f);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result do_logs(struct hbd *d, struct sbx *s, struct MHD_Connection *c)
{
	char dir[4200], path[4400];
	const char *pid = arg(c, "pid");
	int r = sbx_state_dir(d, s->rec.name, "logs", dir, sizeof(dir)), fd;
	struct stat st;
	char *end;

	if (r < 0)
		goto fail;
	if (pid) {
		long v = strtol(pid, &end, 10);
		if (end == pid || *end || v <= 0 || v > INT_MAX) {
			r = hb_err(-EINVAL, "bad pid '%.32s'", pid);
			goto fail;
		}
		snprintf(path, sizeof(path), "%s/%ld.log", dir, v);
	} else if ((r = latest_log(dir, path, sizeof(path))) < 0) {
		goto fail;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = hb_err_sys(-errno, "no log for pid %s", pid ? pid : "?");
		goto fail;
	}
	if (!flag(c, "follow")) {
		hbd_put(d, s);
		return reply_fd(c, fd);
	}
	r = regular_file(fd, &st); /* closes fd if not */
	if (r < 0)
		goto fail;
	close(fd);
	return reply_log_follow(d, s, c, path);
fail:
	hbd_put(d, s);
	return reply_err(c, r);
}

/* The mode query parameter: octal permission bits, at most 07777 (what the
 * PUT is given is what it sets, never a silent 0 or a stray setuid bit). */
static int parse_mode(struct MHD_Connection *c, mode_t def, mode_t *out)
{
	const char *v = arg(c, "mode");
	char *end;
	unsigned long m;

	*out = def;
	if (!v)
		return 0;
	errno = 0;
	m = strtoul(v, &end, 8);
	if (!*v || *end || errno || m > 07777 || strchr(v, '-'))
		return hb_err(-EINVAL, "mode must be octal permission bits (e.g. 0644), not '%.32s'",
			      v);
	*out = (mode_t)m;
	return 0;
}

static enum MHD_Result do_files(struct hbd *d, struct sbx *s, struct MHD_Connection *c,
				const char *method, struct request *rq)
{
	const char *path = arg(c, "path"), *type = arg(c, "type");
	bool put_dir = type && !strcmp(type, "dir");
	json_t *j = NULL;
	mode_t mode = 0;
	int fd, r = 0;

	if (!strcmp(method, "PUT") && (r = parse_mode(c, put_dir ? 0755 : 0644, &mode)) < 0) {
		hbd_put(d, s);
		return reply_err(c, r);
	}
	pthread_mutex_lock(&s->lock);
	if (!strcmp(method, "GET") && (flag(c, "stat") || flag(c, "list"))) {
		r = flag(c, "stat") ? sbx_file_stat(d, s, path, &j) : sbx_dir_list(d, s, path, &j);
		pthread_mutex_unlock(&s->lock);
		hbd_put(d, s);
		return reply_ok(c, j, r);
	}
	if (!strcmp(method, "PUT") && type && strcmp(type, "file")) {
		if (put_dir)
			r = rq->body.len ? hb_err(-EINVAL, "type=dir takes no body") :
					   sbx_make_dir(d, s, path, mode);
		else if (!strcmp(type, "symlink"))
			r = sbx_make_symlink(d, s, path, rq->body.data, rq->body.len);
		else
			r = hb_err(-EINVAL, "type must be file, dir or symlink");
		pthread_mutex_unlock(&s->lock);
		if (r == 0)
			j = json_pack("{s:s, s:s}", "path", path, "type", type);
		hbd_put(d, s);
		return reply_ok(c, j, r);
	}
	if (!strcmp(method, "GET")) {
		/* A stopping daemon lets the downloads in progress end (for a
		 * while: shutdown_wait_downloads), so none may begin. */
		fd = d->stopping ? hb_err(-ESHUTDOWN, "hiberboxd is stopping: no new download from %s",
					  s->rec.name) :
				   sbx_open_inside(d, s, path, O_RDONLY);
		if (fd >= 0)
			return reply_download(d, s, c, fd, path);
		pthread_mutex_unlock(&s->lock);
		hbd_put(d, s);
		return reply_err(c, fd);
	}
	struct sbx_upload_req ur = {
		.path = path, .upload = arg(c, "upload"), .mode = mode, .append = flag(c, "append"),
		.commit = flag(c, "commit"), .abort = flag(c, "abort"),
	};
	struct sbx_upload up;
	if (ur.abort) {
		r = rq->body.len ? hb_err(-EINVAL, "abort=1 takes no body") :
				   sbx_upload_abort(d, s, path, ur.upload);
	} else if ((r = sbx_upload_open(d, s, &ur, &up)) == 0) {
		/* up to 64 MiB through the fs process, with the lock */
		sbx_slow_begin(d, s);
		hbd_test_pause("upload", s->rec.name, d->test_upload_pause_ms);
		r = write_all(up.fd, rq->body.data, rq->body.len);
		if (r < 0)
			r = hb_err_sys(r, "writing %s:%s", s->rec.name, path);
		r = sbx_upload_close(s, &up, r);
		sbx_slow_end(d, s);
	}
	pthread_mutex_unlock(&s->lock);
	j = r < 0 ? NULL : json_pack("{s:s, s:I}", "path", path, "bytes", (json_int_t)rq->body.len);
	/* the id the next pieces name */
	if (j && !ur.abort && ur.upload && !ur.commit)
		json_object_set_new(j, "upload", json_string(up.id));
	hbd_put(d, s);
	return reply_ok(c, j, r);
}

static enum MHD_Result do_sandbox(struct hbd *d, struct MHD_Connection *c, const char *method,
				  const char *rest, struct request *rq)
{
	char name[SBX_NAME_MAX + 2];
	const char *slash = strchr(rest, '/');
	const char *op = slash ? slash + 1 : "";
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	json_t *out = NULL, *body;
	struct sbx *s;
	uint64_t ms;
	int r;

	if (n > SBX_NAME_MAX)
		return reply_err(c, hb_err(-EINVAL, "name too long"));
	/* "NAME/" is no endpoint (nor is "NAME%2F"): not NAME's */
	if (slash && !*op)
		return reply_err(c, hb_err(-ENOENT, "no endpoint %s /sandboxes/%s", method, rest));
	memcpy(name, rest, n);
	name[n] = 0;
	if ((r = sbx_name_valid(name)) < 0)
		return reply_err(c, r);
	if (!(s = hbd_get(d, name)))
		return reply_err(c, -ENOENT);

	if (!*op && !strcmp(method, "GET")) {
		if (sbx_lock_or_shown(d, s, &out)) {
			/* inspect and stats must not hang either; what s runs
			 * and uses is not read without its lock */
			json_object_set_new(out, "processes", json_null());
			json_object_set_new(out, "usage", json_null());
		} else {
			if (sbx_gone(s)) {
				r = hb_err(-ENOENT, "no sandbox named '%s'", name);
			} else {
				sbx_reap_locked(d, s);
				out = sbx_to_json(s);
				json_object_set_new(out, "processes",
						    json_integer(sbx_process_count_locked(s)));
				json_object_set_new(out, "usage",
						    sbx_usage_json_locked(d, s) ?: json_null());
			}
			pthread_mutex_unlock(&s->lock);
		}
	} else if (!*op && !strcmp(method, "DELETE")) {
		r = sbx_remove(d, s);
		if (r == 0)
			out = json_pack("{s:s}", "removed", name);
	} else if (!strcmp(op, "sleep") && !strcmp(method, "POST")) {
		char snap[OID_HEX_BYTES] = "";
		pthread_mutex_lock(&s->lock);
		bool was = s->sb != NULL;
		r = sbx_sleep_locked(d, s, "sleep", &ms, snap);
		if (r == 0)
			out = json_pack("{s:s, s:s, s:I, s:b}", "name", name, "snapshot", snap,
					"sleep_ms", (json_int_t)ms, "was_running", was);
		pthread_mutex_unlock(&s->lock);
	} else if (!strcmp(op, "wake") && !strcmp(method, "POST")) {
		pthread_mutex_lock(&s->lock);
		bool was = s->sb != NULL;
		r = sbx_wake_locked(d, s, &ms);
		if (r == 0)
			out = json_pack("{s:s, s:I, s:b}", "name", name, "wake_ms", (json_int_t)ms,
					"was_running", was);
		pthread_mutex_unlock(&s->lock);
	} else if (!strcmp(op, "fork") && !strcmp(method, "POST")) {
		struct sbx *child = NULL;
		uint64_t t0 = now_ns();
		if ((body = body_json(rq, &r))) {
			const char *nn = json_string_value(json_object_get(body, "name"));
			r = nn ? sbx_fork(d, s, nn, &child) :
				 hb_err(-EINVAL, "fork needs \"name\"");
			json_decref(body);
		}
		if (r == 0) {
			pthread_mutex_lock(&child->lock);
			out = sbx_to_json(child);
			pthread_mutex_unlock(&child->lock);
			json_object_set_new(out, "fork_ms",
					    json_integer((json_int_t)((now_ns() - t0) / 1000000)));
			hbd_put(d, child);
		}
	} else if (!strcmp(op, "exec") && !strcmp(method, "POST")) {
		return do_exec(d, s, c, rq);
	} else if (!strncmp(op, "exec/", 5) && !strcmp(method, "POST")) {
		r = do_exec_input(s, c, op + 5, rq, &out);
	} else if (!strcmp(op, "logs") && !strcmp(method, "GET")) {
		return do_logs(d, s, c);
	} else if (!strcmp(op, "files") && (!strcmp(method, "GET") || !strcmp(method, "PUT"))) {
		return do_files(d, s, c, method, rq);
	} else {
		r = hb_err(-ENOENT, "no endpoint %s /sandboxes/%s", method, rest);
	}
	hbd_put(d, s);
	return reply_ok(c, out, r);
}

static enum MHD_Result route(struct hbd *d, struct MHD_Connection *c, const char *url,
			     const char *method, struct request *rq)
{
	json_t *out = NULL, *body;
	int r = 0;

	if (strncmp(url, HBD_API_PREFIX "/", strlen(HBD_API_PREFIX) + 1) != 0)
		return reply_err(c, hb_err(-ENOENT, "unknown path %s (the API is under /v1)", url));
	url += strlen(HBD_API_PREFIX);

	if (!strcmp(url, "/daemon") && !strcmp(method, "GET")) {
		pthread_mutex_lock(&d->lock);
		size_t n = d->count;
		pthread_mutex_unlock(&d->lock);
		out = json_pack("{s:i, s:s, s:s, s:I, s:s}", "pid", (int)getpid(),
				"home", d->home, "repo", d->repo, "sandboxes", (json_int_t)n,
				"version", "0.1.0");
	} else if (!strcmp(url, "/daemon/stop") && !strcmp(method, "POST")) {
		d->stopping = 1;
		if (write(d->stop_pipe[1], "x", 1) < 0) { /* poll wakes anyway */ }
		out = json_pack("{s:b}", "stopping", 1);
	} else if (!strcmp(url, "/images") && !strcmp(method, "GET")) {
		r = image_list(d, &out);
	} else if (!strcmp(url, "/images") && !strcmp(method, "POST")) {
		if ((body = body_json(rq, &r))) {
			const char *name = json_string_value(json_object_get(body, "name"));
			const char *src = json_string_value(json_object_get(body, "source"));
			r = name && src ? image_import(d, name, src, &out) :
				hb_err(-EINVAL, "import needs \"name\" and \"source\"");
			json_decref(body);
		}
	} else if (!strncmp(url, "/images/", 8) && !strcmp(method, "DELETE")) {
		r = image_remove(d, url + 8);
		if (r == 0)
			out = json_pack("{s:s}", "removed", url + 8);
	} else if (!strcmp(url, "/sandboxes") && !strcmp(method, "GET")) {
		size_t n;
		struct sbx **all = hbd_all(d, &n);
		out = json_array();
		for (size_t i = 0; all && i < n; i++) {
			json_t *j = list_one(d, all[i]);
			if (j)
				json_array_append_new(out, j);
		}
		if (all)
			hbd_put_all(d, all, n);
	} else if (!strcmp(url, "/sandboxes") && !strcmp(method, "POST")) {
		if ((body = body_json(rq, &r))) {
			r = do_create(d, body, &out);
			json_decref(body);
		}
	} else if (!strncmp(url, "/sandboxes/", 11)) {
		return do_sandbox(d, c, method, url + 11, rq);
	} else {
		r = hb_err(-ENOENT, "no endpoint %s %s", method, url);
	}
	return reply_ok(c, out, r);
}

static bool big_body(const char *url)
{
	size_t n = strlen(url);
	return (n > 5 && !strcmp(url + n - 5, "/exec")) || (n > 6 && !strcmp(url + n - 6, "/files")) ||
	       (n > 6 && !strcmp(url + n - 6, "/stdin"));
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **ctx)
{
	struct hbd *d = cls;
	struct request *rq = *ctx;

	if (!rq) {
		if (!(rq = calloc(1, sizeof(*rq))))
			return MHD_NO;
		rq->body.max = big_body(url) ? API_UPLOAD_MAX_BYTES : API_JSON_MAX_BYTES;
		rq->has_nul = request_has_nul;
		request_has_nul = false;
		*ctx = rq;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->too_big && buf_append(&rq->body, upload, *upload_size) < 0)
			rq->too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->started)
		return MHD_NO;
	rq->started = true;
	if (rq->too_big)
		return reply_err(c, hb_err(-EFBIG, "request body larger than %zu bytes",
					   rq->body.max));
	if (rq->has_nul || request_has_nul)
		return reply_err(c, hb_err(-EINVAL, "%s %s: the request's path or query holds a "
					   "NUL byte (%%00)", method, url));
	return route(d, c, url, method, rq);
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx,
		      enum MHD_RequestTerminationCode code)
{
	struct request *rq = *ctx;

	if (rq) {
		buf_free(&rq->body);
		free(rq);
		*ctx = NULL;
	}
	request_has_nul = false;
}

/* Startup and shutdown. */

static int load_one(const struct sbx_record *rec, void *arg)
{
	struct hbd *d = arg;
	struct sbx *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return hb_err(-ENOMEM, "out of memory");
	if ((r = sbx_record_copy(&s->rec, rec)) < 0) {
		free(s);
		return r;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->refs = 1;
	s->last_activity_ns = now_ns();
	s->removed = rec->removing; /* finished before anything else (hbd_run) */
	/* rows an earlier version let share a port are loaded all the same:
	 * the second to wake fails, naming the port */
	return hbd_add(d, s, false);
}

/* At the daemon's stop: put every running sandbox to sleep.  again: one
 * more try follows, so a sandbox still busy (EBUSY) is not worth a word. */
static void shutdown_sleep_all(struct hbd *d, bool again)
{
	size_t n;
	struct sbx **all = hbd_all(d, &n);

	for (size_t i = 0; all && i < n; i++) {
		int r;
		pthread_mutex_lock(&all[i]->lock);
		if (all[i]->sb && (r = sbx_sleep_locked(d, all[i], "shutdown", NULL, NULL)) < 0) {
			if (!again || r != -EBUSY)
				fprintf(stderr, "hiberboxd: sleep %s: %s\n", all[i]->rec.name,
					hb_errmsg(-EIO));
			hb_err_clear();
		}
		pthread_mutex_unlock(&all[i]->lock);
	}
	if (all)
		hbd_put_all(d, all, n);
}

/* At the daemon's stop, once every sandbox without a download is asleep:
 * let the file downloads in progress end, for at most wait_ms, before the
 * server's stop cuts what is left (their sandboxes then sleep). */
static void shutdown_wait_downloads(struct hbd *d, unsigned wait_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)wait_ms * 1000000ull;
	char path[256] = "", name[SBX_NAME_MAX + 1] = "";
	bool told = false;

	for (;;) {
		size_t n, open = 0;
		struct sbx **all = hbd_all(d, &n);

		for (size_t i = 0; all && i < n; i++) {
			int k = hbd_transfers_open(d, all[i], open ? NULL : path, sizeof(path));
			if (k > 0 && !open)
				snprintf(name, sizeof(name), "%s", all[i]->rec.name);
			open += (size_t)(k > 0 ? k : 0);
		}
		if (all)
			hbd_put_all(d, all, n);
		if (!open)
			return;
		if (now_ns() >= deadline) {
			fprintf(stderr, "hiberboxd: stopping: %zu file download%s still in progress after "
				"%u s (%s:%s%s): cut\n", open, open == 1 ? "" : "s", wait_ms / 1000,
				name, path, open > 1 ? " and others" : "");
			return;
		}
		if (!told)
			fprintf(stderr, "hiberboxd: stopping: waiting up to %u s for %zu file download%s "
				"(%s:%s%s)\n", wait_ms / 1000, open, open == 1 ? "" : "s", name, path,
				open > 1 ? " and others" : "");
		told = true;
		struct timespec ts = { 0, SHUTDOWN_POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return hb_err(-ENAMETOOLONG, "socket path %s too long", path);
	strcpy(sa.sun_path, path);
	unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return hb_err_sys(-errno, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(fd, 64) < 0) {
		int r = hb_err(-errno, "listen on %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

int hbd_socket_path(const char *home, char *out, size_t size)
{
	char h[4096];
	int r;

	if (!home) {
		if ((r = repo_default_home(h, sizeof(h))) < 0)
			return r;
		home = h;
	}
	if ((size_t)snprintf(out, size, "%s/%s", home, HBD_SOCKET_NAME) >= size)
		return hb_err(-ENAMETOOLONG, "socket path too long");
	return 0;
}

/* A test pause's length from the environment (0: none). */
static unsigned test_pause_ms(const char *name)
{
	const char *v = getenv(name);

	return v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

int hbd_run(const struct hbd_config *cfg)
{
	struct hbd *d = calloc(1, sizeof(*d));
	char path[4200];
	struct MHD_Daemon *mhd = NULL;
	pthread_t idle;
	bool idle_started = false;
	sigset_t sigs;
	int r, lockfd = -1, sfd = -1, lfd = -1;

	if (!d)
		return hb_err(-ENOMEM, "out of memory");
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->images_lock, NULL);
	d->stop_pipe[0] = d->stop_pipe[1] = -1;
	d->helper_argv = cfg->helper_argv;
	d->test_sleep_pause_ms = test_pause_ms("HIBERBOX_TEST_SLEEP_PAUSE_MS");
	d->test_rm_pause_ms = test_pause_ms("HIBERBOX_TEST_RM_PAUSE_MS");
	d->test_wake_pause_ms = test_pause_ms("HIBERBOX_TEST_WAKE_PAUSE_MS");
	d->test_stop_pause_ms = test_pause_ms("HIBERBOX_TEST_STOP_PAUSE_MS");
	d->test_create_pause_ms = test_pause_ms("HIBERBOX_TEST_CREATE_PAUSE_MS");
	d->test_spawn_pause_ms = test_pause_ms("HIBERBOX_TEST_SPAWN_PAUSE_MS");
	d->test_upload_pause_ms = test_pause_ms("HIBERBOX_TEST_UPLOAD_PAUSE_MS");
	d->upload_idle_ms = getenv("HIBERBOX_TEST_UPLOAD_IDLE_MS") ?
				    test_pause_ms("HIBERBOX_TEST_UPLOAD_IDLE_MS") :
				    HBD_UPLOAD_IDLE_MS;
	d->test_exec_pause_ms = test_pause_ms("HIBERBOX_TEST_EXEC_PAUSE_MS");
	d->test_detached_add_fails = test_pause_ms("HIBERBOX_TEST_DETACHED_ADD_FAILS") != 0;
	d->stop_download_wait_ms = test_pause_ms("HIBERBOX_TEST_STOP_DOWNLOAD_WAIT_MS");
	if (!d->stop_download_wait_ms)
		d->stop_download_wait_ms = HBD_STOP_DOWNLOAD_WAIT_MS;
	if (cfg->home)
		snprintf(d->home, sizeof(d->home), "%s", cfg->home);
	else if ((r = repo_default_home(d->home, sizeof(d->home))) < 0)
		goto out;
	if (cfg->repo)
		snprintf(d->repo, sizeof(d->repo), "%s", cfg->repo);
	else if ((r = repo_default_location(d->repo, sizeof(d->repo))) < 0)
		goto out;
	/* fs processes (grandchildren through the mount helper) are ours to reap. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	/* Commands in sandboxes start with the daemon's umask: not whatever the
	 * shell that started it on demand had (with 000 every file root made
	 * in a sandbox was writable by its other users), but a login's. */
	umask(022);
	/* The mount helper and the fs processes find the home through it. */
	setenv("HIBERBOX_HOME", d->home, 1);
	snprintf(path, sizeof(path), "%s/sandboxes", d->home);
	if ((r = mkdir_p(AT_FDCWD, path, 0711)) < 0) {
		r = hb_err_sys(r, "mkdir %s", path);
		goto out;
	}
	/* Sandbox roots below must be reachable by their uids (each sandbox's
	 * own directory then lets in only its ids: sbx_close_dir); the list of
	 * sandboxes is nobody else's business. */
	chmod(path, 0711);
	chmod(d->home, 0755);
	snprintf(path, sizeof(path), "%s/hiberboxd.lock", d->home);
	lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		r = hb_err(errno == EWOULDBLOCK ? -EBUSY : -errno,
			   "another hiberboxd runs on %s", d->home);
		goto out;
	}
	{
		struct repo *repo;
		r = repo_open(d->repo, &repo);
		if (r == -ENOENT) {
			hb_err_clear();
			r = repo_init(d->repo, NULL);
			if (r == 0)
				r = repo_open(d->repo, &repo);
		}
		if (r < 0)
			goto out;
		repo_close(repo);
	}
	snprintf(path, sizeof(path), "%s/sandboxes.db", d->home);
	if ((r = registry_open(path, &d->reg)) < 0 || (r = registry_load(d->reg, load_one, d)) < 0)
		goto out;
	/* Removals the previous daemon began: finished first, so that nothing
	 * else (a recovery's commit) touches what is half gone. */
	{
		size_t n;
		struct sbx **all = hbd_all(d, &n);
		for (size_t i = 0; all && i < n; i++)
			if (all[i]->rec.removing) {
				fprintf(stderr, "hiberboxd: finishing the removal of %s\n",
					all[i]->rec.name);
				if (sbx_remove_unfinished(d, all[i]) < 0) {
					fprintf(stderr, "hiberboxd: %s\n", hb_errmsg(-EIO));
					hb_err_clear();
				}
			}
		if (all)
			hbd_put_all(d, all, n);
	}
	if (sbx_sweep_cgroups(d) < 0) {
		fprintf(stderr, "hiberboxd: %s\n", hb_errmsg(-EIO));
		hb_err_clear();
	}
	/* Sandboxes the previous daemon left running, or that it may have
	 * begun to wake. */
	for (size_t i = 0; i < d->count; i++) {
		struct sbx *s = d->list[i];

		if (s->rec.removing)
			continue;
		if (s->rec.state == SBX_RUNNING)
			fprintf(stderr, "hiberboxd: recovering %s\n", s->rec.name);
		if ((s->rec.state == SBX_RUNNING ? sbx_recover(d, s) :
		     sbx_recover_sleeping(d, s)) < 0) {
			fprintf(stderr, "hiberboxd: %s\n", hb_errmsg(-EIO));
			hb_err_clear();
		}
	}

	/* Signals go to the main thread's signalfd; every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0 || pipe2(d->stop_pipe, O_CLOEXEC) < 0) {
		r = hb_err_sys(-errno, "signalfd");
		goto out;
	}
	if ((r = hbd_socket_path(d->home, path, sizeof(path))) < 0 || (lfd = listen_unix(path)) < 0) {
		r = r < 0 ? r : lfd;
		goto out;
	}
	mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
			       0, NULL, NULL, handler, d,
			       MHD_OPTION_LISTEN_SOCKET, lfd,
			       MHD_OPTION_NOTIFY_COMPLETED, completed, d,
			       MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0,
			       MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONNECTION_MEMORY_BYTES,
			       MHD_OPTION_END);
	if (!mhd) {
		r = hb_err(-EIO, "cannot start the HTTP server on %s", path);
		goto out;
	}
	lfd = -1; /* MHD owns it */
	if (pthread_create(&idle, NULL, idle_main, d) == 0)
		idle_started = true;
	fprintf(stderr, "hiberboxd: pid %d listening on %s (repository %s)\n", (int)getpid(),
		path, d->repo);
	while (!d->stopping) {
		struct pollfd p[2] = { { sfd, POLLIN, 0 }, { d->stop_pipe[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				fprintf(stderr, "hiberboxd: signal %u: stopping\n", si.ssi_signo);
			d->stopping = 1;
		}
		if (p[1].revents)
			d->stopping = 1;
	}
	r = 0;
out:
	d->stopping = 1;
	if (idle_started)
		pthread_join(idle, NULL);
	/* Sleep everything: streams see their commands end, file downloads in
	 * progress may end (bounded), then the server stops.  A sandbox a file
	 * download still reads from sleeps once the server's stop has cut
	 * that download. */
	shutdown_sleep_all(d, mhd != NULL);
	if (mhd)
		shutdown_wait_downloads(d, d->stop_download_wait_ms);
	hbd_test_pause("stop", "hiberboxd", d->test_stop_pause_ms);
	if (mhd) {
		MHD_stop_daemon(mhd);
		if (hbd_socket_path(d->home, path, sizeof(path)) == 0)
			unlink(path);
		shutdown_sleep_all(d, false);
	}
	if (lfd >= 0)
		close(lfd);
	while (d->count)
		hbd_unlist(d, d->list[d->count - 1]);
	free(d->list);
	registry_close(d->reg);
	if (sfd >= 0)
		close(sfd);
	for (int i = 0; i < 2; i++)
		if (d->stop_pipe[i] >= 0)
			close(d->stop_pipe[i]);
	if (lockfd >= 0)
		close(lockfd);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->images_lock);
	free(d);
	return r;
}
