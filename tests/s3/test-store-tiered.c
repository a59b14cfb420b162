/* The tiered store (local cache in front of a remote) with a local directory
 * store as the remote, wrapped to count the requests that reach it.  Checks
 * hits and misses, torn and corrupt cache files, the size cap and LRU order,
 * a damaged index, reopening, another remote's cache (cleared only when no
 * one else has it open), and that refs/ are never served from cache.
 * (test-s3 runs the same store over s3rver.)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include "snapshot/store.h"
#include "tests/unit/test.h"
#include "util/error.h"
#include "util/fileio.h"

/* A store that forwards to another one and counts gets. */
struct counting {
	struct store base;
	struct store *inner;
	int gets, puts;
};

static struct counting *to_c(struct store *s)
{
	return (struct counting *)s;
}

static int c_get(struct store *s, const char *n, uint64_t off, uint64_t len, struct buf *out)
{
	__atomic_fetch_add(&to_c(s)->gets, 1, __ATOMIC_RELAXED);
	return store_get(to_c(s)->inner, n, off, len, out);
}
static int c_put(struct store *s, const char *n, const void *d, size_t len, int flags)
{
	__atomic_fetch_add(&to_c(s)->puts, 1, __ATOMIC_RELAXED);
	return store_put(to_c(s)->inner, n, d, len, flags);
}
static int c_stat(struct store *s, const char *n, uint64_t *size)
{
	return store_stat(to_c(s)->inner, n, size);
}
static int c_list(struct store *s, const char *p,
		  int (*fn)(const char *, uint64_t, int64_t, void *), void *arg)
{
	return store_list(to_c(s)->inner, p, fn, arg);
}
static int c_remove(struct store *s, const char *n)
{
	return store_remove(to_c(s)->inner, n);
}
static const char *c_location(struct store *s)
{
	return store_location(to_c(s)->inner);
}
static void c_free(struct store *s)
{
	store_free(to_c(s)->inner);
	free(s);
}
static const struct store_ops counting_ops = { .get = c_get, .put = c_put, .stat = c_stat,
					       .list = c_list, .remove = c_remove,
					       .location = c_location, .free = c_free };


static char root[256], remote_dir[300], cache_dir[300];
static struct counting *counter;

static struct store *open_tiered(uint64_t cap)
{
	struct store *local = NULL, *t = NULL;

	CHECK_OK(store_local_open(remote_dir, 1, &local));
	counter = calloc(1, sizeof(*counter));
	counter->base.ops = &counting_ops;
	counter->inner = local;
	CHECK_OK(store_tiered_open(&counter->base, cache_dir, cap, &t));
	return t;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 2654435761u) >> 13 ^ seed);
}

/* Damage every cache file: flip a byte in the middle, or cut it short. */
static void damage_cache(int truncate_it)
{
	char cmd[700];

	if (truncate_it)
		snprintf(cmd, sizeof(cmd),
			 "find '%s/objects' -type f -exec truncate -s -1 {} \\;", cache_dir);
	else
		snprintf(cmd, sizeof(cmd),
			 "find '%s/objects' -type f -size +0 -exec sh -c 'printf Z | dd of=\"$1\" bs=1 "
			 "seek=$(( $(stat -c %%s \"$1\") / 2 )) conv=notrunc 2>/dev/null' _ {} \\;",
			 cache_dir);
	CHECK(system(cmd) == 0);
}

static uint64_t cache_file_bytes(void)
{
	char cmd[600];
	unsigned long long n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "find '%s/objects' -type f -printf '%%s\\n' | "
				   "awk '{s+=$1} END {print s+0}'", cache_dir);
	f = popen(cmd, "r");
	if (f) {
		if (fscanf(f, "%llu", &n) != 1)
			n = 0;
		pclose(f);
	}
	return n;
}

/* Another process with a session of its own on the cache (hiberbox
 * commands and mounts sharing one directory) reads name whole, held by test
 * hook env (snapshot/testhook.h) at its moment until the parent has changed
 * the cache and closed the FIFO.  Exits 0 when the read returned expect. */
static pid_t held_reader(const char *env, const char *fifo, const char *name, int expect)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct store *l = NULL, *tc = NULL;
		struct buf cb = BUF_INIT;
		int r;

		setenv(env, fifo, 1);
		if (store_local_open(remote_dir, 0, &l) < 0 ||
		    store_tiered_open(l, cache_dir, 4 << 20, &tc) < 0)
			_exit(2);
		r = store_get(tc, name, 0, STORE_GET_ALL, &cb);
		store_free(tc);
		_exit(r == expect ? 0 : 1);
	}
	return pid;
}

static void remove_from_remote(const char *name)
{
	struct store *l = NULL;

	CHECK_OK(store_local_open(remote_dir, 0, &l));
	CHECK_OK(store_remove(l, name));
	store_free(l);
}

/* Many readers at once over a cache that is too small: evictions race with
 * reads and inserts; every answer must still be right. */
struct reader_arg {
	struct store *t;
	const uint8_t *pack;
	unsigned seed;
	int wrong, errors;
};

struct pieces {
	uint64_t off[64], len[64];
	size_t n;
};

static int add_piece(uint64_t off, uint64_t len, void *arg)
{
	struct pieces *p = arg;

	if (p->n < 64) {
		p->off[p->n] = off;
		p->len[p->n] = len;
		p->n++;
	}
	return 0;
}

static void *reader(void *p)
{
	struct reader_arg *a = p;
	struct buf b = BUF_INIT;
	char name[32];

	for (int i = 0; i < 300; i++) {
		a->seed = a->seed * 1103515245u + 12345u;
		unsigned which = (a->seed >> 8) % 3, slot = (a->seed >> 12) % 40;
		uint64_t off = slot * 7000, len = 7000;
		snprintf(name, sizeof(name), "packs/r%u", which);
		if (store_get(a->t, name, off, len, &b) < 0) {
			a->errors++;
			continue;
		}
		if (b.len != len || memcmp(b.data, a->pack + which * 1000 + off, len))
			a->wrong++;
	}
	buf_free(&b);
	return NULL;
}

int main(void)
{
	static uint8_t pack[300000], obj[100000];
	struct buf b = BUF_INIT;
	struct store *t;
	uint64_t size;
	char name[64];
	int g;

	snprintf(root, sizeof(root), "/tmp/hb-tiered-test.XXXXXX");
	if (!mkdtemp(root))
		return 1;
	snprintf(remote_dir, sizeof(remote_dir), "%s/remote", root);
	snprintf(cache_dir, sizeof(cache_dir), "%s/cache", root);
	fill(pack, sizeof(pack), 1);

	t = open_tiered(4 << 20);
	if (!t)
		return 1;
	CHECK(!strcmp(store_location(t), remote_dir));
	/* Written through: the remote has it, and reading it back is a hit. */
	CHECK_OK(store_put(t, "packs/p1", pack, sizeof(pack), 0));
	CHECK(counter->puts == 1);
	CHECK_OK(store_get(t, "packs/p1", 0, STORE_GET_ALL, &b));
	CHECK(b.len == sizeof(pack) && !memcmp(b.data, pack, sizeof(pack)));
	CHECK_OK(store_get(t, "packs/p1", 1000, 500, &b));
	CHECK(b.len == 500 && !memcmp(b.data, pack + 1000, 500));
	CHECK(counter->gets == 0);
	CHECK_ERR(store_get(t, "packs/p1", sizeof(pack) - 10, 20, &b), -EBADMSG);
	CHECK_OK(store_stat(t, "packs/p1", &size));
	CHECK(size == sizeof(pack));
	CHECK_OK(store_stat(t, "packs/p1", NULL)); /* existence only */
	CHECK_ERR(store_put(t, "packs/p1", pack, 10, STORE_PUT_NOREPLACE), -EEXIST);
	CHECK_OK(store_get(t, "packs/p1", 0, 16, &b));
	CHECK(b.len == 16 && !memcmp(b.data, pack, 16)); /* the failed put changed nothing */
	CHECK(counter->gets == 0);
	store_free(t);

	/* Written behind its back: ranges fetched once, then served from cache. */
	struct store *local;
	CHECK_OK(store_local_open(remote_dir, 0, &local));
	CHECK_OK(store_put(local, "packs/p2", pack, sizeof(pack), 0));
	CHECK_OK(store_put(local, "refs/main", "v1", 2, 0));
	store_free(local);
	t = open_tiered(4 << 20);
	CHECK_OK(store_get(t, "packs/p2", 5000, 7000, &b));
	CHECK(b.len == 7000 && !memcmp(b.data, pack + 5000, 7000));
	CHECK(counter->gets == 1);
	CHECK_OK(store_get(t, "packs/p2", 5000, 7000, &b));
	CHECK(b.len == 7000 && !memcmp(b.data, pack + 5000, 7000));
	CHECK(counter->gets == 1);
	CHECK_OK(store_get(t, "packs/p2", 5000, 7001, &b)); /* another range: a miss */
	CHECK(counter->gets == 2);
	CHECK_ERR(store_get(t, "packs/missing", 0, 10, &b), -ENOENT);
	CHECK(counter->gets == 3);
	/* A read inside a cached range is served from it; one that sticks out is not. */
	CHECK_OK(store_get(t, "packs/p2", 100000, 70000, &b)); /* a coalesced read */
	CHECK(counter->gets == 4);
	CHECK_OK(store_get(t, "packs/p2", 107000, 7000, &b));
	CHECK(b.len == 7000 && !memcmp(b.data, pack + 107000, 7000));
	CHECK_OK(store_get(t, "packs/p2", 100000, 1, &b));
	CHECK(b.len == 1 && b.data[0] == pack[100000]);
	CHECK_OK(store_get(t, "packs/p2", 169999, 1, &b));
	CHECK(b.len == 1 && b.data[0] == pack[169999]);
	CHECK(counter->gets == 4);
	CHECK_OK(store_get(t, "packs/p2", 169999, 2, &b));
	CHECK(b.len == 2 && !memcmp(b.data, pack + 169999, 2));
	CHECK(counter->gets == 5);
	/* A small read buffer is enough for a small read from a big cached file. */
	struct buf small = { .max = 4096 };
	CHECK_OK(store_get(t, "packs/p2", 100500, 4000, &small));
	CHECK(small.len == 4000 && !memcmp(small.data, pack + 100500, 4000));
	buf_free(&small);
	g = counter->gets;
	CHECK_OK(store_get(t, "packs/p2", 299990, STORE_GET_ALL, &b)); /* to the end */
	CHECK_OK(store_get(t, "packs/p2", 299990, STORE_GET_ALL, &b));
	CHECK(b.len == 10 && !memcmp(b.data, pack + 299990, 10) && counter->gets == g + 1);
	/* And the whole object cached in the first session survived the reopen. */
	g = counter->gets;
	struct buf tiny = { .max = 100 };
	CHECK_OK(store_get(t, "packs/p1", 5, 100, &tiny)); /* checked whole, served small */
	CHECK(tiny.len == 100 && !memcmp(tiny.data, pack + 5, 100));
	buf_free(&tiny);
	CHECK_OK(store_get(t, "packs/p1", 0, STORE_GET_ALL, &b));
	CHECK(b.len == sizeof(pack) && !memcmp(b.data, pack, sizeof(pack)));
	CHECK(counter->gets == g);

	/* What is cached, for readers that plan around it (restore). */
	struct pieces pc = { 0 };
	CHECK_OK(store_cached(t, "packs/p1", add_piece, &pc));
	CHECK(pc.n == 1 && pc.off[0] == 0 && pc.len[0] == STORE_GET_ALL); /* whole */
	pc.n = 0;
	CHECK_OK(store_cached(t, "packs/p2", add_piece, &pc));
	CHECK(pc.n >= 4);
	int held = 0;
	for (size_t i = 0; i < pc.n; i++)
		held += pc.off[i] == 100000 && pc.len[i] == 70000;
	CHECK(held == 1); /* the coalesced read, with its real length */
	for (size_t i = 0; i < pc.n; i++) { /* each reported piece reads locally */
		g = counter->gets;
		CHECK_OK(store_get(t, "packs/p2", pc.off[i], pc.len[i], &b));
		CHECK(b.len == pc.len[i] && !memcmp(b.data, pack + pc.off[i], b.len));
		CHECK(counter->gets == g);
	}
	pc.n = 0;
	CHECK_OK(store_cached(t, "packs/none", add_piece, &pc));
	CHECK_OK(store_cached(t, "refs/main", add_piece, &pc));
	CHECK(pc.n == 0);
	CHECK_OK(store_cached(counter->inner, "packs/p1", add_piece, &pc)); /* not a cache */
	CHECK(pc.n == 0);

	/* refs/ are mutable: always asked of the remote. */
	CHECK_OK(store_get(t, "refs/main", 0, STORE_GET_ALL, &b));
	CHECK(b.len == 2 && !memcmp(b.data, "v1", 2));
	CHECK_OK(store_local_open(remote_dir, 0, &local));
	CHECK_OK(store_put(local, "refs/main", "v2", 2, 0));
	store_free(local);
	CHECK_OK(store_get(t, "refs/main", 0, STORE_GET_ALL, &b));
	CHECK(b.len == 2 && !memcmp(b.data, "v2", 2));
	store_free(t);

	/* Corrupted cache files (a torn write after a crash) are never served. */
	damage_cache(0);
	t = open_tiered(4 << 20);
	CHECK_OK(store_get(t, "packs/p2", 5000, 7000, &b));
	CHECK(b.len == 7000 && !memcmp(b.data, pack + 5000, 7000));
	CHECK(counter->gets == 1);
	CHECK_OK(store_get(t, "packs/p1", 100, 100, &b)); /* from a damaged whole file */
	CHECK(b.len == 100 && !memcmp(b.data, pack + 100, 100));
	CHECK(counter->gets == 2);
	CHECK_OK(store_get(t, "packs/p2", 5000, 7000, &b)); /* refetched copy is good */
	CHECK(b.len == 7000 && !memcmp(b.data, pack + 5000, 7000));
	CHECK(counter->gets == 2);
	store_free(t);
	damage_cache(1);
	t = open_tiered(4 << 20);
	CHECK_OK(store_get(t, "packs/p2", 5000, 7000, &b));
	CHECK(b.len == 7000 && !memcmp(b.data, pack + 5000, 7000));
	CHECK(counter->gets == 1);
	store_free(t);

	/* A session that dies without closing, and a file no row knows (a crash
	 * between writing a cache file and indexing it): removed at next open. */
	pid_t pid = fork();
	if (pid == 0) {
		struct store *l2 = NULL, *t2 = NULL;
		if (store_local_open(remote_dir, 0, &l2) < 0 ||
		    store_tiered_open(l2, cache_dir, 4 << 20, &t2) < 0 ||
		    store_get(t2, "packs/p2", 0, 1000, &b) < 0)
			_exit(1);
		_exit(0); /* no store_free: as if killed */
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char orphan[400];
	snprintf(orphan, sizeof(orphan), "%s/objects/00", cache_dir);
	CHECK_OK(mkdir_p(AT_FDCWD, orphan, 0700));
	snprintf(orphan, sizeof(orphan), "%s/objects/00/orphan", cache_dir);
	CHECK_OK(write_file_atomic(AT_FDCWD, orphan, "stray", 5, 0));
	t = open_tiered(4 << 20);
	CHECK(access(orphan, F_OK) != 0);
	CHECK_OK(store_get(t, "packs/p2", 0, 1000, &b)); /* the dead session's entry serves */
	CHECK(b.len == 1000 && !memcmp(b.data, pack, 1000) && counter->gets == 0);

	/* The same while another session is open and closes cleanly after the
	 * death (a restore killed by ^C while a mount shares the cache): the
	 * dead one's half-written download and unindexed file still go. */
	char partial[400];
	snprintf(partial, sizeof(partial), "%s/objects/00/partial.tmp", cache_dir);
	pid = fork();
	if (pid == 0) {
		struct store *l2 = NULL, *t2 = NULL;
		if (store_local_open(remote_dir, 0, &l2) < 0 ||
		    store_tiered_open(l2, cache_dir, 4 << 20, &t2) < 0 ||
		    write_file_atomic(AT_FDCWD, orphan, "stray", 5, 0) < 0 ||
		    write_file_atomic(AT_FDCWD, partial, "half a ra", 9, 0) < 0)
			_exit(1);
		_exit(0); /* no store_free: as if killed */
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	store_free(t); /* the other session ends cleanly */
	t = open_tiered(4 << 20);
	CHECK(access(orphan, F_OK) != 0 && access(partial, F_OK) != 0);
	CHECK_OK(store_get(t, "packs/p2", 0, 1000, &b));
	CHECK(b.len == 1000 && !memcmp(b.data, pack, 1000) && counter->gets == 0);
	store_free(t);

	/* While a session lives, its download in progress is no orphan: another
	 * session's open leaves it (the "clean" mark, unset by the live one, is
	 * no death), and both serve. */
	t = open_tiered(4 << 20);
	char inflight[400];
	snprintf(inflight, sizeof(inflight), "%s/objects/00/inflight.%d.1.tmp", cache_dir,
		 (int)getpid());
	CHECK_OK(write_file_atomic(AT_FDCWD, inflight, "half", 4, 0));
	struct store *l2 = NULL, *live2 = NULL;
	CHECK_OK(store_local_open(remote_dir, 0, &l2));
	CHECK_OK(store_tiered_open(l2, cache_dir, 4 << 20, &live2));
	CHECK(access(inflight, F_OK) == 0);
	CHECK_OK(store_get(live2, "packs/p2", 0, 1000, &b));
	CHECK(b.len == 1000 && !memcmp(b.data, pack, 1000));
	CHECK_OK(store_get(t, "packs/p2", 0, 1000, &b));
	CHECK(b.len == 1000 && !memcmp(b.data, pack, 1000) && counter->gets == 0);
	/* What such a scan did to a live session (files gone under its index)
	 * costs a refetch: never an error, never other bytes. */
	char find[600];
	snprintf(find, sizeof(find), "find '%s/objects' -type f -delete", cache_dir);
	CHECK(system(find) == 0);
	CHECK_OK(store_get(t, "packs/p2", 0, 1000, &b));
	CHECK(b.len == 1000 && !memcmp(b.data, pack, 1000) && counter->gets == 1);
	CHECK_OK(store_get(t, "packs/p2", 0, 1000, &b));
	CHECK(b.len == 1000 && !memcmp(b.data, pack, 1000) && counter->gets == 1);
	store_free(live2);
	store_free(t);

	/* A damaged index: the cache starts over, reads still work. */
	char idx[400];
	snprintf(idx, sizeof(idx), "%s/index.sqlite", cache_dir);
	CHECK_OK(write_file_atomic(AT_FDCWD, idx, "this is not a database, not at all.....", 40, 0));
	t = open_tiered(4 << 20);
	CHECK(t != NULL);
	if (t) {
		CHECK_OK(store_get(t, "packs/p2", 5000, 7000, &b));
		CHECK(b.len == 7000 && !memcmp(b.data, pack + 5000, 7000));
		CHECK(counter->gets == 1);
		store_free(t);
	}

	/* The size cap, least recently used first. */
	t = open_tiered(1 << 20); /* entries up to 128 KiB */
	for (int i = 0; i < 30; i++) {
		fill(obj, sizeof(obj), (unsigned)i);
		snprintf(name, sizeof(name), "packs/obj%02d", i);
		CHECK_OK(store_put(t, name, obj, sizeof(obj), 0));
		/* Keep obj00 hot. */
		CHECK_OK(store_get(t, "packs/obj00", 0, 100, &b));
	}
	CHECK(cache_file_bytes() <= (1 << 20));
	g = counter->gets;
	CHECK_OK(store_get(t, "packs/obj00", 0, STORE_GET_ALL, &b));
	CHECK(counter->gets == g); /* still cached */
	CHECK_OK(store_get(t, "packs/obj01", 0, STORE_GET_ALL, &b));
	CHECK(counter->gets == g + 1); /* evicted long ago */
	fill(obj, sizeof(obj), 1);
	CHECK(b.len == sizeof(obj) && !memcmp(b.data, obj, sizeof(obj)));
	/* Too big for the cache at all: served, not cached. */
	CHECK_OK(store_get(t, "packs/p1", 0, STORE_GET_ALL, &b));
	CHECK_OK(store_get(t, "packs/p1", 0, STORE_GET_ALL, &b));
	CHECK(counter->gets == g + 3);
	/* remove drops cached copies. */
	CHECK_OK(store_remove(t, "packs/obj00"));
	CHECK_ERR(store_get(t, "packs/obj00", 0, STORE_GET_ALL, &b), -ENOENT);
	CHECK_ERR(store_stat(t, "packs/obj00", &size), -ENOENT);
	store_free(t);

	/* Least recently used across sessions (the mounts and commands sharing
	 * one cache): a session opened long ago uses an entry after another
	 * session's many uses of its own; when that other session must evict,
	 * the entry just used stays and one of its own old ones goes. */
	{
		struct store *t1, *t2;
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
		CHECK(system(cmd) == 0);
		t1 = open_tiered(1 << 20); /* entries up to 128 KiB */
		fill(obj, sizeof(obj), 100);
		CHECK_OK(store_put(t1, "packs/lru-x", obj, sizeof(obj), 0));
		t2 = open_tiered(1 << 20);
		for (int i = 0; i < 8; i++) { /* 900 KB with x */
			fill(obj, sizeof(obj), (unsigned)(101 + i));
			snprintf(name, sizeof(name), "packs/lru-y%d", i);
			CHECK_OK(store_put(t2, name, obj, sizeof(obj), 0));
		}
		for (int round = 0; round < 20; round++)
			for (int i = 0; i < 8; i++) {
				snprintf(name, sizeof(name), "packs/lru-y%d", i);
				CHECK_OK(store_get(t2, name, 0, 100, &b));
			}
		usleep(2000);
		CHECK_OK(store_get(t1, "packs/lru-x", 0, 100, &b)); /* the latest use */
		/* t1 stays open (a mount): its stamps reach the index within a
		 * second of use, with its next read. */
		usleep(1100000);
		CHECK_OK(store_get(t1, "packs/lru-x", 100, 100, &b));
		for (int i = 8; i < 10; i++) { /* past the cap: one entry goes */
			fill(obj, sizeof(obj), (unsigned)(101 + i));
			snprintf(name, sizeof(name), "packs/lru-y%d", i);
			CHECK_OK(store_put(t2, name, obj, sizeof(obj), 0));
		}
		store_free(t2);
		store_free(t1);
		t = open_tiered(1 << 20);
		CHECK_OK(store_get(t, "packs/lru-x", 0, STORE_GET_ALL, &b));
		CHECK(counter->gets == 0); /* x was used last: still cached */
		CHECK_OK(store_get(t, "packs/lru-y0", 0, STORE_GET_ALL, &b));
		CHECK(counter->gets == 1); /* y0, used least recently, went */
		store_free(t);
	}

	/* The cap holds for the sum of what sessions sharing the cache store
	 * (the daemon's mounts of one repository): each counting only its own
	 * inserts, two sessions filled two caps. */
	{
		struct store *t1, *t2;
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
		CHECK(system(cmd) == 0);
		t1 = open_tiered(1 << 20);
		t2 = open_tiered(1 << 20);
		for (int i = 0; i < 16; i++) {
			fill(obj, sizeof(obj), (unsigned)(200 + i));
			snprintf(name, sizeof(name), "packs/cap-%d", i);
			CHECK_OK(store_put(i % 2 ? t2 : t1, name, obj, sizeof(obj), 0));
		}
		printf("two sessions, cap 1 MiB: %llu bytes cached\n",
		       (unsigned long long)cache_file_bytes());
		CHECK(cache_file_bytes() <= (1 << 20));
		store_free(t1);
		store_free(t2);
	}

	/* A smaller cap while another process holds the index's write lock:
	 * eviction cannot delete a row, and must give up (the next store tries
	 * again) instead of retrying the same rows for ever under the lock
	 * every reader waits for.  SIGALRM ends the test if it spins. */
	{
		char idx[300], ready[300], cmd[1024];
		int status;

		snprintf(idx, sizeof(idx), "%s/index.sqlite", cache_dir);
		snprintf(ready, sizeof(ready), "%s/busy-ready", root);
		pid_t holder = fork();
		if (holder == 0) {
			snprintf(cmd, sizeof(cmd),
				 "import sqlite3, time; db = sqlite3.connect('%s', isolation_level=None); "
				 "db.execute('BEGIN IMMEDIATE'); open('%s', 'w').close(); time.sleep(60)",
				 idx, ready);
			execlp("python3", "python3", "-c", cmd, (char *)NULL);
			_exit(127);
		}
		for (int i = 0; i < 100 && access(ready, F_OK) != 0; i++)
			usleep(100000);
		CHECK(access(ready, F_OK) == 0);
		alarm(60);
		t = open_tiered(100000); /* evicts at open: the cap shrank */
		alarm(0);
		kill(holder, SIGKILL);
		waitpid(holder, &status, 0);
		CHECK(t != NULL);
		if (t)
			CHECK_OK(store_get(t, "packs/obj05", 0, STORE_GET_ALL, &b));
		store_free(t);
	}

	/* Concurrent readers, cap of 100 KB: constant eviction. */
	static uint8_t big[300000 + 3000];
	fill(big, sizeof(big), 77);
	t = open_tiered(100000);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "packs/r%d", i);
		CHECK_OK(store_local_open(remote_dir, 0, &local));
		CHECK_OK(store_put(local, name, big + i * 1000, 300000, 0));
		store_free(local);
	}
	struct reader_arg ra[6];
	pthread_t th[6];
	for (int i = 0; i < 6; i++) {
		ra[i] = (struct reader_arg){ .t = t, .pack = big, .seed = (unsigned)i + 1 };
		pthread_create(&th[i], NULL, reader, &ra[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		CHECK(ra[i].wrong == 0 && ra[i].errors == 0);
	}
	CHECK(cache_file_bytes() <= 100000);
	/* invalidate: the next read goes to the remote again. */
	CHECK_OK(store_get(t, "packs/r0", 0, 7000, &b));
	g = counter->gets;
	CHECK_OK(store_get(t, "packs/r0", 0, 7000, &b));
	CHECK(counter->gets == g);
	store_invalidate(t, "packs/r0");
	CHECK_OK(store_get(t, "packs/r0", 0, 7000, &b));
	CHECK(counter->gets == g + 1);
	store_invalidate(counter->inner, "packs/r0"); /* no invalidate op: a no-op */
	uint64_t hits, misses, cached;
	CHECK_OK(store_tiered_stats(t, &hits, &misses, &cached));
	CHECK(hits + misses == 6 * 300 + 3 && misses >= 2 && hits > 0 && cached <= 100000);
	CHECK(store_tiered_remote(t) == &counter->base && store_tiered_remote(&counter->base) == NULL);
	store_free(t);

	/* Another remote in front of the same cache directory: it starts over
	 * rather than serve the other repository's objects. */
	char other[400];
	snprintf(other, sizeof(other), "%s/other-remote", root);
	CHECK_OK(store_local_open(other, 1, &local));
	CHECK_OK(store_put(local, "config", "other", 5, 0));
	store_free(local);
	t = open_tiered(4 << 20);
	CHECK_OK(store_put(t, "config", "mine", 4, 0));
	CHECK_OK(store_get(t, "config", 0, STORE_GET_ALL, &b));
	store_free(t);
	struct store *t2 = NULL;
	/* ... but never while a process uses it: clearing it would pull the
	 * index and the objects from under that process. */
	t = open_tiered(4 << 20);
	CHECK_OK(store_get(t, "config", 0, STORE_GET_ALL, &b));
	g = counter->gets;
	CHECK_OK(store_local_open(other, 0, &local));
	CHECK_ERR(store_tiered_open(local, cache_dir, 4 << 20, &t2), -ESTALE);
	CHECK(t2 == NULL);
	hb_err_clear();
	CHECK_OK(store_get(t, "config", 0, STORE_GET_ALL, &b));
	CHECK(b.len == 4 && !memcmp(b.data, "mine", 4) && counter->gets == g);
	/* A cache of the layout without locks goes only once nobody has it open. */
	char path[400];
	snprintf(path, sizeof(path), "%s/index.sqlite", cache_dir);
	CHECK(store_tiered_remove_unused(cache_dir) == 0);
	CHECK(access(path, F_OK) == 0 && cache_file_bytes() > 0);
	CHECK_OK(store_get(t, "config", 0, STORE_GET_ALL, &b));
	CHECK(counter->gets == g);
	store_free(t);
	CHECK(store_tiered_remove_unused(cache_dir) == 1);
	CHECK(access(path, F_OK) < 0 && cache_file_bytes() == 0);
	CHECK(store_tiered_remove_unused(cache_dir) == 0);
	t = open_tiered(4 << 20);
	CHECK_OK(store_get(t, "config", 0, STORE_GET_ALL, &b));
	store_free(t);
	CHECK_OK(store_local_open(other, 0, &local));
	CHECK_OK(store_tiered_open(local, cache_dir, 4 << 20, &t2));
	if (t2) {
		CHECK_OK(store_get(t2, "config", 0, STORE_GET_ALL, &b));
		CHECK(b.len == 5 && !memcmp(b.data, "other", 5));
		store_free(t2);
	}

	/* A smaller cap at open trims the cache. */
	t = open_tiered(300000);
	CHECK(cache_file_bytes() <= 300000);
	store_free(t);

	/* Two processes on one cache: one drops an entry while the other stores
	 * the same object again.  Neither may remove the file of the other's
	 * fresh row: the next read is a hit, not a remote read.  (Before, a
	 * file was named by the entry's key alone, and dropping unlinked it
	 * even when the DELETE found no row.) */
	{
		char cmd[400], fifo[400];
		int status, fd;

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
		CHECK(system(cmd) == 0);
		snprintf(fifo, sizeof(fifo), "%s/hook", root);
		CHECK(mkfifo(fifo, 0600) == 0);
		fill(obj, sizeof(obj), 300);
		CHECK_OK(store_local_open(remote_dir, 0, &local));
		CHECK_OK(store_put(local, "packs/race-insert", obj, sizeof(obj), 0));
		CHECK_OK(store_put(local, "packs/race-drop", obj, sizeof(obj), 0));
		CHECK_OK(store_put(local, "packs/race-later", obj, sizeof(obj), 0));
		store_free(local);
		t = open_tiered(4 << 20);

		/* The other process has written its file, not yet its row; this
		 * one caches the object and invalidates it meanwhile. */
		pid = held_reader("HIBERBOX_TEST_CACHE_INSERT_WAIT", fifo, "packs/race-insert", 0);
		alarm(60); /* the child never reached its hook: fail, not hang */
		fd = open(fifo, O_WRONLY | O_CLOEXEC);
		CHECK(fd >= 0);
		CHECK_OK(store_get(t, "packs/race-insert", 0, STORE_GET_ALL, &b));
		store_invalidate(t, "packs/race-insert");
		close(fd);
		waitpid(pid, &status, 0);
		alarm(0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		g = counter->gets;
		CHECK_OK(store_get(t, "packs/race-insert", 0, STORE_GET_ALL, &b));
		CHECK(b.len == sizeof(obj) && !memcmp(b.data, obj, sizeof(obj)));
		CHECK(counter->gets == g);

		/* The other process found a torn file and is about to drop its row;
		 * this one drops it first and caches a fresh copy (a later row
		 * exists, so the new row's rowid is another).  Gone from the
		 * remote then, so that the other's refetch fails and does not
		 * store the file again. */
		CHECK_OK(store_get(t, "packs/race-drop", 0, STORE_GET_ALL, &b));
		CHECK_OK(store_get(t, "packs/race-later", 0, STORE_GET_ALL, &b));
		damage_cache(1);
		pid = held_reader("HIBERBOX_TEST_CACHE_DROP_WAIT", fifo, "packs/race-drop", -ENOENT);
		alarm(60);
		fd = open(fifo, O_WRONLY | O_CLOEXEC);
		CHECK(fd >= 0);
		CHECK_OK(store_get(t, "packs/race-drop", 0, STORE_GET_ALL, &b));
		remove_from_remote("packs/race-drop");
		close(fd);
		waitpid(pid, &status, 0);
		alarm(0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		g = counter->gets;
		CHECK_OK(store_get(t, "packs/race-drop", 0, STORE_GET_ALL, &b));
		CHECK(b.len == sizeof(obj) && !memcmp(b.data, obj, sizeof(obj)));
		CHECK(counter->gets == g);
		store_free(t);
	}

	buf_free(&b);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	TEST_MAIN_END();
}
