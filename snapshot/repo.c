/* The repository: configuration, opening, the merged index, manifests,
 * tags and snapshot listing.  Writing lives in writer.c, create.c; reading
 * trees in restore.c; maintenance in gc.c and check.c.
 *
 * config is JSON:
 *   {"format": "hiberbox-repository", "version": 2, "id": "<32 hex>",
 *    "chunker": {"min": N, "avg": N, "max": N}, "zstd_level": 3,
 *    "secret": "<384 hex>", "secret_check": "<32 hex>", "secret_digest": "<32 hex>"}
 * secret_check is the keyed hash of a fixed string: a config whose secret
 * was swapped is refused at open instead of failing chunk by chunk later.
 * Hashing 35 bytes, XXH3 reads only the secret's first 64 bytes, so damage
 * further in passed it; secret_digest (XXH3-128 of the whole secret, no key)
 * covers every byte.  Configs written before it have no secret_digest and
 * are opened on secret_check alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "snapshot/chunk.h"
#include "snapshot/repo-int.h"
#include "util/error.h"
#include "util/fileio.h"

#define SECRET_CHECK_TEXT "hiberbox repository secret check v1"
#define MANIFEST_INFO_PROBE_BYTES 8192

int repo_default_home(char *out, size_t size)
{
	const char *home = getenv("HIBERBOX_HOME");

	if (home && home[0]) {
		snprintf(out, size, "%s", home);
		return 0;
	}
	if (geteuid() == 0) {
		snprintf(out, size, "/var/lib/hiberbox");
		return 0;
	}
	home = getenv("HOME");
	if (!home || !home[0]) {
		struct passwd *pw = getpwuid(geteuid());

		if (!pw)
			return hb_err(-ENOENT, "cannot find a home directory: set HIBERBOX_HOME");
		home = pw->pw_dir;
	}
	snprintf(out, size, "%s/.local/share/hiberbox", home);
	return 0;
}

int repo_default_location(char *out, size_t size)
{
	const char *repo = getenv("HIBERBOX_REPO");
	char home[PATH_MAX];
	int r;

	if (repo && repo[0]) {
		snprintf(out, size, "%s", repo);
		return 0;
	}
	r = repo_default_home(home, sizeof(home));
	if (r < 0)
		return r;
	snprintf(out, size, "%s/repo", home);
	return 0;
}

void repo_pack_name(const struct oid *pack, char out[REPO_NAME_BYTES])
{
	char hex[OID_HEX_BYTES];

	oid_format(pack, hex);
	snprintf(out, REPO_NAME_BYTES, REPO_PACKS_PREFIX "%.2s/%s", hex, hex);
}

void repo_index_name(const struct oid *id, char out[REPO_NAME_BYTES])
{
	char hex[OID_HEX_BYTES];

	snprintf(out, REPO_NAME_BYTES, REPO_INDEX_PREFIX "%s", oid_format(id, hex));
}

void repo_snapshot_name(const struct oid *id, char out[REPO_NAME_BYTES])
{
	char hex[OID_HEX_BYTES];

	snprintf(out, REPO_NAME_BYTES, REPO_SNAPSHOTS_PREFIX "%s", oid_format(id, hex));
}

int repo_put_named_by_content(struct repo *r, const char *name, const void *data, size_t len,
			      enum repo_verify how, bool *created)
{
	struct store *remote = store_tiered_remote(r->store);
	struct store *source = remote ? remote : r->store;
	struct buf have = BUF_INIT;
	bool same = false;
	uint64_t size;
	int rc;

	if (created)
		*created = false;
	rc = store_put(r->store, name, data, len, STORE_PUT_NOREPLACE);
	if (rc != -EEXIST) {
		if (rc == 0 && created)
			*created = true;
		return rc;
	}
	hb_err_clear();
	rc = store_stat(source, name, &size);
	if (rc == 0 && size == len && how == REPO_VERIFY_SIZE) {
		same = true;
	} else if (rc == 0 && size == len) {
		rc = store_get(source, name, 0, STORE_GET_ALL, &have);
		same = rc == 0 && have.len == len && memcmp(have.data, data, len) == 0;
		if (rc == -EBADMSG) /* S3: its body missed its ETag twice, damaged there */
			rc = 0;
	}
	buf_free(&have);
	if (same)
		return 0;
	if (rc < 0 && rc != -ENOENT) /* -ENOENT: removed meanwhile (gc), write it again */
		return hb_err_ctx(rc, "checking %s, already in the repository", name);
	hb_err_clear();
	/* An atomic replace, never a remove first: a writer of the same name
	 * that counted the copy there as stored finds the same bytes. */
	rc = store_put(r->store, name, data, len, 0);
	if (rc < 0)
		return hb_err_ctx(rc, "replacing %s, damaged in the repository", name);
	return 0;
}

int repo_name_to_oid(const char *name, struct oid *out)
{
	const char *slash = strrchr(name, '/');
	const char *hex = slash ? slash + 1 : name;

	if (strlen(hex) != 2 * OID_BYTES)
		return -EINVAL;
	return oid_parse(hex, out);
}

int oid_parse_prefix(const char *text, struct oid *out)
{
	char hex[OID_HEX_BYTES];

	memcpy(hex, text, 2 * OID_BYTES);
	hex[2 * OID_BYTES] = '\0';
	return oid_parse(hex, out);
}

static int resolve_dict(void *ctx, uint32_t number, const struct chunk_dict **out);
static void warm_start(struct repo *r);
static void repo_warm_wait(struct repo *r);

static void secret_check(const struct repo_key *key, struct oid *out)
{
	oid_compute(key, SECRET_CHECK_TEXT, strlen(SECRET_CHECK_TEXT), out);
}

static void secret_digest(const struct repo_key *key, struct oid *out)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(key->secret, sizeof(key->secret)));
	memcpy(out->b, c.digest, OID_BYTES);
}

/* A local directory that holds files but no config is somebody's data,
 * not a repository to be: init added its config among them.  Other
 * failures are left to the store's open, which names them. */
static int refuse_foreign_dir(const char *location)
{
	bool empty = true;
	int fd;

	if (strstr(location, "://"))
		return 0;
	fd = open(location, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (faccessat(fd, REPO_CONFIG_NAME, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		dir_is_empty(fd, ".", &empty);
	close(fd);
	if (!empty)
		return hb_err(-ENOTEMPTY, "%s is not empty and holds no repository (init wants a "
					  "new or empty directory)", location);
	return 0;
}

static int stop_at_first(const char *name, uint64_t size, int64_t mtime_sec, void *arg)
{
	(void)name;
	(void)size;
	(void)mtime_sec;
	(void)arg;
	return 1;
}

/* refuse_foreign_dir for a remote prefix: objects there but no config are
 * somebody's data, and init would have added its config among them.  Known
 * only from the store (a directory marker of the prefix is not listed). */
static int refuse_foreign_prefix(struct store *s)
{
	int r = store_list(s, "", stop_at_first, NULL);

	if (r > 0)
		return hb_err(-ENOTEMPTY, "%s is not empty and holds no repository (init wants a "
					  "new or empty prefix)", store_location(s));
	return r;
}

int repo_init(const char *location, const struct repo_init_opts *opts)
{
	struct repo_key key;
	struct oid id, check, digest;
	struct chunker_params cp;
	char secret_hex[2 * REPO_KEY_BYTES + 1], id_hex[OID_HEX_BYTES], check_hex[OID_HEX_BYTES],
		digest_hex[OID_HEX_BYTES];
	struct store *s = NULL;
	json_t *cfg = NULL;
	char *text = NULL;
	int level = opts && opts->zstd_level ? opts->zstd_level : REPO_DEFAULT_ZSTD_LEVEL;
	int r;

	/* Checked here, not only by the reader of the config: a level it
	 * refuses would leave a repository no command can open. */
	if (level < REPO_ZSTD_LEVEL_MIN || level > REPO_ZSTD_LEVEL_MAX)
		return hb_err(-EINVAL, "invalid zstd level %d (%d to %d)", level, REPO_ZSTD_LEVEL_MIN,
			      REPO_ZSTD_LEVEL_MAX);
	if (opts && opts->chunker.avg_bytes)
		r = chunker_params_init(&cp, opts->chunker.min_bytes, opts->chunker.avg_bytes,
					opts->chunker.max_bytes);
	else
		r = chunker_params_init(&cp, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	if (r < 0)
		return hb_err(r, "invalid chunker parameters");
	r = refuse_foreign_dir(location);
	if (r == 0)
		r = store_open_location(location, 1, &s);
	if (r < 0)
		return r;
	r = store_stat(s, REPO_CONFIG_NAME, NULL);
	if (r == 0) {
		r = hb_err(-EEXIST, "a repository exists at %s already", store_location(s));
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	hb_err_clear();
	if (strstr(location, "://") && (r = refuse_foreign_prefix(s)) < 0)
		goto out;
	r = random_bytes(key.secret, sizeof(key.secret));
	if (r == 0)
		r = random_bytes(id.b, sizeof(id.b));
	if (r < 0) {
		r = hb_err(r, "cannot get random bytes");
		goto out;
	}
	secret_check(&key, &check);
	secret_digest(&key, &digest);
	hex_format(key.secret, sizeof(key.secret), secret_hex);
	cfg = json_pack("{s:s, s:i, s:s, s:{s:i, s:i, s:i}, s:i, s:s, s:s, s:s}",
			"format", "hiberbox-repository", "version", REPO_FORMAT_VERSION,
			"id", oid_format(&id, id_hex),
			"chunker", "min", (int)cp.min_bytes, "avg", (int)cp.avg_bytes, "max",
			(int)cp.max_bytes, "zstd_level", level, "secret", secret_hex,
			"secret_check", oid_format(&check, check_hex), "secret_digest",
			oid_format(&digest, digest_hex));
	text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	r = store_put(s, REPO_CONFIG_NAME, text, strlen(text), STORE_PUT_NOREPLACE);
	if (r == -EEXIST)
		r = hb_err(r, "a repository exists at %s already", store_location(s));
out:
	free(text);
	json_decref(cfg);
	store_free(s);
	return r;
}

static int parse_config(struct repo *r, const struct buf *b, const char *where)
{
	json_error_t jerr;
	json_t *cfg = json_loadb((const char *)b->data, b->len, 0, &jerr);
	const char *format = NULL, *id = NULL, *secret = NULL, *check = NULL, *digest = NULL;
	int version = 0, level = 0, cmin = 0, cavg = 0, cmax = 0, rc;
	struct oid want, have, want_digest;

	if (!cfg)
		return hb_err(-EBADMSG, "%s/config is corrupt: %s", where, jerr.text);
	rc = json_unpack_ex(cfg, &jerr, 0, "{s:s, s:i, s:s, s:{s:i, s:i, s:i}, s:i, s:s, s:s, s?s}",
			    "format", &format, "version", &version, "id", &id, "chunker", "min",
			    &cmin, "avg", &cavg, "max", &cmax, "zstd_level", &level, "secret",
			    &secret, "secret_check", &check, "secret_digest", &digest);
	if (rc < 0) {
		rc = hb_err(-EBADMSG, "%s/config is corrupt: %s", where, jerr.text);
		goto out;
	}
	if (strcmp(format, "hiberbox-repository") != 0) {
		rc = hb_err(-EBADMSG, "%s is not a hiberbox repository", where);
		goto out;
	}
	if (version < REPO_FORMAT_VERSION_MIN || version > REPO_FORMAT_VERSION) {
		rc = hb_err(-EPROTONOSUPPORT,
			    "%s: repository format version %d is not supported by this hiberbox (it reads versions %d to %d)",
			    where, version, REPO_FORMAT_VERSION_MIN, REPO_FORMAT_VERSION);
		goto out;
	}
	r->version = version;
	if (strlen(secret) != 2 * REPO_KEY_BYTES ||
	    hex_parse(secret, r->key.secret, REPO_KEY_BYTES) < 0 || oid_parse(id, &r->id) < 0 ||
	    oid_parse(check, &want) < 0 || (digest && oid_parse(digest, &want_digest) < 0)) {
		rc = hb_err(-EBADMSG, "%s/config is corrupt: malformed id or secret", where);
		goto out;
	}
	secret_check(&r->key, &have);
	if (oid_equal(&want, &have) && digest) {
		want = want_digest;
		secret_digest(&r->key, &have);
	}
	if (!oid_equal(&want, &have)) {
		rc = hb_err(-EBADMSG,
			    "%s/config: the repository secret does not match its check (wrong or damaged secret)",
			    where);
		goto out;
	}
	if (chunker_params_init(&r->chunker, (uint32_t)cmin, (uint32_t)cavg, (uint32_t)cmax) < 0) {
		rc = hb_err(-EBADMSG, "%s/config: invalid chunker parameters", where);
		goto out;
	}
	if (level < REPO_ZSTD_LEVEL_MIN || level > REPO_ZSTD_LEVEL_MAX) {
		rc = hb_err(-EBADMSG, "%s/config: invalid zstd level %d", where, level);
		goto out;
	}
	r->zstd_level = level;
	rc = 0;
out:
	json_decref(cfg);
	return rc;
}

struct manifest_fetch {
	struct store *store;
	char name[REPO_NAME_BYTES];
};

/* Into the store's cache, while the config comes in; what it finds is
 * read again (from the cache) by repo_read_manifest, errors included. */
static void *manifest_fetch_main(void *arg)
{
	struct manifest_fetch *f = arg;
	struct buf b = { .max = REPO_MANIFEST_MAX_BYTES };

	(void)store_get(f->store, f->name, 0, STORE_GET_ALL, &b);
	hb_err_clear();
	buf_free(&b);
	return NULL;
}

/* Whole objects (manifests, index files) that fail to decode after a read:
 * the copy may be bad, not the object.  A cache keeps the bytes the remote
 * sent, and S3 can only check a body against an MD5 ETag (SSE-KMS and
 * multipart objects have other ETags): without dropping that copy every
 * later read would meet the same bytes.  @return whether to read again
 * (once: the copy was dropped, and the error forgotten). */
static bool refetch_bad_copy(struct repo *r, const char *name, int rc, int attempt)
{
	if (rc >= 0 || rc == -ENOMEM || rc == -EPROTONOSUPPORT || attempt > 0)
		return false;
	store_invalidate(r->store, name);
	hb_err_clear();
	return true;
}

/* The config from r's store, parsed into `into` (r itself, or a scratch
 * repo), with one more read after a copy that does not parse.  @return 0,
 * -ENOENT (no repository), or a negative errno with a message. */
static int read_config(struct repo *r, struct repo *into, struct buf *b)
{
	const char *where = store_location(r->store);
	int rc;

	for (int attempt = 0;; attempt++) {
		rc = store_get(r->store, REPO_CONFIG_NAME, 0, STORE_GET_ALL, b);
		if (rc < 0)
			return rc;
		if (b->len > REPO_CONFIG_MAX_BYTES)
			rc = hb_err(-EBADMSG, "%s/config is corrupt: too large", where);
		else
			rc = parse_config(into, b, where);
		if (!refetch_bad_copy(r, REPO_CONFIG_NAME, rc, attempt))
			return rc;
	}
}

int repo_config_reread(struct repo *r)
{
	struct buf b = BUF_INIT;
	struct repo *fresh = calloc(1, sizeof(*fresh));
	char want[OID_HEX_BYTES], got[OID_HEX_BYTES];
	int rc;

	if (!fresh)
		return -ENOMEM;
	rc = read_config(r, fresh, &b);
	if (rc == 0 && !oid_equal(&fresh->id, &r->id))
		rc = hb_err(-EBADMSG, "%s/config now names repository %s, not %s (the one opened)",
			    store_location(r->store), oid_format(&fresh->id, got),
			    oid_format(&r->id, want));
	explicit_bzero(fresh, sizeof(*fresh)); /* the secret */
	free(fresh);
	buf_free(&b);
	return rc;
}

int repo_open(const char *location, struct repo **out)
{
	return repo_open_for(location, NULL, out);
}

int repo_open_for(const char *location, const struct oid *snapshot, struct repo **out)
{
	struct manifest_fetch fetch;
	pthread_t fetcher;
	bool fetching = false;
	struct buf b = BUF_INIT;
	struct repo *r;
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_rwlock_init(&r->index_lock, NULL);
	pthread_mutex_init(&r->dict_lock, NULL);
	pthread_mutex_init(&r->window_lock, NULL);
	pthread_cond_init(&r->window_done, NULL);
	rc = store_open_location(location, 0, &r->store);
	if (rc == -ENOENT) {
		rc = hb_err(rc, "no repository at %s (run 'hiberbox init' to create one)", location);
		goto fail;
	}
	if (rc < 0)
		goto fail;
	if (snapshot && store_tiered_remote(r->store)) {
		warm_start(r);
		fetch.store = r->store;
		repo_snapshot_name(snapshot, fetch.name);
		fetching = pthread_create(&fetcher, NULL, manifest_fetch_main, &fetch) == 0;
	}
	rc = read_config(r, r, &b);
	if (fetching)
		pthread_join(fetcher, NULL);
	if (rc == -ENOENT) {
		rc = hb_err(rc, "no repository at %s (run 'hiberbox init' to create one)",
			    store_location(r->store));
		goto fail;
	}
	if (rc < 0)
		goto fail;
	rc = chunk_dict_resolver_add(&r->key, resolve_dict, r);
	if (rc < 0)
		goto fail;
	r->resolver_added = true;
	buf_free(&b);
	*out = r;
	return 0;
fail:
	buf_free(&b);
	repo_close(r);
	return rc;
}

void repo_close(struct repo *r)
{
	if (!r)
		return;
	repo_warm_wait(r);
	if (r->resolver_added)
		chunk_dict_resolver_remove(&r->key);
	chunk_index_free(r->index);
	free(r->pack_ends);
	store_free(r->store);
	pthread_rwlock_destroy(&r->index_lock);
	pthread_mutex_destroy(&r->window_lock);
	pthread_cond_destroy(&r->window_done);
	for (size_t i = 0; i < r->ndicts; i++)
		chunk_dict_free(r->dicts[i]);
	free(r->dicts);
	pthread_mutex_destroy(&r->dict_lock);
	free(r);
}

struct store *repo_store(struct repo *r)
{
	return r->store;
}

const struct repo_key *repo_key(struct repo *r)
{
	return &r->key;
}

const char *repo_location(struct repo *r)
{
	return store_location(r->store);
}

void repo_set_zstd_level(struct repo *r, int level)
{
	r->zstd_level = level;
}

/* ---- the index ---- */

/* Index files are fetched by several threads at once from an object store
 * (INDEX_LOAD_THREADS unless the caller says, at most INDEX_LOAD_THREADS_MAX):
 * each GET is a round trip, and a repository with a hundred snapshots has a
 * hundred index files; a mount waits for them.  A local store answers at
 * disk speed: one thread. */
#define INDEX_LOAD_THREADS 16
#define INDEX_LOAD_THREADS_MAX 64

struct index_file {
	char name[REPO_NAME_BYTES];
	uint64_t size;
	struct index_entry *entries;
	size_t count;
};

struct index_load {
	struct repo *r;
	struct index_file *files;
	size_t nfiles, cap;
	pthread_mutex_t lock;
	size_t next;
	int error;
	char msg[1024];
};

static int list_index_file(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct index_load *st = arg;

	(void)mtime;
	if (size > REPO_INDEX_FILE_MAX_BYTES)
		return hb_err(-EBADMSG, "%s: index file too large", name);
	if (strlen(name) >= REPO_NAME_BYTES)
		return hb_err(-EBADMSG, "%s: not an index file name", name);
	if (st->nfiles == st->cap) {
		size_t cap = st->cap ? 2 * st->cap : 64;
		struct index_file *f = realloc(st->files, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		st->files = f;
		st->cap = cap;
	}
	memset(&st->files[st->nfiles], 0, sizeof(st->files[0]));
	memcpy(st->files[st->nfiles].name, name, strlen(name) + 1);
	st->files[st->nfiles++].size = size;
	return 0;
}

static int fetch_index_file(struct repo *r, struct index_file *f, struct buf *b)
{
	for (int attempt = 0;; attempt++) {
		int rc = store_get(r->store, f->name, 0, STORE_GET_ALL, b);

		if (rc == -ENOENT) {
			hb_err_clear();
			return 0; /* removed by a concurrent gc after its replacement was written */
		}
		if (rc < 0)
			return rc;
		rc = index_file_decode(b->data, b->len, &f->entries, &f->count);
		if (rc < 0)
			rc = hb_err_ctx(rc, "index file %s", f->name);
		if (!refetch_bad_copy(r, f->name, rc, attempt))
			return rc;
	}
}

static void *index_fetcher(void *arg)
{
	struct index_load *st = arg;
	struct buf b = BUF_INIT;

	for (;;) {
		size_t i;
		int rc;

		pthread_mutex_lock(&st->lock);
		i = st->error ? st->nfiles : st->next++;
		pthread_mutex_unlock(&st->lock);
		if (i >= st->nfiles)
			break;
		rc = fetch_index_file(st->r, &st->files[i], &b);
		if (rc < 0) {
			pthread_mutex_lock(&st->lock);
			if (!st->error) {
				st->error = rc;
				hb_err_save(st->msg, sizeof(st->msg));
			}
			pthread_mutex_unlock(&st->lock);
		}
	}
	buf_free(&b);
	return NULL;
}

static int pack_end_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct pack_end *)a)->pack, &((const struct pack_end *)b)->pack,
		      sizeof(struct oid));
}

/* Per pack, the end of its last blob in any index file: runs of one pack
 * collapse as they are seen (v2 files are sorted by pack), then sort and merge. */
static int collect_pack_ends(const struct index_load *st, struct pack_end **out, size_t *count)
{
	struct pack_end *v = NULL;
	size_t n = 0, cap = 0, k = 0;

	for (size_t i = 0; i < st->nfiles; i++) {
		for (size_t j = 0; j < st->files[i].count; j++) {
			const struct index_entry *e = &st->files[i].entries[j];
			uint64_t end = (uint64_t)e->offset + e->length;

			if (n && oid_equal(&v[n - 1].pack, &e->pack)) {
				if (end > v[n - 1].end)
					v[n - 1].end = end;
				continue;
			}
			if (n == cap) {
				struct pack_end *nv;

				cap = cap ? 2 * cap : 64;
				nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
			}
			v[n].pack = e->pack;
			v[n++].end = end;
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), pack_end_cmp);
	for (size_t i = 0; i < n; i++) {
		if (k && oid_equal(&v[k - 1].pack, &v[i].pack)) {
			if (v[i].end > v[k - 1].end)
				v[k - 1].end = v[i].end;
		} else {
			v[k++] = v[i];
		}
	}
	*out = v;
	*count = k;
	return 0;
}

static unsigned default_index_threads(struct repo *r)
{
	return store_tiered_remote(r->store) ? INDEX_LOAD_THREADS : 1;
}

static int read_all_index(struct repo *r, unsigned threads, struct chunk_index **out,
			  struct pack_end **ends, size_t *nends)
{
	struct index_load st = { .r = r };
	pthread_t tids[INDEX_LOAD_THREADS_MAX];
	unsigned nthreads = 0, want;
	struct chunk_index *idx = NULL;
	int rc;

	pthread_mutex_init(&st.lock, NULL);
	rc = store_list(r->store, REPO_INDEX_PREFIX, list_index_file, &st);
	if (rc < 0)
		goto out;
	want = threads < INDEX_LOAD_THREADS_MAX ? threads : INDEX_LOAD_THREADS_MAX;
	if (want > st.nfiles)
		want = (unsigned)st.nfiles;
	if (want < 2)
		want = 0; /* this thread alone */
	while (nthreads < want && pthread_create(&tids[nthreads], NULL, index_fetcher, &st) == 0)
		nthreads++;
	if (nthreads == 0)
		index_fetcher(&st);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(tids[i], NULL);
	if (st.error) {
		rc = nthreads ? hb_err(st.error, "%s", st.msg) : st.error;
		goto out;
	}
	idx = chunk_index_new();
	if (!idx) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < st.nfiles && rc >= 0; i++)
		for (size_t k = 0; k < st.files[i].count && rc >= 0; k++)
			rc = chunk_index_add(idx, &st.files[i].entries[k]);
	if (rc >= 0)
		rc = collect_pack_ends(&st, ends, nends);
	if (rc < 0) {
		chunk_index_free(idx);
		goto out;
	}
	*out = idx;
	rc = 0;
out:
	for (size_t i = 0; i < st.nfiles; i++)
		free(st.files[i].entries);
	free(st.files);
	pthread_mutex_destroy(&st.lock);
	return rc;
}

int repo_load_index(struct repo *r)
{
	return repo_load_index_threads(r, default_index_threads(r));
}

int repo_load_index_threads(struct repo *r, unsigned threads)
{
	struct chunk_index *idx;
	bool loaded;
	int rc = 0;

	pthread_rwlock_rdlock(&r->index_lock);
	loaded = r->index_loaded;
	pthread_rwlock_unlock(&r->index_lock);
	if (loaded)
		return 0;
	pthread_rwlock_wrlock(&r->index_lock);
	if (!r->index_loaded) {
		struct pack_end *ends;
		size_t nends;

		rc = read_all_index(r, threads, &idx, &ends, &nends);
		if (rc == 0) {
			r->index = idx;
			free(r->pack_ends);
			r->pack_ends = ends;
			r->npack_ends = nends;
			r->index_loaded = true;
		}
	}
	pthread_rwlock_unlock(&r->index_lock);
	return rc;
}

int repo_index_lookup(struct repo *r, const struct oid *chunk, struct index_entry *out)
{
	int rc = repo_load_index(r);

	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&r->index_lock);
	rc = chunk_index_lookup(r->index, chunk, out);
	pthread_rwlock_unlock(&r->index_lock);
	return rc;
}

int repo_has_chunks(struct repo *r, const struct manifest_chunk *chunks, uint32_t n,
		    struct oid *missing)
{
	struct index_entry e;
	int rc = repo_load_index(r);

	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&r->index_lock);
	for (uint32_t k = 0; k < n && rc == 0; k++)
		if (!oid_is_zero(&chunks[k].id) && /* a hole, stored nowhere */
		    chunk_index_lookup(r->index, &chunks[k].id, &e) != 1) {
			if (missing)
				*missing = chunks[k].id;
			rc = 1;
		}
	pthread_rwlock_unlock(&r->index_lock);
	return !rc;
}

int repo_index_add(struct repo *r, const struct index_entry *entries, size_t count)
{
	int rc = repo_load_index(r);

	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&r->index_lock);
	for (size_t i = 0; i < count && rc >= 0; i++)
		rc = chunk_index_add(r->index, &entries[i]);
	pthread_rwlock_unlock(&r->index_lock);
	return rc < 0 ? rc : 0;
}

int repo_refresh(struct repo *r)
{
	struct chunk_index *idx, *old;
	struct pack_end *ends, *old_ends;
	size_t nends;
	int rc = read_all_index(r, default_index_threads(r), &idx, &ends, &nends);

	if (rc < 0)
		return rc;
	pthread_rwlock_wrlock(&r->index_lock);
	old = r->index;
	old_ends = r->pack_ends;
	r->index = idx;
	r->pack_ends = ends;
	r->npack_ends = nends;
	r->index_loaded = true;
	pthread_rwlock_unlock(&r->index_lock);
	chunk_index_free(old);
	free(old_ends);
	return 0;
}

/* ---- windowed reads ---- */

static uint64_t pack_end_of(struct repo *r, const struct oid *pack)
{
	struct pack_end key = { .pack = *pack }, *hit;
	uint64_t end = 0;

	pthread_rwlock_rdlock(&r->index_lock);
	hit = r->npack_ends ? bsearch(&key, r->pack_ends, r->npack_ends, sizeof(key), pack_end_cmp)
			    : NULL;
	if (hit)
		end = hit->end;
	pthread_rwlock_unlock(&r->index_lock);
	return end;
}

/* A window's name in the in-flight and fetched tables (never 0). */
static uint64_t window_key(const struct oid *pack, uint64_t off)
{
	uint64_t k;

	memcpy(&k, pack->b, sizeof(k));
	return (k ^ (off / REPO_READ_WINDOW * 0x9e3779b97f4a7c15ull)) | 1;
}

/* Claim the window for fetching (1), or learn that it is already fetched
 * in this session or cannot be tracked (0): then read just the blob. */
static int window_claim(struct repo *r, uint64_t key, bool wait)
{
	uint64_t *seen = &r->window_fetched[key % REPO_WINDOWS_REMEMBERED];
	int slot = -1;

	pthread_mutex_lock(&r->window_lock);
	for (;;) {
		bool busy = false;

		if (*seen == key)
			break;
		slot = -1;
		for (int i = 0; i < REPO_WINDOWS_IN_FLIGHT; i++) {
			if (r->window_busy[i] == key)
				busy = true;
			else if (!r->window_busy[i] && slot < 0)
				slot = i;
		}
		if (!busy) {
			if (slot >= 0)
				r->window_busy[slot] = key;
			break;
		}
		slot = -1;
		if (!wait)
			break;
		pthread_cond_wait(&r->window_done, &r->window_lock);
	}
	pthread_mutex_unlock(&r->window_lock);
	return slot < 0 ? 0 : slot + 1;
}

static void window_release(struct repo *r, int claim, uint64_t key, bool fetched)
{
	pthread_mutex_lock(&r->window_lock);
	r->window_busy[claim - 1] = 0;
	if (fetched)
		r->window_fetched[key % REPO_WINDOWS_REMEMBERED] = key;
	pthread_cond_broadcast(&r->window_done);
	pthread_mutex_unlock(&r->window_lock);
}

/* The window of e's pack that holds it: false when it is not worth more
 * than the blob alone (the pack ends soon after, or the blob is most of it). */
static bool window_of(struct repo *r, const struct index_entry *e, uint64_t *woff, uint64_t *wend)
{
	uint64_t end = pack_end_of(r, &e->pack);

	*woff = (uint64_t)e->offset / REPO_READ_WINDOW * REPO_READ_WINDOW;
	*wend = *woff + REPO_READ_WINDOW < end ? *woff + REPO_READ_WINDOW : end;
	if (*wend < (uint64_t)e->offset + e->length)
		*wend = (uint64_t)e->offset + e->length;
	return *wend - *woff > (uint64_t)e->length * 2;
}

/* The blob of e into out, through its pack's window when that is the first
 * read there.  Falls back to the blob alone whenever the window is not
 * worth it or fails (the blob's own read then reports what is wrong). */
static int get_blob_windowed(struct repo *r, const struct index_entry *e, const char *name,
			     struct buf *out)
{
	uint64_t woff, wend, key;
	int claim, rc;

	if (!window_of(r, e, &woff, &wend))
		return store_get(r->store, name, e->offset, e->length, out);
	key = window_key(&e->pack, woff);
	claim = window_claim(r, key, true);
	if (!claim)
		return store_get(r->store, name, e->offset, e->length, out);
	rc = store_get(r->store, name, woff, wend - woff, out);
	window_release(r, claim, key, rc == 0);
	if (rc < 0) {
		hb_err_clear();
		return store_get(r->store, name, e->offset, e->length, out);
	}
	memmove(out->data, out->data + (e->offset - woff), e->length);
	out->len = e->length;
	return 0;
}

static int read_chunk_once(struct repo *r, const struct oid *chunk, bool near, struct buf *out)
{
	struct index_entry e;
	struct buf blob = BUF_INIT;
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES], phex[OID_HEX_BYTES];
	int rc;

	rc = repo_index_lookup(r, chunk, &e);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return hb_err(-ENOENT, "chunk %s is not in the index (missing index file? run 'hiberbox check')",
			      oid_format(chunk, hex));
	repo_pack_name(&e.pack, name);
	if (near && store_tiered_remote(r->store))
		rc = get_blob_windowed(r, &e, name, &blob);
	else
		rc = store_get(r->store, name, e.offset, e.length, &blob);
	if (rc == -ENOENT)
		rc = hb_err(-ENOENT, "chunk %s: its pack %s is missing", oid_format(chunk, hex),
			    oid_format(&e.pack, phex));
	else if (rc < 0)
		rc = hb_err_ctx(rc, "chunk %s in pack %s", oid_format(chunk, hex),
				oid_format(&e.pack, phex));
	else {
		rc = repo_chunk_decode(r, chunk, blob.data, blob.len, e.raw_length, e.flags, out);
		if (rc < 0)
			rc = hb_err_ctx(rc, "pack %s", oid_format(&e.pack, phex));
	}
	buf_free(&blob);
	return rc;
}

static int read_chunk(struct repo *r, const struct oid *chunk, bool near, struct buf *out)
{
	int rc;

	if (oid_is_zero(chunk))
		return hb_err(-EINVAL, "a hole has no stored chunk");
	rc = read_chunk_once(r, chunk, near, out);
	if (rc == -EBADMSG) {
		/* A cache (or a flaky transfer) may hold a bad copy: drop it and
		 * read the source once more before calling the chunk damaged. */
		struct index_entry e;
		char name[REPO_NAME_BYTES], msg[1024];

		hb_err_save(msg, sizeof(msg));
		if (repo_index_lookup(r, chunk, &e) == 1) {
			repo_pack_name(&e.pack, name);
			store_invalidate(r->store, name);
			rc = read_chunk_once(r, chunk, near, out);
			if (rc == -EBADMSG)
				hb_err(rc, "%s", msg);
		}
		return rc;
	}
	if (rc != -ENOENT)
		return rc;
	/* gc may have moved the chunk to a new pack (it writes the new index
	 * before deleting old packs): read the index again and retry once. */
	if (repo_refresh(r) < 0)
		return rc;
	rc = read_chunk_once(r, chunk, near, out);
	if (rc == -ENOENT) {
		/* Referenced but gone: damage.  (The message is copied first:
		 * hb_err must not format from its own buffer.) */
		char msg[1024];

		hb_err_save(msg, sizeof(msg));
		rc = hb_err(-EBADMSG, "%s", msg);
	}
	return rc;
}

int repo_read_chunk(struct repo *r, const struct oid *chunk, struct buf *out)
{
	return read_chunk(r, chunk, false, out);
}

int repo_read_chunk_near(struct repo *r, const struct oid *chunk, struct buf *out)
{
	return read_chunk(r, chunk, true, out);
}

int repo_fetch_near(struct repo *r, const struct oid *chunk)
{
	struct index_entry e;
	struct buf b = BUF_INIT;
	char name[REPO_NAME_BYTES];
	uint64_t woff, wend, key;
	int claim, rc;

	if (!store_tiered_remote(r->store))
		return 0;
	rc = repo_index_lookup(r, chunk, &e);
	if (rc <= 0)
		return rc;
	repo_pack_name(&e.pack, name);
	if (!window_of(r, &e, &woff, &wend)) {
		woff = e.offset;
		wend = (uint64_t)e.offset + e.length;
	}
	key = window_key(&e.pack, woff);
	claim = window_claim(r, key, false);
	if (!claim)
		return 0;
	rc = store_get(r->store, name, woff, wend - woff, &b);
	window_release(r, claim, key, rc == 0);
	buf_free(&b);
	return rc;
}

/* ---- dictionaries ---- */

static const struct chunk_dict *dict_cached(struct repo *r, uint32_t number)
{
	for (size_t i = 0; i < r->ndicts; i++)
		if (chunk_dict_number(r->dicts[i]) == number)
			return r->dicts[i];
	return NULL;
}

/* Keep d in the cache (dict_lock held); frees d and gives the cached one if
 * another thread loaded the same number meanwhile. */
static int dict_keep(struct repo *r, struct chunk_dict *d, const struct chunk_dict **out)
{
	const struct chunk_dict *have = dict_cached(r, chunk_dict_number(d));
	void *p;

	if (have) {
		chunk_dict_free(d);
		*out = have;
		return 0;
	}
	p = realloc(r->dicts, (r->ndicts + 1) * sizeof(*r->dicts));
	if (!p) {
		chunk_dict_free(d);
		return -ENOMEM;
	}
	r->dicts = p;
	r->dicts[r->ndicts++] = d;
	*out = d;
	return 0;
}

static int dict_load(struct repo *r, uint32_t number, const struct chunk_dict **out)
{
	char name[DICT_NAME_BYTES];
	struct buf b = { .max = DICT_MAX_BYTES };
	struct chunk_dict *d = NULL;
	const uint8_t *bytes;
	size_t len;
	int rc;

	pthread_mutex_lock(&r->dict_lock);
	*out = dict_cached(r, number);
	pthread_mutex_unlock(&r->dict_lock);
	if (*out)
		return 0;
	dict_name(number, name);
	rc = store_get(r->store, name, 0, STORE_GET_ALL, &b);
	if (rc == -ENOENT)
		rc = hb_err(rc, "dictionary %s is missing", name);
	else if (rc == -EFBIG || rc == -E2BIG)
		rc = hb_err(-EBADMSG, "dictionary %s is corrupt: too large", name);
	else if (rc < 0)
		rc = hb_err_ctx(rc, "dictionary %s", name);
	if (rc == 0)
		rc = dict_object_decode(&r->key, number, b.data, b.len, &bytes, &len);
	if (rc == 0)
		rc = chunk_dict_new(number, bytes, len, r->zstd_level, &d);
	buf_free(&b);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&r->dict_lock);
	rc = dict_keep(r, d, out);
	pthread_mutex_unlock(&r->dict_lock);
	return rc;
}

int repo_dict_for(struct repo *r, uint32_t flags, const struct chunk_dict **out)
{
	uint32_t number = chunk_flags_dict(flags);

	*out = NULL;
	return number ? dict_load(r, number, out) : 0;
}

int repo_chunk_decode(struct repo *r, const struct oid *id, const void *blob, size_t blob_len,
		      uint32_t raw_len, uint32_t flags, struct buf *out)
{
	return chunk_decode(&r->key, id, blob, blob_len, raw_len, flags, out);
}

/* chunk_decode's way to this repository's dictionaries. */
static int resolve_dict(void *ctx, uint32_t number, const struct chunk_dict **out)
{
	return dict_load(ctx, number, out);
}

struct dict_list {
	uint32_t *numbers;
	size_t count;
};

static int list_dict(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct dict_list *l = arg;
	uint32_t number = dict_name_number(name);
	void *p;

	if (!number)
		return 0; /* not ours */
	p = realloc(l->numbers, (l->count + 1) * sizeof(*l->numbers));
	if (!p)
		return -ENOMEM;
	l->numbers = p;
	l->numbers[l->count++] = number;
	return 0;
}

int repo_dict_numbers(struct repo *r, uint32_t **numbers, size_t *count)
{
	struct dict_list l = { 0 };
	int rc = store_list(r->store, DICT_PREFIX, list_dict, &l);

	if (rc < 0) {
		free(l.numbers);
		return rc;
	}
	*numbers = l.numbers;
	*count = l.count;
	return 0;
}

int repo_dict_pick(struct repo *r, const struct chunk_dict **out)
{
	uint32_t *numbers = NULL, best = 0;
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = repo_dict_numbers(r, &numbers, &n);
	if (rc < 0)
		return rc;
	/* The lowest number that loads: writers beside each other agree. */
	while (rc == 0) {
		uint32_t next = 0;

		for (size_t i = 0; i < n; i++)
			if (numbers[i] > best && (!next || numbers[i] < next))
				next = numbers[i];
		if (!next)
			break;
		best = next;
		rc = dict_load(r, best, out);
		if (rc == -ENOENT || rc == -EBADMSG) {
			/* Gone or damaged ('hiberbox check' says which): try the next. */
			hb_err_clear();
			rc = 0;
			*out = NULL;
			continue;
		}
		if (rc == 0)
			break;
	}
	free(numbers);
	return rc;
}

int repo_dict_add(struct repo *r, struct buf *dict, const struct chunk_dict **out)
{
	uint32_t *numbers = NULL, number;
	struct buf obj = BUF_INIT;
	char name[DICT_NAME_BYTES];
	struct chunk_dict *d = NULL;
	size_t n = 0;
	int rc;

	rc = repo_dict_numbers(r, &numbers, &n);
	for (int attempt = 0; rc == 0; attempt++) {
		rc = dict_object_encode(&r->key, dict, numbers, n, &obj, &number);
		if (rc < 0)
			break;
		dict_name(number, name);
		rc = store_put(r->store, name, obj.data, obj.len, STORE_PUT_NOREPLACE);
		if (rc != -EEXIST || attempt == 8)
			break;
		/* Someone stored one with the same number since the listing:
		 * never replace it, take another number. */
		hb_err_clear();
		void *p = realloc(numbers, (n + 1) * sizeof(*numbers));

		if (!p) {
			rc = -ENOMEM;
			break;
		}
		numbers = p;
		numbers[n++] = number;
		rc = 0;
	}
	if (rc == 0)
		rc = chunk_dict_new(number, dict->data, dict->len, r->zstd_level, &d);
	if (rc == 0) {
		pthread_mutex_lock(&r->dict_lock);
		rc = dict_keep(r, d, out);
		pthread_mutex_unlock(&r->dict_lock);
	}
	free(numbers);
	buf_free(&obj);
	return rc;
}

/* ---- warming up a remote repository ---- */

static void *warm_index_main(void *arg)
{
	(void)repo_load_index(arg); /* on failure, the first reader tries again and says why */
	hb_err_clear();
	return NULL;
}

/* The dictionaries' objects into the store's cache (decoding them needs the
 * config's key, which may not be in yet: dict_load decodes from the cache). */
static void *warm_dicts_main(void *arg)
{
	struct repo *r = arg;
	uint32_t *numbers;
	size_t count;

	if (repo_dict_numbers(r, &numbers, &count) == 0) {
		for (size_t i = 0; i < count; i++) {
			char name[DICT_NAME_BYTES];
			struct buf b = { .max = DICT_MAX_BYTES };

			dict_name(numbers[i], name);
			(void)store_get(r->store, name, 0, STORE_GET_ALL, &b);
			buf_free(&b);
		}
		free(numbers);
	}
	hb_err_clear();
	return NULL;
}

/* Fetch, in the background, what reads from a remote store will wait for
 * (the index, the dictionaries), while the caller fetches the config and the
 * manifest.  Readers block on the index until it is in; repo_close joins. */
static void warm_start(struct repo *r)
{
	void *(*fns[2])(void *) = { warm_index_main, warm_dicts_main };

	if (r->nwarm || !store_tiered_remote(r->store))
		return;
	for (unsigned i = 0; i < 2; i++)
		if (pthread_create(&r->warm_threads[r->nwarm], NULL, fns[i], r) == 0)
			r->nwarm++;
}

static void repo_warm_wait(struct repo *r)
{
	for (unsigned i = 0; i < r->nwarm; i++)
		pthread_join(r->warm_threads[i], NULL);
	r->nwarm = 0;
}

/* ---- manifests ---- */

int repo_read_manifest(struct repo *r, const struct oid *id, struct manifest **out)
{
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES];
	struct buf b = { .max = REPO_MANIFEST_MAX_BYTES };
	struct oid actual;
	int rc;

	repo_snapshot_name(id, name);
	for (int attempt = 0;; attempt++) {
		rc = store_get(r->store, name, 0, STORE_GET_ALL, &b);
		if (rc == -ENOENT) {
			rc = hb_err(rc, "snapshot %s does not exist", oid_format(id, hex));
			goto out;
		}
		if (rc < 0)
			goto out;
		oid_compute(&r->key, b.data, b.len, &actual);
		rc = manifest_decode(b.data, b.len, out);
		if (rc < 0) {
			rc = hb_err_ctx(rc, "snapshot %s", oid_format(id, hex));
		} else if (!oid_equal(&actual, id)) {
			manifest_free(*out);
			*out = NULL;
			rc = hb_err(-EBADMSG, "snapshot %s: manifest content does not match its id",
				    oid_format(id, hex));
		}
		if (!refetch_bad_copy(r, name, rc, attempt))
			break;
	}
out:
	buf_free(&b);
	return rc;
}

int repo_load_manifest(struct repo *r, const struct oid *id, struct manifest **out)
{
	return repo_read_manifest(r, id, out);
}

int repo_read_manifest_info(struct repo *r, const struct oid *id, struct manifest_info *info)
{
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES];
	struct buf b = BUF_INIT;
	size_t want = MANIFEST_INFO_PROBE_BYTES, need = 0;
	uint64_t size;
	int rc;

	repo_snapshot_name(id, name);
	rc = store_stat(r->store, name, &size);
	if (rc == -ENOENT)
		return hb_err(rc, "snapshot %s does not exist", oid_format(id, hex));
	if (rc < 0)
		return rc;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (want > size)
			want = (size_t)size;
		rc = store_get(r->store, name, 0, want, &b);
		if (rc < 0)
			break;
		rc = manifest_decode_info(b.data, b.len, info, &need);
		if (rc != -EAGAIN || need <= want || need > REPO_MANIFEST_MAX_BYTES)
			break;
		want = need;
	}
	if (rc == -EAGAIN)
		rc = hb_err(-EBADMSG, "snapshot %s: manifest is truncated", oid_format(id, hex));
	else if (rc < 0)
		rc = hb_err_ctx(rc, "snapshot %s", oid_format(id, hex));
	buf_free(&b);
	return rc;
}

struct foreach_snapshot {
	int (*fn)(const struct oid *id, void *arg);
	void *arg;
};

static int foreach_snapshot_cb(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct foreach_snapshot *st = arg;
	struct oid id;

	if (repo_name_to_oid(name, &id) < 0)
		return 0; /* not ours */
	return st->fn(&id, st->arg);
}

int repo_foreach_snapshot(struct repo *r, int (*fn)(const struct oid *id, void *arg), void *arg)
{
	struct foreach_snapshot st = { fn, arg };

	return store_list(r->store, REPO_SNAPSHOTS_PREFIX, foreach_snapshot_cb, &st);
}

/* ---- tags ---- */

int repo_tag_valid(const char *tag)
{
	size_t n = strlen(tag);

	if (n == 0 || n > REPO_TAG_MAX || tag[0] == '.' || tag[0] == '-')
		return hb_err(-EINVAL, "invalid tag '%s': use 1-%d letters, digits, '.', '_' or '-'",
			      tag, REPO_TAG_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = tag[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return hb_err(-EINVAL,
				      "invalid tag '%s': use 1-%d letters, digits, '.', '_' or '-'",
				      tag, REPO_TAG_MAX);
	}
	return 0;
}

int repo_tag_set(struct repo *r, const char *tag, const struct oid *id)
{
	char name[REPO_NAME_BYTES + REPO_TAG_MAX], hex[OID_HEX_BYTES + 1];
	int rc = repo_tag_valid(tag);

	if (rc < 0)
		return rc;
	oid_format(id, hex);
	strcat(hex, "\n");
	snprintf(name, sizeof(name), REPO_TAGS_PREFIX "%s", tag);
	return store_put(r->store, name, hex, strlen(hex), 0);
}

static int read_ref(struct repo *r, const char *name, struct oid *out)
{
	struct buf b = { .max = 4096 };
	int rc = store_get(r->store, name, 0, STORE_GET_ALL, &b);

	if (rc < 0)
		goto out;
	if (b.len < 2 * OID_BYTES || oid_parse_prefix((const char *)b.data, out) < 0)
		rc = hb_err(-EBADMSG, "%s is corrupt", name);
out:
	buf_free(&b);
	return rc;
}

int repo_tag_get(struct repo *r, const char *tag, struct oid *out)
{
	char name[REPO_NAME_BYTES + REPO_TAG_MAX];
	int rc = repo_tag_valid(tag);

	if (rc < 0)
		return rc;
	snprintf(name, sizeof(name), REPO_TAGS_PREFIX "%s", tag);
	return read_ref(r, name, out);
}

int repo_tag_remove(struct repo *r, const char *tag)
{
	char name[REPO_NAME_BYTES + REPO_TAG_MAX];
	int rc = repo_tag_valid(tag);

	if (rc < 0)
		return rc;
	snprintf(name, sizeof(name), REPO_TAGS_PREFIX "%s", tag);
	return store_remove(r->store, name);
}

/* ---- resolving names ---- */

struct prefix_match {
	const char *prefix;
	size_t len;
	struct oid found;
	int matches;
};

static int prefix_cb(const struct oid *id, void *arg)
{
	struct prefix_match *m = arg;
	char hex[OID_HEX_BYTES];

	oid_format(id, hex);
	if (strncmp(hex, m->prefix, m->len) == 0) {
		m->found = *id;
		m->matches++;
	}
	return 0;
}

static bool is_hex(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

int repo_resolve(struct repo *r, const char *name, struct oid *out)
{
	char obj[REPO_NAME_BYTES];
	struct prefix_match m = { .prefix = name, .len = strlen(name) };
	int rc;

	if (m.len == 2 * OID_BYTES && oid_parse(name, out) == 0) {
		repo_snapshot_name(out, obj);
		rc = store_stat(r->store, obj, NULL);
		if (rc == 0 || rc != -ENOENT)
			return rc;
	}
	if (repo_tag_valid(name) == 0) {
		rc = repo_tag_get(r, name, out);
		if (rc == 0 || rc != -ENOENT)
			return rc;
	}
	hb_err_clear();
	if (is_hex(name) && m.len >= 4 && m.len < 2 * OID_BYTES) {
		rc = repo_foreach_snapshot(r, prefix_cb, &m);
		if (rc < 0)
			return rc;
		if (m.matches == 1) {
			*out = m.found;
			return 0;
		}
		if (m.matches > 1)
			return hb_err(-EINVAL, "'%s' is ambiguous: %d snapshots start with it", name,
				      m.matches);
	}
	return hb_err(-ENOENT, "no snapshot or tag named '%s'", name);
}

/* ---- listing ---- */

struct list_state {
	struct repo *r;
	struct repo_snapshot_summary *items;
	size_t count, cap;
	int error;
};

static int list_cb(const struct oid *id, void *arg)
{
	struct list_state *st = arg;
	struct repo_snapshot_summary *s;
	int rc;

	if (st->count == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		void *p = realloc(st->items, cap * sizeof(*st->items));

		if (!p)
			return -ENOMEM;
		st->items = p;
		st->cap = cap;
	}
	s = &st->items[st->count];
	memset(s, 0, sizeof(*s));
	s->id = *id;
	rc = repo_read_manifest_info(st->r, id, &s->info);
	if (rc < 0)
		return rc;
	st->count++;
	return 0;
}

struct tag_state {
	struct repo *r;
	struct repo_snapshot_summary *items;
	size_t count;
};

static int tag_cb(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct tag_state *st = arg;
	const char *tag = name + strlen(REPO_TAGS_PREFIX);
	struct oid id;

	if (read_ref(st->r, name, &id) < 0)
		return 0; /* check reports broken refs */
	for (size_t i = 0; i < st->count; i++) {
		char *t = st->items[i].tags;

		if (!oid_equal(&st->items[i].id, &id))
			continue;
		if (strlen(t) + strlen(tag) + 2 < sizeof(st->items[i].tags)) {
			if (t[0])
				strcat(t, ",");
			strcat(t, tag);
		}
	}
	return 0;
}

int repo_tags_of(struct repo *r, const struct oid *id, char *out, size_t size)
{
	/* the listing's own tag matcher, over a list of one */
	struct repo_snapshot_summary one = { .id = *id };
	struct tag_state ts = { r, &one, 1 };
	int rc = store_list(r->store, REPO_TAGS_PREFIX, tag_cb, &ts), count;

	if (rc < 0)
		return rc;
	snprintf(out, size, "%s", one.tags);
	count = one.tags[0] != '\0';
	for (const char *t = one.tags; (t = strchr(t, ',')); t++)
		count++;
	return count;
}

static int by_time(const void *a, const void *b)
{
	const struct repo_snapshot_summary *x = a, *y = b;

	if (x->info.time_sec != y->info.time_sec)
		return x->info.time_sec < y->info.time_sec ? -1 : 1;
	if (x->info.time_nsec != y->info.time_nsec)
		return x->info.time_nsec < y->info.time_nsec ? -1 : 1;
	return oid_cmp(&x->id, &y->id);
}

int repo_list_snapshots(struct repo *r, struct repo_snapshot_summary **out, size_t *count)
{
	struct list_state st = { .r = r };
	struct tag_state ts;
	int rc;

	rc = repo_foreach_snapshot(r, list_cb, &st);
	if (rc < 0) {
		free(st.items);
		return rc;
	}
	if (st.count)
		qsort(st.items, st.count, sizeof(*st.items), by_time);
	ts = (struct tag_state){ r, st.items, st.count };
	rc = store_list(r->store, REPO_TAGS_PREFIX, tag_cb, &ts);
	if (rc < 0) {
		free(st.items);
		return rc;
	}
	*out = st.items;
	*count = st.count;
	return 0;
}

/* ---- removal ---- */

struct unref_state {
	struct repo *r;
	struct oid id;
};

static int unref_cb(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	struct unref_state *st = arg;
	struct oid id;

	if (read_ref(st->r, name, &id) == 0 && oid_equal(&id, &st->id))
		store_remove(st->r->store, name);
	hb_err_clear();
	return 0;
}

int repo_snapshot_remove(struct repo *r, const struct oid *id)
{
	char name[REPO_NAME_BYTES], hex[OID_HEX_BYTES];
	struct unref_state st = { r, *id };
	int rc;

	repo_snapshot_name(id, name);
	rc = store_remove(r->store, name);
	if (rc == -ENOENT)
		return hb_err(rc, "snapshot %s does not exist", oid_format(id, hex));
	if (rc < 0)
		return rc;
	rc = store_list(r->store, REPO_TAGS_PREFIX, unref_cb, &st);
	if (rc == 0)
		rc = store_list(r->store, REPO_SOURCES_PREFIX, unref_cb, &st);
	return rc;
}
