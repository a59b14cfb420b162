/* Manifests: encoding, validating decoder, lookups and the builder.
 *
 * Container (manifest.h):
 *   "HBSNAP01" | version:le32 | info_len:le32 | info JSON
 *   | body_raw_len:le64 | body_len:le64 | body (one zstd frame) | checksum:le64
 * checksum = XXH3-64 of every byte before it.  The total length must match
 * exactly; nothing may follow the checksum.
 *
 * Info JSON: an object with the keys "parent" (32 hex digits or absent),
 * "time", "time_nsec", "host", "source", "origin", "files", "dirs", "others",
 * "bytes", "chunks", "new_chunks", "new_bytes", "new_raw_bytes",
 * "duration_ms".  Missing keys read as 0 / ""; unknown keys are ignored so
 * that a later version can add some without breaking older readers.
 * "source" is for people: a path that is not UTF-8 is stored with each byte
 * >= 0x80 as "\xNN" (util/text.h); the parent of the next snapshot of the
 * same directory is found through a ref named from the raw bytes.
 *
 * Body (plain, after zstd; v = unsigned LEB128 varint, z = zigzag varint,
 * s = v length then that many bytes):
 *   count:v  entry[count]  hot_count:v  hot_id[hot_count] (16 bytes each)
 * entry:
 *   parent_delta:v   parent = previous entry's parent + delta (root: 0), so
 *                    parents can only be non-decreasing (breadth-first order)
 *   name:s
 *   mode:v uid:v gid:v flags:v size:v rdev:v
 *   mtime_sec:z mtime_nsec:v atime_sec:z atime_nsec:v ctime_sec:z ctime_nsec:v
 *   src_ino:v src_dev:v hardlink:v nlink:v
 *   content, by type:
 *     regular, MANIFEST_FLAG_INLINE:  data:s (exactly size bytes)
 *     regular otherwise:              nchunks:v, nchunks * (id:16 bytes, size:v)
 *     symlink:                        target:s (size bytes)
 *     directory, device, fifo, socket: nothing
 *   nxattrs:v, nxattrs * (name:s, value:s), names strictly increasing
 *
 * Hard links: every member of a group names the group's representative in
 * `hardlink` (the representative names itself).  Any non-directory may be
 * linked; all members have the representative's file type and size.  For
 * regular files the representative alone carries the content, the other
 * members none (no chunks, not inline); symlink members repeat the target
 * (it must be the same), device members the same rdev.
 *
 * The decoder makes one pass over the body, filling flat arrays (nodes,
 * chunks, xattr records) and one pool holding every name, symlink target,
 * inline content and xattr name/value, each NUL-terminated; the pool needs
 * at most as many bytes as the body since each string there is preceded by
 * at least one length byte.  Hard links, which may point forward, are checked
 * in a second pass over the nodes array.  The builder validates by running
 * the same body parser over what it is about to store.
 */
#include "snapshot/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#include "snapshot/index.h"
#include "snapshot/manifest-int.h"
#include "util/bigmem.h"
#include "util/error.h"
#include "util/text.h"

/* The smallest possible entry (a root-like directory): 19 one-byte varints. */
#define MIN_ENTRY_BYTES 19
#define MIN_CHUNK_BYTES (OID_BYTES + 1)
#define MIN_XATTR_BYTES 3
#define CHECKSUM_BYTES 8
#define LABEL_MAX 320 /* bytes of an entry's path quoted in a message */

struct xattr_rec {
	uint32_t name_off;
	uint32_t value_off;
	uint32_t value_len;
};

struct manifest {
	struct manifest_info info;
	uint32_t count;
	struct manifest_node *nodes;
	struct manifest_chunk *chunks;
	uint32_t nchunks, chunks_cap;
	struct xattr_rec *xattrs;
	uint32_t nxattrs, xattrs_cap;
	char *pool; /* pool[0] is the shared empty string */
	size_t pool_len, pool_cap;
	struct oid *hot;
	uint32_t nhot;
	/* Only from manifest_decode_reusable: the plain and the stored body. */
	uint8_t *raw_body, *zbody;
	size_t raw_len, zlen;
};

/* ---- small helpers ---------------------------------------------------- */

static int name_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* Why a directory entry name is unacceptable, or NULL if it is fine. */
static const char *name_problem(const void *name, size_t len)
{
	const char *s = name;

	if (len == 0)
		return "empty name";
	if (len > MANIFEST_NAME_MAX)
		return "name too long";
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return "invalid name";
	if (memchr(s, '/', len))
		return "invalid name (contains '/')";
	if (memchr(s, '\0', len))
		return "invalid name (contains NUL)";
	return NULL;
}

static bool mode_type_known(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		return true;
	default:
		return false;
	}
}

/* Append len bytes of s to out[*pos..size) with non-printable bytes, quotes
 * and backslashes escaped, so that a message stays one readable line. */
static void escape_append(char *out, size_t size, size_t *pos, const void *s, size_t len)
{
	const uint8_t *p = s;

	for (size_t i = 0; i < len && *pos + 5 < size; i++) {
		uint8_t c = p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
			out[(*pos)++] = (char)c;
		else if (c == '\n')
			*pos += (size_t)snprintf(out + *pos, size - *pos, "\\n");
		else
			*pos += (size_t)snprintf(out + *pos, size - *pos, "\\x%02x", c);
	}
	out[*pos] = '\0';
}

/* "dir/sub/name" for messages: the (already validated) path of `parent`,
 * then name.  parent == UINT32_MAX: name alone. */
static void entry_label(const struct manifest *m, uint32_t parent, const void *name, size_t len,
			char *out, size_t size)
{
	uint32_t chain[32];
	unsigned depth = 0;
	size_t pos = 0;

	out[0] = '\0';
	if (parent != UINT32_MAX && parent < m->count) {
		for (uint32_t p = parent; p != 0 && depth < 32; p = m->nodes[p].parent)
			chain[depth++] = p;
		if (depth == 32)
			escape_append(out, size, &pos, ".../", 4);
		while (depth) {
			const struct manifest_node *n = &m->nodes[chain[--depth]];

			escape_append(out, size, &pos, m->pool + n->name_off, n->name_len);
			escape_append(out, size, &pos, "/", 1);
		}
	}
	escape_append(out, size, &pos, name, len);
}

/* The reader's varints with an inline path for the one-byte case, which is
 * most fields of most entries (this loop is the whole cost of a load). */
static inline int rd_v(struct reader *r, uint64_t *v)
{
	if (r->p < r->end && *r->p < 0x80) {
		*v = *r->p++;
		return 0;
	}
	return reader_varint(r, v);
}

static inline int rd_v32(struct reader *r, uint32_t *v)
{
	if (r->p < r->end && *r->p < 0x80) {
		*v = *r->p++;
		return 0;
	}
	return reader_varint32(r, v);
}

/* ---- decoding ----------------------------------------------------------- */

/* Where the body parser is, for messages. */
struct entry_ctx {
	uint32_t index;
	uint32_t parent; /* UINT32_MAX until known and valid */
	const uint8_t *name;
	size_t name_len;
};

static int __attribute__((format(printf, 3, 4)))
bad_entry(const struct manifest *m, const struct entry_ctx *e, const char *fmt, ...)
{
	char label[LABEL_MAX], what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	entry_label(m, e->parent, e->name, e->name_len, label, sizeof(label));
	return hb_err(-EBADMSG, "manifest entry %" PRIu32 " ('%s'): %s", e->index, label, what);
}

static void *grow_array(void *arr, uint32_t *cap, uint32_t need, size_t elem, uint32_t max)
{
	uint64_t ncap = *cap ? *cap : 256;
	void *p;

	if (need <= *cap)
		return arr;
	while (ncap < need)
		ncap *= 2;
	if (ncap > max)
		ncap = max;
	if (ncap < need)
		return NULL;
	p = realloc(arr, (size_t)ncap * elem);
	if (p) {
		*cap = (uint32_t)ncap;
		bigmem_hint(p, (size_t)ncap * elem);
	}
	return p;
}

/* Copy len bytes into the pool with a NUL after them. */
static uint32_t pool_add(struct manifest *m, const void *s, size_t len)
{
	uint32_t off;

	if (len == 0)
		return 0;
	off = (uint32_t)m->pool_len;
	memcpy(m->pool + off, s, len);
	m->pool[off + len] = '\0';
	m->pool_len += len + 1;
	return off;
}

static int read_time(struct reader *r, int64_t *sec, uint32_t *nsec)
{
	uint64_t z;

	if (rd_v(r, &z) < 0 || rd_v32(r, nsec) < 0)
		return -EBADMSG;
	*sec = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
	return 0;
}

static int parse_chunks(struct manifest *m, struct reader *r, struct manifest_node *n,
			const struct entry_ctx *e)
{
	uint64_t sum = 0;
	uint32_t count;

	if (rd_v32(r, &count) < 0)
		return bad_entry(m, e, "truncated chunk list");
	if (count > MANIFEST_MAX_CHUNKS_PER_FILE || count > reader_left(r) / MIN_CHUNK_BYTES)
		return bad_entry(m, e, "chunk count %" PRIu32 " out of range", count);
	if (count > UINT32_MAX - m->nchunks)
		return bad_entry(m, e, "too many chunks");
	if (m->nchunks + count > m->chunks_cap) {
		void *p = grow_array(m->chunks, &m->chunks_cap, m->nchunks + count,
				     sizeof(*m->chunks), UINT32_MAX);
		if (!p)
			return hb_err(-ENOMEM, "manifest: out of memory for chunk lists");
		m->chunks = p;
	}
	n->first_chunk = m->nchunks;
	n->nchunks = count;
	for (uint32_t k = 0; k < count; k++) {
		struct manifest_chunk *c = &m->chunks[m->nchunks + k];
		const uint8_t *id;

		if (reader_bytes(r, OID_BYTES, &id) < 0 || rd_v32(r, &c->size) < 0)
			return bad_entry(m, e, "truncated chunk list");
		memcpy(c->id.b, id, OID_BYTES);
		if (c->size == 0)
			return bad_entry(m, e, "chunk %" PRIu32 " has size 0", k);
		sum += c->size;
	}
	m->nchunks += count;
	if (sum != n->size)
		return bad_entry(m, e, "chunk sizes sum to %" PRIu64 ", file size is %" PRIu64, sum,
				 n->size);
	return 0;
}

static int parse_xattrs(struct manifest *m, struct reader *r, struct manifest_node *n,
			const struct entry_ctx *e)
{
	uint32_t count;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;

	if (rd_v32(r, &count) < 0)
		return bad_entry(m, e, "truncated xattrs");
	if (count > MANIFEST_MAX_XATTRS_PER_ENTRY || count > reader_left(r) / MIN_XATTR_BYTES)
		return bad_entry(m, e, "xattr count %" PRIu32 " out of range", count);
	if (count > UINT32_MAX - m->nxattrs)
		return bad_entry(m, e, "too many xattrs");
	if (m->nxattrs + count > m->xattrs_cap) {
		void *p = grow_array(m->xattrs, &m->xattrs_cap, m->nxattrs + count,
				     sizeof(*m->xattrs), UINT32_MAX);
		if (!p)
			return hb_err(-ENOMEM, "manifest: out of memory for xattrs");
		m->xattrs = p;
	}
	n->first_xattr = m->nxattrs;
	n->nxattrs = count;
	for (uint32_t k = 0; k < count; k++) {
		struct xattr_rec *x = &m->xattrs[m->nxattrs + k];
		const uint8_t *name, *value;
		size_t name_len, value_len;

		if (reader_lenbytes(r, MANIFEST_XATTR_NAME_MAX, &name, &name_len) < 0)
			return bad_entry(m, e, "xattr %" PRIu32 ": bad or truncated name", k);
		if (name_len == 0 || memchr(name, '\0', name_len))
			return bad_entry(m, e, "xattr %" PRIu32 ": invalid name", k);
		if (prev && name_cmp(prev, prev_len, name, name_len) >= 0)
			return bad_entry(m, e, "xattr names unsorted or duplicate");
		if (reader_lenbytes(r, MANIFEST_MAX_XATTR_VALUE, &value, &value_len) < 0)
			return bad_entry(m, e, "xattr %" PRIu32 ": bad or truncated value", k);
		x->name_off = pool_add(m, name, name_len);
		x->value_off = pool_add(m, value, value_len);
		x->value_len = (uint32_t)value_len;
		prev = name;
		prev_len = name_len;
	}
	m->nxattrs += count;
	return 0;
}

static int parse_entry(struct manifest *m, struct reader *r, uint32_t i, uint32_t *prev_parent)
{
	struct manifest_node *n = &m->nodes[i];
	struct entry_ctx e = { .index = i, .parent = UINT32_MAX };
	uint64_t delta, parent, hardlink;
	uint32_t type;
	int rc;

	if (rd_v(r, &delta) < 0 || reader_lenbytes(r, SIZE_MAX, &e.name, &e.name_len) < 0)
		return bad_entry(m, &e, "truncated");
	parent = *prev_parent + delta;
	if (delta > UINT32_MAX || parent >= (i ? i : 1))
		return bad_entry(m, &e, "parent index %" PRIu64 " out of range", parent);
	if (i == 0) {
		if (e.name_len != 0)
			return bad_entry(m, &e, "the root must have an empty name");
	} else {
		const char *why = name_problem(e.name, e.name_len);

		e.parent = (uint32_t)parent;
		if (why)
			return bad_entry(m, &e, "%s", why);
		if (!S_ISDIR(m->nodes[parent].mode))
			return bad_entry(m, &e, "parent %" PRIu64 " is not a directory", parent);
		if (i > 1 && parent == m->nodes[i - 1].parent) {
			const struct manifest_node *prev = &m->nodes[i - 1];

			if (name_cmp(m->pool + prev->name_off, prev->name_len, e.name, e.name_len) >= 0)
				return bad_entry(m, &e, "siblings unsorted or duplicate");
		}
	}
	*prev_parent = (uint32_t)parent;
	n->parent = (uint32_t)parent;

	if (rd_v32(r, &n->mode) < 0 || rd_v32(r, &n->uid) < 0 ||
	    rd_v32(r, &n->gid) < 0 || rd_v32(r, &n->flags) < 0 ||
	    rd_v(r, &n->size) < 0 || rd_v(r, &n->rdev) < 0 ||
	    read_time(r, &n->mtime_sec, &n->mtime_nsec) < 0 ||
	    read_time(r, &n->atime_sec, &n->atime_nsec) < 0 ||
	    read_time(r, &n->ctime_sec, &n->ctime_nsec) < 0 ||
	    rd_v(r, &n->src_ino) < 0 || rd_v(r, &n->src_dev) < 0 ||
	    rd_v(r, &hardlink) < 0 || rd_v32(r, &n->nlink) < 0)
		return bad_entry(m, &e, "truncated");
	n->name_len = (uint32_t)e.name_len;
	n->name_off = pool_add(m, e.name, e.name_len);
	n->first_child = n->nchildren = 0;
	n->first_chunk = m->nchunks;
	n->nchunks = 0;
	n->first_xattr = m->nxattrs;
	n->nxattrs = 0;
	n->data_off = n->data_len = 0;

	type = n->mode & S_IFMT;
	if (!mode_type_known(n->mode) || (n->mode & ~(uint32_t)(S_IFMT | 07777)))
		return bad_entry(m, &e, "invalid mode 0%" PRIo32, n->mode);
	if (i == 0 && type != S_IFDIR)
		return bad_entry(m, &e, "the root is not a directory");
	if (n->flags & ~MANIFEST_FLAG_INLINE)
		return bad_entry(m, &e, "unknown flags 0x%" PRIx32, n->flags);
	if ((n->flags & MANIFEST_FLAG_INLINE) && type != S_IFREG)
		return bad_entry(m, &e, "inline content on a non-regular file");
	if (n->mtime_nsec >= 1000000000u || n->atime_nsec >= 1000000000u ||
	    n->ctime_nsec >= 1000000000u)
		return bad_entry(m, &e, "nanoseconds out of range");
	if (type != S_IFCHR && type != S_IFBLK && n->rdev != 0)
		return bad_entry(m, &e, "device number on a non-device");
	if (hardlink >= m->count)
		return bad_entry(m, &e, "hard link target %" PRIu64 " out of range", hardlink);
	n->hardlink = (uint32_t)hardlink;
	if (n->hardlink != i && type == S_IFDIR)
		return bad_entry(m, &e, "hard link on a directory");
	if (n->nlink == 0 || n->nlink > m->count + 1)
		return bad_entry(m, &e, "link count %" PRIu32 " out of range", n->nlink);

	if (type == S_IFREG && (n->flags & MANIFEST_FLAG_INLINE)) {
		const uint8_t *data;
		size_t len;

		if (n->hardlink != i)
			return bad_entry(m, &e, "inline content on a hard link");
		if (reader_lenbytes(r, MANIFEST_INLINE_MAX_BYTES, &data, &len) < 0)
			return bad_entry(m, &e, "bad or truncated inline content");
		if (len != n->size)
			return bad_entry(m, &e, "inline content is %zu bytes, size is %" PRIu64, len,
					 n->size);
		n->data_off = pool_add(m, data, len);
		n->data_len = (uint32_t)len;
	} else if (type == S_IFREG) {
		if (n->hardlink != i) {
			uint32_t count;

			/* members take their content from the representative */
			if (rd_v32(r, &count) < 0)
				return bad_entry(m, &e, "truncated chunk list");
			if (count)
				return bad_entry(m, &e, "chunks on a hard link");
		} else if ((rc = parse_chunks(m, r, n, &e)) < 0) {
			return rc;
		}
	} else if (type == S_IFLNK) {
		const uint8_t *data;
		size_t len;

		if (reader_lenbytes(r, MANIFEST_SYMLINK_MAX, &data, &len) < 0)
			return bad_entry(m, &e, "bad or truncated symlink target");
		if (len == 0 || memchr(data, '\0', len))
			return bad_entry(m, &e, "invalid symlink target");
		if (len != n->size)
			return bad_entry(m, &e, "symlink target is %zu bytes, size is %" PRIu64, len,
					 n->size);
		n->data_off = pool_add(m, data, len);
		n->data_len = (uint32_t)len;
	} else if (n->size != 0) {
		return bad_entry(m, &e, "size %" PRIu64 " on a file without content", n->size);
	}
	if ((rc = parse_xattrs(m, r, n, &e)) < 0)
		return rc;

	if (i > 0) {
		struct manifest_node *p = &m->nodes[parent];

		if (p->nchildren == 0)
			p->first_child = i;
		p->nchildren++;
	}
	return 0;
}

/* Hard links may point forward, so they are checked once all nodes exist:
 * each member names a representative of the same type, size (and target or
 * device) that names itself, and each member's link count is at least its
 * group's size. */
static int check_hardlinks(struct manifest *m)
{
	uint32_t *group = NULL;
	int rc = 0;

	for (uint32_t i = 0; i < m->count; i++) {
		const struct manifest_node *n = &m->nodes[i], *h;
		struct entry_ctx e = { .index = i, .parent = i ? n->parent : UINT32_MAX,
				       .name = (const uint8_t *)m->pool + n->name_off,
				       .name_len = n->name_len };

		if (n->hardlink == i)
			continue;
		h = &m->nodes[n->hardlink];
		if ((h->mode & S_IFMT) != (n->mode & S_IFMT) || h->hardlink != n->hardlink) {
			rc = bad_entry(m, &e, "hard link target %" PRIu32
					      " is not a file of the same type heading its group",
				       n->hardlink);
			goto out;
		}
		if (h->size != n->size || h->rdev != n->rdev ||
		    (S_ISLNK(n->mode) &&
		     memcmp(m->pool + h->data_off, m->pool + n->data_off, n->data_len) != 0)) {
			rc = bad_entry(m, &e, "size, target or device differs from its hard link"
					      " target %" PRIu32,
				       n->hardlink);
			goto out;
		}
		if (!group) {
			group = calloc(m->count, sizeof(*group));
			if (!group)
				return hb_err(-ENOMEM, "manifest: out of memory");
		}
		if (group[n->hardlink] == 0)
			group[n->hardlink] = 1;
		group[n->hardlink]++;
	}
	for (uint32_t i = 0; group && i < m->count; i++) {
		const struct manifest_node *n = &m->nodes[i];
		struct entry_ctx e = { .index = i, .parent = i ? n->parent : UINT32_MAX,
				       .name = (const uint8_t *)m->pool + n->name_off,
				       .name_len = n->name_len };

		if (n->nlink < group[n->hardlink]) {
			rc = bad_entry(m, &e, "link count %" PRIu32 " below its %" PRIu32
					      " hard links",
				       n->nlink, group[n->hardlink]);
			goto out;
		}
	}
out:
	free(group);
	return rc;
}

static int parse_body(struct manifest *m, const uint8_t *raw, size_t raw_len)
{
	struct reader r;
	uint64_t count;
	uint32_t prev_parent = 0, nhot;
	const uint8_t *hot;
	int rc;

	reader_init(&r, raw, raw_len);
	if (rd_v(&r, &count) < 0)
		return hb_err(-EBADMSG, "manifest: truncated body");
	if (count == 0)
		return hb_err(-EBADMSG, "manifest: no root entry");
	if (count > MANIFEST_MAX_ENTRIES || count > reader_left(&r) / MIN_ENTRY_BYTES)
		return hb_err(-EBADMSG, "manifest: entry count %" PRIu64 " out of range", count);
	m->count = (uint32_t)count;
	m->nodes = calloc(m->count, sizeof(*m->nodes));
	/* every string in the pool had a length byte or more in the body */
	m->pool_cap = raw_len + 1;
	m->pool = malloc(m->pool_cap);
	if (!m->nodes || !m->pool)
		return hb_err(-ENOMEM, "manifest: out of memory for %" PRIu64 " entries", count);
	bigmem_hint(m->nodes, m->count * sizeof(*m->nodes));
	bigmem_hint(m->pool, m->pool_cap);
	m->pool[0] = '\0';
	m->pool_len = 1;

	for (uint32_t i = 0; i < m->count; i++)
		if ((rc = parse_entry(m, &r, i, &prev_parent)) < 0)
			return rc;
	if ((rc = check_hardlinks(m)) < 0)
		return rc;

	if (rd_v32(&r, &nhot) < 0)
		return hb_err(-EBADMSG, "manifest: truncated hot list");
	if (nhot > MANIFEST_MAX_HOT || reader_left(&r) != (size_t)nhot * OID_BYTES)
		return hb_err(-EBADMSG, "manifest: hot list of %" PRIu32 " ids does not fill %zu bytes",
			      nhot, reader_left(&r));
	(void)reader_bytes(&r, (size_t)nhot * OID_BYTES, &hot);
	m->nhot = nhot;
	m->hot = malloc((size_t)nhot * OID_BYTES + 1);
	if (!m->hot)
		return hb_err(-ENOMEM, "manifest: out of memory");
	if (nhot)
		memcpy(m->hot, hot, (size_t)nhot * OID_BYTES);
	for (uint32_t k = 0; k < nhot; k++)
		if (oid_is_zero(&m->hot[k]))
			return hb_err(-EBADMSG, "manifest: hot list entry %" PRIu32 " is a hole", k);

	/* give back what the upper-bound allocations did not use */
	if (m->pool_len < m->pool_cap) {
		char *p = realloc(m->pool, m->pool_len);

		if (p) {
			m->pool = p;
			m->pool_cap = m->pool_len;
		}
	}
	return 0;
}

static struct manifest *manifest_alloc(void)
{
	struct manifest *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	/* never NULL, so that chunk and xattr pointers of empty lists are valid */
	m->chunks = malloc(sizeof(*m->chunks));
	m->xattrs = malloc(sizeof(*m->xattrs));
	m->chunks_cap = m->xattrs_cap = 1;
	if (!m->chunks || !m->xattrs) {
		manifest_free(m);
		return NULL;
	}
	return m;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->nodes);
	free(m->chunks);
	free(m->xattrs);
	free(m->pool);
	free(m->hot);
	free(m->raw_body);
	free(m->zbody);
	free(m);
}

int manifest_decode_body(const void *raw, size_t raw_len, struct manifest **out)
{
	struct manifest *m = manifest_alloc();
	int rc;

	*out = NULL;
	if (!m)
		return hb_err(-ENOMEM, "manifest: out of memory");
	if (raw_len > MANIFEST_MAX_BODY_BYTES) {
		manifest_free(m);
		return hb_err(-EBADMSG, "manifest: body too large");
	}
	rc = parse_body(m, raw, raw_len);
	if (rc < 0) {
		manifest_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* ---- info JSON ---------------------------------------------------------- */

static int json_get_u64(json_t *o, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(o, key);

	*out = 0;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return hb_err(-EBADMSG, "manifest info: \"%s\" is not a non-negative integer", key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int json_get_str(json_t *o, const char *key, char *out, size_t size)
{
	json_t *v = json_object_get(o, key);
	size_t len;

	out[0] = '\0';
	if (!v)
		return 0;
	if (!json_is_string(v))
		return hb_err(-EBADMSG, "manifest info: \"%s\" is not a string", key);
	len = json_string_length(v);
	if (len >= size || strlen(json_string_value(v)) != len)
		return hb_err(-EBADMSG, "manifest info: \"%s\" is too long or holds NUL", key);
	memcpy(out, json_string_value(v), len + 1);
	return 0;
}

static int info_from_json(const void *data, size_t len, struct manifest_info *info)
{
	json_error_t jerr;
	json_t *o, *v;
	uint64_t nsec;
	int rc = -EBADMSG;

	memset(info, 0, sizeof(*info));
	o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return hb_err(-EBADMSG, "manifest info: invalid JSON: %s", jerr.text);
	if (!json_is_object(o)) {
		hb_err(-EBADMSG, "manifest info: not a JSON object");
		goto out;
	}
	v = json_object_get(o, "parent");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || oid_parse(json_string_value(v), &info->parent) < 0) {
			hb_err(-EBADMSG, "manifest info: \"parent\" is not a snapshot id");
			goto out;
		}
		info->has_parent = true;
	}
	v = json_object_get(o, "time");
	if (v) {
		if (!json_is_integer(v)) {
			hb_err(-EBADMSG, "manifest info: \"time\" is not an integer");
			goto out;
		}
		info->time_sec = json_integer_value(v);
	}
	if (json_get_u64(o, "time_nsec", &nsec) < 0)
		goto out;
	if (nsec >= 1000000000u) {
		hb_err(-EBADMSG, "manifest info: \"time_nsec\" out of range");
		goto out;
	}
	info->time_nsec = (uint32_t)nsec;
	if (json_get_str(o, "host", info->host, sizeof(info->host)) < 0 ||
	    json_get_str(o, "source", info->source, sizeof(info->source)) < 0 ||
	    json_get_str(o, "origin", info->origin, sizeof(info->origin)) < 0 ||
	    json_get_u64(o, "files", &info->files) < 0 ||
	    json_get_u64(o, "dirs", &info->dirs) < 0 ||
	    json_get_u64(o, "others", &info->others) < 0 ||
	    json_get_u64(o, "bytes", &info->bytes) < 0 ||
	    json_get_u64(o, "chunks", &info->chunks) < 0 ||
	    json_get_u64(o, "new_chunks", &info->new_chunks) < 0 ||
	    json_get_u64(o, "new_bytes", &info->new_bytes) < 0 ||
	    json_get_u64(o, "new_raw_bytes", &info->new_raw_bytes) < 0 ||
	    json_get_u64(o, "duration_ms", &info->duration_ms) < 0)
		goto out;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

static int info_to_json(const struct manifest_info *info, char **out)
{
	static const char *const names[] = { "files", "bytes", "dirs", "others", "chunks",
					     "new_chunks", "new_bytes", "new_raw_bytes",
					     "duration_ms" };
	const uint64_t vals[] = { info->files, info->bytes, info->dirs, info->others,
				  info->chunks, info->new_chunks, info->new_bytes,
				  info->new_raw_bytes, info->duration_ms };
	char hex[OID_HEX_BYTES], source[sizeof(info->source)];
	json_t *o;
	int rc = -ENOMEM;

	_Static_assert(sizeof(names) / sizeof(names[0]) == sizeof(vals) / sizeof(vals[0]),
		       "one name per counter");
	*out = NULL;
	if (strnlen(info->host, sizeof(info->host)) == sizeof(info->host) ||
	    strnlen(info->source, sizeof(info->source)) == sizeof(info->source) ||
	    strnlen(info->origin, sizeof(info->origin)) == sizeof(info->origin))
		return hb_err(-EINVAL, "manifest info: unterminated string");
	if (info->time_nsec >= 1000000000u)
		return hb_err(-EINVAL, "manifest info: time_nsec out of range");
	o = json_object();
	if (!o)
		return hb_err(-ENOMEM, "manifest info: out of memory");
	if (info->has_parent &&
	    json_object_set_new(o, "parent", json_string(oid_format(&info->parent, hex))) < 0)
		goto out;
	if (json_object_set_new(o, "time", json_integer(info->time_sec)) < 0 ||
	    json_object_set_new(o, "time_nsec", json_integer(info->time_nsec)) < 0 ||
	    json_object_set_new(o, "host", json_string(info->host)) < 0 ||
	    /* display only (the parent is found through a ref named by the raw
	     * bytes): a path that is not UTF-8 is kept with \xNN escapes */
	    json_object_set_new(o, "source",
				json_string(text_for_json(info->source, source, sizeof(source)))) < 0 ||
	    json_object_set_new(o, "origin", json_string(info->origin)) < 0)
		goto out;
	for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
		if (vals[k] > INT64_MAX) {
			rc = hb_err(-EINVAL, "manifest info: %s out of range", names[k]);
			goto out;
		}
		if (json_object_set_new(o, names[k], json_integer((json_int_t)vals[k])) < 0)
			goto out;
	}
	*out = json_dumps(o, JSON_COMPACT);
	if (!*out)
		goto out; /* also: strings that are not UTF-8 */
	rc = 0;
out:
	json_decref(o);
	if (rc == -ENOMEM)
		rc = hb_err(-EINVAL, "manifest info: cannot encode (out of memory or not UTF-8)");
	return rc;
}

/* ---- container ---------------------------------------------------------- */

/* Check magic, version and info length.  @return 0, -EAGAIN (*need set),
 * -EBADMSG, -EPROTONOSUPPORT. */
static int check_header(const uint8_t *p, size_t len, uint32_t *info_len, size_t *need)
{
	uint32_t version;

	if (len < 8) {
		*need = MANIFEST_HEADER_BYTES;
		if (len && memcmp(p, MANIFEST_MAGIC, len))
			return hb_err(-EBADMSG, "not a hiberbox manifest (bad magic)");
		return -EAGAIN;
	}
	if (memcmp(p, MANIFEST_MAGIC, 8))
		return hb_err(-EBADMSG, "not a hiberbox manifest (bad magic)");
	if (len < MANIFEST_HEADER_BYTES) {
		*need = MANIFEST_HEADER_BYTES;
		return -EAGAIN;
	}
	version = get_le32(p + 8);
	if (version != MANIFEST_VERSION)
		return hb_err(-EPROTONOSUPPORT,
			      "manifest format version %" PRIu32 " is not supported by this hiberbox",
			      version);
	*info_len = get_le32(p + 12);
	if (*info_len > MANIFEST_MAX_INFO_BYTES)
		return hb_err(-EBADMSG, "manifest: info of %" PRIu32 " bytes is too large",
			      *info_len);
	*need = MANIFEST_HEADER_BYTES + (size_t)*info_len;
	return len < *need ? -EAGAIN : 0;
}

int manifest_decode_info(const void *data, size_t len, struct manifest_info *info, size_t *need)
{
	size_t dummy;
	uint32_t info_len;
	int rc;

	if (!need)
		need = &dummy;
	if (!data && len)
		return hb_err(-EINVAL, "manifest_decode_info: no data");
	rc = check_header(data, len, &info_len, need);
	if (rc < 0)
		return rc;
	return info_from_json((const uint8_t *)data + MANIFEST_HEADER_BYTES, info_len, info);
}

static int decode(const void *data, size_t len, bool keep, struct manifest **out)
{
	const uint8_t *p = data;
	struct manifest *m = NULL;
	struct manifest_info info;
	uint64_t raw_len, body_len;
	uint32_t info_len;
	size_t need, off, got;
	unsigned long long frame;
	uint8_t *raw = NULL;
	int rc;

	*out = NULL;
	if (!data && len)
		return hb_err(-EINVAL, "manifest_decode: no data");
	rc = check_header(p, len, &info_len, &need);
	if (rc == -EAGAIN)
		return hb_err(-EBADMSG, "manifest: truncated (%zu bytes)", len);
	if (rc < 0)
		return rc;
	off = MANIFEST_HEADER_BYTES + info_len;
	if (len - off < 16 + CHECKSUM_BYTES)
		return hb_err(-EBADMSG, "manifest: truncated (%zu bytes)", len);
	raw_len = get_le64(p + off);
	body_len = get_le64(p + off + 8);
	off += 16;
	if (body_len != len - off - CHECKSUM_BYTES)
		return hb_err(-EBADMSG, "manifest: body length %" PRIu64 " does not match the %zu bytes"
			      " read", body_len, len);
	if (XXH3_64bits(p, len - CHECKSUM_BYTES) != get_le64(p + len - CHECKSUM_BYTES))
		return hb_err(-EBADMSG, "manifest: checksum mismatch (corrupt or truncated)");
	if (raw_len > MANIFEST_MAX_BODY_BYTES)
		return hb_err(-EBADMSG, "manifest: body of %" PRIu64 " bytes is too large", raw_len);
	rc = info_from_json(p + MANIFEST_HEADER_BYTES, info_len, &info);
	if (rc < 0)
		return rc;

	frame = ZSTD_getFrameContentSize(p + off, (size_t)body_len);
	if (frame != raw_len)
		return hb_err(-EBADMSG, "manifest: compressed body does not declare %" PRIu64
			      " bytes", raw_len);
	raw = malloc(raw_len ? (size_t)raw_len : 1);
	if (!raw)
		return hb_err(-ENOMEM, "manifest: out of memory for a %" PRIu64 "-byte body",
			      raw_len);
	bigmem_hint(raw, (size_t)raw_len);
	got = ZSTD_decompress(raw, (size_t)raw_len, p + off, (size_t)body_len);
	if (ZSTD_isError(got) || got != raw_len) {
		rc = hb_err(-EBADMSG, "manifest: corrupt body (%s)",
			    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
		goto out;
	}
	rc = manifest_decode_body(raw, (size_t)raw_len, &m);
	if (rc < 0)
		goto out;
	m->info = info;
	if (keep) {
		m->zbody = malloc(body_len ? (size_t)body_len : 1);
		if (!m->zbody) {
			manifest_free(m);
			rc = hb_err(-ENOMEM, "manifest: out of memory");
			goto out;
		}
		memcpy(m->zbody, p + off, (size_t)body_len);
		m->zlen = (size_t)body_len;
		m->raw_body = raw;
		m->raw_len = (size_t)raw_len;
		raw = NULL;
	}
	*out = m;
out:
	free(raw);
	return rc;
}

int manifest_decode(const void *data, size_t len, struct manifest **out)
{
	return decode(data, len, false, out);
}

int manifest_decode_reusable(const void *data, size_t len, struct manifest **out)
{
	return decode(data, len, true, out);
}

/* The container around a body: compressed here from raw, or given already
 * compressed (zbody, zlen). */
static int wrap(uint32_t version, const struct manifest_info *info, const void *raw,
		size_t raw_len, const void *zbody, size_t zlen, struct buf *out)
{
	char *json = NULL;
	size_t json_len, bound, start = out->len;
	uint8_t hdr[MANIFEST_HEADER_BYTES], lens[16], sum[CHECKSUM_BYTES];
	int rc;

	rc = info_to_json(info, &json);
	if (rc < 0)
		return rc;
	json_len = strlen(json);
	if (json_len > MANIFEST_MAX_INFO_BYTES) {
		free(json);
		return hb_err(-EINVAL, "manifest info too large");
	}
	memcpy(hdr, MANIFEST_MAGIC, 8);
	put_le32(hdr + 8, version);
	put_le32(hdr + 12, (uint32_t)json_len);
	bound = zbody ? zlen : ZSTD_compressBound(raw_len);
	rc = buf_append(out, hdr, sizeof(hdr));
	if (rc == 0)
		rc = buf_append(out, json, json_len);
	free(json);
	if (rc == 0)
		rc = buf_reserve(out, 16 + bound + CHECKSUM_BYTES);
	if (rc < 0) {
		out->len = start;
		return hb_err(rc, "manifest: out of memory");
	}
	if (zbody)
		memcpy(out->data + out->len + 16, zbody, zlen);
	else
		zlen = ZSTD_compress(out->data + out->len + 16, bound, raw, raw_len,
				     MANIFEST_ZSTD_LEVEL);
	if (ZSTD_isError(zlen)) {
		out->len = start;
		return hb_err(-ENOMEM, "manifest: zstd: %s", ZSTD_getErrorName(zlen));
	}
	put_le64(lens, raw_len);
	put_le64(lens + 8, zlen);
	memcpy(out->data + out->len, lens, 16);
	out->len += 16 + zlen;
	put_le64(sum, XXH3_64bits(out->data + start, out->len - start));
	memcpy(out->data + out->len, sum, CHECKSUM_BYTES);
	out->len += CHECKSUM_BYTES;
	return 0;
}

int manifest_wrap_body(uint32_t version, const struct manifest_info *info, const void *raw,
		       size_t raw_len, struct buf *out)
{
	return wrap(version, info, raw, raw_len, NULL, 0, out);
}

/* ---- accessors and lookups ---------------------------------------------- */

const struct manifest_info *manifest_info(const struct manifest *m)
{
	return &m->info;
}

uint32_t manifest_count(const struct manifest *m)
{
	return m->count;
}

const struct manifest_node *manifest_node(const struct manifest *m, uint32_t i)
{
	return i < m->count ? &m->nodes[i] : NULL;
}

uint64_t manifest_file_bytes(const struct manifest *m, uint32_t block)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < m->count; i++) {
		const struct manifest_node *n = &m->nodes[i];

		if (n->hardlink == i && S_ISREG(n->mode))
			sum += (n->size + block - 1) / block * block;
	}
	return sum;
}

const char *manifest_name(const struct manifest *m, uint32_t i)
{
	return i < m->count ? m->pool + m->nodes[i].name_off : NULL;
}

const uint8_t *manifest_data(const struct manifest *m, uint32_t i)
{
	return i < m->count ? (const uint8_t *)m->pool + m->nodes[i].data_off : NULL;
}

const struct manifest_chunk *manifest_chunks(const struct manifest *m, uint32_t i)
{
	return i < m->count ? m->chunks + m->nodes[i].first_chunk : NULL;
}

void manifest_xattr(const struct manifest *m, uint32_t i, uint32_t k, struct manifest_xattr *out)
{
	const struct xattr_rec *x;

	if (i >= m->count || k >= m->nodes[i].nxattrs) {
		memset(out, 0, sizeof(*out));
		return;
	}
	x = &m->xattrs[m->nodes[i].first_xattr + k];
	out->name = m->pool + x->name_off;
	out->value = (const uint8_t *)m->pool + x->value_off;
	out->value_len = x->value_len;
}

int64_t manifest_lookup_child(const struct manifest *m, uint32_t dir, const char *name,
			      size_t len)
{
	const struct manifest_node *d;
	uint32_t lo, hi;

	if (dir >= m->count)
		return -ENOENT;
	d = &m->nodes[dir];
	if (!S_ISDIR(d->mode))
		return -ENOTDIR;
	if (len == 0 || len > MANIFEST_NAME_MAX)
		return -ENOENT;
	lo = d->first_child;
	hi = d->first_child + d->nchildren;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct manifest_node *c = &m->nodes[mid];
		int cmp = name_cmp(m->pool + c->name_off, c->name_len, name, len);

		if (cmp == 0)
			return mid;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int64_t manifest_lookup_path(const struct manifest *m, const char *path)
{
	uint32_t cur = 0;
	const char *p = path;

	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);

		if (len == 0 || (len == 1 && p[0] == '.')) {
			/* "a//b", "./a", trailing '/' */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			return hb_err(-EINVAL, "path '%s' contains '..'", path);
		} else {
			int64_t r = manifest_lookup_child(m, cur, p, len);

			if (r < 0)
				return r;
			cur = (uint32_t)r;
		}
		p = *end ? end + 1 : end;
	}
	return cur;
}

int manifest_path(const struct manifest *m, uint32_t i, char *out, size_t size)
{
	size_t total = 0, pos;

	if (i >= m->count)
		return -ENOENT;
	for (uint32_t p = i; p != 0; p = m->nodes[p].parent)
		total += m->nodes[p].name_len + (p != i);
	if (total >= size)
		return -ENAMETOOLONG;
	pos = total;
	out[pos] = '\0';
	for (uint32_t p = i; p != 0; p = m->nodes[p].parent) {
		const struct manifest_node *n = &m->nodes[p];

		if (p != i)
			out[--pos] = '/';
		pos -= n->name_len;
		memcpy(out + pos, m->pool + n->name_off, n->name_len);
	}
	return 0;
}

const struct oid *manifest_hot(const struct manifest *m, uint32_t *count)
{
	*count = m->nhot;
	return m->hot;
}

/* ---- builder ------------------------------------------------------------ */

struct builder_xattr {
	char *name; /* the value follows the name's NUL in the same allocation */
	const uint8_t *value;
	uint32_t value_len;
};

struct builder_entry {
	struct manifest_node n; /* name_off/name_len index the builder's name buffer */
	uint8_t *data;          /* inline content or symlink target (owned) */
	struct manifest_chunk *chunks;
	struct builder_xattr *xattrs;
	uint32_t nxattrs, xattrs_cap;
};

struct manifest_builder {
	struct builder_entry *e;
	uint32_t count, cap;
	struct buf names;
	struct oid *hot;
	uint32_t nhot;
	bool unchecked;
	const struct manifest *base; /* manifest_builder_set_base */
};

struct manifest_builder *manifest_builder_new(void)
{
	struct manifest_builder *b = calloc(1, sizeof(*b));

	if (b)
		b->names.max = (size_t)MANIFEST_MAX_BODY_BYTES;
	return b;
}

static void builder_entry_free(struct builder_entry *e)
{
	free(e->data);
	free(e->chunks);
	for (uint32_t k = 0; k < e->nxattrs; k++)
		free(e->xattrs[k].name);
	free(e->xattrs);
}

void manifest_builder_free(struct manifest_builder *b)
{
	if (!b)
		return;
	for (uint32_t i = 0; i < b->count; i++)
		builder_entry_free(&b->e[i]);
	free(b->e);
	buf_free(&b->names);
	free(b->hot);
	free(b);
}

void manifest_builder_set_unchecked(struct manifest_builder *b, bool unchecked)
{
	b->unchecked = unchecked;
}

void manifest_builder_set_base(struct manifest_builder *b, const struct manifest *base)
{
	b->base = base;
}

uint32_t manifest_builder_count(const struct manifest_builder *b)
{
	return b->count;
}

const struct manifest_chunk *manifest_builder_chunks(const struct manifest_builder *b, uint32_t i,
						     uint32_t *count)
{
	*count = i < b->count ? b->e[i].n.nchunks : 0;
	return *count ? b->e[i].chunks : NULL;
}

const char *manifest_builder_name(const struct manifest_builder *b, uint32_t i, size_t *len)
{
	*len = i < b->count ? b->e[i].n.name_len : 0;
	return *len ? (const char *)b->names.data + b->e[i].n.name_off : "";
}

static int builder_check_add(struct manifest_builder *b, const struct manifest_node *node,
			     const char *name, size_t name_len, size_t data_len)
{
	uint32_t i = b->count, type = node->mode & S_IFMT;

	if (i == 0) {
		if (!S_ISDIR(node->mode) || name_len != 0 || node->parent != 0)
			return hb_err(-EINVAL, "manifest builder: entry 0 must be the root directory"
				      " (empty name, parent 0)");
	} else {
		const char *why = name_problem(name, name_len);
		const struct builder_entry *prev = &b->e[i - 1];

		if (why)
			return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 " '%.*s': %s", i,
				      (int)(name_len > 255 ? 255 : name_len), name, why);
		if (node->parent >= i || !S_ISDIR(b->e[node->parent].n.mode))
			return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 " '%.*s': parent %"
				      PRIu32 " is not an earlier directory", i, (int)name_len, name,
				      node->parent);
		if (node->parent < prev->n.parent)
			return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 " '%.*s': not in"
				      " breadth-first order (parent %" PRIu32 " after %" PRIu32 ")",
				      i, (int)name_len, name, node->parent, prev->n.parent);
		if (i > 1 && node->parent == prev->n.parent &&
		    name_cmp(b->names.data + prev->n.name_off, prev->n.name_len, name,
			     name_len) >= 0)
			return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 " '%.*s': not after"
				      " its previous sibling in byte order", i, (int)name_len, name);
	}
	if (!mode_type_known(node->mode) || (node->mode & ~(uint32_t)(S_IFMT | 07777)))
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": invalid mode 0%" PRIo32,
			      i, node->mode);
	if (node->flags & ~MANIFEST_FLAG_INLINE)
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": unknown flags", i);
	if ((node->flags & MANIFEST_FLAG_INLINE) &&
	    (type != S_IFREG || data_len > MANIFEST_INLINE_MAX_BYTES))
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": inline content on a"
			      " non-regular file or over %d bytes", i, MANIFEST_INLINE_MAX_BYTES);
	if (type == S_IFLNK && (data_len == 0 || data_len > MANIFEST_SYMLINK_MAX))
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": symlink target of %zu"
			      " bytes", i, data_len);
	if (type != S_IFLNK && !(node->flags & MANIFEST_FLAG_INLINE) && data_len)
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": data on an entry"
			      " that holds none", i);
	return 0;
}

int64_t manifest_builder_add(struct manifest_builder *b, const struct manifest_node *node,
			     const char *name, size_t name_len, const void *data, size_t data_len)
{
	struct builder_entry *e;
	uint32_t type = node->mode & S_IFMT;
	int rc;

	if (b->count >= MANIFEST_MAX_ENTRIES)
		return hb_err(-EINVAL, "manifest builder: more than %u entries", MANIFEST_MAX_ENTRIES);
	if (!b->unchecked) {
		if (type == S_IFLNK && data && memchr(data, '\0', data_len))
			return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": symlink target"
				      " contains NUL", b->count);
		rc = builder_check_add(b, node, name, name_len, data_len);
		if (rc < 0)
			return rc;
	}
	if (name_len > UINT32_MAX || data_len > UINT32_MAX)
		return hb_err(-EINVAL, "manifest builder: name or data too long");
	if (b->count == b->cap) {
		uint32_t ncap = b->cap ? b->cap * 2 : 1024;
		void *p = realloc(b->e, (size_t)ncap * sizeof(*b->e));

		if (!p)
			return hb_err(-ENOMEM, "manifest builder: out of memory");
		b->e = p;
		b->cap = ncap;
		bigmem_hint(p, (size_t)ncap * sizeof(*b->e));
	}
	e = &b->e[b->count];
	memset(e, 0, sizeof(*e));
	if (data_len) {
		e->data = malloc(data_len);
		if (!e->data)
			return hb_err(-ENOMEM, "manifest builder: out of memory");
		memcpy(e->data, data, data_len);
	}
	e->n.name_off = (uint32_t)b->names.len;
	if (buf_append(&b->names, name, name_len) < 0) {
		free(e->data);
		return hb_err(-ENOMEM, "manifest builder: out of memory for names");
	}
	e->n.mode = node->mode;
	e->n.uid = node->uid;
	e->n.gid = node->gid;
	e->n.flags = node->flags;
	e->n.size = node->size;
	e->n.rdev = node->rdev;
	e->n.mtime_sec = node->mtime_sec;
	e->n.mtime_nsec = node->mtime_nsec;
	e->n.atime_sec = node->atime_sec;
	e->n.atime_nsec = node->atime_nsec;
	e->n.ctime_sec = node->ctime_sec;
	e->n.ctime_nsec = node->ctime_nsec;
	e->n.src_ino = node->src_ino;
	e->n.src_dev = node->src_dev;
	e->n.parent = node->parent;
	e->n.hardlink = node->hardlink;
	e->n.nlink = node->nlink;
	e->n.name_len = (uint32_t)name_len;
	e->n.data_len = (uint32_t)data_len;
	/* size of a symlink or inline file is its data's: one truth, not two */
	if (!b->unchecked && (type == S_IFLNK || (node->flags & MANIFEST_FLAG_INLINE)))
		e->n.size = data_len;
	return b->count++;
}

int manifest_builder_set_chunks(struct manifest_builder *b, uint32_t i,
				const struct manifest_chunk *chunks, uint32_t count)
{
	struct builder_entry *e;
	struct manifest_chunk *copy = NULL;

	if (i >= b->count)
		return hb_err(-EINVAL, "manifest builder: no entry %" PRIu32, i);
	e = &b->e[i];
	if (!b->unchecked && (!S_ISREG(e->n.mode) || count > MANIFEST_MAX_CHUNKS_PER_FILE))
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": chunks on a non-regular"
			      " file or too many", i);
	if (count) {
		copy = malloc((size_t)count * sizeof(*copy));
		if (!copy)
			return hb_err(-ENOMEM, "manifest builder: out of memory");
		memcpy(copy, chunks, (size_t)count * sizeof(*copy));
	}
	free(e->chunks);
	e->chunks = copy;
	e->n.nchunks = count;
	if (e->n.flags & MANIFEST_FLAG_INLINE) {
		e->n.flags &= ~MANIFEST_FLAG_INLINE;
		free(e->data);
		e->data = NULL;
		e->n.data_len = 0;
	}
	return 0;
}

int manifest_builder_set_inline(struct manifest_builder *b, uint32_t i, const void *data,
				size_t len)
{
	struct builder_entry *e;
	uint8_t *copy = NULL;

	if (i >= b->count)
		return hb_err(-EINVAL, "manifest builder: no entry %" PRIu32, i);
	e = &b->e[i];
	if (!S_ISREG(e->n.mode) || len > MANIFEST_INLINE_MAX_BYTES)
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": inline content on a"
			      " non-regular file or over %d bytes", i, MANIFEST_INLINE_MAX_BYTES);
	if (len) {
		copy = malloc(len);
		if (!copy)
			return hb_err(-ENOMEM, "manifest builder: out of memory");
		memcpy(copy, data, len);
	}
	free(e->data);
	e->data = copy;
	e->n.data_len = (uint32_t)len;
	e->n.size = len;
	e->n.flags |= MANIFEST_FLAG_INLINE;
	free(e->chunks);
	e->chunks = NULL;
	e->n.nchunks = 0;
	return 0;
}

void manifest_builder_set_size(struct manifest_builder *b, uint32_t i, uint64_t size)
{
	if (i < b->count)
		b->e[i].n.size = size;
}

int manifest_builder_add_xattr(struct manifest_builder *b, uint32_t i, const char *name,
			       const void *value, size_t value_len)
{
	struct builder_entry *e;
	struct builder_xattr *x;
	size_t name_len = name ? strlen(name) : 0;

	if (i >= b->count)
		return hb_err(-EINVAL, "manifest builder: no entry %" PRIu32, i);
	e = &b->e[i];
	if (!b->unchecked && (name_len == 0 || name_len > MANIFEST_XATTR_NAME_MAX ||
			      value_len > MANIFEST_MAX_XATTR_VALUE ||
			      e->nxattrs >= MANIFEST_MAX_XATTRS_PER_ENTRY))
		return hb_err(-EINVAL, "manifest builder: entry %" PRIu32 ": xattr '%.64s' has a bad"
			      " name or size, or there are too many", i, name ? name : "");
	if (name_len > UINT32_MAX || value_len > UINT32_MAX)
		return hb_err(-EINVAL, "manifest builder: xattr too large");
	if (e->nxattrs == e->xattrs_cap) {
		uint32_t ncap = e->xattrs_cap ? e->xattrs_cap * 2 : 4;
		void *p = realloc(e->xattrs, (size_t)ncap * sizeof(*e->xattrs));

		if (!p)
			return hb_err(-ENOMEM, "manifest builder: out of memory");
		e->xattrs = p;
		e->xattrs_cap = ncap;
	}
	x = &e->xattrs[e->nxattrs];
	x->name = malloc(name_len + 1 + value_len + 1);
	if (!x->name)
		return hb_err(-ENOMEM, "manifest builder: out of memory");
	memcpy(x->name, name, name_len + 1);
	x->value = (uint8_t *)x->name + name_len + 1;
	if (value_len)
		memcpy((uint8_t *)x->value, value, value_len);
	x->value_len = (uint32_t)value_len;
	e->nxattrs++;
	return 0;
}

int manifest_builder_set_hot(struct manifest_builder *b, const struct oid *ids, uint32_t count)
{
	struct oid *copy = NULL;

	if (count > MANIFEST_MAX_HOT && !b->unchecked)
		return hb_err(-EINVAL, "manifest builder: hot list of %" PRIu32 " ids is too long",
			      count);
	if (count) {
		copy = malloc((size_t)count * sizeof(*copy));
		if (!copy)
			return hb_err(-ENOMEM, "manifest builder: out of memory");
		memcpy(copy, ids, (size_t)count * sizeof(*copy));
	}
	free(b->hot);
	b->hot = copy;
	b->nhot = count;
	return 0;
}

static int xattr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct builder_xattr *)a)->name,
		      ((const struct builder_xattr *)b)->name);
}

static int append_time(struct buf *o, int64_t sec, uint32_t nsec)
{
	uint64_t z = ((uint64_t)sec << 1) ^ (uint64_t)(sec >> 63);
	int rc = buf_append_varint(o, z);

	return rc < 0 ? rc : buf_append_varint(o, nsec);
}

static int encode_entry(struct manifest_builder *b, uint32_t i, uint32_t *prev_parent,
			struct buf *o)
{
	struct builder_entry *e = &b->e[i];
	const struct manifest_node *n = &e->n;
	uint32_t type = n->mode & S_IFMT;
	int rc = 0;

	/* wraps for out-of-order parents in unchecked mode, which the decoder refuses */
	rc |= buf_append_varint(o, (uint32_t)(n->parent - *prev_parent));
	*prev_parent = n->parent;
	rc |= buf_append_bytes(o, b->names.data + n->name_off, n->name_len);
	rc |= buf_append_varint(o, n->mode);
	rc |= buf_append_varint(o, n->uid);
	rc |= buf_append_varint(o, n->gid);
	rc |= buf_append_varint(o, n->flags);
	rc |= buf_append_varint(o, n->size);
	rc |= buf_append_varint(o, n->rdev);
	rc |= append_time(o, n->mtime_sec, n->mtime_nsec);
	rc |= append_time(o, n->atime_sec, n->atime_nsec);
	rc |= append_time(o, n->ctime_sec, n->ctime_nsec);
	rc |= buf_append_varint(o, n->src_ino);
	rc |= buf_append_varint(o, n->src_dev);
	rc |= buf_append_varint(o, n->hardlink);
	rc |= buf_append_varint(o, n->nlink);
	if ((type == S_IFREG && (n->flags & MANIFEST_FLAG_INLINE)) || type == S_IFLNK) {
		rc |= buf_append_bytes(o, e->data, n->data_len);
	} else if (type == S_IFREG) {
		rc |= buf_append_varint(o, n->nchunks);
		for (uint32_t k = 0; k < n->nchunks; k++) {
			rc |= buf_append(o, e->chunks[k].id.b, OID_BYTES);
			rc |= buf_append_varint(o, e->chunks[k].size);
		}
	}
	if (!b->unchecked && e->nxattrs > 1)
		qsort(e->xattrs, e->nxattrs, sizeof(*e->xattrs), xattr_cmp);
	rc |= buf_append_varint(o, e->nxattrs);
	for (uint32_t k = 0; k < e->nxattrs; k++) {
		rc |= buf_append_bytes(o, e->xattrs[k].name, strlen(e->xattrs[k].name));
		rc |= buf_append_bytes(o, e->xattrs[k].value, e->xattrs[k].value_len);
	}
	return rc ? -ENOMEM : 0;
}

/* Keep in the hot list only chunks the snapshot's files name: a mount of it
 * can read no others (a mount's list also holds chunks of files deleted since,
 * which a gc may then take), and prefetching them would be wasted. */
static int hot_keep_referenced(struct manifest_builder *b)
{
	struct chunk_index *named = chunk_index_new();
	struct index_entry e = { 0 };
	uint32_t kept = 0;
	int rc = named ? 0 : -ENOMEM;

	for (uint32_t i = 0; i < b->count && rc == 0; i++)
		for (uint32_t k = 0; b->e[i].chunks && k < b->e[i].n.nchunks && rc == 0; k++) {
			e.chunk = b->e[i].chunks[k].id;
			rc = chunk_index_add(named, &e) < 0 ? -ENOMEM : 0; /* 1: new, 0: known */
		}
	for (uint32_t h = 0; h < b->nhot && rc == 0; h++)
		if (!oid_is_zero(&b->hot[h]) && chunk_index_lookup(named, &b->hot[h], NULL) == 1)
			b->hot[kept++] = b->hot[h];
	chunk_index_free(named);
	if (rc < 0)
		return hb_err(rc, "manifest builder: out of memory");
	b->nhot = kept;
	return 0;
}

int manifest_builder_encode_body(struct manifest_builder *b, struct buf *raw)
{
	uint32_t prev_parent = 0;
	int rc;

	if (b->nhot && !b->unchecked && (rc = hot_keep_referenced(b)) < 0)
		return rc;
	raw->max = MANIFEST_MAX_BODY_BYTES;
	rc = buf_append_varint(raw, b->count);
	for (uint32_t i = 0; rc == 0 && i < b->count; i++)
		rc = encode_entry(b, i, &prev_parent, raw);
	if (rc == 0)
		rc = buf_append_varint(raw, b->nhot);
	if (rc == 0 && b->nhot)
		rc = buf_append(raw, b->hot, (size_t)b->nhot * OID_BYTES);
	if (rc < 0)
		return hb_err(-ENOMEM, "manifest builder: out of memory or body over %u bytes",
			      MANIFEST_MAX_BODY_BYTES);
	return 0;
}

/* Is raw the base manifest's body, byte for byte? */
static bool same_as_base(const struct manifest_builder *b, const struct buf *raw)
{
	const struct manifest *m = b->base;

	return m && m->raw_body && m->raw_len == raw->len &&
	       memcmp(m->raw_body, raw->data, raw->len) == 0;
}

int manifest_builder_encode(struct manifest_builder *b, const struct manifest_info *info,
			    struct buf *out)
{
	struct buf raw = BUF_INIT;
	int rc;

	rc = manifest_builder_encode_body(b, &raw);
	if (rc < 0)
		goto out;
	/* An unchanged tree: the base's body was validated when it was decoded,
	 * and compressing the same bytes again would give the same frame. */
	if (same_as_base(b, &raw)) {
		rc = wrap(MANIFEST_VERSION, info, NULL, raw.len, b->base->zbody, b->base->zlen, out);
		goto out;
	}
	if (!b->unchecked) {
		struct manifest *m;

		/* the decoder's own checks, so nothing is stored that cannot be read */
		rc = manifest_decode_body(raw.data, raw.len, &m);
		if (rc == -EBADMSG)
			rc = hb_err_ctx(-EINVAL, "manifest builder");
		if (rc < 0)
			goto out;
		manifest_free(m);
	}
	rc = manifest_wrap_body(MANIFEST_VERSION, info, raw.data, raw.len, out);
out:
	buf_free(&raw);
	return rc;
}
