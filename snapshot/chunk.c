/* Chunk encoding: zstd on the way in, decompression plus keyed-hash
 * verification on the way out.
 *
 * zstd contexts are expensive to create (hundreds of KiB of tables), so each
 * thread keeps one compression and one decompression context for its whole
 * life; a pthread key destructor frees them when the thread exits.
 */
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

int chunk_encode(int level, const void *raw, size_t raw_len, struct buf *blob, uint32_t *flags)
{
	ZSTD_CCtx *cctx;
	size_t n;
	int r;

	if (raw_len == 0)
		return store_raw(raw, raw_len, blob, flags);
	cctx = thread_cctx();
	if (!cctx)
		return -ENOMEM;
	buf_reset(blob);
	/* Room for the raw bytes is needed anyway; a compressed form that does
	 * not fit in one byte less is not worth keeping. */
	r = buf_reserve(blob, raw_len);
	if (r < 0)
		return r;
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
	n = ZSTD_compress2(cctx, blob->data, raw_len - 1, raw, raw_len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
			return store_raw(raw, raw_len, blob, flags);
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		return hb_err(-EINVAL, "zstd compression failed: %s", ZSTD_getErrorName(n));
	}
	blob->len = n;
	*flags = 0;
	return 0;
}

static int chunk_bad(const struct oid *id, const char *what, const char *detail)
{
	char hex[OID_HEX_BYTES];

	if (detail)
		return hb_err(-EBADMSG, "chunk %s: %s (%s)", oid_format(id, hex), what, detail);
	return hb_err(-EBADMSG, "chunk %s: %s", oid_format(id, hex), what);
}

int chunk_decode(const struct repo_key *key, const struct oid *id, const void *blob,
		 size_t blob_len, uint32_t raw_len, uint32_t flags, struct buf *out)
{
	struct oid got;
	int r;

	buf_reset(out);
	if (flags & ~CHUNK_FLAG_RAW)
		return chunk_bad(id, "unknown flags", NULL);
	if (raw_len > CHUNK_RAW_MAX_BYTES)
		return chunk_bad(id, "stored size is impossibly large", NULL);
	if (flags & CHUNK_FLAG_RAW) {
		if (blob_len != raw_len)
			return chunk_bad(id, "stored size does not match its length", NULL);
		r = buf_append(out, blob, blob_len);
		if (r < 0)
			return r;
	} else {
		unsigned long long content = ZSTD_getFrameContentSize(blob, blob_len);
		ZSTD_DCtx *dctx;
		size_t n;

		if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN)
			return chunk_bad(id, "cannot decompress", "not a zstd frame with a size");
		if (content != raw_len)
			return chunk_bad(id, "decompressed size does not match its length", NULL);
		dctx = thread_dctx();
		if (!dctx)
			return -ENOMEM;
		r = buf_reserve(out, raw_len ? raw_len : 1);
		if (r < 0)
			return r;
		ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
		n = ZSTD_decompressDCtx(dctx, out->data, raw_len, blob, blob_len);
		if (ZSTD_isError(n)) {
			if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
				return -ENOMEM;
			return chunk_bad(id, "cannot decompress", ZSTD_getErrorName(n));
		}
		if (n != raw_len)
			return chunk_bad(id, "decompressed size does not match its length", NULL);
		out->len = n;
	}
	oid_compute(key, out->data, out->len, &got);
	if (!oid_equal(&got, id)) {
		buf_reset(out);
		return chunk_bad(id, "content does not match its id", NULL);
	}
	return 0;
}
