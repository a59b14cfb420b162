/* The sandbox registry: one SQLite database (WAL) at
 * $HIBERBOX_HOME/sandboxes.db holding every sandbox's row and the snapshots
 * each sandbox committed.  The schema version is PRAGMA user_version; a
 * newer version or a file that is not a database is a clear error, never a
 * rewrite. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "manager/daemon/daemon-int.h"
#include "manager/network.h"
#include "util/array.h"
#include "util/error.h"

#define REGISTRY_SCHEMA_VERSION 5
#define REGISTRY_BUSY_TIMEOUT_MS 5000

struct registry {
	sqlite3 *db;
	char path[4096];
};

static const char schema_v1[] =
	"CREATE TABLE IF NOT EXISTS sandboxes ("
	" name TEXT PRIMARY KEY, image TEXT NOT NULL, base TEXT NOT NULL,"
	" latest TEXT NOT NULL DEFAULT '', lower TEXT NOT NULL DEFAULT '',"
	" state TEXT NOT NULL CHECK (state IN ('running','sleeping')),"
	" memory_bytes INTEGER NOT NULL, pids INTEGER NOT NULL, cpu_millis INTEGER NOT NULL,"
	" network TEXT NOT NULL, env TEXT NOT NULL, idle_timeout_s INTEGER NOT NULL,"
	" id_base INTEGER NOT NULL UNIQUE, init_pid INTEGER NOT NULL, init_start INTEGER NOT NULL,"
	" created INTEGER NOT NULL, slept_at INTEGER NOT NULL, woken_at INTEGER NOT NULL,"
	" last_sleep_ms INTEGER NOT NULL, last_wake_ms INTEGER NOT NULL,"
	" wakes INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS snapshots (id TEXT PRIMARY KEY, owner TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS snapshots_owner ON snapshots(owner);";

/* v2: detached commands, so that a restarted daemon still enforces their
 * timeouts and caps their logs.  A row goes with its sandbox's. */
static const char schema_v2[] =
	"CREATE TABLE IF NOT EXISTS detached ("
	" sandbox TEXT NOT NULL REFERENCES sandboxes(name) ON DELETE CASCADE,"
	" pid INTEGER NOT NULL, start INTEGER NOT NULL, deadline_ns INTEGER NOT NULL,"
	" log TEXT NOT NULL, PRIMARY KEY (sandbox, pid));";

/* v3: a sandbox whose removal began (rm marks it first, deletes its row
 * last; a restarted daemon finishes what a crash interrupted). */
static const char schema_v3[] =
	"ALTER TABLE sandboxes ADD COLUMN removing INTEGER NOT NULL DEFAULT 0;";

/* v4: the sandbox's disk limit (its upper directory; 0: none). */
static const char schema_v4[] =
	"ALTER TABLE sandboxes ADD COLUMN disk_bytes INTEGER NOT NULL DEFAULT 0;";

/* v5: the ports a nat sandbox publishes on the host, a JSON array of
 * their texts (sbx_publish_json). */
static const char schema_v5[] =
	"ALTER TABLE sandboxes ADD COLUMN publish TEXT NOT NULL DEFAULT '[]';";

/* Migrations: schema_steps[i] takes version i to i + 1 (one transaction
 * each, so a crash leaves the file at one version or the next). */
static const char *const schema_steps[REGISTRY_SCHEMA_VERSION] = { schema_v1, schema_v2,
								   schema_v3, schema_v4,
								   schema_v5 };

static int db_err(struct registry *reg, int rc, const char *what)
{
	int r = (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) ? -EBADMSG :
		(rc == SQLITE_CONSTRAINT) ? -EEXIST :
		(rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? -EBUSY : -EIO;
	return hb_err(r, "registry %s: %s: %s", reg->path, what,
		      reg->db ? sqlite3_errmsg(reg->db) : sqlite3_errstr(rc));
}

int sbx_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > SBX_NAME_MAX)
		return hb_err(-EINVAL, "invalid name '%s': 1 to %d characters",
			      name ? name : "", SBX_NAME_MAX);
	if (name[0] == '.' || name[0] == '-')
		return hb_err(-EINVAL, "invalid name '%s': must not start with '.' or '-'", name);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return hb_err(-EINVAL, "invalid name '%.64s': only A-Z a-z 0-9 _ . - allowed",
				      name);
	}
	return 0;
}

int hbd_name_valid(const char *name)
{
	return sbx_name_valid(name);
}

void sbx_record_clear(struct sbx_record *rec)
{
	free(rec->env_json);
	memset(rec, 0, sizeof(*rec));
}

int sbx_record_copy(struct sbx_record *dst, const struct sbx_record *src)
{
	char *env = strdup(src->env_json ? src->env_json : "[]");

	if (!env)
		return hb_err(-ENOMEM, "out of memory");
	*dst = *src;
	dst->env_json = env;
	return 0;
}

json_t *sbx_publish_json(const struct sbx_record *rec)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < rec->publish_count; i++) {
		char text[NAT_PORT_TEXT_MAX];

		nat_port_format(&rec->publish[i], text, sizeof(text));
		if (json_array_append_new(a, json_string(text)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The publish column into rec.  An entry this version cannot read (a
 * later one's) is left out: a port not published rather than one the
 * user did not ask for. */
static void publish_from_text(const char *text, struct sbx_record *rec)
{
	json_t *a = json_loads(text, 0, NULL);
	size_t i;
	json_t *v;

	rec->publish_count = 0;
	json_array_foreach(a, i, v) {
		if (rec->publish_count < SBX_PUBLISH_MAX &&
		    nat_port_parse(json_string_value(v), &rec->publish[rec->publish_count]) == 0)
			rec->publish_count++;
		hb_err_clear();
	}
	json_decref(a);
}

int registry_open(const char *path, struct registry **out)
{
	struct registry *reg = calloc(1, sizeof(*reg));
	int rc, version = -1;
	sqlite3_stmt *st = NULL;

	if (!reg)
		return hb_err(-ENOMEM, "out of memory");
	snprintf(reg->path, sizeof(reg->path), "%s", path);
	rc = sqlite3_open_v2(path, &reg->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(reg->db, REGISTRY_BUSY_TIMEOUT_MS);
	/* rows hold sandboxes' environments: nobody else's business */
	chmod(path, 0600);
	/* The first read of a file that is not a database fails here. */
	rc = sqlite3_prepare_v2(reg->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		version = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		goto fail;
	if (version > REGISTRY_SCHEMA_VERSION) {
		int r = hb_err(-EPROTONOSUPPORT,
			       "registry %s: schema version %d is newer than this daemon's (%d)",
			       path, version, REGISTRY_SCHEMA_VERSION);
		registry_close(reg);
		return r;
	}
	rc = sqlite3_exec(reg->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			  "PRAGMA foreign_keys=ON;", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	for (; version < REGISTRY_SCHEMA_VERSION; version++) {
		char bump[64];

		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d; COMMIT", version + 1);
		rc = sqlite3_exec(reg->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(reg->db, schema_steps[version], NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(reg->db, bump, NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			/* the message first: the rollback clears it */
			int r = db_err(reg, rc, "schema upgrade");
			sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
			registry_close(reg);
			return r;
		}
	}
	/* A damaged database opens fine; check it once before trusting rows. */
	rc = sqlite3_prepare_v2(reg->db, "PRAGMA quick_check", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(st, 0);
		if (!res || strcmp(res, "ok") != 0) {
			int r = hb_err(-EBADMSG, "registry %s is corrupt (%s): move it away to start "
				       "over", path, res ? res : "?");
			sqlite3_finalize(st);
			registry_close(reg);
			return r;
		}
	}
	sqlite3_finalize(st);
	*out = reg;
	return 0;
fail: {
	int r = db_err(reg, rc, "open");
	if (r == -EBADMSG)
		hb_err_ctx(r, "corrupt database (move it away to start over)");
	registry_close(reg);
	return r;
}
}

void registry_close(struct registry *reg)
{
	if (!reg)
		return;
	sqlite3_close(reg->db);
	free(reg);
}

static const char *state_name(enum sbx_state s)
{
	return s == SBX_RUNNING ? "running" : "sleeping";
}

static const char *text(sqlite3_stmt *st, int col)
{
	const char *s = (const char *)sqlite3_column_text(st, col);
	return s ? s : "";
}

#define COLUMNS "name, image, base, latest, lower, state, memory_bytes, pids, cpu_millis," \
	" network, env, idle_timeout_s, id_base, init_pid, init_start, created, slept_at," \
	" woken_at, last_sleep_ms, last_wake_ms, wakes, removing, disk_bytes, publish"

int registry_load(struct registry *reg, int (*fn)(const struct sbx_record *, void *), void *arg)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, "SELECT " COLUMNS " FROM sandboxes ORDER BY name", -1,
				    &st, NULL);
	int r = 0;

	if (rc != SQLITE_OK)
		return db_err(reg, rc, "load");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sbx_record rec = { 0 };

		snprintf(rec.name, sizeof(rec.name), "%s", text(st, 0));
		snprintf(rec.image, sizeof(rec.image), "%s", text(st, 1));
		snprintf(rec.base, sizeof(rec.base), "%s", text(st, 2));
		snprintf(rec.latest, sizeof(rec.latest), "%s", text(st, 3));
		snprintf(rec.lower, sizeof(rec.lower), "%s", text(st, 4));
		rec.state = strcmp(text(st, 5), "running") == 0 ? SBX_RUNNING : SBX_SLEEPING;
		rec.memory_bytes = (uint64_t)sqlite3_column_int64(st, 6);
		rec.pids = (uint32_t)sqlite3_column_int64(st, 7);
		rec.cpu_millis = (uint32_t)sqlite3_column_int64(st, 8);
		/* an unknown name (written by a later version) reads as none:
		 * the most isolated mode */
		enum sandbox_network net = SANDBOX_NET_NONE;
		if (sandbox_network_parse(text(st, 9), &net) < 0)
			hb_err_clear();
		rec.network = (int)net;
		rec.env_json = strdup(text(st, 10));
		rec.idle_timeout_s = (uint64_t)sqlite3_column_int64(st, 11);
		rec.id_base = (uint32_t)sqlite3_column_int64(st, 12);
		rec.init_pid = sqlite3_column_int64(st, 13);
		rec.init_start = (uint64_t)sqlite3_column_int64(st, 14);
		rec.created = sqlite3_column_int64(st, 15);
		rec.slept_at = sqlite3_column_int64(st, 16);
		rec.woken_at = sqlite3_column_int64(st, 17);
		rec.last_sleep_ms = (uint64_t)sqlite3_column_int64(st, 18);
		rec.last_wake_ms = (uint64_t)sqlite3_column_int64(st, 19);
		rec.wakes = (uint64_t)sqlite3_column_int64(st, 20);
		rec.removing = sqlite3_column_int64(st, 21) != 0;
		rec.disk_bytes = (uint64_t)sqlite3_column_int64(st, 22);
		publish_from_text(text(st, 23), &rec);
		if (!rec.env_json) {
			r = hb_err(-ENOMEM, "out of memory");
			break;
		}
		if (sbx_name_valid(rec.name) < 0) {
			r = hb_err_ctx(-EBADMSG, "registry %s: bad row", reg->path);
			free(rec.env_json);
			break;
		}
		r = fn(&rec, arg);
		free(rec.env_json);
		if (r < 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(reg, rc, "load");
	sqlite3_finalize(st);
	return r;
}

static int bind_record(sqlite3_stmt *st, const struct sbx_record *rec)
{
	json_t *publish = sbx_publish_json(rec);
	char *publish_text = publish ? json_dumps(publish, JSON_COMPACT) : NULL;
	int i = 1;

	sqlite3_bind_text(st, i++, rec->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, rec->image, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, rec->base, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, rec->latest, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, rec->lower, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, state_name(rec->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->memory_bytes);
	sqlite3_bind_int64(st, i++, rec->pids);
	sqlite3_bind_int64(st, i++, rec->cpu_millis);
	sqlite3_bind_text(st, i++, sandbox_network_name(rec->network) ?: "none", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, rec->env_json ? rec->env_json : "[]", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->idle_timeout_s);
	sqlite3_bind_int64(st, i++, rec->id_base);
	sqlite3_bind_int64(st, i++, rec->init_pid);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->init_start);
	sqlite3_bind_int64(st, i++, rec->created);
	sqlite3_bind_int64(st, i++, rec->slept_at);
	sqlite3_bind_int64(st, i++, rec->woken_at);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->last_sleep_ms);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->last_wake_ms);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->wakes);
	sqlite3_bind_int64(st, i++, rec->removing);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)rec->disk_bytes);
	/* (a NULL, out of memory, fails the statement: the column is NOT NULL) */
	sqlite3_bind_text(st, i++, publish_text, -1, SQLITE_TRANSIENT);
	free(publish_text);
	json_decref(publish);
	return i;
}

/* Runs one statement; returns the rows it returned (an UPDATE's RETURNING:
 * sqlite3_changes() is the connection's, and another thread's statement,
 * say a DELETE that matched nothing, can come between a step and it) or a
 * negative errno. */
static int exec_stmt(struct registry *reg, const char *sql, const struct sbx_record *rec,
		     const char *a, const char *b, const char *what)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, sql, -1, &st, NULL);
	int i = 1, rows = 0;

	if (rc != SQLITE_OK)
		return db_err(reg, rc, what);
	if (rec)
		i = bind_record(st, rec);
	if (a)
		sqlite3_bind_text(st, i++, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(st, i++, b, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		rows++;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(reg, rc, what);
	return rows;
}

int registry_insert(struct registry *reg, const struct sbx_record *rec)
{
	int r = exec_stmt(reg, "INSERT INTO sandboxes (" COLUMNS ") VALUES (?,?,?,?,?,?,?,?,?,?,"
			  "?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rec, NULL, NULL, "insert");
	if (r == -EEXIST)
		return hb_err(-EEXIST, "a sandbox named '%s' exists already", rec->name);
	return r < 0 ? r : 0;
}

int registry_update(struct registry *reg, const struct sbx_record *rec)
{
	int r = exec_stmt(reg, "UPDATE sandboxes SET name=?1, image=?2, base=?3, latest=?4, lower=?5,"
			  " state=?6, memory_bytes=?7, pids=?8, cpu_millis=?9, network=?10, env=?11,"
			  " idle_timeout_s=?12, id_base=?13, init_pid=?14, init_start=?15,"
			  " created=?16, slept_at=?17, woken_at=?18, last_sleep_ms=?19,"
			  " last_wake_ms=?20, wakes=?21, removing=?22, disk_bytes=?23,"
			  " publish=?24 WHERE name=?1 RETURNING name", rec, NULL, NULL, "update");
	if (r == 0)
		return hb_err(-ENOENT, "no sandbox named '%s'", rec->name);
	return r < 0 ? r : 0;
}

int registry_delete(struct registry *reg, const char *name)
{
	int r = exec_stmt(reg, "DELETE FROM sandboxes WHERE name=?", NULL, name, NULL, "delete");
	return r < 0 ? r : 0;
}

int registry_snapshot_add(struct registry *reg, const char *id, const char *owner)
{
	int r = exec_stmt(reg, "INSERT OR REPLACE INTO snapshots (id, owner) VALUES (?, ?)", NULL,
			  id, owner, "add snapshot");
	return r < 0 ? r : 0;
}

int registry_snapshot_set_owner(struct registry *reg, const char *id, const char *owner)
{
	int r = exec_stmt(reg, "UPDATE snapshots SET owner=?2 WHERE id=?1", NULL, id, owner,
			  "snapshot owner");
	return r < 0 ? r : 0;
}

int registry_snapshot_delete(struct registry *reg, const char *id)
{
	int r = exec_stmt(reg, "DELETE FROM snapshots WHERE id=?", NULL, id, NULL,
			  "delete snapshot");
	return r < 0 ? r : 0;
}

int registry_snapshots_of(struct registry *reg, const char *owner,
			  int (*fn)(const char *id, void *), void *arg)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, "SELECT id FROM snapshots WHERE owner=? ORDER BY id",
				    -1, &st, NULL);
	/* Collected first: fn may change the table. */
	char (*ids)[OID_HEX_BYTES] = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	if (rc != SQLITE_OK)
		return db_err(reg, rc, "list snapshots");
	sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (array_grow((void **)&ids, &cap, n, sizeof(*ids)) < 0) {
			r = hb_err(-ENOMEM, "out of memory");
			break;
		}
		snprintf(ids[n++], OID_HEX_BYTES, "%s", text(st, 0));
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(reg, rc, "list snapshots");
	sqlite3_finalize(st);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = fn(ids[i], arg);
	free(ids);
	return r;
}

int registry_snapshot_user(struct registry *reg, const char *id, const char *except,
			   char *name_out, size_t size)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, "SELECT name FROM sandboxes WHERE (latest=?1 OR"
				    " lower=?1 OR base=?1) AND name<>?2 ORDER BY name LIMIT 1",
				    -1, &st, NULL);
	int r = 0;

	if (rc != SQLITE_OK)
		return db_err(reg, rc, "snapshot users");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, except ? except : "", -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (name_out)
			snprintf(name_out, size, "%s", text(st, 0));
		r = 1;
	} else if (rc != SQLITE_DONE) {
		r = db_err(reg, rc, "snapshot users");
	}
	sqlite3_finalize(st);
	return r;
}

int registry_detached_add(struct registry *reg, const char *sandbox,
			  const struct sbx_detached_row *row)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, "INSERT OR REPLACE INTO detached (sandbox, pid, start,"
				    " deadline_ns, log) VALUES (?, ?, ?, ?, ?)", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return db_err(reg, rc, "add detached");
	sqlite3_bind_text(st, 1, sandbox, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, row->pid);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)row->start);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)row->deadline_ns);
	sqlite3_bind_text(st, 5, row->log, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_err(reg, rc, "add detached");
}

int registry_detached_delete(struct registry *reg, const char *sandbox, int64_t pid)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, "DELETE FROM detached WHERE sandbox=?1 AND"
				    " (?2 = 0 OR pid=?2)", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return db_err(reg, rc, "delete detached");
	sqlite3_bind_text(st, 1, sandbox, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, pid);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_err(reg, rc, "delete detached");
}

int registry_detached_of(struct registry *reg, const char *sandbox,
			 int (*fn)(const struct sbx_detached_row *, void *), void *arg)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(reg->db, "SELECT pid, start, deadline_ns, log FROM detached"
				    " WHERE sandbox=? ORDER BY pid", -1, &st, NULL);
	/* Collected first: fn may change the table. */
	struct sbx_detached_row *rows = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	if (rc != SQLITE_OK)
		return db_err(reg, rc, "list detached");
	sqlite3_bind_text(st, 1, sandbox, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (array_grow((void **)&rows, &cap, n, sizeof(*rows)) < 0) {
			r = hb_err(-ENOMEM, "out of memory");
			break;
		}
		rows[n].pid = sqlite3_column_int64(st, 0);
		rows[n].start = (uint64_t)sqlite3_column_int64(st, 1);
		rows[n].deadline_ns = (uint64_t)sqlite3_column_int64(st, 2);
		snprintf(rows[n].log, sizeof(rows[n].log), "%s", text(st, 3));
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(reg, rc, "list detached");
	sqlite3_finalize(st);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = fn(&rows[i], arg);
	free(rows);
	return r;
}
