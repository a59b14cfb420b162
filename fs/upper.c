/* The upper directory: everything written on a mount, self-describing so that
 * a remount after a crash or SIGKILL recovers it.
 *
 *   upper/meta          "hiberbox-upper 1", the mounted snapshot id, the last
 *                       commit id (text, replaced atomically)
 *   upper/journal       append-only records of namespace and metadata changes
 *   upper/data/<ino>    the content of every regular file created or copied
 *                       up, named by its inode number (16 hex digits); its
 *                       size and mtime are the file's
 *
 * A journal record is "HBJ1" | payload_len:u32 | XXH3-64(payload):u64 |
 * payload; the payload is a sequence of operations applied together:
 *   1 INODE  ino mode uid gid rdev flags size atime mtime ctime target
 *            [nxattrs (name value)*]  -- the metadata of a node; with
 *                                        NODE_XATTR_OWN in flags, all its
 *                                        xattrs (else they stay as they are)
 *   2 DIRENT parent name child       -- set a name (child 0: remove it)
 *   3 XATTR  ino name present [value] -- set one xattr (present 1) or
 *                                        remove it (0); the node's lower
 *                                        xattrs are its own from then on
 * A rename is one record with two DIRENTs, so it is replayed whole or not at
 * all.  An xattr change is an XATTR with its node's INODE (the ctime): a
 * node's whole set went into every record of it before XATTR existed, which
 * made n small xattrs cost O(n^2) journal bytes; binaries of then refuse a
 * journal with XATTRs (an invalid record), and read theirs as before.
 *
 * The journal is compacted while the mount lives (compact_run): once it is
 * more than twice the length of the last compaction's and above a floor, a
 * thread writes the live state (what differs from the lower manifest) to
 * journal.new, syncs it and renames it over the journal; a crash leaves one
 * or the other, each whole.
 *
 * Records are written with one write() each under the tree lock, which the
 * kernel completes even if the process is killed right after; a torn tail
 * (power loss) fails its checksum and is cut off on the next mount.  An
 * append that fails part way (ENOSPC, EIO) is cut off at once: a record
 * after it would be lost with it at replay.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "fs/fs-int.h"
#include "snapshot/testhook.h"
#include "util/error.h"
#include "util/fileio.h"

#define JOURNAL_MAGIC "HBJ1"
#define JOURNAL_HEADER_BYTES 16
#define JOURNAL_MAX_BYTES ((size_t)8 << 30)
#define META_MAX_BYTES 4096
/* Precreated data files: refilled in batches of PRE_BATCH when fewer than
 * PRE_LOW are ready. */
#define PRE_BATCH 32
#define PRE_LOW 64
#define PRE_CAP (PRE_LOW + PRE_BATCH)

/* Compaction: not below this length (HIBERBOX_FS_TEST_COMPACT_BYTES sets
 * another, for tests), and the live state written as records of about
 * this size (a record is replayed whole: its size is what a replay holds). */
#define COMPACT_MIN_BYTES ((uint64_t)1 << 20)
#define COMPACT_RECORD_BYTES ((size_t)1 << 20)
#define COMPACT_PREFAULT_MAX_BYTES ((size_t)64 << 20)
#define COMPACT_PREFETCH_ENTS 8
#define JOURNAL_NEW "journal.new"

enum { OP_INODE = 1, OP_DIRENT = 2, OP_XATTR = 3 };

static int precreate_start(struct hbfs *fs);
static void precreate_stop(struct hbfs *fs);
static void journal_appended(struct hbfs *fs, const struct buf *rec);

/* Everything but lock, wake, want, asked_bytes and stop is under the tree
 * lock; those are under lock. */
struct journal {
	int fd;
	uint64_t bytes;  /* end of the last whole record */
	bool broken;     /* a failed append could not be cut off: no more records */
	/* Compaction: the length after the last one (the live state's, then)
	 * and the floor; while one writes journal.new, the records appended
	 * since its snapshot of the state (tail), which go in after it. */
	uint64_t compacted_bytes, min_bytes;
	bool asked;      /* the thread was woken and has not taken its snapshot */
	uint64_t asked_bytes; /* the length when asked: its state is about that at most */
	bool copying;
	bool tail_failed; /* out of memory for the tail: that compaction is off */
	struct buf tail;
	uint64_t syncs;  /* upper_sync calls begun (atomic; no lock) */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool want, stop, running;
	pthread_t thread;
};

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Record building never fails half way in a way that matters: a failed
 * append leaves b->data short and jrec_commit refuses it (err flag in max). */
static void put_bytes(struct buf *b, const void *p, size_t len)
{
	if (buf_append_bytes(b, p, len) < 0)
		b->max = 1; /* poison: later appends fail too and commit sees len > max */
}

/* Room for len more bytes at the end of b (b->len is the caller's to
 * advance), or NULL with b poisoned.  Fields are encoded straight into it:
 * a compaction writes ~15 of them per node while changes wait. */
static uint8_t *room(struct buf *b, size_t len)
{
	if (buf_reserve(b, len) < 0) {
		b->max = 1;
		return NULL;
	}
	return b->data + b->len;
}

static void jrec_inode_as(struct jrec *r, const struct node *n, bool xattrs)
{
	struct buf *b = &r->b;
	uint32_t flags = n->flags & (NODE_UPPER_DATA | (xattrs ? NODE_XATTR_OWN : 0));
	uint8_t *p = room(b, 1 + 13 * VARINT_MAX_BYTES), *q = p;

	if (!p)
		return;
	*q++ = OP_INODE;
	q = varint_put(q, n->ino);
	q = varint_put(q, n->mode);
	q = varint_put(q, n->uid);
	q = varint_put(q, n->gid);
	q = varint_put(q, n->rdev);
	q = varint_put(q, flags);
	q = varint_put(q, n->size);
	q = varint_put(q, zigzag(n->atime.tv_sec));
	q = varint_put(q, (uint64_t)n->atime.tv_nsec);
	q = varint_put(q, zigzag(n->mtime.tv_sec));
	q = varint_put(q, (uint64_t)n->mtime.tv_nsec);
	q = varint_put(q, zigzag(n->ctime.tv_sec));
	q = varint_put(q, (uint64_t)n->ctime.tv_nsec);
	b->len += (size_t)(q - p);
	put_bytes(b, n->target ? n->target : "", n->target ? strlen(n->target) : 0);
	if (flags & NODE_XATTR_OWN) {
		if ((p = room(b, VARINT_MAX_BYTES)))
			b->len += (size_t)(varint_put(p, n->nxattrs) - p);
		for (uint32_t k = 0; k < n->nxattrs; k++) {
			put_bytes(b, n->xattrs[k].name, strlen(n->xattrs[k].name));
			put_bytes(b, n->xattrs[k].value, n->xattrs[k].len);
		}
	}
}

void jrec_inode(struct hbfs *fs, struct jrec *r, const struct node *n)
{
	(void)fs;
	jrec_inode_as(r, n, false);
}

void jrec_inode_whole(struct hbfs *fs, struct jrec *r, const struct node *n)
{
	(void)fs;
	jrec_inode_as(r, n, true);
}

void jrec_xattr(struct jrec *r, const struct node *n, const char *name)
{
	const struct xattr *x = node_xattr_find(n, name);
	struct buf *b = &r->b;
	uint8_t *p = room(b, 1 + VARINT_MAX_BYTES), *q = p;

	if (!p)
		return;
	*q++ = OP_XATTR;
	b->len += (size_t)(varint_put(q, n->ino) - p);
	put_bytes(b, name, strlen(name));
	if ((p = room(b, 1))) {
		*p = x != NULL;
		b->len++;
	}
	if (x)
		put_bytes(b, x->value, x->len);
}

void jrec_dirent(struct jrec *r, uint64_t parent, const char *name, uint64_t child)
{
	struct buf *b = &r->b;
	size_t nlen = strlen(name);
	uint8_t *p = room(b, 1 + 3 * VARINT_MAX_BYTES + nlen), *q = p;

	if (!p)
		return;
	*q++ = OP_DIRENT;
	q = varint_put(q, parent);
	q = varint_put(q, nlen);
	memcpy(q, name, nlen);
	q = varint_put(q + nlen, child);
	b->len += (size_t)(q - p);
}

/* The header of a record whose len bytes of payload follow it at h. */
static void record_header(uint8_t *h, size_t len)
{
	memcpy(h, JOURNAL_MAGIC, 4);
	put_le32(h + 4, (uint32_t)len);
	put_le64(h + 8, XXH3_64bits(h + JOURNAL_HEADER_BYTES, len));
}

/* The payload p framed as a record onto out. */
static int frame_record(struct buf *out, const struct buf *p)
{
	int r = buf_reserve(out, JOURNAL_HEADER_BYTES + p->len);

	if (r < 0)
		return r;
	if (p->len)
		memcpy(out->data + out->len + JOURNAL_HEADER_BYTES, p->data, p->len);
	record_header(out->data + out->len, p->len);
	out->len += JOURNAL_HEADER_BYTES + p->len;
	return 0;
}

int jrec_commit(struct hbfs *fs, struct jrec *r)
{
	struct buf rec = BUF_INIT;
	int ret;

	if (fs->journal->broken) {
		buf_free(&r->b);
		return -EIO;
	}
	if (r->b.max == 1 || r->b.len > HBFS_JOURNAL_MAX_RECORD) {
		buf_free(&r->b);
		return hb_err(-ENOMEM, "journal record too large");
	}
	ret = quota_journal_check(fs, JOURNAL_HEADER_BYTES + r->b.len, r->frees);
	if (ret < 0) {
		buf_free(&r->b);
		return ret;
	}
	ret = frame_record(&rec, &r->b);
	if (!ret)
		ret = write_all(fs->journal->fd, rec.data, rec.len);
	if (ret < 0) {
		hb_err(ret, "appending to the journal of %s", fs->upper_path);
		/* Part of the record may be in (ENOSPC, EIO): records appended
		 * after it would sit behind a bad checksum, which replay takes
		 * for a torn tail and cuts off with them.  If the part cannot
		 * be cut off, no later change may be acknowledged. */
		if (ftruncate(fs->journal->fd, (off_t)fs->journal->bytes) < 0) {
			hb_err_sys(-errno, "cutting a failed append off %s/journal: "
				   "refusing all changes from now on", fs->upper_path);
			fs->journal->broken = true;
		}
	} else {
		fs->journal->bytes += rec.len;
		quota_journal_done(fs, rec.len);
		journal_appended(fs, &rec);
	}
	buf_free(&rec);
	buf_free(&r->b);
	return ret;
}

static int meta_write(struct hbfs *fs)
{
	char text[256], base[OID_HEX_BYTES], last[OID_HEX_BYTES];
	int n;

	oid_format(&fs->upper_base, base);
	oid_format(&fs->last_id, last);
	n = snprintf(text, sizeof(text), "hiberbox-upper 1\nbase %s\nlast %s\n", base, last);
	return write_file_atomic(fs->upper_fd, "meta", text, (size_t)n, 0);
}

int upper_save_last(struct hbfs *fs)
{
	int r = meta_write(fs);

	return r < 0 ? hb_err_sys(r, "writing %s/meta", fs->upper_path) : 0;
}

static int meta_read(struct hbfs *fs, const struct oid *new_base)
{
	struct buf b = { .max = META_MAX_BYTES };
	char base[OID_HEX_BYTES] = "", last[OID_HEX_BYTES] = "";
	int r = read_file(fs->upper_fd, "meta", META_MAX_BYTES, &b);

	if (r == -ENOENT) {
		fs->meta_state = UPPER_META_NONE;
		if (!new_base)
			return 0;
		fs->upper_base = fs->last_id = *new_base;
		r = meta_write(fs);
		if (r < 0)
			return hb_err_sys(r, "writing %s/meta", fs->upper_path);
		fs->meta_state = UPPER_META_WRITTEN;
		return 0;
	}
	if (r < 0)
		return hb_err_sys(r, "reading %s/meta", fs->upper_path);
	if (buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return -ENOMEM;
	}
	if (sscanf((char *)b.data, "hiberbox-upper 1\nbase %32s\nlast %32s\n", base, last) != 2 ||
	    oid_parse(base, &fs->upper_base) < 0 || oid_parse(last, &fs->last_id) < 0) {
		buf_free(&b);
		return hb_err(-EBADMSG, "%s/meta is not a hiberbox upper directory", fs->upper_path);
	}
	buf_free(&b);
	fs->meta_state = UPPER_META_READ;
	return 0;
}

int upper_bind_base(struct hbfs *fs)
{
	char hex[OID_HEX_BYTES];
	int r;

	switch (fs->meta_state) {
	case UPPER_META_READ:
		if (oid_equal(&fs->upper_base, &fs->base_id))
			return 0;
		oid_format(&fs->upper_base, hex);
		return hb_err(-EINVAL, "upper directory %s belongs to snapshot %s, not this one",
			      fs->upper_path, hex);
	case UPPER_META_WRITTEN:
		if (oid_equal(&fs->upper_base, &fs->base_id))
			return 0;
		/* written for a full id that turned out to be a tag's name */
		/* fallthrough */
	default:
		fs->upper_base = fs->last_id = fs->base_id;
		r = meta_write(fs);
		if (r < 0)
			return hb_err_sys(r, "writing %s/meta", fs->upper_path);
		fs->meta_state = UPPER_META_WRITTEN;
		return 0;
	}
}

int upper_open(struct hbfs *fs, const struct oid *new_base)
{
	struct stat st;
	int r;

	r = mkdir_p(AT_FDCWD, fs->upper_path, 0700);
	if (r < 0)
		return hb_err_sys(r, "creating upper directory %s", fs->upper_path);
	fs->upper_fd = open(fs->upper_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->upper_fd < 0)
		return hb_err_sys(-errno, "opening upper directory %s", fs->upper_path);
	if (mkdirat(fs->upper_fd, "data", 0700) < 0 && errno != EEXIST)
		return hb_err_sys(-errno, "creating %s/data", fs->upper_path);
	fs->data_fd = openat(fs->upper_fd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->data_fd < 0)
		return hb_err_sys(-errno, "opening %s/data", fs->upper_path);
	fs->journal = calloc(1, sizeof(*fs->journal));
	if (!fs->journal)
		return -ENOMEM;
	fs->journal->fd = -1;
	pthread_mutex_init(&fs->journal->lock, NULL);
	pthread_cond_init(&fs->journal->wake, NULL);
	fs->journal->min_bytes = COMPACT_MIN_BYTES;
	if (getenv("HIBERBOX_FS_TEST_COMPACT_BYTES"))
		fs->journal->min_bytes = strtoull(getenv("HIBERBOX_FS_TEST_COMPACT_BYTES"), NULL, 10);
	for (;;) {
		struct stat named;

		fs->journal->fd = openat(fs->upper_fd, "journal",
					 O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fs->journal->fd < 0)
			return hb_err_sys(-errno, "opening %s/journal", fs->upper_path);
		/* One mount per upper directory. */
		if (flock(fs->journal->fd, LOCK_EX | LOCK_NB) < 0)
			return hb_err(-EBUSY, "upper directory %s is in use by another mount",
				      fs->upper_path);
		if (fstat(fs->journal->fd, &st) < 0)
			return hb_err_sys(-errno, "%s/journal", fs->upper_path);
		/* The file we locked may have been replaced by a compaction of
		 * the mount that held it since we opened it: the lock is the
		 * new file's. */
		if (fstatat(fs->upper_fd, "journal", &named, 0) == 0 &&
		    named.st_ino == st.st_ino && named.st_dev == st.st_dev)
			break;
		close(fs->journal->fd);
	}
	fs->journal_fd = fs->journal->fd;
	fs->journal->bytes = (uint64_t)st.st_size;
	/* a compaction killed before its rename: the journal is whole */
	if (unlinkat(fs->upper_fd, JOURNAL_NEW, 0) < 0 && errno != ENOENT)
		return hb_err_sys(-errno, "removing %s/" JOURNAL_NEW, fs->upper_path);
	return meta_read(fs, new_base);
}

static void compact_stop(struct hbfs *fs);

void upper_stop_threads(struct hbfs *fs)
{
	if (fs->data_fd >= 0)
		precreate_stop(fs);
	if (fs->journal)
		compact_stop(fs);
}

void upper_close(struct hbfs *fs)
{
	upper_stop_threads(fs);
	if (fs->journal) {
		if (fs->journal->fd >= 0)
			close(fs->journal->fd);
		buf_free(&fs->journal->tail);
		pthread_mutex_destroy(&fs->journal->lock);
		pthread_cond_destroy(&fs->journal->wake);
		free(fs->journal);
		fs->journal = NULL;
	}
	if (fs->data_fd >= 0)
		close(fs->data_fd);
	if (fs->upper_fd >= 0)
		close(fs->upper_fd);
	fs->data_fd = fs->upper_fd = -1;
}

static int replay_inode(struct hbfs *fs, struct reader *rd)
{
	uint64_t ino, mode, uid, gid, rdev, flags, size, t[6];
	const uint8_t *target;
	size_t tlen;
	struct node *n;
	int r;

	if ((r = reader_varint(rd, &ino)) < 0 || (r = reader_varint(rd, &mode)) < 0 ||
	    (r = reader_varint(rd, &uid)) < 0 || (r = reader_varint(rd, &gid)) < 0 ||
	    (r = reader_varint(rd, &rdev)) < 0 || (r = reader_varint(rd, &flags)) < 0 ||
	    (r = reader_varint(rd, &size)) < 0)
		return r;
	for (int i = 0; i < 6; i++)
		if ((r = reader_varint(rd, &t[i])) < 0)
			return r;
	r = reader_lenbytes(rd, HBFS_SYMLINK_MAX, &target, &tlen);
	if (r < 0)
		return r;
	if (!ino || mode > UINT32_MAX || uid > UINT32_MAX || gid > UINT32_MAX ||
	    t[1] >= 1000000000 || t[3] >= 1000000000 || t[5] >= 1000000000)
		return -EBADMSG;
	n = node_by_ino(fs, ino);
	if (n && (n->mode & S_IFMT) != (mode & S_IFMT))
		return -EBADMSG;
	if (!n) {
		if (ino < HBFS_UPPER_INO_BASE)
			return -EBADMSG;
		n = node_new_upper(fs, ino, (uint32_t)mode);
		if (!n)
			return -ENOMEM;
		n->flags &= ~NODE_DATA_DIRTY;
	}
	n->mode = (uint32_t)mode;
	n->uid = (uint32_t)uid;
	n->gid = (uint32_t)gid;
	n->rdev = rdev;
	n->size = size;
	n->atime = (struct timespec){ unzigzag(t[0]), (long)t[1] };
	n->mtime = (struct timespec){ unzigzag(t[2]), (long)t[3] };
	n->ctime = (struct timespec){ unzigzag(t[4]), (long)t[5] };
	n->flags |= NODE_META_JOURNALED | NODE_DATA_DIRTY;
	if ((flags & NODE_UPPER_DATA) && S_ISREG(n->mode))
		n->flags |= NODE_UPPER_DATA;
	if (tlen && S_ISLNK(n->mode)) {
		free(n->target);
		n->target = strndup((const char *)target, tlen);
		if (!n->target)
			return -ENOMEM;
	}
	if (flags & NODE_XATTR_OWN) {
		uint32_t nx;
		struct xattr *xs;

		if ((r = reader_varint32(rd, &nx)) < 0)
			return r;
		if (nx > HBFS_XATTR_LIST_MAX)
			return -EBADMSG;
		xs = calloc(nx ? nx : 1, sizeof(*xs));
		if (!xs)
			return -ENOMEM;
		for (uint32_t k = 0; k < nx; k++) {
			const uint8_t *name, *value;
			size_t nlen, vlen;

			r = reader_lenbytes(rd, 255, &name, &nlen);
			if (!r)
				r = reader_lenbytes(rd, MANIFEST_MAX_XATTR_VALUE, &value, &vlen);
			if (!r && !nlen)
				r = -EBADMSG;
			if (!r) {
				xs[k].name = strndup((const char *)name, nlen);
				xs[k].value = malloc(vlen ? vlen : 1);
				if (!xs[k].name || !xs[k].value)
					r = -ENOMEM;
				else
					memcpy(xs[k].value, value, vlen);
				xs[k].len = (uint32_t)vlen;
			}
			if (r < 0) {
				for (uint32_t j = 0; j <= k; j++) {
					free(xs[j].name);
					free(xs[j].value);
				}
				free(xs);
				return r;
			}
		}
		for (uint32_t k = 0; k < n->nxattrs; k++) {
			free(n->xattrs[k].name);
			free(n->xattrs[k].value);
		}
		free(n->xattrs);
		n->xattrs = xs;
		n->nxattrs = nx;
		n->flags |= NODE_XATTR_OWN;
	}
	return 0;
}

static int replay_dirent(struct hbfs *fs, struct reader *rd)
{
	uint64_t parent, child;
	const uint8_t *name;
	size_t nlen;
	char cname[MANIFEST_NAME_MAX + 1];
	struct node *d, *c = NULL;
	int r;

	if ((r = reader_varint(rd, &parent)) < 0 ||
	    (r = reader_lenbytes(rd, MANIFEST_NAME_MAX, &name, &nlen)) < 0 ||
	    (r = reader_varint(rd, &child)) < 0)
		return r;
	if (!nlen || memchr(name, '/', nlen) || memchr(name, 0, nlen))
		return -EBADMSG;
	memcpy(cname, name, nlen);
	cname[nlen] = 0;
	if (!strcmp(cname, ".") || !strcmp(cname, ".."))
		return -EBADMSG;
	d = node_by_ino(fs, parent);
	if (!d || !d->dir)
		return -EBADMSG;
	if (child) {
		c = node_by_ino(fs, child);
		if (!c || c == fs->root)
			return -EBADMSG;
	}
	return dir_set(fs, d, cname, c);
}

static int replay_xattr(struct hbfs *fs, struct reader *rd)
{
	uint64_t ino, present;
	const uint8_t *name, *value = NULL;
	size_t nlen, vlen = 0;
	char cname[256];
	struct node *n;
	struct xattr *x;
	uint8_t *copy;
	int r;

	if ((r = reader_varint(rd, &ino)) < 0 || (r = reader_lenbytes(rd, 255, &name, &nlen)) < 0 ||
	    (r = reader_varint(rd, &present)) < 0)
		return r;
	if (present > 1 || !nlen || memchr(name, 0, nlen))
		return -EBADMSG;
	if (present && (r = reader_lenbytes(rd, MANIFEST_MAX_XATTR_VALUE, &value, &vlen)) < 0)
		return r;
	memcpy(cname, name, nlen);
	cname[nlen] = 0;
	n = node_by_ino(fs, ino);
	if (!n || (n->lower < 0 && !(n->flags & NODE_XATTR_OWN)))
		return -EBADMSG;
	if ((r = node_xattrs_own(fs, n)) < 0)
		return r;
	x = node_xattr_find(n, cname);
	if (!present) {
		if (x) { /* as xattr_drop does it: the last one takes its place */
			free(x->name);
			free(x->value);
			*x = n->xattrs[--n->nxattrs];
		}
		return 0;
	}
	if (!x && n->nxattrs >= HBFS_XATTR_LIST_MAX)
		return -EBADMSG;
	copy = malloc(vlen ? vlen : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, value, vlen);
	if (!x)
		return node_xattr_add(n, cname, copy, (uint32_t)vlen) ? 0 : -ENOMEM;
	free(x->value);
	x->value = copy;
	x->len = (uint32_t)vlen;
	return 0;
}

static int replay_record(struct hbfs *fs, const uint8_t *p, size_t len)
{
	struct reader rd;
	int r = 0;

	reader_init(&rd, p, len);
	while (!r && reader_left(&rd)) {
		const uint8_t *op;

		r = reader_bytes(&rd, 1, &op);
		if (r < 0)
			break;
		if (*op == OP_INODE)
			r = replay_inode(fs, &rd);
		else if (*op == OP_DIRENT)
			r = replay_dirent(fs, &rd);
		else if (*op == OP_XATTR)
			r = replay_xattr(fs, &rd);
		else
			r = -EBADMSG;
	}
	return r;
}

/* After replay: sizes and mtimes of data files, dead nodes, orphans. */
static int replay_finish(struct hbfs *fs)
{
	struct node **all;
	uint64_t n = 0;
	DIR *dir;
	struct dirent *de;
	int dfd;

	all = malloc((fs->nnodes ? fs->nnodes : 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (uint64_t i = 0; i < fs->ino_hash_cap; i++)
		for (struct node *x = fs->ino_hash[i]; x; x = x->hash_next)
			all[n++] = x;
	for (uint64_t i = 0; i < n; i++) {
		struct node *x = all[i];

		if ((x->flags & NODE_UPPER_DATA) && x->nlink) {
			char name[32];
			struct stat st;

			upper_data_name(x, name);
			if (fstatat(fs->data_fd, name, &st, 0) == 0) {
				x->size = (uint64_t)st.st_size;
				quota_settle(fs, x, &st, true);
				/* written since its last record: the write set
				 * ctime too (after_write) */
				if (!timespec_equal(x->mtime, st.st_mtim))
					x->ctime = st.st_mtim;
				x->mtime = st.st_mtim;
			} else {
				/* Journal ahead of data (should not happen): keep
				 * an empty file rather than failing the mount. */
				int fd = openat(fs->data_fd, name, O_CREAT | O_WRONLY | O_CLOEXEC,
						0600);

				fprintf(stderr, "hiberbox-fs: data file of inode %" PRIu64
						" missing in %s; it is now empty\n",
					x->ino, fs->upper_path);
				if (fd >= 0)
					close(fd);
				x->size = 0;
			}
		}
		node_maybe_free(fs, x);
	}
	free(all);

	/* Data files no live node owns: interrupted copy-ups and files whose
	 * last name went away while the fs was killed with the file open. */
	dfd = dup(fs->data_fd);
	if (dfd < 0)
		return -errno;
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		char *end;
		unsigned long long ino;
		struct node *x;

		if (de->d_name[0] == '.')
			continue;
		ino = strtoull(de->d_name, &end, 16);
		x = *end ? NULL : node_by_ino(fs, ino);
		if (!x || !(x->flags & NODE_UPPER_DATA))
			unlinkat(fs->data_fd, de->d_name, 0);
	}
	closedir(dir);
	return 0;
}

/* Journal compaction.  The journal only grows: a sandbox that creates and
 * deletes files, or chmods one file over and over, makes it longer with
 * every change while what it describes stays small, and the mount's replay
 * and the upper limit (which counts the journal) pay for all of it.  Once
 * the journal is more than twice what the last compaction left (and above
 * the floor), a thread writes what the journal's replay comes to, the
 * nodes and entries that differ from the lower manifest, as a new journal:
 *
 *   1. under the tree lock, shared (lookups and reads go on; changes wait):
 *      the state as records in memory, in a buffer made and faulted in
 *      before; from then on every record appended is also kept (tail);
 *   2. without the lock: the records to journal.new, fdatasync; the tail
 *      so far too;
 *   3. under the tree lock, exclusive: the rest of the tail, rename over
 *      the journal, the journal's fd made the new file's (dup2: upper_sync
 *      uses the fd without the lock).
 *
 * A kill before the rename leaves the old journal, whole (the next mount
 * deletes journal.new); after it the new one, which has every record the
 * old one had in effect.  An fsync on the mount may have synced records of
 * the tail in the old journal: if one began since the snapshot, the new
 * journal is synced before it takes the name, and again after the switch
 * if one began meanwhile (it may have synced the old file only); without
 * fsyncs no fdatasync waits under the exclusive lock.  The rename itself is
 * synced by the next fsync on the mount (the upper's names are synced
 * again). */
static bool node_live(const struct hbfs *fs, const struct node *n)
{
	return n == fs->root || (n->nlink && !(n->flags & NODE_TMPFILE));
}

/* n's metadata is not what its lower entry says (a node made on the mount
 * has no lower entry): it needs an INODE record. */
static bool node_changed(const struct hbfs *fs, const struct node *n)
{
	const struct manifest_node *mn;

	if (n->lower < 0 || (n->flags & (NODE_UPPER_DATA | NODE_XATTR_OWN)) || n->target)
		return true;
	mn = manifest_node(fs->m, (uint32_t)n->lower);
	return n->mode != mn->mode || n->uid != mn->uid || n->gid != mn->gid ||
	       n->rdev != mn->rdev || n->size != mn->size ||
	       !timespec_equal(n->atime, (struct timespec){ mn->atime_sec, mn->atime_nsec }) ||
	       !timespec_equal(n->mtime, (struct timespec){ mn->mtime_sec, mn->mtime_nsec }) ||
	       !timespec_equal(n->ctime, (struct timespec){ mn->ctime_sec, mn->ctime_nsec });
}

/* The entries of d that differ from its lower ones.  A lower directory's
 * lower names go first (removals: an entry that is not its lower node is
 * removed, then set again at its place in insertion order, as a replay of
 * the old journal would place it); a dead lower directory's removals count
 * too (the link counts of nodes moved out of it). */
static void compact_dir(struct hbfs *fs, struct jrec *rec, struct node *d)
{
	const struct manifest_node *mn;

	if (!d->dir || !(d->flags & NODE_DIR_CHANGED) || (d->lower < 0 && !node_live(fs, d)))
		return;
	if (d->lower >= 0) {
		mn = manifest_node(fs->m, (uint32_t)d->lower);
		for (uint32_t c = 0; c < mn->nchildren; c++) {
			uint32_t ci = mn->first_child + c;
			const char *name = manifest_name(fs->m, ci);

			if (dir_lookup(fs, d, name) != fs->by_lower[manifest_node(fs->m, ci)->hardlink])
				jrec_dirent(rec, d->ino, name, 0);
		}
	}
	for (uint32_t i = 0; i < d->dir->nents; i++) {
		const struct dir_ent *e = &d->dir->ents[i];
		int64_t ci;

		/* Each entry's name and child are elsewhere in the heap, a cache
		 * miss each: asked for some entries ahead, they overlap. */
		if (i + COMPACT_PREFETCH_ENTS < d->dir->nents) {
			__builtin_prefetch(e[COMPACT_PREFETCH_ENTS].name);
			__builtin_prefetch(e[COMPACT_PREFETCH_ENTS].child);
		}
		if (!e->name)
			continue;
		if (d->lower >= 0) {
			ci = manifest_lookup_child(fs->m, (uint32_t)d->lower, e->name,
						   strlen(e->name));
			if (ci >= 0 && e->child == fs->by_lower[manifest_node(fs->m, (uint32_t)ci)->hardlink])
				continue;
		}
		jrec_dirent(rec, d->ino, e->name, e->child->ino);
	}
}

/* State records are built in place in one buffer: the one begun at *start
 * (its header blank) is closed, and the next begun, once its payload has
 * min_payload bytes. */
static void state_cut(struct buf *b, size_t *start, size_t min_payload)
{
	size_t len = b->len - *start - JOURNAL_HEADER_BYTES;
	uint8_t *h;

	if (b->max == 1 || len < min_payload)
		return;
	record_header(b->data + *start, len);
	*start = b->len;
	if ((h = room(b, JOURNAL_HEADER_BYTES)))
		b->len += JOURNAL_HEADER_BYTES;
}

/* The live state as framed records onto out: every changed live node's
 * INODE (with its xattrs), then every changed directory's entries (a
 * DIRENT may name any node: all are made by then).  The directories are
 * picked up on the one walk over the nodes (each node visited is a cache
 * miss or two).  Tree lock held. */
static int compact_state(struct hbfs *fs, struct buf *out)
{
	struct jrec rec = { .b = *out };
	struct node **dirs = NULL, **more;
	size_t ndirs = 0, dirs_cap = 0, start = rec.b.len;
	int r = 0;

	*out = (struct buf)BUF_INIT;
	if (room(&rec.b, JOURNAL_HEADER_BYTES))
		rec.b.len += JOURNAL_HEADER_BYTES;
	for (uint64_t i = 0; i < fs->ino_hash_cap && !r; i++) {
		/* As in compact_dir: the node some slots on, every line of it
		 * (its fields up to hash_next are read).  A live mount's nodes
		 * are all over the heap; this took a state of 68 000 nodes
		 * from ~30 to ~12 ms of CPU here. */
		if (i + COMPACT_PREFETCH_ENTS < fs->ino_hash_cap && fs->ino_hash[i + COMPACT_PREFETCH_ENTS]) {
			const char *ahead = (const char *)fs->ino_hash[i + COMPACT_PREFETCH_ENTS];

			for (size_t off = 0; off < sizeof(struct node); off += 64)
				__builtin_prefetch(ahead + off);
			__builtin_prefetch(ahead + sizeof(struct node) - 1);
		}
		for (struct node *x = fs->ino_hash[i]; x && !r; x = x->hash_next) {
			if (node_live(fs, x) && node_changed(fs, x))
				jrec_inode_whole(fs, &rec, x);
			if (x->dir && (x->flags & NODE_DIR_CHANGED)) {
				if (ndirs == dirs_cap) {
					dirs_cap = dirs_cap ? 2 * dirs_cap : 64;
					more = realloc(dirs, dirs_cap * sizeof(*dirs));
					if (!more)
						r = -ENOMEM;
					else
						dirs = more;
				}
				if (!r)
					dirs[ndirs++] = x;
			}
			state_cut(&rec.b, &start, COMPACT_RECORD_BYTES);
			if (rec.b.max == 1)
				r = -ENOMEM;
		}
	}
	for (size_t k = 0; k < ndirs && !r; k++) {
		compact_dir(fs, &rec, dirs[k]);
		state_cut(&rec.b, &start, COMPACT_RECORD_BYTES);
		if (rec.b.max == 1)
			r = -ENOMEM;
	}
	/* the last record, and no blank header after it */
	state_cut(&rec.b, &start, 1);
	rec.b.len = start;
	if (!r && rec.b.max == 1)
		r = -ENOMEM;
	free(dirs);
	*out = rec.b;
	return r;
}

/* A record is in the journal (tree lock held exclusively): a running
 * compaction needs it too; a long enough journal wants one. */
static void journal_appended(struct hbfs *fs, const struct buf *rec)
{
	struct journal *j = fs->journal;

	if (j->copying) {
		if (!j->tail_failed && buf_append(&j->tail, rec->data, rec->len) < 0)
			j->tail_failed = true;
		return;
	}
	if (!j->running || j->asked || j->bytes <= j->min_bytes || j->bytes <= 2 * j->compacted_bytes)
		return;
	j->asked = true;
	pthread_mutex_lock(&j->lock);
	j->want = true;
	j->asked_bytes = j->bytes;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
}

static double ms_since(clockid_t clock, const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(clock, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Takes the tail appended so far (tree lock held exclusively). */
static void take_tail(struct journal *j, struct buf *out)
{
	buf_free(out);
	*out = j->tail;
	j->tail = (struct buf)BUF_INIT;
}

/* Has an upper_sync begun since *seen?  (*seen is brought up to date.) */
static bool syncs_since(struct journal *j, uint64_t *seen)
{
	uint64_t now = __atomic_load_n(&j->syncs, __ATOMIC_ACQUIRE);
	bool changed = now != *seen;

	*seen = now;
	return changed;
}

static int write_synced(int fd, const struct buf *b)
{
	int r = b->len ? write_all(fd, b->data, b->len) : 0;

	if (!r && b->len && fdatasync(fd) < 0)
		r = -errno;
	return r;
}

/* Changes wait while the state is built: its buffer is made, and its pages
 * faulted in, before.  Grown there from nothing, a state of 100 000 nodes
 * (6.6 MB) took ~2 300 page faults, at ~25 us each on a VM.  Sized for a
 * journal of size_hint bytes, which its state does not exceed but by the
 * lower xattrs of nodes given their own (grown there if so), up to
 * COMPACT_PREFAULT_MAX_BYTES: a long journal of an old binary may hold a
 * small state. */
static void compact_state_buffer(struct buf *state, uint64_t size_hint)
{
	size_t want = size_hint < COMPACT_PREFAULT_MAX_BYTES ? (size_t)size_hint
							      : COMPACT_PREFAULT_MAX_BYTES;
	volatile uint8_t *p;

	if (buf_reserve(state, want) < 0)
		return; /* grown under the lock, or failing there */
	p = state->data;
	for (size_t off = 0; off < want; off += 4096)
		p[off] = 0;
}

static void compact_run(struct hbfs *fs, uint64_t size_hint)
{
	struct journal *j = fs->journal;
	struct buf state = BUF_INIT, tail = BUF_INIT;
	struct timespec t0, cpu0;
	double held_state, state_cpu, held_swap;
	uint64_t old_bytes, new_bytes, syncs;
	int fd = -1, r;

	compact_state_buffer(&state, size_hint);
	pthread_rwlock_rdlock(&fs->tree_lock);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
	syncs = __atomic_load_n(&j->syncs, __ATOMIC_ACQUIRE);
	/* the only writer of these while the lock is shared: appends wait */
	j->asked = false;
	r = j->broken ? -EIO : compact_state(fs, &state);
	if (!r) {
		j->copying = true;
		j->tail_failed = false;
	}
	held_state = ms_since(CLOCK_MONOTONIC, &t0);
	state_cpu = ms_since(CLOCK_THREAD_CPUTIME_ID, &cpu0);
	pthread_rwlock_unlock(&fs->tree_lock);
	if (r < 0)
		goto fail;

	fd = openat(fs->upper_fd, JOURNAL_NEW, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		    0600);
	r = fd < 0 ? -errno : write_synced(fd, &state);
	new_bytes = state.len;
	buf_free(&state);
	test_hook_wait("HIBERBOX_TEST_JOURNAL_COMPACT");
	if (!r) {
		pthread_rwlock_wrlock(&fs->tree_lock);
		take_tail(j, &tail);
		pthread_rwlock_unlock(&fs->tree_lock);
		r = write_synced(fd, &tail);
		new_bytes += tail.len;
	}

	pthread_rwlock_wrlock(&fs->tree_lock);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!r && (j->tail_failed || j->broken))
		r = -ENOMEM;
	if (!r) {
		take_tail(j, &tail);
		r = tail.len ? write_all(fd, tail.data, tail.len) : 0;
		new_bytes += tail.len;
	}
	if (!r && syncs_since(j, &syncs) && fdatasync(fd) < 0)
		r = -errno;
	/* the lock of the upper directory goes with the journal (upper_open) */
	if (!r && flock(fd, LOCK_EX | LOCK_NB) < 0)
		r = -errno;
	if (!r && renameat(fs->upper_fd, JOURNAL_NEW, fs->upper_fd, "journal") < 0)
		r = -errno;
	if (!r && dup2(fd, j->fd) < 0) {
		/* appending to the old file now would lose every record */
		hb_err_sys(-errno, "switching to the compacted journal of %s: refusing all "
				   "changes from now on", fs->upper_path);
		j->broken = true;
	}
	if (!r && syncs_since(j, &syncs) && fdatasync(fd) < 0)
		fprintf(stderr, "hiberbox-fs: syncing the compacted journal of %s: %s\n",
			fs->upper_path, strerror(errno));
	j->copying = false;
	buf_free(&j->tail);
	if (r < 0) {
		j->compacted_bytes = j->bytes; /* not again before it doubles */
		pthread_rwlock_unlock(&fs->tree_lock);
		goto fail;
	}
	old_bytes = j->bytes;
	j->bytes = j->compacted_bytes = new_bytes;
	/* the journal's name is another file's now */
	__atomic_store_n(&fs->upper_dir_synced, false, __ATOMIC_RELEASE);
	/* shorter: added modulo 2^64, the use goes down by the difference */
	quota_journal_done(fs, new_bytes - old_bytes);
	held_swap = ms_since(CLOCK_MONOTONIC, &t0);
	pthread_rwlock_unlock(&fs->tree_lock);
	close(fd);
	buf_free(&tail);
	fprintf(stderr, "hiberbox-fs: %s/journal compacted, %" PRIu64 " -> %" PRIu64
			" bytes; changes waited %.1f ms (state, %.1f ms of CPU) + %.1f ms (switch)\n",
		fs->upper_path, old_bytes, new_bytes, held_state, state_cpu, held_swap);
	return;
fail:
	fprintf(stderr, "hiberbox-fs: compacting %s/journal: %s (the journal stays as it is)\n",
		fs->upper_path, strerror(-r));
	if (fd >= 0) {
		close(fd);
		unlinkat(fs->upper_fd, JOURNAL_NEW, 0);
	}
	buf_free(&state);
	buf_free(&tail);
}

static void *compact_main(void *arg)
{
	struct hbfs *fs = arg;
	struct journal *j = fs->journal;

	for (;;) {
		uint64_t size_hint;
		bool stop;

		pthread_mutex_lock(&j->lock);
		while (!j->want && !j->stop)
			pthread_cond_wait(&j->wake, &j->lock);
		stop = j->stop;
		j->want = false;
		size_hint = j->asked_bytes;
		pthread_mutex_unlock(&j->lock);
		if (stop)
			break;
		compact_run(fs, size_hint);
	}
	return NULL;
}

static int compact_start(struct hbfs *fs)
{
	struct journal *j = fs->journal;
	int r = pthread_create(&j->thread, NULL, compact_main, fs);

	if (r)
		return hb_err(-r, "starting the journal compaction thread");
	j->running = true;
	return 0;
}

static void compact_stop(struct hbfs *fs)
{
	struct journal *j = fs->journal;

	if (!j->running)
		return;
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->thread, NULL);
	j->running = false;
}

int upper_replay(struct hbfs *fs)
{
	struct buf b = { .max = JOURNAL_MAX_BYTES };
	size_t off = 0, good = 0;
	uint64_t records = 0;
	int r;

	r = read_file(fs->upper_fd, "journal", JOURNAL_MAX_BYTES, &b);
	if (r < 0)
		return hb_err_sys(r, "reading %s/journal", fs->upper_path);
	while (off + JOURNAL_HEADER_BYTES <= b.len) {
		const uint8_t *h = b.data + off;
		uint32_t len = get_le32(h + 4);

		if (memcmp(h, JOURNAL_MAGIC, 4) || len > HBFS_JOURNAL_MAX_RECORD ||
		    len > b.len - off - JOURNAL_HEADER_BYTES)
			break; /* a record cut short: the torn tail of a crash */
		if (XXH3_64bits(h + JOURNAL_HEADER_BYTES, len) != get_le64(h + 8)) {
			if (off + JOURNAL_HEADER_BYTES + len == b.len)
				break; /* the last record, partly written */
			buf_free(&b);
			return hb_err(-EBADMSG, "%s/journal: record %" PRIu64 " at byte %zu is corrupt "
					       "(later records exist): refusing to guess",
				      fs->upper_path, records, off);
		}
		r = replay_record(fs, h + JOURNAL_HEADER_BYTES, len);
		if (r < 0) {
			buf_free(&b);
			return hb_err(r, "%s/journal: record %" PRIu64 " at byte %zu is invalid",
				      fs->upper_path, records, off);
		}
		off += JOURNAL_HEADER_BYTES + len;
		good = off;
		records++;
	}
	if (good < b.len) {
		fprintf(stderr, "hiberbox-fs: %s/journal: dropping a torn tail of %zu bytes\n",
			fs->upper_path, b.len - good);
		if (ftruncate(fs->journal->fd, (off_t)good) < 0) {
			buf_free(&b);
			return hb_err_sys(-errno, "truncating %s/journal", fs->upper_path);
		}
		fs->journal->bytes = good;
	}
	buf_free(&b);
	r = replay_finish(fs);
	if (r < 0)
		return r;
	quota_journal_done(fs, fs->journal->bytes); /* the data files are in */
	r = compact_start(fs);
	if (r < 0)
		return r;
	/* after replay: it deletes data files no node owns, and next_ino is
	 * final */
	return precreate_start(fs);
}

/* Creating a file on the upper filesystem (an inode, a directory entry in
 * upper/data) is the dearest step of a create on the mount, often more than
 * all its FUSE round trips together.  A thread makes empty data files ahead,
 * for inode numbers it reserves, so that a create only takes one (an untar
 * gets the upper filesystem's work done on the other core).  Reserved numbers
 * that are never used leave gaps, which nothing minds; their files, left
 * behind by a kill, are deleted by the next mount's replay like any data file
 * no node owns.  Files are made only while the pool runs low, so an idle
 * mount costs nothing. */
struct precreate {
	pthread_mutex_t lock;
	pthread_cond_t low;        /* the pool needs a refill, or stop */
	uint64_t ino[PRE_CAP];
	int fd[PRE_CAP];
	uint32_t head, count;
	bool stop;
	pthread_t thread;
};

static void data_name_made(struct hbfs *fs)
{
	__atomic_add_fetch(&fs->data_names_made, 1, __ATOMIC_RELEASE);
}

static void *precreate_main(void *arg)
{
	struct hbfs *fs = arg;
	struct precreate *p = fs->precreate;

	for (;;) {
		uint64_t base;
		bool stop;

		pthread_mutex_lock(&p->lock);
		while (!p->stop && p->count >= PRE_LOW)
			pthread_cond_wait(&p->low, &p->lock);
		stop = p->stop;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
		pthread_rwlock_wrlock(&fs->tree_lock);
		base = fs->next_ino;
		fs->next_ino += PRE_BATCH;
		pthread_rwlock_unlock(&fs->tree_lock);
		for (uint32_t k = 0; k < PRE_BATCH; k++) {
			char name[32];
			int fd;

			snprintf(name, sizeof(name), "%016llx", (unsigned long long)(base + k));
			fd = openat(fs->data_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0)
				continue; /* a create does it itself then */
			pthread_mutex_lock(&p->lock);
			p->ino[(p->head + p->count) % PRE_CAP] = base + k;
			p->fd[(p->head + p->count) % PRE_CAP] = fd;
			p->count++;
			pthread_mutex_unlock(&p->lock);
		}
	}
	return NULL;
}

static int precreate_start(struct hbfs *fs)
{
	struct precreate *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->low, NULL);
	fs->precreate = p;
	r = pthread_create(&p->thread, NULL, precreate_main, fs);
	if (r) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->low);
		free(p);
		fs->precreate = NULL;
		return hb_err(-r, "starting the precreate thread");
	}
	return 0;
}

static void precreate_stop(struct hbfs *fs)
{
	struct precreate *p = fs->precreate;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->low);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	for (uint32_t k = 0; k < p->count; k++) {
		uint32_t i = (p->head + k) % PRE_CAP;
		char name[32];

		snprintf(name, sizeof(name), "%016llx", (unsigned long long)p->ino[i]);
		close(p->fd[i]);
		unlinkat(fs->data_fd, name, 0);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->low);
	free(p);
	fs->precreate = NULL;
}

int upper_take_precreated(struct hbfs *fs, uint64_t *ino, int *fd)
{
	struct precreate *p = fs->precreate;
	int r = -EAGAIN;

	if (!p)
		return r;
	pthread_mutex_lock(&p->lock);
	if (p->count) {
		*ino = p->ino[p->head];
		*fd = p->fd[p->head];
		p->head = (p->head + 1) % PRE_CAP;
		p->count--;
		r = 0;
	}
	/* counted once a file has it, not when made: refills of the pool must
	 * not cost the next fsync a directory fsync */
	if (!r)
		data_name_made(fs);
	if (p->count < PRE_LOW)
		pthread_cond_signal(&p->low);
	pthread_mutex_unlock(&p->lock);
	return r;
}

int upper_open_data(struct hbfs *fs, const struct node *n, int flags, mode_t mode)
{
	char name[32];
	int fd;

	upper_data_name(n, name);
	fd = openat(fs->data_fd, name, flags | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (flags & O_CREAT)
		data_name_made(fs);
	return fd;
}

/* A crash after fsync() returned must not lose the file: its journal records
 * are synced here, its data by the caller's fsync() of the data file, but
 * the data file's name only by an fsync of upper/data (a journal replay
 * would then find the file missing and leave it empty).  The upper's own
 * names (journal, data) are synced once per mount, at the first fsync.
 * Counters rather than a flag: a name made while the directory fsync runs
 * is not counted as synced by it. */
int upper_sync(struct hbfs *fs)
{
	uint64_t made = __atomic_load_n(&fs->data_names_made, __ATOMIC_ACQUIRE);
	uint64_t synced;

	/* counted before: a compaction switching journals meanwhile syncs
	 * the new one (compact_run) */
	__atomic_add_fetch(&fs->journal->syncs, 1, __ATOMIC_ACQ_REL);
	if (fdatasync(fs->journal_fd) < 0)
		return -errno;
	if (!__atomic_load_n(&fs->upper_dir_synced, __ATOMIC_ACQUIRE)) {
		if (fsync(fs->upper_fd) < 0)
			return -errno;
		__atomic_store_n(&fs->upper_dir_synced, true, __ATOMIC_RELEASE);
	}
	synced = __atomic_load_n(&fs->data_names_synced, __ATOMIC_ACQUIRE);
	if (synced >= made)
		return 0;
	if (fsync(fs->data_fd) < 0)
		return -errno;
	while (synced < made && !__atomic_compare_exchange_n(&fs->data_names_synced, &synced, made,
							     false, __ATOMIC_RELEASE,
							     __ATOMIC_ACQUIRE))
		;
	return 0;
}

/* Copy the lower content of lower entry i, up to len bytes, into fd,
 * leaving holes where the chunk list has them. */
static int copy_lower(struct hbfs *fs, uint32_t i, int fd, uint64_t len)
{
	const struct manifest_node *mn = manifest_node(fs->m, i);
	const struct manifest_chunk *c = manifest_chunks(fs->m, i);
	struct buf b = BUF_INIT;
	uint64_t off = 0;
	int r = 0;

	if (mn->flags & MANIFEST_FLAG_INLINE || !mn->nchunks) {
		size_t n = mn->data_len < len ? mn->data_len : (size_t)len;

		return n ? pwrite_all(fd, manifest_data(fs->m, i), n, 0) : 0;
	}
	for (uint32_t k = 0; k < mn->nchunks && off < len; k++) {
		uint64_t n = c[k].size < len - off ? c[k].size : len - off;

		if (!oid_is_zero(&c[k].id)) {
			r = repo_read_chunk(fs->repo, &c[k].id, &b);
			if (r < 0)
				break;
			if (b.len < n) {
				r = hb_err(-EIO, "chunk shorter than its manifest size");
				break;
			}
			r = pwrite_all(fd, b.data, (size_t)n, (off_t)off);
			if (r < 0)
				break;
		}
		off += c[k].size;
	}
	buf_free(&b);
	return r;
}

/* Wait until no other thread copies n up; the tree lock (held exclusively)
 * is released meanwhile. */
static void copy_up_wait(struct hbfs *fs, struct node *n)
{
	while (n->flags & NODE_COPYING) {
		pthread_mutex_lock(&fs->copy_lock);
		pthread_rwlock_unlock(&fs->tree_lock);
		/* flags are cleared under copy_lock too: no lost wake-up */
		while (__atomic_load_n(&n->flags, __ATOMIC_ACQUIRE) & NODE_COPYING)
			pthread_cond_wait(&fs->copy_done, &fs->copy_lock);
		pthread_mutex_unlock(&fs->copy_lock);
		pthread_rwlock_wrlock(&fs->tree_lock);
	}
}

int upper_copy_up(struct hbfs *fs, struct node *n, int64_t truncate_to)
{
	char name[32], tmp[40];
	uint64_t len;
	struct timespec times[2];
	struct jrec rec = { .b = BUF_INIT };
	struct stat st;
	bool unlocked;
	int fd, r;

	copy_up_wait(fs, n);
	if (n->flags & NODE_UPPER_DATA)
		return 0;
	if (!S_ISREG(n->mode))
		return -EINVAL;
	len = n->size;
	if (truncate_to >= 0 && (uint64_t)truncate_to < len)
		len = (uint64_t)truncate_to;
	/* A copy-up takes no room: the lower file counted as much already
	 * (quota.c).  Its record goes in past the limit, as a delete's does,
	 * so that a lower file is overwritten in place in a full tree too. */
	rec.frees = true;
	if ((r = quota_grow(fs, n, len)) < 0)
		return r;
	upper_data_name(n, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(fs->data_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		quota_release(fs, n);
		return hb_err_sys(-errno, "copy-up: creating %s/data/%s", fs->upper_path, tmp);
	}
	/* A large copy runs without the tree lock (the lower content cannot
	 * change); the node is pinned and marked so that others wait for it. */
	unlocked = len > HBFS_COPY_UP_UNLOCKED_BYTES;
	if (unlocked) {
		n->flags |= NODE_COPYING;
		n->nopen++;
		pthread_rwlock_unlock(&fs->tree_lock);
	}
	r = n->lower >= 0 ? copy_lower(fs, (uint32_t)n->lower, fd, len) : 0;
	if (r >= 0 && ftruncate(fd, (off_t)len) < 0)
		r = -errno;
	if (unlocked)
		pthread_rwlock_wrlock(&fs->tree_lock);
	times[0] = n->atime; /* as they are now: a utimens may have come meanwhile */
	times[1] = n->mtime;
	if (r >= 0 && futimens(fd, times) < 0)
		r = -errno;
	if (r >= 0 && renameat(fs->data_fd, tmp, fs->data_fd, name) < 0)
		r = -errno;
	if (r >= 0)
		data_name_made(fs);
	if (r < 0) {
		close(fd);
		unlinkat(fs->data_fd, tmp, 0);
		quota_release(fs, n);
		hb_err_ctx(r, "copy-up of inode %llu", (unsigned long long)n->ino);
	} else {
		/* The record says the data is upper; until it is in, it is not:
		 * a later copy-up must not find NODE_UPPER_DATA and skip both
		 * (replay would delete the data file as an orphan), nor may a
		 * writer that looks without the lock see it for a moment. */
		struct node after = *n;

		after.size = len;
		after.flags |= NODE_UPPER_DATA;
		jrec_inode(fs, &rec, &after);
		r = jrec_commit(fs, &rec);
		if (r < 0) {
			close(fd);
			unlinkat(fs->data_fd, name, 0);
			quota_release(fs, n);
		} else {
			if (fstat(fd, &st) == 0)
				quota_settle(fs, n, &st, true);
			n->size = len;
			n->flags |= NODE_UPPER_DATA | NODE_DATA_DIRTY | NODE_META_JOURNALED;
			if (n->fst) {
				if (n->fst->fd >= 0)
					close(n->fst->fd);
				n->fst->fd = fd;
			} else {
				close(fd);
			}
		}
	}
	if (unlocked) {
		pthread_mutex_lock(&fs->copy_lock);
		__atomic_and_fetch(&n->flags, ~(uint32_t)NODE_COPYING, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&fs->copy_done);
		pthread_mutex_unlock(&fs->copy_lock);
		/* unpin (callers hold a reference: the node is not freed here) */
		node_close(fs, n);
	}
	return r;
}
