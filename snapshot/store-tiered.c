/* A local cache directory in front of a remote store (store_tiered_open).
 *
 * What is cached: whole objects (written through put, or read whole) and the
 * byte ranges read from objects (chunks inside packs; a read inside a cached
 * range, e.g. one chunk of a coalesced read, is served from it), each as one file
 * under CACHE/objects/xx/<hash>.<unique>, indexed in CACHE/index.sqlite with its
 * size, an XXH3-64 checksum and a last-access stamp.  No two insertions share
 * a file name, and a row is dropped by rowid and file name with its file
 * unlinked only when that DELETE removed it: whoever drops an entry (eviction,
 * a torn file, invalidate) never takes the file of a fresh copy that another
 * thread or process stored meanwhile.  Names under refs/ and locks/
 * change in place, so they are never cached: they always go to the remote.
 *
 * Reads: cache, then remote (and the answer is cached); the remote alone
 * while store_tiered_read_remote() is on (check).  Writes: remote
 * first, then the cache, so the cache never holds what the remote lacks.
 * Size cap: least recently used entries are evicted once the total passes
 * cache_bytes; one entry may use at most an eighth of it.  Access stamps are
 * wall-clock times, written within a second, so that sessions sharing the
 * cache (mounts, commands) evict by their common order of use.
 *
 * After a crash: cache files are written without fsync (the cache can always
 * be refetched), so a file may be torn.  Every entry is checked against its
 * checksum before it is served for the first time in a session (and whenever
 * it is read whole); a mismatch drops the entry and reads the remote.  An unreadable index is deleted with
 * all cache files.  Files no row points at (a crash between file and row,
 * a download cut by a kill) are removed at the next open after a session
 * died: the last one to close marks the cache clean, and each session holds
 * a locked file in CACHE/sessions/ that outlives it only if it dies (an
 * unset mark while other sessions are open is theirs, not a death: no scan
 * then, which would take their downloads in progress).
 *
 * Each remote has a directory of its own (store-open.c picks it from the
 * location), and the cache also records which remote it belongs to.  A cache
 * that cannot be read, or belongs to another remote, is cleared only by a
 * process that has it to itself: every process holds a shared flock on
 * CACHE/lock while the cache is open, and clearing needs an exclusive one
 * (deleting an index another process has open would leave it writing to a
 * deleted file, and its cached objects gone).  Bytes are cached as the remote
 * returned them: the repository verifies chunks above this layer, and on a
 * mismatch calls store_invalidate() before it fetches again, so that a
 * bad copy is not served twice.
 *
 * Several processes may share a cache directory (SQLite serialises them);
 * each keeps a running total of the bytes cached, and reads the index's sum
 * again once it has added a sixteenth of the cap or a second has passed:
 * the others' inserts count against the cap too.
 *
 * Locking: one mutex around the SQLite handle and the byte total; file I/O
 * and remote requests run outside it, so many threads read at once.
 */
#define XXH_INLINE_ALL
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "snapshot/store.h"
#include "snapshot/testhook.h"
#include "util/error.h"
#include "util/fileio.h"

#define TIERED_MIN_DEFAULT_BYTES ((uint64_t)64 << 20)
#define TIERED_ENTRY_FRACTION 8 /* one entry at most cap / 8 */
#define TIERED_PENDING_TOUCHES 256 /* access stamps written in one transaction */
#define TIERED_TOUCH_DELAY_US 1000000 /* ... or once the oldest waits this long */

struct tiered {
	struct store base;
	struct store *remote;
	char *dir;
	int dirfd;
	int lockfd; /* CACHE/lock, flock'ed shared while open */
	int sessionfd; /* CACHE/sessions/<name>, flock'ed exclusively while open */
	char session[48];
	sqlite3 *db;
	pthread_mutex_t lock; /* db, total, clock */
	/* clock: the last access stamp given, in microseconds of wall-clock
	 * time, so that the stamps of all sessions sharing the cache compare. */
	uint64_t cap, total, clock;
	uint64_t added, summed_ns; /* bytes added since total was last summed, and when */
	int64_t generation; /* this session: entries verified in it need no re-check */
	int read_remote; /* atomic: store_tiered_read_remote */
	/* Access stamps of cache hits, written in batches: a write transaction
	 * per hit would cost more than the hit. */
	struct {
		int64_t rowid, atime;
	} pending[TIERED_PENDING_TOUCHES];
	unsigned npending;
	uint64_t hits, misses; /* atomics */
	sqlite3_stmt *q_lookup, *q_insert, *q_touch, *q_verified, *q_delete, *q_by_name,
		*q_oldest, *q_exists, *q_ranges, *q_total, *q_by_key;
};

struct entry {
	int64_t rowid;
	char file[64];
	uint64_t size, off;
	int64_t sum, verified_gen;
	int whole;
};

static struct tiered *to_tiered(struct store *s)
{
	return (struct tiered *)s;
}

static int cacheable(const char *name)
{
	return strncmp(name, "refs/", 5) && strncmp(name, "locks/", 6) &&
	       strncmp(name, "pins/", 5);
}

static int64_t checksum(const void *data, size_t len)
{
	return (int64_t)XXH3_64bits(data, len);
}

/* The file of one insertion: "objects/xx/<hash of the entry's key>.<unique>".
 * Never the name of another insertion, even of the same bytes: dropping an
 * entry (eviction, a torn file, invalidate) unlinks the file its row named,
 * and must not take a fresh copy that another thread or process sharing
 * the cache stored meanwhile for a row of its own. */
static void entry_file(const char *name, int whole, uint64_t off, uint64_t len, uint64_t unique,
		       char out[64])
{
	char key[64];
	XXH3_state_t st;
	XXH128_hash_t h;

	snprintf(key, sizeof(key), "\n%d\n%" PRIu64 "\n%" PRIu64, whole, off, len);
	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, name, strlen(name));
	XXH3_128bits_update(&st, key, strlen(key));
	h = XXH3_128bits_digest(&st);
	snprintf(out, 64, "objects/%02x/%016" PRIx64 "%016" PRIx64 ".%016" PRIx64,
		 (unsigned)(h.high64 >> 56), h.high64, h.low64, unique);
}

/* ---- index ---- */

static const char SCHEMA[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS entries("
	" name TEXT NOT NULL, whole INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL,"
	" file TEXT NOT NULL, size INTEGER NOT NULL, sum INTEGER NOT NULL,"
	" atime INTEGER NOT NULL, verified_gen INTEGER NOT NULL,"
	" UNIQUE(name, whole, off, len));"
	"CREATE INDEX IF NOT EXISTS entries_atime ON entries(atime);"
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS entries_file ON entries(file);";

static int db_err(struct tiered *t, int rc, const char *what)
{
	return hb_err(rc == SQLITE_NOMEM ? -ENOMEM : -EIO, "cache index %s/index.sqlite: %s: %s",
		      t->dir, what, t->db ? sqlite3_errmsg(t->db) : sqlite3_errstr(rc));
}

static void db_close(struct tiered *t)
{
	sqlite3_stmt **stmts[] = { &t->q_lookup, &t->q_insert, &t->q_touch, &t->q_verified,
				   &t->q_delete, &t->q_by_name, &t->q_oldest, &t->q_exists,
				   &t->q_ranges, &t->q_total, &t->q_by_key };

	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		sqlite3_finalize(*stmts[i]);
		*stmts[i] = NULL;
	}
	sqlite3_close(t->db);
	t->db = NULL;
}

static int db_open(struct tiered *t)
{
	char path[4096];
	sqlite3_stmt *st;
	int rc;
	struct {
		sqlite3_stmt **stmt;
		const char *sql;
	} prep[] = {
		/* The whole object, else a cached range holding the wanted one
		 * (ranges are often read coalesced, then chunk by chunk): the few
		 * nearest starting at or before it, through the unique index.
		 * "To the end" (?3 = -1) only matches a range cached as such. */
		{ &t->q_lookup, "SELECT rowid, file, size, sum, whole, off, verified_gen FROM entries"
				" WHERE name=?1 AND whole=1"
				" UNION ALL SELECT * FROM (SELECT rowid, file, size, sum, whole, off,"
				" verified_gen FROM entries WHERE name=?1 AND whole=0 AND off<=?2"
				" AND (?3<>-1 OR (off=?2 AND len=-1)) ORDER BY off DESC LIMIT 8)" },
		{ &t->q_insert, "INSERT INTO entries(name, whole, off, len, file, size,"
				" sum, atime, verified_gen) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)"
				" ON CONFLICT(name, whole, off, len) DO UPDATE SET file=excluded.file,"
				" size=excluded.size, sum=excluded.sum, atime=excluded.atime,"
				" verified_gen=excluded.verified_gen" },
		{ &t->q_by_key, "SELECT file, size FROM entries"
				" WHERE name=?1 AND whole=?2 AND off=?3 AND len=?4" },
		{ &t->q_touch, "UPDATE entries SET atime=?2 WHERE rowid=?1" },
		{ &t->q_verified, "UPDATE entries SET verified_gen=?2 WHERE rowid=?1" },
		/* The file too: a rowid may be reused once its row is gone. */
		{ &t->q_delete, "DELETE FROM entries WHERE rowid=?1 AND file=?2" },
		{ &t->q_by_name, "SELECT rowid, file, size FROM entries WHERE name=?1" },
		{ &t->q_oldest, "SELECT rowid, file, size FROM entries ORDER BY atime LIMIT 64" },
		{ &t->q_exists, "SELECT 1 FROM entries WHERE file=?1" },
		{ &t->q_ranges, "SELECT whole, off, size FROM entries WHERE name=?1 ORDER BY off" },
		{ &t->q_total, "SELECT COALESCE(SUM(size),0) FROM entries" },
	};

	snprintf(path, sizeof(path), "%s/index.sqlite", t->dir);
	rc = sqlite3_open_v2(path, &t->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return db_err(t, rc, "open");
	sqlite3_busy_timeout(t->db, 5000);
	if ((rc = sqlite3_exec(t->db, SCHEMA, NULL, NULL, NULL)) != SQLITE_OK)
		return db_err(t, rc, "schema");
	for (size_t i = 0; i < sizeof(prep) / sizeof(prep[0]); i++)
		if ((rc = sqlite3_prepare_v2(t->db, prep[i].sql, -1, prep[i].stmt, NULL)) != SQLITE_OK)
			return db_err(t, rc, "prepare");
	/* A cache belongs to one remote: names like "config" mean something else
	 * in another repository. */
	rc = sqlite3_prepare_v2(t->db, "SELECT value FROM meta WHERE key='remote'", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_err(t, rc, "prepare");
	rc = sqlite3_step(st);
	const char *owner = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
	int same = owner && !strcmp(owner, store_location(t->remote));
	int empty = rc == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!same && !empty)
		return hb_err(-ESTALE, "cache %s belongs to another repository", t->dir);
	if (empty) {
		rc = sqlite3_prepare_v2(t->db, "INSERT INTO meta(key, value) VALUES('remote', ?1)", -1,
					&st, NULL);
		if (rc != SQLITE_OK)
			return db_err(t, rc, "prepare");
		sqlite3_bind_text(st, 1, store_location(t->remote), -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return db_err(t, rc, "meta");
	}
	rc = sqlite3_prepare_v2(t->db, "SELECT COALESCE(SUM(size),0), COALESCE(MAX(atime),0)"
				       " FROM entries", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_err(t, rc, "prepare");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		t->total = (uint64_t)sqlite3_column_int64(st, 0);
		t->clock = (uint64_t)sqlite3_column_int64(st, 1);
		t->summed_ns = now_ns();
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_err(t, rc, "totals");
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (ftw->level > 0)
		remove(path);
	return 0;
}

/* Forget everything in the cache directory dir (its index and objects; the
 * caller knows that no other process has them open). */
static void wipe_cache(const char *dir)
{
	char path[4096];
	static const char *const files[] = { "index.sqlite", "index.sqlite-wal",
					     "index.sqlite-shm" };

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/objects", dir);
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int store_tiered_remove_unused(const char *cache_dir)
{
	char path[4096];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int unused = 0;

	snprintf(path, sizeof(path), "%s/index.sqlite", cache_dir);
	if (access(path, F_OK) < 0)
		return 0;
	/* Leaving WAL mode needs the only connection to the database (the
	 * others hold a shared lock on it as long as they have it open); then an
	 * exclusive transaction keeps out whoever opens it meanwhile. */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA journal_mode=DELETE", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(st, 0);

		unused = mode && !strcmp(mode, "delete");
	}
	sqlite3_finalize(st);
	if (unused && sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK) {
		wipe_cache(cache_dir);
		snprintf(path, sizeof(path), "%s/objects", cache_dir);
		rmdir(path); /* wipe_cache leaves it for a cache that goes on */
	} else {
		unused = 0;
	}
	sqlite3_close(db);
	hb_err_clear();
	return unused;
}

static int64_t meta_get_int(struct tiered *t, const char *key)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	if (sqlite3_prepare_v2(t->db, "SELECT value FROM meta WHERE key=?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void meta_set_int(struct tiered *t, const char *key, int64_t v)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(t->db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", -1,
			       &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	sqlite3_step(st);
	sqlite3_finalize(st);
}

/* Remove cache files that no row points at (and temporary files). */
static void remove_orphans(struct tiered *t)
{
	char sub[32], rel[128];
	DIR *top, *d;
	struct dirent *de, *fe;
	int topfd = openat(t->dirfd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (topfd < 0 || !(top = fdopendir(topfd))) {
		if (topfd >= 0)
			close(topfd);
		return;
	}
	while ((de = readdir(top))) {
		if (de->d_name[0] == '.' || strlen(de->d_name) != 2)
			continue;
		snprintf(sub, sizeof(sub), "%s", de->d_name);
		int fd = openat(topfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || !(d = fdopendir(fd))) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		while ((fe = readdir(d))) {
			if (fe->d_name[0] == '.')
				continue;
			snprintf(rel, sizeof(rel), "objects/%s/%s", sub, fe->d_name);
			sqlite3_bind_text(t->q_exists, 1, rel, -1, SQLITE_TRANSIENT);
			int found = sqlite3_step(t->q_exists) == SQLITE_ROW;
			sqlite3_reset(t->q_exists);
			if (!found)
				unlinkat(dirfd(d), fe->d_name, 0);
		}
		closedir(d);
	}
	closedir(top);
}

/* Register this session as CACHE/sessions/<pid>.<random>, flock'ed
 * exclusively until the store is freed.  A file there whose lock can be
 * taken belongs to a process that died with the cache open, which may have
 * left half-written downloads and files no row points at: *dead says so (the
 * "clean" mark cannot, when another session closes cleanly after the death).
 * *live counts the others still open (the mark is unset while one is).
 * Best effort: without a session file a death goes unnoticed, nothing worse. */
static void session_begin(struct tiered *t, int *dead, int *live)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int dfd;

	*dead = *live = 0;
	if (mkdirat(t->dirfd, "sessions", 0700) < 0 && errno != EEXIST)
		return;
	dfd = openat(t->dirfd, "sessions", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	if ((d = fdopendir(dfd))) {
		while ((de = readdir(d))) {
			int fd;

			if (de->d_name[0] == '.')
				continue;
			fd = openat(dirfd(d), de->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
			if (fd < 0)
				continue;
			if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
				unlinkat(dirfd(d), de->d_name, 0);
				*dead = 1;
			} else {
				(*live)++;
			}
			close(fd);
		}
	}
	/* Between our create and our flock another opener may take the new
	 * file for a dead one and unlink it: a file still linked once the lock
	 * is ours is safe, else try another name. */
	for (int tries = 0; tries < 8 && t->sessionfd < 0; tries++) {
		uint64_t rnd = 0;
		int fd;

		if (random_bytes(&rnd, sizeof(rnd)) < 0)
			rnd = now_ns();
		snprintf(t->session, sizeof(t->session), "%d.%016" PRIx64, (int)getpid(), rnd);
		fd = openat(dfd, t->session, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			break;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 && st.st_nlink > 0)
			t->sessionfd = fd;
		else
			close(fd);
	}
	if (d)
		closedir(d); /* and dfd with it */
	else
		close(dfd);
}

static void session_end(struct tiered *t)
{
	char path[64];

	if (t->sessionfd < 0)
		return;
	/* Unlinked before the lock goes: never seen unlocked while it lives. */
	snprintf(path, sizeof(path), "sessions/%s", t->session);
	unlinkat(t->dirfd, path, 0);
	close(t->sessionfd);
	t->sessionfd = -1;
}

/* ---- entries (callers hold t->lock) ---- */

static int lookup_locked(struct tiered *t, const char *name, uint64_t off, uint64_t len,
			 struct entry *e)
{
	sqlite3_stmt *q = t->q_lookup;
	int found = 0;

	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, (int64_t)off);
	sqlite3_bind_int64(q, 3, (int64_t)len);
	while (!found && sqlite3_step(q) == SQLITE_ROW) {
		const char *f = (const char *)sqlite3_column_text(q, 1);
		e->rowid = sqlite3_column_int64(q, 0);
		snprintf(e->file, sizeof(e->file), "%s", f ? f : "");
		e->size = (uint64_t)sqlite3_column_int64(q, 2);
		e->sum = sqlite3_column_int64(q, 3);
		e->whole = sqlite3_column_int(q, 4);
		e->off = (uint64_t)sqlite3_column_int64(q, 5);
		e->verified_gen = sqlite3_column_int64(q, 6);
		/* A range must hold all of [off, off+len). */
		found = e->whole || len == STORE_GET_ALL ||
			(e->off <= off && e->size >= len && off - e->off <= e->size - len);
	}
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return found;
}

/* Delete the row (rowid, file) and then its file, unless the row is gone
 * already: another thread or process dropped it first, and unlinked the file.
 * @return whether the DELETE ran (the database may be busy in another
 * process, or refuse writes), whether or not it found the row. */
static bool drop_locked(struct tiered *t, int64_t rowid, const char *file, uint64_t size)
{
	bool done = false, removed = false;

	sqlite3_bind_int64(t->q_delete, 1, rowid);
	sqlite3_bind_text(t->q_delete, 2, file, -1, SQLITE_STATIC);
	if (sqlite3_step(t->q_delete) == SQLITE_DONE) {
		done = true;
		removed = sqlite3_changes(t->db) > 0;
	}
	sqlite3_reset(t->q_delete);
	sqlite3_clear_bindings(t->q_delete);
	if (removed) {
		t->total = t->total > size ? t->total - size : 0;
		unlinkat(t->dirfd, file, 0);
	}
	return done;
}

static void flush_touches_locked(struct tiered *t);

static void evict_locked(struct tiered *t)
{
	if (t->total > t->cap)
		flush_touches_locked(t); /* LRU order needs the latest stamps */
	while (t->total > t->cap) {
		struct entry batch[64];
		int n = 0;

		while (n < 64 && sqlite3_step(t->q_oldest) == SQLITE_ROW) {
			const char *f = (const char *)sqlite3_column_text(t->q_oldest, 1);
			batch[n].rowid = sqlite3_column_int64(t->q_oldest, 0);
			snprintf(batch[n].file, sizeof(batch[n].file), "%s", f ? f : "");
			batch[n].size = (uint64_t)sqlite3_column_int64(t->q_oldest, 2);
			n++;
		}
		sqlite3_reset(t->q_oldest);
		if (n == 0) {
			t->total = 0;
			return;
		}
		/* A row that cannot be deleted (the database busy past its
		 * timeout in another process, or read-only): stop rather than
		 * spin on the same rows, holding the lock every reader waits
		 * for; the next store tries again. */
		for (int i = 0; i < n && t->total > t->cap; i++)
			if (!drop_locked(t, batch[i].rowid, batch[i].file, batch[i].size))
				return;
	}
}

static void flush_touches_locked(struct tiered *t)
{
	if (t->npending == 0)
		return;
	sqlite3_exec(t->db, "BEGIN", NULL, NULL, NULL);
	for (unsigned i = 0; i < t->npending; i++) {
		sqlite3_bind_int64(t->q_touch, 1, t->pending[i].rowid);
		sqlite3_bind_int64(t->q_touch, 2, t->pending[i].atime);
		sqlite3_step(t->q_touch);
		sqlite3_reset(t->q_touch);
	}
	sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL);
	t->npending = 0;
}

/* An access stamp: the time now, and always after the session's last one.
 * A count per session, as it was, put every use in a session opened long
 * ago (a mount) before any use in later ones, whose counts started higher:
 * LRU then evicted the long-lived session's working set first. */
static int64_t stamp_locked(struct tiered *t)
{
	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	t->clock = now > t->clock ? now : t->clock + 1;
	return (int64_t)t->clock;
}

static void touch_locked(struct tiered *t, int64_t rowid)
{
	int64_t now = stamp_locked(t);

	/* Other sessions evict by these stamps: a long-lived one (a mount)
	 * must not keep them to itself. */
	if (t->npending == TIERED_PENDING_TOUCHES ||
	    (t->npending > 0 && now - t->pending[0].atime > TIERED_TOUCH_DELAY_US))
		flush_touches_locked(t);
	t->pending[t->npending].rowid = rowid;
	t->pending[t->npending].atime = now;
	t->npending++;
}

/* Index the file just written for the key (name, whole, off, len).  A row
 * of that key may be there already: another thread or process cached the
 * same bytes meanwhile, or it is a damaged copy that the lookup which
 * missed did not read (it tried another range).  Ours replaces it, and its
 * file goes (no other row names it); a reader holding the old row finds the
 * file gone, which is a miss.  @return whether ours is indexed. */
static bool index_file_locked(struct tiered *t, const char *name, int whole, uint64_t off,
			      int64_t len, const char *file, uint64_t size, int64_t sum)
{
	char old[64] = "";
	uint64_t old_size = 0;
	sqlite3_stmt *q = t->q_by_key;
	bool ok;

	if (sqlite3_exec(t->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, whole);
	sqlite3_bind_int64(q, 3, (int64_t)off);
	sqlite3_bind_int64(q, 4, len);
	if (sqlite3_step(q) == SQLITE_ROW) {
		const char *f = (const char *)sqlite3_column_text(q, 0);

		snprintf(old, sizeof(old), "%s", f ? f : "");
		old_size = (uint64_t)sqlite3_column_int64(q, 1);
	}
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	q = t->q_insert;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, whole);
	sqlite3_bind_int64(q, 3, (int64_t)off);
	sqlite3_bind_int64(q, 4, len);
	sqlite3_bind_text(q, 5, file, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, (int64_t)size);
	sqlite3_bind_int64(q, 7, sum);
	sqlite3_bind_int64(q, 8, stamp_locked(t));
	sqlite3_bind_int64(q, 9, t->generation);
	ok = sqlite3_step(q) == SQLITE_DONE;
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	ok = ok && sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok) {
		sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
		return false;
	}
	if (old[0]) {
		unlinkat(t->dirfd, old, 0);
		t->total = t->total > old_size ? t->total - old_size : 0;
	}
	t->total += size;
	t->added += size;
	return true;
}

/* Store bytes in the cache.  Failures only cost a later remote read. */
static void cache_insert(struct tiered *t, const char *name, int whole, uint64_t off,
			 uint64_t len, const void *data, size_t size)
{
	char file[64], dir[32];
	uint64_t unique;
	int fd, r;

	if (!cacheable(name) || size > t->cap / TIERED_ENTRY_FRACTION)
		return;
	if (random_bytes(&unique, sizeof(unique)) < 0)
		unique = now_ns() ^ (uint64_t)pthread_self();
	entry_file(name, whole, off, whole ? 0 : len, unique, file);
	snprintf(dir, sizeof(dir), "%.10s", file); /* "objects/xx" */
	if (mkdir_p(t->dirfd, dir, 0700) < 0)
		return;
	/* Written in place: no reader looks for this name before its row
	 * exists, and a write cut short by a kill has no row (an orphan). */
	fd = openat(t->dirfd, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	r = write_all(fd, data, size);
	if (close(fd) < 0 || r < 0) {
		unlinkat(t->dirfd, file, 0);
		return;
	}
	test_hook_wait("HIBERBOX_TEST_CACHE_INSERT_WAIT");
	pthread_mutex_lock(&t->lock);
	if (!index_file_locked(t, name, whole, whole ? 0 : off, whole ? -1 : (int64_t)len, file,
			       size, checksum(data, size)))
		unlinkat(t->dirfd, file, 0);
	/* What other sessions stored counts too (the daemon's mounts of one
	 * repository each add their own): sum the index again now and then. */
	if (t->added > t->cap / 16 || now_ns() - t->summed_ns > 1000000000) {
		if (sqlite3_step(t->q_total) == SQLITE_ROW)
			t->total = (uint64_t)sqlite3_column_int64(t->q_total, 0);
		sqlite3_reset(t->q_total);
		t->added = 0;
		t->summed_ns = now_ns();
	}
	evict_locked(t);
	pthread_mutex_unlock(&t->lock);
}

/* Serve [off, off+len) from the cache.  @return 1 served, 0 miss,
 * -EBADMSG for a range past the end of a cached whole object. */
/* Stream the file through XXH3 and compare (no buffer the size of the file). */
static int file_matches(int fd, uint64_t size, int64_t sum)
{
	XXH3_state_t st;
	uint8_t *chunk = malloc(1 << 20);
	uint64_t done = 0;
	int ok = chunk != NULL;

	XXH3_64bits_reset(&st);
	while (ok && done < size) {
		size_t n = size - done < (1 << 20) ? (size_t)(size - done) : (1 << 20);
		ok = pread_exact(fd, chunk, n, (off_t)done) == 0;
		XXH3_64bits_update(&st, chunk, n);
		done += n;
	}
	free(chunk);
	return ok && (int64_t)XXH3_64bits_digest(&st) == sum;
}

/* Serve [off, off+len) from the cache.  @return 1 served, 0 miss,
 * -EBADMSG for a range past the end of a cached whole object, -ENOMEM/-EFBIG
 * when out cannot hold the answer. */
static int cache_read(struct tiered *t, const char *name, uint64_t off, uint64_t len,
		      struct buf *out)
{
	struct entry e;
	struct stat st;
	uint64_t base, n;
	int fd = -1, r = 0, verify;

	pthread_mutex_lock(&t->lock);
	if (!lookup_locked(t, name, off, len, &e)) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	pthread_mutex_unlock(&t->lock);

	/* The entry holds the object's bytes [base, base + size). */
	base = e.whole ? 0 : e.off;
	if (e.whole && (off > e.size || (len != STORE_GET_ALL && len > e.size - off)))
		return hb_err(-EBADMSG, "%s: %s is %" PRIu64 " bytes, range %" PRIu64 "+%" PRIu64
				       " is past its end", store_location(t->remote), name, e.size,
			      off, len);
	if (off < base || off - base > e.size)
		return 0; /* cannot happen with the lookup's conditions */
	n = len == STORE_GET_ALL ? e.size - (off - base) : len;
	if (n > e.size - (off - base))
		return 0;
	fd = openat(t->dirfd, e.file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size != e.size)
		goto torn;
	/* Each file is checked against its checksum once per session (a torn
	 * write can only come from an earlier one), and whenever it is read whole. */
	verify = e.verified_gen != t->generation || n == e.size;
	if (verify && !file_matches(fd, e.size, e.sum))
		goto torn;
	out->len = 0;
	if ((r = buf_reserve(out, n)) < 0) {
		close(fd);
		return hb_err(r, "%s: %s: %" PRIu64 " bytes do not fit the read buffer",
			      store_location(t->remote), name, n);
	}
	if (pread_exact(fd, out->data, n, (off_t)(off - base)) < 0)
		goto torn;
	out->len = n;
	close(fd);
	pthread_mutex_lock(&t->lock);
	touch_locked(t, e.rowid);
	if (verify && e.verified_gen != t->generation) {
		sqlite3_bind_int64(t->q_verified, 1, e.rowid);
		sqlite3_bind_int64(t->q_verified, 2, t->generation);
		sqlite3_step(t->q_verified);
		sqlite3_reset(t->q_verified);
	}
	pthread_mutex_unlock(&t->lock);
	return 1;
torn:
	/* Missing, short or damaged: never served; the remote has the truth. */
	if (fd >= 0)
		close(fd);
	out->len = 0;
	test_hook_wait("HIBERBOX_TEST_CACHE_DROP_WAIT");
	pthread_mutex_lock(&t->lock);
	drop_locked(t, e.rowid, e.file, e.size);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static void cache_forget(struct tiered *t, const char *name)
{
	struct entry batch[256];
	int n = 0;

	pthread_mutex_lock(&t->lock);
	sqlite3_bind_text(t->q_by_name, 1, name, -1, SQLITE_STATIC);
	while (n < 256 && sqlite3_step(t->q_by_name) == SQLITE_ROW) {
		const char *f = (const char *)sqlite3_column_text(t->q_by_name, 1);
		batch[n].rowid = sqlite3_column_int64(t->q_by_name, 0);
		snprintf(batch[n].file, sizeof(batch[n].file), "%s", f ? f : "");
		batch[n].size = (uint64_t)sqlite3_column_int64(t->q_by_name, 2);
		n++;
	}
	sqlite3_reset(t->q_by_name);
	sqlite3_clear_bindings(t->q_by_name);
	bool failed = false;

	for (int i = 0; i < n && !failed; i++)
		failed = !drop_locked(t, batch[i].rowid, batch[i].file, batch[i].size);
	pthread_mutex_unlock(&t->lock);
	if (n == 256 && !failed) /* more rows; none if deleting fails (see evict_locked) */
		cache_forget(t, name);
}

/* ---- store_ops ---- */

static int tiered_get(struct store *s, const char *name, uint64_t off, uint64_t len,
		      struct buf *out)
{
	struct tiered *t = to_tiered(s);
	int r;

	if (!cacheable(name) || __atomic_load_n(&t->read_remote, __ATOMIC_RELAXED))
		return store_get(t->remote, name, off, len, out);
	if ((r = cache_read(t, name, off, len, out)) != 0) {
		if (r > 0)
			__atomic_fetch_add(&t->hits, 1, __ATOMIC_RELAXED);
		return r < 0 ? r : 0;
	}
	__atomic_fetch_add(&t->misses, 1, __ATOMIC_RELAXED);
	if ((r = store_get(t->remote, name, off, len, out)) < 0)
		return r;
	if (off == 0 && len == STORE_GET_ALL)
		cache_insert(t, name, 1, 0, 0, out->data, out->len);
	else
		cache_insert(t, name, 0, off, len, out->data, out->len);
	return 0;
}

static int tiered_put(struct store *s, const char *name, const void *data, size_t len, int flags)
{
	struct tiered *t = to_tiered(s);
	int r;

	if (cacheable(name) && !(flags & STORE_PUT_NOREPLACE))
		cache_forget(t, name);
	if ((r = store_put(t->remote, name, data, len, flags)) < 0)
		return r;
	if (cacheable(name)) {
		cache_forget(t, name); /* ranges of an older version */
		cache_insert(t, name, 1, 0, 0, data, len);
	}
	return 0;
}

static int tiered_stat(struct store *s, const char *name, uint64_t *size)
{
	struct tiered *t = to_tiered(s);
	struct entry e;
	int found = 0;

	if (cacheable(name) && !__atomic_load_n(&t->read_remote, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&t->lock);
		found = lookup_locked(t, name, 0, STORE_GET_ALL, &e) && e.whole;
		pthread_mutex_unlock(&t->lock);
	}
	if (found) {
		if (size) /* NULL: only whether it exists */
			*size = e.size;
		return 0;
	}
	return store_stat(t->remote, name, size);
}

static int tiered_list(struct store *s, const char *prefix,
		       int (*fn)(const char *name, uint64_t size, int64_t mtime_sec, void *arg),
		       void *arg)
{
	return store_list(to_tiered(s)->remote, prefix, fn, arg);
}

static int tiered_remove(struct store *s, const char *name)
{
	struct tiered *t = to_tiered(s);
	int r = store_remove(t->remote, name);

	if (cacheable(name))
		cache_forget(t, name);
	return r;
}

static int tiered_cleanup(struct store *s)
{
	return store_cleanup(to_tiered(s)->remote);
}

static const char *tiered_location(struct store *s)
{
	return store_location(to_tiered(s)->remote);
}

static void tiered_free(struct store *s)
{
	struct tiered *t = to_tiered(s);

	if (t->db) {
		flush_touches_locked(t);
		meta_set_int(t, "clean", 1);
		sqlite3_exec(t->db, "PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL);
		db_close(t);
	}
	session_end(t);
	if (t->lockfd >= 0)
		close(t->lockfd); /* and with it the flock */
	if (t->dirfd >= 0)
		close(t->dirfd);
	store_free(t->remote);
	pthread_mutex_destroy(&t->lock);
	free(t->dir);
	free(t);
}

static void tiered_invalidate(struct store *s, const char *name);

#define TIERED_RANGES_MAX 4096 /* a restore plans around this many cached ranges of one object */

/* What the cache holds of one object, for readers that plan their requests
 * (restore).  Reported from the index only: a torn file is found when it is
 * read, and that read then goes to the remote. */
static int tiered_cached(struct store *s, const char *name,
			 int (*fn)(uint64_t off, uint64_t len, void *arg), void *arg)
{
	struct tiered *t = to_tiered(s);
	struct { uint64_t off, len; } *ranges;
	size_t n = 0;
	int r = 0;

	if (!cacheable(name) || __atomic_load_n(&t->read_remote, __ATOMIC_RELAXED))
		return 0;
	ranges = malloc(TIERED_RANGES_MAX * sizeof(*ranges));
	if (!ranges)
		return -ENOMEM;
	pthread_mutex_lock(&t->lock);
	sqlite3_bind_text(t->q_ranges, 1, name, -1, SQLITE_STATIC);
	while (n < TIERED_RANGES_MAX && sqlite3_step(t->q_ranges) == SQLITE_ROW) {
		int whole = sqlite3_column_int(t->q_ranges, 0);

		ranges[n].off = whole ? 0 : (uint64_t)sqlite3_column_int64(t->q_ranges, 1);
		ranges[n].len = whole ? STORE_GET_ALL : (uint64_t)sqlite3_column_int64(t->q_ranges, 2);
		n++;
	}
	sqlite3_reset(t->q_ranges);
	sqlite3_clear_bindings(t->q_ranges);
	pthread_mutex_unlock(&t->lock);
	for (size_t i = 0; i < n && r == 0; i++)
		r = fn(ranges[i].off, ranges[i].len, arg);
	free(ranges);
	return r;
}

static const struct store_ops tiered_ops = {
	.invalidate = tiered_invalidate,
	.cached = tiered_cached,
	.get = tiered_get,
	.put = tiered_put,
	.stat = tiered_stat,
	.list = tiered_list,
	.remove = tiered_remove,
	.cleanup = tiered_cleanup,
	.location = tiered_location,
	.free = tiered_free,
};

static void tiered_invalidate(struct store *s, const char *name)
{
	struct store *remote = store_tiered_remote(s);

	if (cacheable(name))
		cache_forget(to_tiered(s), name);
	if (remote)
		store_invalidate(remote, name);
}

void store_tiered_read_remote(struct store *s, int on)
{
	if (s && s->ops == &tiered_ops)
		__atomic_store_n(&to_tiered(s)->read_remote, on, __ATOMIC_RELAXED);
}

struct store *store_tiered_remote(struct store *s)
{
	return s && s->ops == &tiered_ops ? to_tiered(s)->remote : NULL;
}

int store_tiered_stats(struct store *s, uint64_t *hits, uint64_t *misses, uint64_t *cached_bytes)
{
	struct tiered *t;

	if (!s || s->ops != &tiered_ops)
		return -EINVAL;
	t = to_tiered(s);
	*hits = __atomic_load_n(&t->hits, __ATOMIC_RELAXED);
	*misses = __atomic_load_n(&t->misses, __ATOMIC_RELAXED);
	pthread_mutex_lock(&t->lock);
	*cached_bytes = t->total;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int flock_retry(int fd, int op)
{
	int r;

	while ((r = flock(fd, op)) < 0 && errno == EINTR)
		;
	return r < 0 ? -errno : 0;
}

/* Take CACHE/lock: exclusively if no other process has the cache open
 * (*alone = 1: it may be cleared; the caller downgrades to shared once the
 * index is open), else shared.  A holder of the exclusive lock only opens
 * the index, so waiting for it is short. */
static int lock_cache(struct tiered *t, int *alone)
{
	int r;

	t->lockfd = openat(t->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (t->lockfd < 0)
		return hb_err(-errno, "cache %s/lock: %s", t->dir, strerror(errno));
	*alone = flock_retry(t->lockfd, LOCK_EX | LOCK_NB) == 0;
	if (!*alone && (r = flock_retry(t->lockfd, LOCK_SH)) < 0)
		return hb_err(r, "cache %s/lock: %s", t->dir, strerror(-r));
	return 0;
}

int store_tiered_open(struct store *remote, const char *cache_dir, uint64_t cache_bytes,
		      struct store **out)
{
	struct tiered *t;
	int alone = 0, dead = 0, live = 0, r;

	*out = NULL;
	if (!remote || !cache_dir || !*cache_dir) {
		store_free(remote);
		return hb_err(-EINVAL, "tiered store needs a remote and a cache directory");
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->dir = strdup(cache_dir))) {
		free(t);
		store_free(remote);
		return -ENOMEM;
	}
	t->base.ops = &tiered_ops;
	t->remote = remote;
	t->dirfd = -1;
	t->lockfd = -1;
	t->sessionfd = -1;
	pthread_mutex_init(&t->lock, NULL);
	if ((r = mkdir_p(AT_FDCWD, cache_dir, 0700)) < 0) {
		r = hb_err(r, "cache directory %s: %s", cache_dir, strerror(-r));
		goto fail;
	}
	t->dirfd = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dirfd < 0) {
		r = hb_err(-errno, "cache directory %s: %s", cache_dir, strerror(errno));
		goto fail;
	}
	if (cache_bytes == 0) {
		/* Default: a tenth of the free space, at least 64 MiB. */
		struct statvfs vfs;
		if (fstatvfs(t->dirfd, &vfs) == 0)
			cache_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize / 10;
		if (cache_bytes < TIERED_MIN_DEFAULT_BYTES)
			cache_bytes = TIERED_MIN_DEFAULT_BYTES;
	}
	t->cap = cache_bytes;
	if (random_bytes(&t->generation, sizeof(t->generation)) < 0)
		t->generation = (int64_t)now_ns();
	if (t->generation == 0)
		t->generation = 1;
	if ((r = lock_cache(t, &alone)) < 0)
		goto fail;
	if ((r = db_open(t)) < 0) {
		/* A damaged index, or another repository's cache: it is disposable,
		 * start over, but only if no other process is using it. */
		db_close(t);
		if (!alone) {
			r = hb_err_ctx(r, "cache %s is in use by another process, not cleared",
				       cache_dir);
			goto fail;
		}
		wipe_cache(cache_dir);
		hb_err_clear();
		if ((r = db_open(t)) < 0)
			goto fail;
	}
	if (alone && (r = flock_retry(t->lockfd, LOCK_SH)) < 0) {
		r = hb_err(r, "cache %s/lock: %s", cache_dir, strerror(-r));
		goto fail;
	}
	/* Orphan files come from a session that did not close: only then is
	 * the (long, for a big cache) scan worth it.  Its session file says so;
	 * the mark too when that session was the last one, and so only when no
	 * other is open: each open unsets it, so it is unset while any session
	 * lives.  A scan then would be long for nothing, and would unlink the
	 * live sessions' downloads in progress and files renamed into place
	 * but not yet indexed (each costs a refetch; a reader meets a missing
	 * file only as a miss). */
	session_begin(t, &dead, &live);
	if (dead || (!live && meta_get_int(t, "clean") != 1))
		remove_orphans(t);
	meta_set_int(t, "clean", 0);
	pthread_mutex_lock(&t->lock);
	evict_locked(t); /* the cap may have shrunk since last time */
	pthread_mutex_unlock(&t->lock);
	*out = &t->base;
	return 0;
fail:
	tiered_free(&t->base);
	return r;
}
