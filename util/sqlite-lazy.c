/* SQLite, loaded the first time it is used.
 *
 * Two parts of the binary keep SQLite files: the S3 cache's index
 * (snapshot/store-tiered.c) and the daemon's registry.  Linked normally,
 * libsqlite3 was loaded by every process (~6 ms of start-up with a cold page
 * cache), though a command on a local repository and a mount of one never
 * open a database.  These forwarding functions dlopen it on the first call
 * instead (see util/curl-lazy.c).  If it cannot be loaded, sqlite3_open_v2
 * fails with SQLITE_CANTOPEN and sqlite3_errmsg/errstr say why; nothing
 * else can be reached without a database. */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <sqlite3.h>

#include "util/dl-bind.h"

static struct {
	int (*open_v2)(const char *, sqlite3 **, int, const char *);
	int (*close)(sqlite3 *);
	int (*busy_timeout)(sqlite3 *, int);
	int (*exec)(sqlite3 *, const char *, int (*)(void *, int, char **, char **), void *,
		    char **);
	int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
	int (*step)(sqlite3_stmt *);
	int (*reset)(sqlite3_stmt *);
	int (*finalize)(sqlite3_stmt *);
	int (*clear_bindings)(sqlite3_stmt *);
	int (*bind_int)(sqlite3_stmt *, int, int);
	int (*bind_int64)(sqlite3_stmt *, int, sqlite3_int64);
	int (*bind_text)(sqlite3_stmt *, int, const char *, int, void (*)(void *));
	int (*column_int)(sqlite3_stmt *, int);
	sqlite3_int64 (*column_int64)(sqlite3_stmt *, int);
	const unsigned char *(*column_text)(sqlite3_stmt *, int);
	int (*changes)(sqlite3 *);
	const char *(*errmsg)(sqlite3 *);
	const char *(*errstr)(int);
} fn;

static const struct dl_sym syms[] = {
	{ (void **)&fn.open_v2, "sqlite3_open_v2" },
	{ (void **)&fn.close, "sqlite3_close" },
	{ (void **)&fn.busy_timeout, "sqlite3_busy_timeout" },
	{ (void **)&fn.exec, "sqlite3_exec" },
	{ (void **)&fn.prepare_v2, "sqlite3_prepare_v2" },
	{ (void **)&fn.step, "sqlite3_step" },
	{ (void **)&fn.reset, "sqlite3_reset" },
	{ (void **)&fn.finalize, "sqlite3_finalize" },
	{ (void **)&fn.clear_bindings, "sqlite3_clear_bindings" },
	{ (void **)&fn.bind_int, "sqlite3_bind_int" },
	{ (void **)&fn.bind_int64, "sqlite3_bind_int64" },
	{ (void **)&fn.bind_text, "sqlite3_bind_text" },
	{ (void **)&fn.column_int, "sqlite3_column_int" },
	{ (void **)&fn.column_int64, "sqlite3_column_int64" },
	{ (void **)&fn.column_text, "sqlite3_column_text" },
	{ (void **)&fn.changes, "sqlite3_changes" },
	{ (void **)&fn.errmsg, "sqlite3_errmsg" },
	{ (void **)&fn.errstr, "sqlite3_errstr" },
};
DL_LAZY(libsqlite, "libsqlite3.so.0", syms);

static bool ready(void)
{
	return dl_lazy_ready(&libsqlite);
}

int sqlite3_open_v2(const char *name, sqlite3 **db, int flags, const char *vfs)
{
	if (!ready()) {
		*db = NULL;
		return SQLITE_CANTOPEN;
	}
	return fn.open_v2(name, db, flags, vfs);
}

/* Every function below takes a database or a statement, which only a
 * loaded library can have made. */
int sqlite3_close(sqlite3 *db)
{
	return db ? fn.close(db) : SQLITE_OK;
}

int sqlite3_busy_timeout(sqlite3 *db, int ms)
{
	return fn.busy_timeout(db, ms);
}

int sqlite3_exec(sqlite3 *db, const char *sql, int (*cb)(void *, int, char **, char **), void *arg,
		 char **err)
{
	return fn.exec(db, sql, cb, arg, err);
}

int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st, const char **tail)
{
	return fn.prepare_v2(db, sql, n, st, tail);
}

int sqlite3_step(sqlite3_stmt *st)
{
	return fn.step(st);
}

int sqlite3_reset(sqlite3_stmt *st)
{
	return fn.reset(st);
}

int sqlite3_finalize(sqlite3_stmt *st)
{
	return st ? fn.finalize(st) : SQLITE_OK;
}

int sqlite3_clear_bindings(sqlite3_stmt *st)
{
	return fn.clear_bindings(st);
}

int sqlite3_bind_int(sqlite3_stmt *st, int i, int v)
{
	return fn.bind_int(st, i, v);
}

int sqlite3_bind_int64(sqlite3_stmt *st, int i, sqlite3_int64 v)
{
	return fn.bind_int64(st, i, v);
}

int sqlite3_bind_text(sqlite3_stmt *st, int i, const char *v, int n, void (*d)(void *))
{
	return fn.bind_text(st, i, v, n, d);
}

int sqlite3_column_int(sqlite3_stmt *st, int i)
{
	return fn.column_int(st, i);
}

sqlite3_int64 sqlite3_column_int64(sqlite3_stmt *st, int i)
{
	return fn.column_int64(st, i);
}

const unsigned char *sqlite3_column_text(sqlite3_stmt *st, int i)
{
	return fn.column_text(st, i);
}

int sqlite3_changes(sqlite3 *db)
{
	return fn.changes(db);
}

const char *sqlite3_errmsg(sqlite3 *db)
{
	if (!ready())
		return libsqlite.error;
	return fn.errmsg(db);
}

const char *sqlite3_errstr(int rc)
{
	if (!ready())
		return libsqlite.error;
	return fn.errstr(rc);
}
