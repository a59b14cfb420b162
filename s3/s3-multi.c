/* Parallel transfers: many GETs at once, and multipart upload.
 *
 * Both run jobs on up to cfg.parallelism short-lived threads; each job takes
 * a curl handle from the client's pool, so the pool, not the thread count,
 * bounds the transfers in flight across all callers.  An error message is
 * recorded per job in its own thread and handed back to the caller's.
 *
 * Multipart: parts are all part_bytes long except the last (R2 requires
 * equal parts).  The upload is aborted if any part or the completion fails,
 * so no half-uploaded parts are left to bill; the completion is retried on a
 * "200 with an error inside" as S3 documents.
 */
#include "s3/s3-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/digest.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/uri.h"

#define S3_MSG_BYTES 1024

struct parallel {
	struct s3_client *c;
	size_t n;
	int (*fn)(size_t i, void *arg);
	void *arg;
	int keep_going;
	int *results;
	char (*msgs)[S3_MSG_BYTES];
	pthread_mutex_t lock;
	size_t next;
	int failed;
};

static void *parallel_worker(void *p_)
{
	struct parallel *p = p_;

	for (;;) {
		size_t i;
		int r;

		pthread_mutex_lock(&p->lock);
		if (p->next >= p->n || (p->failed && !p->keep_going)) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		i = p->next++;
		pthread_mutex_unlock(&p->lock);
		hb_err_clear();
		r = p->fn(i, p->arg);
		if (r < 0)
			hb_err_save(p->msgs[i], S3_MSG_BYTES);
		pthread_mutex_lock(&p->lock);
		p->results[i] = r;
		if (r < 0)
			p->failed = 1;
		pthread_mutex_unlock(&p->lock);
	}
}

int s3_parallel(struct s3_client *c, size_t n, int (*fn)(size_t i, void *arg), void *arg,
		int keep_going, int *results)
{
	struct parallel p = { .c = c, .n = n, .fn = fn, .arg = arg, .keep_going = keep_going,
			      .results = results };
	size_t nthreads = n < c->cfg.parallelism ? n : c->cfg.parallelism;
	pthread_t *tids;
	size_t started = 0;

	if (n == 0)
		return 0;
	p.msgs = calloc(n, sizeof(*p.msgs));
	tids = calloc(nthreads, sizeof(*tids));
	if (!p.msgs || !tids) {
		free(p.msgs);
		free(tids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		results[i] = -ECANCELED;
	pthread_mutex_init(&p.lock, NULL);
	for (size_t t = 1; t < nthreads; t++) {
		if (pthread_create(&tids[t], NULL, parallel_worker, &p) != 0)
			break;
		started = t;
	}
	parallel_worker(&p); /* the caller works too */
	for (size_t t = 1; t <= started; t++)
		pthread_join(tids[t], NULL);
	pthread_mutex_destroy(&p.lock);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (results[i] < 0 && results[i] != -ECANCELED) {
			r = results[i];
			if (p.msgs[i][0])
				hb_err(r, "%s", p.msgs[i]);
			break;
		}
	}
	free(p.msgs);
	free(tids);
	return r;
}

struct get_many {
	struct s3_client *c;
	struct s3_get_request *reqs;
};

static int get_many_one(size_t i, void *arg)
{
	struct get_many *g = arg;
	struct s3_get_request *rq = &g->reqs[i];

	return s3_get(g->c, rq->key, rq->off, rq->len, rq->out, NULL);
}

int s3_get_many(struct s3_client *c, struct s3_get_request *reqs, size_t n)
{
	struct get_many g = { .c = c, .reqs = reqs };
	int *results = calloc(n ? n : 1, sizeof(int));
	int r;

	if (!results)
		return -ENOMEM;
	r = s3_parallel(c, n, get_many_one, &g, 1, results);
	for (size_t i = 0; i < n; i++)
		reqs[i].result = results[i];
	free(results);
	return r;
}

/* ---- multipart upload ---- */

struct multipart {
	struct s3_client *c;
	const char *key;
	const uint8_t *data;
	size_t len;
	uint64_t part_bytes;
	size_t nparts;
	char upload_id_enc[1024];
	char (*etags)[S3_ETAG_MAX];
};

static int upload_part(size_t i, void *arg)
{
	struct multipart *m = arg;
	uint64_t off = (uint64_t)i * m->part_bytes;
	uint64_t n = m->len - off < m->part_bytes ? m->len - off : m->part_bytes;
	char query[1200];
	struct s3_request rq = { .method = "PUT", .key = m->key, .query = query,
				 .body = m->data + off, .body_len = (size_t)n };
	int r;

	snprintf(query, sizeof(query), "partNumber=%zu&uploadId=%s", i + 1, m->upload_id_enc);
	if ((r = s3_request_run(m->c, &rq)) < 0)
		return hb_err_ctx(r, "part %zu of %zu", i + 1, m->nparts);
	if (!rq.info.etag[0])
		return hb_err(-EBADMSG, "s3: part %zu of %s has no ETag in the reply", i + 1, m->key);
	memcpy(m->etags[i], rq.info.etag, S3_ETAG_MAX);
	return 0;
}

static void abort_upload(struct multipart *m)
{
	char query[1100], saved[S3_MSG_BYTES];
	struct s3_request rq = { .method = "DELETE", .key = m->key, .query = query };

	hb_err_save(saved, sizeof(saved));
	snprintf(query, sizeof(query), "uploadId=%s", m->upload_id_enc);
	s3_request_run(m->c, &rq); /* best effort: a lifecycle rule cleans up the rest */
	hb_err(-EIO, "%s", saved);
}

/* An ETag without its quotes (servers differ in sending them).  @return its
 * length in out (S3_ETAG_MAX bytes). */
static size_t etag_bare(const char *etag, char *out)
{
	size_t n = strlen(etag);

	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		etag++;
		n -= 2;
	}
	memcpy(out, etag, n);
	out[n] = '\0';
	return n;
}

int s3_multipart_is_ours(unsigned attempts, const void *data, size_t len,
			 const char (*part_etags)[S3_ETAG_MAX], size_t nparts,
			 const struct s3_object_info *found)
{
	char have[S3_ETAG_MAX], bare[S3_ETAG_MAX], hex[33], want[S3_ETAG_MAX];
	uint8_t md[16], *mds;
	size_t i;
	int ours = 0;

	/* On the first attempt NoSuchUpload means the upload is gone (aborted,
	 * expired), and an object of that size is someone else's. */
	if (attempts < 2 || found->size != len)
		return 0;
	if (!found->etag[0])
		return 1; /* the size is all there is to compare */
	etag_bare(found->etag, have);
	/* S3's multipart ETag: the MD5 of the parts' binary MD5s (their ETags),
	 * then "-N". */
	mds = malloc(nparts ? nparts * 16 : 1);
	for (i = 0; mds && i < nparts; i++)
		if (etag_bare(part_etags[i], bare) != 32 || hex_parse(bare, mds + 16 * i, 16) < 0)
			break;
	if (mds && i == nparts && digest_md5(mds, nparts * 16, md) == 0) {
		hex_format(md, 16, hex);
		snprintf(want, sizeof(want), "%s-%zu", hex, nparts);
		ours = !strcasecmp(have, want);
	}
	free(mds);
	/* Servers that give a multipart object the MD5 of all of it (s3rver). */
	if (!ours && strlen(have) == 32 && digest_md5(data, len, md) == 0) {
		hex_format(md, 16, hex);
		ours = !strcasecmp(have, hex);
	}
	return ours;
}

static int complete_upload(struct multipart *m, int flags, const char *if_match, char *etag_out)
{
	struct buf body = BUF_INIT, reply = { .max = S3_SMALL_REPLY_MAX };
	char query[1100], line[256];
	struct s3_request rq = { .method = "POST", .key = m->key, .query = query, .out = &reply,
				 .body_may_hold_error = 1,
				 .content_type = "Content-Type: application/xml",
				 .if_none_match_any = !!(flags & S3_PUT_IF_NONE_MATCH),
				 .if_match = if_match };
	int r = 0;

	r = buf_append(&body, "<CompleteMultipartUpload>", 25);
	for (size_t i = 0; i < m->nparts && r == 0; i++) {
		/* ETags are quoted hex: escape the quotes for XML. */
		const char *e = m->etags[i];
		int n = snprintf(line, sizeof(line), "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
		r = buf_append(&body, line, (size_t)n);
		for (; *e && r == 0; e++)
			r = *e == '"' ? buf_append(&body, "&quot;", 6) :
			    *e == '&' ? buf_append(&body, "&amp;", 5) :
			    *e == '<' ? buf_append(&body, "&lt;", 4) : buf_append(&body, e, 1);
		if (r == 0)
			r = buf_append(&body, "</ETag></Part>", 14);
	}
	if (r == 0)
		r = buf_append(&body, "</CompleteMultipartUpload>", 26);
	if (r < 0) {
		buf_free(&body);
		return hb_err(r, "s3: building the part list of %s", m->key);
	}
	snprintf(query, sizeof(query), "uploadId=%s", m->upload_id_enc);
	rq.body = body.data;
	rq.body_len = body.len;
	r = s3_request_run(m->c, &rq);
	if (r == -ENOENT) {
		/* NoSuchUpload after a retry: an earlier completion may have gone
		 * through with its answer lost.  The object says whether that is
		 * so: not its size alone, which any other object may share. */
		struct s3_object_info info;
		char saved[S3_MSG_BYTES];
		hb_err_save(saved, sizeof(saved));
		if (rq.attempts > 1 && s3_head(m->c, m->key, &info) == 0 &&
		    s3_multipart_is_ours(rq.attempts, m->data, m->len,
					 (const char(*)[S3_ETAG_MAX])m->etags, m->nparts, &info)) {
			if (etag_out)
				snprintf(etag_out, S3_ETAG_MAX, "%s", info.etag);
			buf_free(&body);
			buf_free(&reply);
			return 0;
		}
		r = hb_err(-EIO, "%s", saved);
	}
	if (r == 0 && !memmem(reply.data, reply.len, "CompleteMultipartUploadResult", 29))
		r = hb_err(-EBADMSG, "s3: completing the upload of %s: unexpected reply", m->key);
	if (r == 0 && etag_out) {
		const char *v;
		size_t vlen;
		etag_out[0] = '\0';
		if (s3_xml_find((const char *)reply.data, (const char *)reply.data + reply.len, "ETag",
				&v, &vlen))
			s3_xml_text(v, vlen, etag_out, S3_ETAG_MAX);
	}
	buf_free(&body);
	buf_free(&reply);
	return r;
}

int s3_put_multipart(struct s3_client *c, const char *key, const void *data, size_t len,
		     int flags, const char *if_match, char *etag_out)
{
	struct multipart m = { .c = c, .key = key, .data = data, .len = len,
			       .part_bytes = c->cfg.part_bytes };
	struct buf reply = { .max = S3_SMALL_REPLY_MAX };
	struct s3_request rq = { .method = "POST", .key = key, .query = "uploads=",
				 .out = &reply, .body_may_hold_error = 1 };
	char upload_id[512];
	const char *v;
	size_t vlen;
	int *results = NULL, r;

	/* At most 10000 parts: grow the part size (in whole MiB) to fit. */
	if ((len + m.part_bytes - 1) / m.part_bytes > S3_MAX_PARTS)
		m.part_bytes = ((len / S3_MAX_PARTS >> 20) + 1) << 20;
	m.nparts = (len + m.part_bytes - 1) / m.part_bytes;
	if ((r = s3_request_run(c, &rq)) < 0)
		goto out;
	if (!s3_xml_find((const char *)reply.data, (const char *)reply.data + reply.len, "UploadId",
			 &v, &vlen) ||
	    s3_xml_text(v, vlen, upload_id, sizeof(upload_id)) <= 0 ||
	    uri_encode(upload_id, 0, m.upload_id_enc, sizeof(m.upload_id_enc)) < 0) {
		r = hb_err(-EBADMSG, "s3: starting a multipart upload of %s: no valid UploadId",
			   key);
		goto out;
	}
	m.etags = calloc(m.nparts, sizeof(*m.etags));
	results = calloc(m.nparts, sizeof(*results));
	if (!m.etags || !results) {
		r = -ENOMEM;
		abort_upload(&m);
		goto out;
	}
	r = s3_parallel(c, m.nparts, upload_part, &m, 0, results);
	if (r == 0)
		r = complete_upload(&m, flags, if_match, etag_out);
	if (r < 0) {
		char saved[S3_MSG_BYTES];
		hb_err_save(saved, sizeof(saved));
		abort_upload(&m);
		hb_err(r, "%s", saved);
	}
out:
	free(m.etags);
	free(results);
	buf_free(&reply);
	if (r < 0)
		return hb_err_ctx(r, "multipart upload of %s/%s (%zu bytes)", c->bucket, key, len);
	return 0;
}
