/* Chunk encoding: zstd on the way in, decompression plus keyed-hash
 * verification on the way out.
 *
 * zstd contexts are expensive to create (hundreds of KiB of tables), so each
 * thread keeps one compression and one decompression context for its whole
 * life; a pthread key destructor frees them when the thread exits.
 *
 * A chunk larger than CHUNK_BLOCK_BYTES is compressed as a frame of blocks of
 * that size (a flush after each): zstd at level 3 gives a whole 64 KiB chunk
 * one block, so one set of entropy tables, and binaries that mix code with
 * incompressible data lose to that (repo-bench's binaries: 2% smaller, at
 * ~7% more compression time).
 */
#define ZSTD_STATIC_LINKING_ONLY /* magicless frames (ZSTD_c_format) */
#include "snapshot/chunk.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util/error.h"

/* The chunker never makes chunks larger than this; a larger raw_len in
 * storage is corruption, not a reason to allocate. */
#define CHUNK_RAW_MAX_BYTES (16u << 20)
#define CHUNK_BLOCK_BYTES (32u << 10)

struct chunk_dict {
	uint32_t number;
	ZSTD_CDict *cdict;
	ZSTD_DDict *ddict;
};

int chunk_dict_new(uint32_t number, const void *dict, size_t len, int level,
		   struct chunk_dict **out)
{
	struct chunk_dict *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->number = number;
	d->cdict = ZSTD_createCDict(dict, len, level);
	d->ddict = ZSTD_createDDict(dict, len);
	if (!d->cdict || !d->ddict) {
		chunk_dict_free(d);
		return hb_err(-EBADMSG, "dictionary %06x: zstd cannot load it", number);
	}
	*out = d;
	return 0;
}

void chunk_dict_free(struct chunk_dict *d)
{
	if (!d)
		return;
	ZSTD_freeCDict(d->cdict);
	ZSTD_freeDDict(d->ddict);
	free(d);
}

uint32_t chunk_dict_number(const struct chunk_dict *d)
{
	return d->number;
}

struct zstd_contexts {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
};

static pthread_key_t contexts_key;
static pthread_once_t contexts_once = PTHREAD_ONCE_INIT;
static int contexts_key_error;

static void contexts_free(void *p)
{
	struct zstd_contexts *c = p;

	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c);
}

static void contexts_key_create(void)
{
	contexts_key_error = pthread_key_create(&contexts_key, contexts_free);
}

static struct zstd_contexts *thread_contexts(void)
{
	struct zstd_contexts *c;

	pthread_once(&contexts_once, contexts_key_create);
	if (contexts_key_error)
		return NULL;
	c = pthread_getspecific(contexts_key);
	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (pthread_setspecific(contexts_key, c) != 0) {
		free(c);
		return NULL;
	}
	return c;
}

static ZSTD_CCtx *thread_cctx(void)
{
	struct zstd_contexts *c = thread_contexts();

	if (c && !c->cctx)
		c->cctx = ZSTD_createCCtx();
	return c ? c->cctx : NULL;
}

static ZSTD_DCtx *thread_dctx(void)
{
	struct zstd_contexts *c = thread_contexts();

	if (c && !c->dctx)
		c->dctx = ZSTD_createDCtx();
	return c ? c->dctx : NULL;
}

static int store_raw(const void *raw, size_t raw_len, struct buf *blob, uint32_t *flags)
{
	int r;

	buf_reset(blob);
	r = buf_append(blob, raw, raw_len);
	if (r < 0)
		return r;
	*flags = CHUNK_FLAG_RAW;
	return 0;
}

static int zstd_failed(size_t n)
{
	if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
		return -ENOMEM;
	return hb_err(-EINVAL, "zstd compression failed: %s", ZSTD_getErrorName(n));
}

/* A frame of CHUNK_BLOCK_BYTES blocks into blob (room for raw_len + the
 * frame's bound reserved).  @return 1 if it came out smaller than raw_len,
 * 0 if not, or -errno. */
static int encode_blocks(ZSTD_CCtx *cctx, const uint8_t *raw, size_t raw_len, struct buf *blob,
			 size_t cap)
{
	ZSTD_outBuffer ob = { blob->data, cap, 0 };
	size_t pos = 0, n;

	ZSTD_CCtx_setPledgedSrcSize(cctx, raw_len);
	while (pos < raw_len) {
		size_t step = raw_len - pos > CHUNK_BLOCK_BYTES ? CHUNK_BLOCK_BYTES : raw_len - pos;
		ZSTD_EndDirective end = pos + step == raw_len ? ZSTD_e_end : ZSTD_e_flush;
		ZSTD_inBuffer ib = { raw + pos, step, 0 };

		do {
			n = ZSTD_compressStream2(cctx, &ob, &ib, end);
			if (ZSTD_isError(n))
				return zstd_failed(n);
		} while (n != 0 && ob.pos < ob.size);
		if (n != 0)
			return 0; /* the output is full: not worth it */
		pos += step;
	}
	blob->len = ob.pos;
	return ob.pos < raw_len;
}

int chunk_encode(int level, const struct chunk_dict *dict, const void *raw, size_t raw_len,
		 struct buf *blob, uint32_t *flags)
{
	bool use_dict = dict && raw_len <= CHUNK_DICT_MAX_RAW_BYTES;
	ZSTD_CCtx *cctx;
	size_t n, cap;
	int r;

	if (raw_len == 0)
		return store_raw(raw, raw_len, blob, flags);
	cctx = thread_cctx();
	if (!cctx)
		return -ENOMEM;
	buf_reset(blob);
	/* Room for the raw bytes is needed anyway; a compressed form that does
	 * not fit in one byte less is not worth keeping.  The block-wise
	 * frame may pass that bound on the way (the bound tells). */
	cap = raw_len > CHUNK_BLOCK_BYTES && !use_dict ? ZSTD_compressBound(raw_len) : raw_len - 1;
	r = buf_reserve(blob, cap > raw_len ? cap : raw_len);
	if (r < 0)
		return r;
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	if (use_dict) {
		/* The level is the dictionary's; the index and the pack
		 * trailer hold the size and the dictionary's number. */
		ZSTD_CCtx_refCDict(cctx, dict->cdict);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_format, ZSTD_f_zstd1_magicless);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0);
	} else {
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
	}
	if (!use_dict && raw_len > CHUNK_BLOCK_BYTES) {
		r = encode_blocks(cctx, raw, raw_len, blob, cap);
		if (r <= 0)
			return r < 0 ? r : store_raw(raw, raw_len, blob, flags);
		*flags = 0;
		return 0;
	}
	n = ZSTD_compress2(cctx, blob->data, cap, raw, raw_len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
			return store_raw(raw, raw_len, blob, flags);
		return zstd_failed(n);
	}
	blob->len = n;
	*flags = use_dict ? CHUNK_FLAG_DICT | dict->number << CHUNK_DICT_SHIFT : 0;
	return 0;
}

static int chunk_bad(const struct oid *id, const char *what, const char *detail)
{
	char hex[OID_HEX_BYTES];

	if (detail)
		return hb_err(-EBADMSG, "chunk %s: %s (%s)", oid_format(id, hex), what, detail);
	return hb_err(-EBADMSG, "chunk %s: %s", oid_format(id, hex), what);
}

static int decompress_into(const struct oid *id, ZSTD_DCtx *dctx, const void *blob,
			   size_t blob_len, uint32_t raw_len, struct buf *out)
{
	size_t n;
	int r = buf_reserve(out, raw_len ? raw_len : 1);

	if (r < 0)
		return r;
	n = ZSTD_decompressDCtx(dctx, out->data, raw_len, blob, blob_len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		return chunk_bad(id, "cannot decompress", ZSTD_getErrorName(n));
	}
	if (n != raw_len)
		return chunk_bad(id, "decompressed size does not match its length", NULL);
	out->len = n;
	return 0;
}

static int decode_dict(const struct oid *id, const struct chunk_dict *dict, const void *blob,
		       size_t blob_len, uint32_t raw_len, uint32_t flags, struct buf *out)
{
	uint32_t want = chunk_flags_dict(flags);
	ZSTD_DCtx *dctx;
	char hex[OID_HEX_BYTES];

	if (!dict || dict->number != want)
		return hb_err(-EBADMSG, "chunk %s: needs dictionary %06x, which is not available%s",
			      oid_format(id, hex), want, dict ? " (another one was given)" : "");
	dctx = thread_dctx();
	if (!dctx)
		return -ENOMEM;
	ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_format, ZSTD_f_zstd1_magicless);
	ZSTD_DCtx_refDDict(dctx, dict->ddict);
	return decompress_into(id, dctx, blob, blob_len, raw_len, out);
}

int chunk_decode_dict(const struct repo_key *key, const struct chunk_dict *dict,
		      const struct oid *id, const void *blob, size_t blob_len, uint32_t raw_len,
		      uint32_t flags, struct buf *out)
{
	struct oid got;
	int r;

	buf_reset(out);
	if (!chunk_flags_valid(flags))
		return chunk_bad(id, "unknown flags", NULL);
	if (raw_len > CHUNK_RAW_MAX_BYTES)
		return chunk_bad(id, "stored size is impossibly large", NULL);
	if (flags & CHUNK_FLAG_RAW) {
		if (blob_len != raw_len)
			return chunk_bad(id, "stored size does not match its length", NULL);
		r = buf_append(out, blob, blob_len);
	} else if (flags & CHUNK_FLAG_DICT) {
		r = decode_dict(id, dict, blob, blob_len, raw_len, flags, out);
	} else {
		unsigned long long content = ZSTD_getFrameContentSize(blob, blob_len);
		ZSTD_DCtx *dctx;

		if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN)
			return chunk_bad(id, "cannot decompress", "not a zstd frame with a size");
		if (content != raw_len)
			return chunk_bad(id, "decompressed size does not match its length", NULL);
		dctx = thread_dctx();
		if (!dctx)
			return -ENOMEM;
		ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
		r = decompress_into(id, dctx, blob, blob_len, raw_len, out);
	}
	if (r < 0) {
		buf_reset(out);
		return r;
	}
	oid_compute(key, out->data, out->len, &got);
	if (!oid_equal(&got, id)) {
		buf_reset(out);
		return chunk_bad(id, "content does not match its id", NULL);
	}
	return 0;
}

/* ---- dictionaries for chunk_decode ---- */

struct resolver {
	const struct repo_key *key;
	chunk_dict_resolver fn;
	void *ctx;
};

static pthread_mutex_t resolvers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct resolver *resolvers;
static size_t nresolvers;

int chunk_dict_resolver_add(const struct repo_key *key, chunk_dict_resolver fn, void *ctx)
{
	void *p;

	pthread_mutex_lock(&resolvers_lock);
	p = realloc(resolvers, (nresolvers + 1) * sizeof(*resolvers));
	if (p) {
		resolvers = p;
		resolvers[nresolvers++] = (struct resolver){ key, fn, ctx };
	}
	pthread_mutex_unlock(&resolvers_lock);
	return p ? 0 : -ENOMEM;
}

void chunk_dict_resolver_remove(const struct repo_key *key)
{
	pthread_mutex_lock(&resolvers_lock);
	for (size_t i = 0; i < nresolvers; i++) {
		if (resolvers[i].key == key) {
			resolvers[i] = resolvers[--nresolvers];
			break;
		}
	}
	if (!nresolvers) {
		free(resolvers);
		resolvers = NULL;
	}
	pthread_mutex_unlock(&resolvers_lock);
}

int chunk_decode(const struct repo_key *key, const struct oid *id, const void *blob,
		 size_t blob_len, uint32_t raw_len, uint32_t flags, struct buf *out)
{
	uint32_t number = chunk_flags_valid(flags) ? chunk_flags_dict(flags) : 0;
	const struct chunk_dict *dict = NULL;
	struct resolver res = { 0 };
	char hex[OID_HEX_BYTES];
	int r;

	buf_reset(out);
	if (number) {
		pthread_mutex_lock(&resolvers_lock);
		for (size_t i = 0; i < nresolvers; i++)
			if (resolvers[i].key == key)
				res = resolvers[i];
		pthread_mutex_unlock(&resolvers_lock);
		if (!res.fn)
			return hb_err(-EBADMSG, "chunk %s: needs dictionary %06x, and no repository provides it",
				      oid_format(id, hex), number);
		r = res.fn(res.ctx, number, &dict);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return hb_err_ctx(-EBADMSG, "chunk %s", oid_format(id, hex));
	}
	return chunk_decode_dict(key, dict, id, blob, blob_len, raw_len, flags, out);
}
