/* Repository locks: who may write and who may collect garbage.
 *
 * A lock is an object `locks/<32 random hex>` on the repository's store,
 * holding JSON {exclusive, host, pid, time, boot_id}.  Because it is only
 * objects on the store, the same protocol works on a local directory and on
 * an S3 prefix, across processes and hosts.
 *
 * Protocol: write our lock object first, then list every lock.  If a lock
 * that conflicts with ours is there (exclusive vs anything), withdraw ours,
 * back off for a short random time and try again until wait_ms has passed.
 * Whoever writes second is guaranteed to see the first one, so two
 * conflicting holders can never both proceed; at worst both withdraw and
 * retry, and the random backoff breaks the tie.
 *
 * Stale locks are removed on sight: same host (and same boot, and same pid
 * namespace) with a pid that no longer exists, or a lock whose time is older
 * than LOCK_STALE_SEC when we cannot check its pid (another host, another
 * boot, another pid namespace: a container with the host's name, where the
 * holder's pid means nothing or another process).  A live holder rewrites
 * its lock every LOCK_REFRESH_SEC from a small thread, so a long snapshot on
 * another host is never mistaken for a dead one.
 *
 * A lock object that does not parse is treated as held (never delete data
 * because of a lock we cannot read) until it is LOCK_STALE_SEC old.
 *
 * Locks and pins are written without fsync (STORE_PUT_VOLATILE): other
 * processes see the renamed file at once, and after the machine went down
 * no process holds one anyway (they would only be stale).
 *
 * Pins: an object `pins/<32 random hex>` in the same format plus the id of a
 * snapshot something reads from for a long time (a mount) and what that is.
 * A pin conflicts with no lock (a mount lives for days; gc must not wait on
 * it): `snapshot rm` refuses a pinned snapshot, so gc never takes its data.
 * It is written by its refresh thread, so a wake does not wait for the
 * round trip, and goes stale like a lock.
 *
 * Fencing: repo_lock_check asks whether our lock is still there, but a
 * holder can stop right after the answer (SIGSTOP, a frozen VM, a network
 * stall) for longer than LOCK_STALE_SEC; then its lock is removed as stale,
 * a gc runs and removes its packs (in no index yet) and the chunks it reuses
 * (their snapshots removed), and the holder, resuming, records a snapshot
 * naming them.  The store cannot refuse a late write, so the holder finds
 * out after it: gc writes a new random mark to REFS_GC_MARK before it lists
 * the snapshots; a writer reads the mark when it takes its lock and again
 * once its manifest is stored.  Unchanged: gc wrote its mark after our
 * manifest was there, so it saw the manifest (and the index written before
 * it) and keeps everything it names.  Changed: a gc ran, so our lock was
 * taken from us (gc cannot take its own beside a live one); the writer
 * removes its manifest and index and records nothing.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/repo-int.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/proc.h"
#include "util/text.h"

#define LOCK_STALE_SEC 3600
#define LOCK_REFRESH_SEC 300
/* A holder stops trusting its lock this long before others may remove it
 * (their clocks may run ahead of ours). */
#define LOCK_SAFETY_SEC 600
#define LOCK_MAX_BYTES 4096
#define LOCK_BACKOFF_MIN_MS 10
#define LOCK_BACKOFF_MAX_MS 500
#define LOCK_HOST_BYTES 256
#define LOCK_BOOT_ID_BYTES 64
#define LOCK_WHAT_BYTES 512
/* Under refs/: changed in place, so never cached (store-tiered.c). */
#define LOCK_GC_MARK_NAME "refs/gc"
#define LOCK_GC_MARK_BYTES OID_HEX_BYTES

struct repo_lock {
	struct store *store;
	char name[REPO_NAME_BYTES];
	bool exclusive;
	char pin[OID_HEX_BYTES]; /* a pin: the snapshot's id; "" for a lock */
	char what[LOCK_WHAT_BYTES];
	/* The refresh thread: wakes every LOCK_REFRESH_SEC or when stop is set. */
	pthread_t refresher;
	bool refresher_running;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	bool stop;
	/* For repo_lock_check: when our object was last written (CLOCK_BOOTTIME:
	 * a suspended machine's lock ages for others too), and whether a refresh
	 * found it removed by someone who took it for stale. */
	_Atomic uint64_t written_ns;
	atomic_bool lost;
	char gc_mark[LOCK_GC_MARK_BYTES]; /* as it was when the lock was taken */
};

/* What a lock object says about its holder. */
struct lock_holder {
	bool exclusive;
	char host[LOCK_HOST_BYTES];
	char boot_id[LOCK_BOOT_ID_BYTES];
	long long pidns; /* 0: not said (written by an older version) */
	long long pid;
	long long time;
	char pin[OID_HEX_BYTES];
	char what[LOCK_WHAT_BYTES];
};

static void own_host(char out[LOCK_HOST_BYTES])
{
	if (gethostname(out, LOCK_HOST_BYTES) < 0)
		snprintf(out, LOCK_HOST_BYTES, "unknown");
	out[LOCK_HOST_BYTES - 1] = '\0';
}

/* The kernel's id of this boot: a pid seen before a reboot says nothing about
 * the processes running now.  Empty when unavailable. */
static void own_boot_id(char out[LOCK_BOOT_ID_BYTES])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = '\0';
	if (!f)
		return;
	if (!fgets(out, LOCK_BOOT_ID_BYTES, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

/* The pid namespace we run in (its inode number), which gives pids their
 * meaning; 0 when unknown. */
static long long own_pidns(void)
{
	struct stat st;

	return stat("/proc/self/ns/pid", &st) == 0 ? (long long)st.st_ino : 0;
}

static int lock_encode(const struct repo_lock *l, char **out)
{
	char host[LOCK_HOST_BYTES], boot_id[LOCK_BOOT_ID_BYTES], what[sizeof(l->what) * 4];
	json_t *o;

	own_host(host);
	own_boot_id(boot_id);
	o = json_pack("{s:b, s:s, s:I, s:I, s:s, s:I}", "exclusive", l->exclusive, "host", host,
		      "pid", (json_int_t)getpid(), "time", (json_int_t)time(NULL), "boot_id", boot_id,
		      "pidns", (json_int_t)own_pidns());
	if (!o)
		return -ENOMEM;
	/* "what" names a path, which may not be UTF-8; it is for people only */
	if (l->pin[0] && (json_object_set_new(o, "pin", json_string(l->pin)) < 0 ||
			  json_object_set_new(o, "what", json_string(text_for_json(
								 l->what, what, sizeof(what)))) < 0)) {
		json_decref(o);
		return -ENOMEM;
	}
	*out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return *out ? 0 : -ENOMEM;
}

static int lock_decode(const struct buf *b, struct lock_holder *h)
{
	json_t *o, *v;
	json_error_t err;

	memset(h, 0, sizeof(*h));
	o = json_loadb((const char *)b->data, b->len, 0, &err);
	if (!o)
		return -EBADMSG;
	if (!json_is_object(o))
		goto bad;
	v = json_object_get(o, "exclusive");
	if (!json_is_boolean(v))
		goto bad;
	h->exclusive = json_is_true(v);
	v = json_object_get(o, "host");
	if (!json_is_string(v))
		goto bad;
	snprintf(h->host, sizeof(h->host), "%s", json_string_value(v));
	v = json_object_get(o, "pid");
	if (!json_is_integer(v))
		goto bad;
	h->pid = json_integer_value(v);
	v = json_object_get(o, "time");
	if (!json_is_integer(v))
		goto bad;
	h->time = json_integer_value(v);
	v = json_object_get(o, "boot_id"); /* optional */
	if (json_is_string(v))
		snprintf(h->boot_id, sizeof(h->boot_id), "%s", json_string_value(v));
	v = json_object_get(o, "pidns"); /* optional */
	if (json_is_integer(v))
		h->pidns = json_integer_value(v);
	v = json_object_get(o, "pin"); /* pins only */
	if (json_is_string(v))
		snprintf(h->pin, sizeof(h->pin), "%s", json_string_value(v));
	v = json_object_get(o, "what");
	if (json_is_string(v))
		snprintf(h->what, sizeof(h->what), "%s", json_string_value(v));
	json_decref(o);
	return 0;
bad:
	json_decref(o);
	return -EBADMSG;
}

static bool holder_is_stale(const struct lock_holder *h, const char *host, const char *boot_id,
			    long long pidns)
{
	long long now = (long long)time(NULL);
	/* Where its pid names the same process as for us.  Only the pid
	 * namespace tells apart two containers that share the host's name
	 * and boot: in another one, a live holder's pid is no process here. */
	bool same_pids = strcmp(h->host, host) == 0 &&
			 (!h->boot_id[0] || !boot_id[0] || strcmp(h->boot_id, boot_id) == 0) &&
			 (!h->pidns || !pidns || h->pidns == pidns);

	if (same_pids && (h->pid <= 0 || h->pid > INT32_MAX ||
			  !proc_alive((pid_t)h->pid))) /* a zombie is gone too */
		return true;
	/* Even here: a live holder rewrites its object every LOCK_REFRESH_SEC,
	 * so one this old belongs to a dead process whose pid was reused. */
	return now - h->time > LOCK_STALE_SEC;
}

static void format_since(long long t, char *out, size_t size)
{
	time_t tt = (time_t)t, now = time(NULL);
	struct tm tm, today;

	if (!localtime_r(&tt, &tm) || !localtime_r(&now, &today)) {
		snprintf(out, size, "%lld", t);
		return;
	}
	if (tm.tm_year == today.tm_year && tm.tm_yday == today.tm_yday)
		strftime(out, size, "%H:%M:%S", &tm);
	else
		strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
}

struct scan {
	struct store *store;
	const char *own_name;
	bool exclusive;
	char host[LOCK_HOST_BYTES];
	char boot_id[LOCK_BOOT_ID_BYTES];
	long long pidns;
	/* The first conflicting lock seen, for the message. */
	bool conflict;
	bool conflict_unreadable;
	char conflict_name[REPO_NAME_BYTES];
	struct lock_holder holder;
};

static int scan_one(const char *name, uint64_t size, int64_t mtime_sec, void *arg)
{
	struct scan *s = arg;
	struct buf b = { .max = LOCK_MAX_BYTES };
	struct lock_holder h;
	bool readable;
	int r;

	if (strcmp(name, s->own_name) == 0)
		return 0;
	if (size > LOCK_MAX_BYTES) {
		readable = false;
	} else {
		r = store_get(s->store, name, 0, STORE_GET_ALL, &b);
		if (r == -ENOENT) /* released meanwhile */
			return 0;
		if (r < 0) {
			buf_free(&b);
			return hb_err_ctx(r, "reading lock %s", name);
		}
		readable = lock_decode(&b, &h) == 0;
		buf_free(&b);
	}
	if (readable ? holder_is_stale(&h, s->host, s->boot_id, s->pidns)
		     : (int64_t)time(NULL) - mtime_sec > LOCK_STALE_SEC) {
		r = store_remove(s->store, name);
		if (r < 0 && r != -ENOENT)
			return hb_err_ctx(r, "removing stale lock %s", name);
		return 0;
	}
	if (readable && !h.exclusive && !s->exclusive)
		return 0;
	if (!s->conflict) {
		s->conflict = true;
		s->conflict_unreadable = !readable;
		snprintf(s->conflict_name, sizeof(s->conflict_name), "%s", name);
		if (readable)
			s->holder = h;
	}
	return 0;
}

static int busy_error(const struct scan *s)
{
	char since[64];

	if (s->conflict_unreadable)
		return hb_err(-EBUSY, "repository is busy: lock %s cannot be read (it is ignored "
				      "once an hour old; remove it if nothing is running)",
			      s->conflict_name);
	format_since(s->holder.time, since, sizeof(since));
	return hb_err(-EBUSY, "repository is busy: %s running as pid %lld on host %s since %s",
		      s->holder.exclusive ? "gc" : "a snapshot writer", s->holder.pid,
		      s->holder.host, since);
}

static uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void repo_lock_refresh(struct repo_lock *l)
{
	char *json = NULL;
	uint64_t size;

	/* A lock someone removed as stale is not written again: gc may have
	 * run meanwhile, and a writer must find out at repo_lock_check rather
	 * than commit over data that is gone.  A pin is: it only guards a
	 * snapshot against `snapshot rm` from now on. */
	if (!l->pin[0] && store_stat(l->store, l->name, &size) == -ENOENT) {
		atomic_store(&l->lost, true);
		hb_err_clear();
		return;
	}
	/* A failed write is retried next round; the lock only goes stale for
	 * others after LOCK_STALE_SEC. */
	if (lock_encode(l, &json) == 0 &&
	    store_put(l->store, l->name, json, strlen(json), STORE_PUT_VOLATILE) == 0)
		atomic_store(&l->written_ns, boottime_ns());
	free(json);
	hb_err_clear();
}

int repo_lock_check(struct repo_lock *l)
{
	uint64_t age_ns = boottime_ns() - atomic_load(&l->written_ns), size;
	int r;

	if (!atomic_load(&l->lost)) {
		if (age_ns > (uint64_t)(LOCK_STALE_SEC - LOCK_SAFETY_SEC) * 1000000000ull)
			return hb_err(-ESTALE, "the repository lock could not be renewed for %llu minutes, "
					       "so another process may have taken it for stale; nothing was recorded",
				      (unsigned long long)(age_ns / 60000000000ull));
		/* Asked every time, however young the lock: one round trip
		 * per commit.  A young lock is stale to nobody whose clock is
		 * within LOCK_STALE_SEC of ours, but a host whose clock runs
		 * an hour ahead (or a hand clearing locks/) removes it, and a
		 * gc may then take the packs we stored: we must not record an
		 * index or manifest over them. */
		r = store_stat(l->store, l->name, &size);
		if (r == -ENOENT)
			atomic_store(&l->lost, true);
		else if (r < 0)
			return hb_err_ctx(r, "checking the repository lock");
	}
	if (atomic_load(&l->lost))
		return hb_err(-ESTALE, "the repository lock was removed meanwhile by another "
				       "process that took it for stale; nothing was recorded");
	return 0;
}

static void *refresher_main(void *arg)
{
	struct repo_lock *l = arg;
	struct timespec deadline;

	if (l->pin[0])
		repo_lock_refresh(l); /* a pin's first write is ours, not its taker's */
	pthread_mutex_lock(&l->mutex);
	while (!l->stop) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += LOCK_REFRESH_SEC;
		while (!l->stop &&
		       pthread_cond_timedwait(&l->cond, &l->mutex, &deadline) != ETIMEDOUT)
			;
		if (l->stop)
			break;
		pthread_mutex_unlock(&l->mutex);
		repo_lock_refresh(l);
		pthread_mutex_lock(&l->mutex);
	}
	pthread_mutex_unlock(&l->mutex);
	return NULL;
}

static int start_refresher(struct repo_lock *l)
{
	pthread_condattr_t attr;
	int r;

	pthread_mutex_init(&l->mutex, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &attr);
	pthread_condattr_destroy(&attr);
	r = pthread_create(&l->refresher, NULL, refresher_main, l);
	if (r != 0)
		return hb_err(-r, "starting the lock refresh thread: %s", strerror(r));
	l->refresher_running = true;
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int random_name(const char *prefix, char *out, size_t size)
{
	uint8_t rnd[OID_BYTES];
	char hex[OID_HEX_BYTES];
	int r = random_bytes(rnd, sizeof(rnd));

	if (r < 0)
		return hb_err(r, "getrandom: %s", strerror(-r));
	hex_format(rnd, sizeof(rnd), hex);
	snprintf(out, size, "%s%s", prefix, hex);
	return 0;
}

/* The gc mark now; "" if no gc wrote one yet. */
static int read_gc_mark(struct store *s, char out[LOCK_GC_MARK_BYTES])
{
	struct buf b = { .max = LOCK_MAX_BYTES };
	int r = store_get(s, LOCK_GC_MARK_NAME, 0, STORE_GET_ALL, &b);

	out[0] = '\0';
	if (r == 0)
		snprintf(out, LOCK_GC_MARK_BYTES, "%.*s", (int)b.len, (const char *)b.data);
	buf_free(&b);
	if (r == -ENOENT) {
		hb_err_clear();
		return 0;
	}
	return r < 0 ? hb_err_ctx(r, "reading the gc mark %s", LOCK_GC_MARK_NAME) : 0;
}

int repo_lock_gc_started(struct repo_lock *l)
{
	char mark[REPO_NAME_BYTES];
	int r = random_name("", mark, sizeof(mark));

	if (r == 0)
		r = store_put(l->store, LOCK_GC_MARK_NAME, mark, strlen(mark), 0);
	return r < 0 ? hb_err_ctx(r, "writing the gc mark %s", LOCK_GC_MARK_NAME) : 0;
}

int repo_lock_gc_ran(struct repo_lock *l)
{
	char now[LOCK_GC_MARK_BYTES];
	int r = read_gc_mark(l->store, now);

	if (r < 0)
		return r;
	if (strcmp(now, l->gc_mark) != 0)
		return hb_err(-ESTALE, "a gc ran while this process held the repository lock (another "
				       "process took the lock for stale); nothing was recorded");
	return 0;
}

int repo_lock_acquire(struct repo *r, bool exclusive, unsigned wait_ms, struct repo_lock **out)
{
	uint64_t deadline = now_ns() + (uint64_t)wait_ms * 1000000ull;
	unsigned backoff = LOCK_BACKOFF_MIN_MS;
	struct repo_lock *l;
	char *json = NULL;
	int ret;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->store = r->store;
	l->exclusive = exclusive;
	ret = random_name(REPO_LOCKS_PREFIX, l->name, sizeof(l->name));
	if (ret < 0)
		goto fail;
	ret = lock_encode(l, &json);
	if (ret < 0)
		goto fail;

	for (;;) {
		struct scan s = { .store = l->store, .own_name = l->name, .exclusive = exclusive };
		unsigned jitter;

		own_host(s.host);
		own_boot_id(s.boot_id);
		s.pidns = own_pidns();
		/* a lock means nothing after a crash: no fsync (milliseconds each) */
		ret = store_put(l->store, l->name, json, strlen(json), STORE_PUT_VOLATILE);
		if (ret < 0) {
			ret = hb_err_ctx(ret, "taking the repository lock");
			goto fail;
		}
		atomic_store(&l->written_ns, boottime_ns());
		ret = store_list(l->store, REPO_LOCKS_PREFIX, scan_one, &s);
		if (ret < 0) {
			store_remove(l->store, l->name);
			goto fail;
		}
		if (!s.conflict)
			break;
		/* Withdraw while waiting, so a waiter never blocks the holder
		 * it waits for (or another waiter). */
		store_remove(l->store, l->name);
		if (now_ns() >= deadline) {
			ret = busy_error(&s);
			goto fail;
		}
		random_bytes(&jitter, sizeof(jitter));
		{
			uint64_t now = now_ns();
			uint64_t left_ms = now < deadline ? (deadline - now) / 1000000ull : 0;
			unsigned ms = backoff / 2 + jitter % (backoff / 2 + 1);

			sleep_ms(ms < left_ms ? ms : (unsigned)left_ms);
		}
		if (backoff < LOCK_BACKOFF_MAX_MS)
			backoff *= 2;
	}
	free(json);
	/* After our lock is there: a gc that wrote a mark since then took our
	 * lock from us. */
	ret = exclusive ? 0 : read_gc_mark(l->store, l->gc_mark);
	if (ret == 0)
		ret = start_refresher(l);
	if (ret < 0) {
		store_remove(l->store, l->name);
		free(l);
		return ret;
	}
	*out = l;
	return 0;
fail:
	free(json);
	free(l);
	return ret;
}

void repo_lock_release(struct repo_lock *l)
{
	if (!l)
		return;
	if (l->refresher_running) {
		pthread_mutex_lock(&l->mutex);
		l->stop = true;
		pthread_cond_signal(&l->cond);
		pthread_mutex_unlock(&l->mutex);
		pthread_join(l->refresher, NULL);
		pthread_cond_destroy(&l->cond);
		pthread_mutex_destroy(&l->mutex);
	}
	/* Best effort: a lock left behind is stale once we are gone.  Keep the
	 * caller's error message: the failure that made it give up matters,
	 * not this one (a dead S3 endpoint fails both). */
	char msg[1024];

	hb_err_save(msg, sizeof(msg));
	store_remove(l->store, l->name);
	if (msg[0])
		hb_err(-EIO, "%s", msg);
	free(l);
}

/* ---- pins ---- */

struct repo_pin {
	struct repo_lock lock;
};

int repo_pin_start(struct repo *r, const struct oid *snapshot, const char *what,
		   struct repo_pin **out)
{
	struct repo_pin *p = calloc(1, sizeof(*p));
	int ret;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->lock.store = r->store;
	oid_format(snapshot, p->lock.pin);
	snprintf(p->lock.what, sizeof(p->lock.what), "%s", what);
	ret = random_name(REPO_PINS_PREFIX, p->lock.name, sizeof(p->lock.name));
	if (ret == 0)
		ret = start_refresher(&p->lock);
	if (ret < 0) {
		free(p);
		return ret;
	}
	*out = p;
	return 0;
}

void repo_pin_end(struct repo_pin *p)
{
	if (p)
		repo_lock_release(&p->lock); /* frees p: lock is its first member */
}

struct pin_scan {
	struct store *store;
	bool tidy;
	char host[LOCK_HOST_BYTES];
	char boot_id[LOCK_BOOT_ID_BYTES];
	long long pidns;
	int (*fn)(const struct oid *snapshot, const struct repo_pin_holder *h, void *arg);
	void *arg;
};

static int pin_scan_one(const char *name, uint64_t size, int64_t mtime_sec, void *arg)
{
	struct pin_scan *s = arg;
	struct buf b = { .max = LOCK_MAX_BYTES };
	struct lock_holder h;
	struct repo_pin_holder out = { 0 };
	struct oid id;
	int r;

	(void)mtime_sec;
	if (size > LOCK_MAX_BYTES)
		return 0;
	r = store_get(s->store, name, 0, STORE_GET_ALL, &b);
	if (r == -ENOENT) /* ended meanwhile */
		return 0;
	if (r < 0) {
		buf_free(&b);
		return hb_err_ctx(r, "reading pin %s", name);
	}
	r = lock_decode(&b, &h);
	buf_free(&b);
	if (r < 0 || oid_parse(h.pin, &id) < 0) /* a pin guards nothing it cannot name */
		return 0;
	if (holder_is_stale(&h, s->host, s->boot_id, s->pidns)) {
		r = s->tidy ? store_remove(s->store, name) : 0;
		if (r < 0 && r != -ENOENT)
			return hb_err_ctx(r, "removing stale pin %s", name);
		return 0;
	}
	snprintf(out.host, sizeof(out.host), "%s", h.host);
	snprintf(out.what, sizeof(out.what), "%s", h.what);
	out.pid = h.pid;
	format_since(h.time, out.refreshed, sizeof(out.refreshed));
	return s->fn(&id, &out, s->arg);
}

int repo_pins_each(struct repo *r, bool tidy,
		   int (*fn)(const struct oid *snapshot, const struct repo_pin_holder *h, void *arg),
		   void *arg)
{
	struct pin_scan s = { .store = r->store, .tidy = tidy, .fn = fn, .arg = arg };

	own_host(s.host);
	own_boot_id(s.boot_id);
	s.pidns = own_pidns();
	return store_list(r->store, REPO_PINS_PREFIX, pin_scan_one, &s);
}

struct pin_find {
	const struct oid *want;
	struct repo_pin_holder *out;
	bool found;
};

static int pin_find_one(const struct oid *snapshot, const struct repo_pin_holder *h, void *arg)
{
	struct pin_find *f = arg;

	if (!f->found && oid_equal(snapshot, f->want)) {
		*f->out = *h;
		f->found = true;
	}
	return 0;
}

int repo_pin_find(struct repo *r, const struct oid *snapshot, struct repo_pin_holder *out)
{
	struct pin_find f = { snapshot, out, false };
	int ret;

	memset(out, 0, sizeof(*out));
	ret = repo_pins_each(r, true, pin_find_one, &f);
	return ret < 0 ? ret : f.found;
}
