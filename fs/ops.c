/* The FUSE low-level operations: one function per request, the table at the
 * end.  Node ids given to the kernel are node pointers (the root is 1); a node
 * lives while the kernel holds a lookup on it, it is open, or it has a name.
 *
 * Permission checks are the kernel's (default_permissions, with the POSIX
 * ACLs it reads through getxattr); what is checked here is what only the
 * filesystem knows: existence, emptiness, types.  Keeping ACLs and modes in
 * step, and inheritance, are ours (acl.h).
 * Every namespace or metadata change appends one journal record (upper.c)
 * before it is answered, so an answered change survives a kill of this
 * process.
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs/acl.h"
#include "fs/fs-int.h"
#include "fs/uring.h"
#include "util/error.h"
#include "util/fileio.h"

#define READ_MAX_BYTES (4u << 20)
/* One COPY_FILE_RANGE request copies at most this much (the caller loops on
 * a short count): a commit waits for the destination's data lock no longer
 * than for that. */
#define COPY_RANGE_MAX_BYTES (64u << 20)

static struct hbfs *FS(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct node *N(struct hbfs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? fs->root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t NID(struct hbfs *fs, struct node *n)
{
	return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct timespec now_ts(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return t;
}

static void rdlock(struct hbfs *fs)
{
	pthread_rwlock_rdlock(&fs->tree_lock);
}

static void wrlock(struct hbfs *fs)
{
	pthread_rwlock_wrlock(&fs->tree_lock);
}

static void unlock(struct hbfs *fs)
{
	pthread_rwlock_unlock(&fs->tree_lock);
}

/* FUSE_HANDLE_KILLPRIV_V2: the kernel stops asking for
 * getxattr("security.capability") before every write and for the attributes
 * before every chown, and instead flags the requests that must clear
 * setuid/setgid (a write, truncate or O_TRUNC open by a caller without
 * CAP_FSETID, any chown of a non-directory).  libfuse 3.14 neither negotiates
 * it nor passes the flags on, so the session's I/O is ours (hbfs_io): the
 * INIT reply gets the flag, and each request read is looked at for the kill
 * flags, which the thread that read it keeps in kill_flagged while it serves
 * it (libfuse serves a request on the thread that read it).  A kernel without
 * the feature ignores the flag and clears the bits itself as before. */
static __thread bool kill_flagged;
static bool init_reply_pending;
/* FUSE_SETXATTR_EXT, which libfuse 3.14 does not know either: the kernel
 * then flags a SETXATTR of an access ACL whose caller is neither in the
 * file's group nor holds CAP_FSETID over it (the setgid bit goes, as
 * posix_acl_update_mode clears it on ext4).  io_read takes the flag into
 * acl_kill_sgid and hands libfuse the request in the old layout. */
static bool setxattr_ext;
static __thread bool acl_kill_sgid;

/* A SETXATTR in the extended layout made into the compat one libfuse
 * parses (the name follows size and flags there); returns the new length. */
static size_t setxattr_compat(void *buf, size_t len)
{
	struct fuse_in_header *h = buf;
	struct fuse_setxattr_in *in = (void *)(h + 1);
	const size_t drop = sizeof(*in) - FUSE_COMPAT_SETXATTR_IN_SIZE;

	if (len < sizeof(*h) + sizeof(*in))
		return len;
	acl_kill_sgid = in->setxattr_flags & FUSE_SETXATTR_ACL_KILL_SGID;
	memmove((uint8_t *)in + FUSE_COMPAT_SETXATTR_IN_SIZE, in + 1,
		len - sizeof(*h) - sizeof(*in));
	h->len -= (uint32_t)drop;
	return len - drop;
}

static bool request_kills(const void *buf, size_t len)
{
	const struct fuse_in_header *h = buf;
	const uint8_t *arg = (const uint8_t *)buf + sizeof(*h);

	if (len < sizeof(*h))
		return false;
	len -= sizeof(*h);
	switch (h->opcode) {
	case FUSE_WRITE:
		return len >= sizeof(struct fuse_write_in) &&
		       (((const struct fuse_write_in *)arg)->write_flags & FUSE_WRITE_KILL_SUIDGID);
	case FUSE_SETATTR:
		return len >= sizeof(struct fuse_setattr_in) &&
		       (((const struct fuse_setattr_in *)arg)->valid & FATTR_KILL_SUIDGID);
	case FUSE_OPEN:
		return len >= sizeof(struct fuse_open_in) &&
		       (((const struct fuse_open_in *)arg)->open_flags & FUSE_OPEN_KILL_SUIDGID);
	case FUSE_CREATE:
		return len >= sizeof(struct fuse_create_in) &&
		       (((const struct fuse_create_in *)arg)->open_flags & FUSE_OPEN_KILL_SUIDGID);
	default:
		return false;
	}
}

/* What a request read from /dev/fuse or taken from an io_uring queue
 * (uring.c) needs before libfuse parses it; returns its new length. */
static size_t request_prepare(void *buf, size_t n)
{
	/* libfuse 3.14 has no tmpfile operation; the request is a CREATE's
	 * (fuse_create_in, then the dentry's name, "/", which no create can
	 * have) and wants a CREATE's reply, so hb_create serves it. */
	if (n >= sizeof(struct fuse_in_header) &&
	    ((struct fuse_in_header *)buf)->opcode == FUSE_TMPFILE)
		((struct fuse_in_header *)buf)->opcode = FUSE_CREATE;
	kill_flagged = n > 0 && request_kills(buf, n);
	acl_kill_sgid = false;
	if (__atomic_load_n(&setxattr_ext, __ATOMIC_RELAXED) &&
	    n >= sizeof(struct fuse_in_header) &&
	    ((struct fuse_in_header *)buf)->opcode == FUSE_SETXATTR)
		n = setxattr_compat(buf, n);
	return n;
}

/* HIBERBOX_FS_URING=0 keeps a mount on /dev/fuse (A/B runs). */
static bool uring_opted_out(void)
{
	const char *v = getenv("HIBERBOX_FS_URING");

	return v && !strcmp(v, "0");
}

/* The io_uring queues waiting for the INIT reply (uring.h). */
static struct hbfs_uring *uring_pending;

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	if (n < 0) {
		kill_flagged = acl_kill_sgid = false;
		return n; /* errno as read left it: libfuse looks at it */
	}
	return (ssize_t)request_prepare(buf, (size_t)n);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	ssize_t n;
	bool init = false;

	(void)userdata;
	if (uring_take_reply(iov, count, &n))
		return n;
	/* The first reply after init() is INIT's: nothing else is answered
	 * before it. */
	if (__atomic_exchange_n(&init_reply_pending, false, __ATOMIC_ACQ_REL) && count >= 2 &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t)) {
		struct fuse_init_out *out = iov[1].iov_base;

		out->flags |= FUSE_HANDLE_KILLPRIV_V2 | (setxattr_ext ? FUSE_SETXATTR_EXT : 0);
		if (uring_pending) {
			out->flags |= FUSE_INIT_EXT;
			out->flags2 |= URING_INIT_FLAG2;
		}
		init = true;
	}
	n = writev(fd, iov, count);
	/* the kernel takes ring entries once INIT is answered */
	if (init && n > 0)
		uring_go(uring_pending);
	return n;
}

static const struct fuse_custom_io hbfs_io = { .read = io_read, .writev = io_writev };

/* Whether the caller is in group gid (stored id), supplementary groups
 * included. */
static bool caller_in_group(fuse_req_t req, struct hbfs *fs, uint32_t gid)
{
	gid_t host = id_to_host(fs, gid), groups[64];
	int n;

	if (fuse_req_ctx(req)->gid == host)
		return true;
	n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == host)
			return true;
	return false;
}

/* Whether the caller of a chown is taken to hold CAP_FSETID over n (the
 * request does not say): the host's root, and with --uid-shift the
 * sandbox's root (host uid = the shift), which holds it in its namespace
 * over a file whose owner and group are mapped there (stored ids in the
 * shifted range), as the kernel's capable_wrt_inode_uidgid decides. */
static bool chown_capable(fuse_req_t req, struct hbfs *fs, const struct node *n)
{
	uid_t uid = fuse_req_ctx(req)->uid;

	if (uid == 0)
		return true;
	return fs->opts.uid_shift && uid == fs->opts.uid_shift && n->uid < HBFS_UID_SHIFT_RANGE &&
	       n->gid < HBFS_UID_SHIFT_RANGE;
}

/* A request the kernel flagged clears setuid, and setgid when the file is
 * group-executable or the caller is outside its group (then without
 * CAP_FSETID: a flagged write or truncate says so; for a chown,
 * chown_capable), as the kernel's own code would.  Returns whether the
 * mode changed.  Tree lock held exclusively, before a chown changes ids. */
static bool kill_suidgid(fuse_req_t req, struct hbfs *fs, struct node *n, bool chown)
{
	uint32_t old = n->mode;

	if (S_ISDIR(n->mode) || !(n->mode & (S_ISUID | S_ISGID)))
		return false;
	n->mode &= ~(uint32_t)S_ISUID;
	if ((n->mode & S_IXGRP) ||
	    (!(chown && chown_capable(req, fs, n)) && !caller_in_group(req, fs, n->gid)))
		n->mode &= ~(uint32_t)S_ISGID;
	return n->mode != old;
}

static void fill_entry(struct hbfs *fs, struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = NID(fs, n);
	e->generation = 1;
	e->attr_timeout = HBFS_TIMEOUT_SEC;
	e->entry_timeout = HBFS_TIMEOUT_SEC;
	node_fill_stat(fs, n, &e->attr);
}

/* Count the kernel's new reference (any lock mode: atomic). */
static void lookup_ref(struct node *n)
{
	__atomic_add_fetch(&n->nlookup, 1, __ATOMIC_RELAXED);
}

/* A directory known to be loaded, loading it under the write lock if needed.
 * Returns with the tree lock held (shared if it was loaded, else exclusive). */
static int lock_loaded_dir(struct hbfs *fs, struct node *d, bool *exclusive)
{
	int r;

	rdlock(fs);
	*exclusive = false;
	if (!d->dir)
		return -ENOTDIR;
	if (d->flags & NODE_DIR_LOADED)
		return 0;
	unlock(fs);
	wrlock(fs);
	*exclusive = true;
	r = dir_load(fs, d);
	return r;
}

static void hb_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hbfs *fs = FS(req);
	struct fuse_entry_param e;
	struct node *d = N(fs, parent), *n;
	bool ex;
	int r;

	if (strlen(name) > MANIFEST_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	r = lock_loaded_dir(fs, d, &ex);
	if (r < 0) {
		unlock(fs);
		fuse_reply_err(req, -r);
		return;
	}
	n = dir_lookup(fs, d, name);
	if (!n) {
		unlock(fs);
		memset(&e, 0, sizeof(e));
		e.entry_timeout = HBFS_TIMEOUT_SEC; /* negative entry, cached */
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(fs, n, &e);
	lookup_ref(n);
	unlock(fs);
	fuse_reply_entry(req, &e);
}

static void forget_one(struct hbfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = N(fs, ino);

	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	if (!n->nlookup && (n->flags & NODE_KERNEL_OPEN)) {
		n->flags &= ~NODE_KERNEL_OPEN;
		node_close(fs, n); /* the kernel's last open of it is gone */
		return;
	}
	node_maybe_free(fs, n);
}

static void hb_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct hbfs *fs = FS(req);

	wrlock(fs);
	forget_one(fs, ino, nlookup);
	unlock(fs);
	fuse_reply_none(req);
}

static void hb_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct hbfs *fs = FS(req);

	wrlock(fs);
	for (size_t i = 0; i < count; i++)
		forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	unlock(fs);
	fuse_reply_none(req);
}

static void hb_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct stat st;

	rdlock(fs);
	node_fill_stat(fs, N(fs, ino), &st);
	unlock(fs);
	fuse_reply_attr(req, &st, HBFS_TIMEOUT_SEC);
}

/* Journal the whole metadata of nodes a..: one record (frees: see jrec). */
static int journal_nodes_as(struct hbfs *fs, struct node *a, struct node *b, bool frees)
{
	struct jrec rec = { .b = BUF_INIT, .frees = frees };
	int r;

	jrec_inode(fs, &rec, a);
	if (b && b != a)
		jrec_inode(fs, &rec, b);
	r = jrec_commit(fs, &rec);
	if (r >= 0) {
		a->flags |= NODE_META_JOURNALED;
		if (b)
			b->flags |= NODE_META_JOURNALED;
	}
	return r;
}

static int journal_nodes(struct hbfs *fs, struct node *a, struct node *b)
{
	return journal_nodes_as(fs, a, b, false);
}

/* Journal n's metadata and its xattr name as it is now (set or gone), one
 * record: a change of one xattr costs its own bytes, not the whole set's. */
static int journal_xattr(struct hbfs *fs, struct node *n, const char *name, bool frees)
{
	struct jrec rec = { .b = BUF_INIT, .frees = frees };
	int r;

	jrec_inode(fs, &rec, n);
	jrec_xattr(&rec, n, name);
	r = jrec_commit(fs, &rec);
	if (r >= 0)
		n->flags |= NODE_META_JOURNALED;
	return r;
}

/* The data fd of an upper node for one request: its open one, or a
 * temporary one opened with flags (closed by put_fd).  Files the kernel
 * opened by itself have none of their own (lazy_state). */
static int get_fd(struct hbfs *fs, struct node *n, int flags, bool *temp)
{
	*temp = false;
	if (n->fst && n->fst->fd >= 0)
		return n->fst->fd;
	*temp = true;
	return upper_open_data(fs, n, flags, 0);
}

static void put_fd(int fd, bool temp)
{
	if (temp && fd >= 0)
		close(fd);
}

static int do_truncate(struct hbfs *fs, struct node *n, uint64_t size)
{
	bool temp;
	int fd, r = 0;

	if (!S_ISREG(n->mode))
		return S_ISDIR(n->mode) ? -EISDIR : -EINVAL;
	if (!(n->flags & NODE_UPPER_DATA)) {
		r = upper_copy_up(fs, n, (int64_t)size);
		if (r < 0)
			return r;
	}
	if (size > n->size && (r = quota_grow(fs, n, size)) < 0)
		return r;
	fd = get_fd(fs, n, O_RDWR, &temp);
	if (fd < 0)
		return fd;
	if (n->fst)
		pthread_rwlock_rdlock(&n->fst->data_lock);
	struct stat st;

	if (ftruncate(fd, (off_t)size) < 0 || fstat(fd, &st) < 0)
		r = -errno;
	if (n->fst)
		pthread_rwlock_unlock(&n->fst->data_lock);
	put_fd(fd, temp);
	if (r < 0)
		return r;
	quota_settle(fs, n, &st, true);
	n->size = size;
	if (!timespec_equal(n->mtime, st.st_mtim)) /* as after_write */
		n->ctime = st.st_mtim;
	n->mtime = st.st_mtim;
	n->flags |= NODE_DATA_DIRTY;
	return 0;
}

/* The metadata a change may set (a setattr, or the times a create, unlink,
 * rename or link sets on its directories), kept to undo it when the journal
 * refuses the change. */
struct node_meta {
	uint32_t mode, uid, gid;
	struct timespec atime, mtime, ctime;
};

static struct node_meta node_meta_save(const struct node *n)
{
	return (struct node_meta){ n->mode, n->uid, n->gid, n->atime, n->mtime, n->ctime };
}

static void node_meta_restore(struct node *n, const struct node_meta *m)
{
	n->mode = m->mode;
	n->uid = m->uid;
	n->gid = m->gid;
	n->atime = m->atime;
	n->mtime = m->mtime;
	n->ctime = m->ctime;
}

static uint8_t *memdup(const void *p, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	if (copy)
		memcpy(copy, p, len);
	return copy;
}

/* A chmod keeps n's access ACL in step (posix_acl_chmod on ext4): its
 * owner, other and mask (or group) entries take the new mode's bits.  The
 * new value goes in at once; *old keeps the one it replaced for an undo
 * (acl_chmod_undo, or free once the change is in).  Tree lock held
 * exclusively. */
static int acl_follow_chmod(struct hbfs *fs, struct node *n, struct xattr **acl, uint8_t **old)
{
	const uint8_t *v;
	uint32_t len;
	uint8_t *copy;
	int r;

	*acl = NULL;
	*old = NULL;
	if (S_ISLNK(n->mode) || !node_xattr_get(fs, n, ACL_XATTR_ACCESS, &v, &len))
		return 0;
	r = node_xattrs_own(fs, n);
	if (r < 0)
		return r;
	*acl = node_xattr_find(n, ACL_XATTR_ACCESS);
	copy = memdup((*acl)->value, (*acl)->len);
	if (!copy)
		return -ENOMEM;
	if (acl_chmod(copy, (*acl)->len, n->mode) < 0) { /* a malformed value: left as it is */
		free(copy);
		*acl = NULL;
		return 0;
	}
	*old = (*acl)->value;
	(*acl)->value = copy;
	return 0;
}

static void acl_chmod_undo(struct xattr *acl, uint8_t *old)
{
	if (acl) {
		free(acl->value);
		acl->value = old;
	}
}

static void hb_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	struct timespec now = now_ts();
	struct node_meta old;
	struct xattr *acl = NULL;
	uint8_t *acl_old = NULL;
	struct stat st;
	bool shrinks;
	int r = 0;

	wrlock(fs);
	/* its record goes in past the upper limit (see jrec) */
	shrinks = (to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size < n->size;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		r = do_truncate(fs, n, (uint64_t)attr->st_size);
		if (r < 0)
			goto out;
	}
	/* what is put back if the journal refuses the change (a truncate
	 * stands: the data file is the record of size) */
	old = node_meta_save(n);
	if (to_set & FUSE_SET_ATTR_MODE) {
		n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
		r = acl_follow_chmod(fs, n, &acl, &acl_old);
		if (r < 0) {
			node_meta_restore(n, &old);
			goto out;
		}
	} else if (kill_flagged) /* chown, or truncate without CAP_FSETID */
		kill_suidgid(req, fs, n, to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID));
	if (to_set & FUSE_SET_ATTR_UID)
		n->uid = id_from_host(fs, attr->st_uid);
	if (to_set & FUSE_SET_ATTR_GID)
		n->gid = id_from_host(fs, attr->st_gid);
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		n->atime = now;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		n->atime = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		n->mtime = now;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		n->mtime = attr->st_mtim;
	if (to_set & FUSE_SET_ATTR_CTIME)
		n->ctime = attr->st_ctim;
	else
		n->ctime = now;
	r = acl ? journal_xattr(fs, n, ACL_XATTR_ACCESS, shrinks)
		: journal_nodes_as(fs, n, NULL, shrinks);
	if (r < 0) {
		node_meta_restore(n, &old);
		acl_chmod_undo(acl, acl_old);
		goto out;
	}
	free(acl_old);
	if ((to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_SIZE)) &&
	    (n->flags & NODE_UPPER_DATA)) {
		/* The data file's mtime is the one a remount believes (through
		 * the open fd when there is one: no lookup in upper/data). */
		struct timespec t[2] = { n->atime, n->mtime };
		char name[32];

		if (!n->fst || n->fst->fd < 0 || futimens(n->fst->fd, t) < 0) {
			upper_data_name(n, name);
			utimensat(fs->data_fd, name, t, 0);
		}
	}
out:
	if (r >= 0)
		node_fill_stat(fs, n, &st);
	unlock(fs);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, HBFS_TIMEOUT_SEC);
}

static void hb_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct hbfs *fs = FS(req);
	char target[HBFS_SYMLINK_MAX + 1];

	rdlock(fs);
	snprintf(target, sizeof(target), "%s", node_symlink(fs, N(fs, ino)));
	unlock(fs);
	fuse_reply_readlink(req, target);
}

static int check_name(const char *name)
{
	if (strlen(name) > MANIFEST_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* Open state of a node around an already open data fd. */
static int file_state_new(struct node *n, int fd)
{
	struct file_state *f = calloc(1, sizeof(*f));

	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	f->fd = fd;
	pthread_rwlock_init(&f->data_lock, NULL);
	n->fst = f;
	return 0;
}

/* A new node's mode and ACLs from its directory d, as ext4 makes them
 * (posix_acl_create): when d has a default ACL, n gets an access ACL made
 * from it and limited by the mode asked for (and the mode by it), a
 * directory the default ACL too, and the umask plays no part; without one
 * (or with one of no entries, from a lower tree) the umask applies (the
 * kernel leaves both to us: FUSE_DONT_MASK).
 * Symlinks get neither.  n is new: it owns its xattrs and has none.  Tree
 * lock held exclusively. */
static int acl_inherit(fuse_req_t req, struct hbfs *fs, struct node *d, struct node *n)
{
	const uint8_t *def;
	uint8_t *acc;
	uint32_t len;
	int r;

	if (!fs->posix_acl || S_ISLNK(n->mode))
		return 0;
	if (!node_xattr_get(fs, d, ACL_XATTR_DEFAULT, &def, &len) || acl_empty(def, len)) {
		n->mode &= ~(uint32_t)(fuse_req_ctx(req)->umask & 0777);
		return 0;
	}
	acc = memdup(def, len);
	if (!acc)
		return -ENOMEM;
	r = acl_create_masq(acc, len, &n->mode);
	if (r <= 0)
		free(acc);
	if (r < 0) /* never set through the kernel, which checks ACLs */
		return -EIO;
	if (r > 0 && !node_xattr_add(n, ACL_XATTR_ACCESS, acc, len))
		return -ENOMEM;
	if (S_ISDIR(n->mode)) {
		uint8_t *copy = memdup(def, len);

		if (!copy || !node_xattr_add(n, ACL_XATTR_DEFAULT, copy, len))
			return -ENOMEM;
	}
	return 0;
}

/* A new node of the caller's for directory d, with no name yet (nlink 0);
 * a regular file gets its empty data file, open if keep_open.  Tree lock
 * held exclusively. */
static int new_node(fuse_req_t req, struct hbfs *fs, struct node *d, mode_t mode, dev_t rdev,
		    const char *target, bool keep_open, struct node **out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct timespec now = now_ts();
	struct node *n;
	uint64_t ino;
	int pre_fd = -1;
	int r = 0;

	if (S_ISREG(mode) && upper_take_precreated(fs, &ino, &pre_fd) == 0) {
		/* Its times are set to the node's below: a remount reads them. */
		n = node_new_upper(fs, ino, mode);
		if (!n) {
			close(pre_fd);
			return -ENOMEM;
		}
	} else {
		n = node_new_upper(fs, fs->next_ino, mode);
		if (!n)
			return -ENOMEM;
	}
	n->uid = id_from_host(fs, ctx->uid);
	n->gid = id_from_host(fs, ctx->gid);
	if (d->mode & S_ISGID) {
		n->gid = d->gid;
		if (S_ISDIR(mode))
			n->mode |= S_ISGID;
	}
	n->rdev = rdev;
	n->atime = n->mtime = n->ctime = now;
	r = acl_inherit(req, fs, d, n);
	if (!r && target) {
		n->target = strdup(target);
		if (!n->target)
			r = -ENOMEM;
		else
			n->size = strlen(target);
	}
	if (!r && S_ISREG(mode)) {
		bool pre = pre_fd >= 0;
		int fd = pre ? pre_fd : upper_open_data(fs, n, O_RDWR | O_CREAT | O_TRUNC, 0600);
		struct timespec t[2] = { now, now };
		struct stat st;

		pre_fd = -1; /* fd has it now */
		if (fd < 0) {
			r = hb_err(fd, "creating a data file in %s", fs->upper_path);
		} else {
			/* Times are the data file's: what a remount will see.  A
			 * precreated file is older than the create: it gets now. */
			if ((!pre || futimens(fd, t) < 0) && fstat(fd, &st) == 0)
				n->atime = n->mtime = st.st_mtim;
			n->flags |= NODE_UPPER_DATA;
			if (keep_open)
				r = file_state_new(n, fd); /* closes fd if it fails */
			else
				close(fd);
		}
	}
	if (r < 0) {
		if (pre_fd >= 0) {
			/* refused before the precreated data file was the node's
			 * (a malformed default ACL refuses every create): it goes,
			 * or each refusal would keep an fd and a file */
			char name[32];

			close(pre_fd);
			upper_data_name(n, name);
			unlinkat(fs->data_fd, name, 0);
		}
		node_maybe_free(fs, n);
		return r;
	}
	*out = n;
	return 0;
}

/* Whether directory d can take a new node: a directory, loaded, not
 * removed.  Tree lock held exclusively. */
static int dir_takes_new(struct hbfs *fs, struct node *d)
{
	int r;

	if (!d->dir)
		return -ENOTDIR;
	r = dir_load(fs, d);
	if (r < 0)
		return r;
	return d->nlink ? 0 : -ENOENT; /* removed directory */
}

/* Create a node called name in parent; tree lock held exclusively.  For a
 * regular file the (empty) data file is created first, so the journal never
 * names a data file that does not exist. */
static int create_node(fuse_req_t req, struct hbfs *fs, struct node *d, const char *name,
		       mode_t mode, dev_t rdev, const char *target, bool keep_open,
		       struct node **out)
{
	struct jrec rec = { .b = BUF_INIT };
	struct node *n;
	int r;

	r = check_name(name);
	if (r < 0)
		return r;
	r = dir_takes_new(fs, d);
	if (r < 0)
		return r;
	if (dir_lookup(fs, d, name))
		return -EEXIST;
	r = new_node(req, fs, d, mode, rdev, target, keep_open, &n);
	if (r < 0)
		return r;
	r = dir_set(fs, d, name, n);
	if (r < 0) {
		node_maybe_free(fs, n);
		return r;
	}
	struct node_meta dt = node_meta_save(d); /* put back if the journal refuses */

	d->mtime = d->ctime = n->ctime;
	jrec_inode_whole(fs, &rec, n); /* with the ACLs it inherited */
	jrec_dirent(&rec, d->ino, name, n->ino);
	jrec_inode(fs, &rec, d);
	r = jrec_commit(fs, &rec);
	if (r < 0) {
		node_meta_restore(d, &dt);
		dir_set(fs, d, name, NULL);
		node_maybe_free(fs, n);
		return r;
	}
	n->flags |= NODE_META_JOURNALED;
	*out = n;
	return 0;
}

static void reply_new(fuse_req_t req, struct hbfs *fs, int r, struct node *n)
{
	struct fuse_entry_param e;

	if (r < 0) {
		unlock(fs);
		fuse_reply_err(req, -r);
		return;
	}
	fill_entry(fs, n, &e);
	lookup_ref(n);
	unlock(fs);
	fuse_reply_entry(req, &e);
}

static void hb_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct hbfs *fs = FS(req);
	struct node *n = NULL;
	int r;

	wrlock(fs);
	r = create_node(req, fs, N(fs, parent), name, mode, rdev, NULL, false, &n);
	reply_new(req, fs, r, n);
}

static void hb_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct hbfs *fs = FS(req);
	struct node *n = NULL;
	int r;

	wrlock(fs);
	r = create_node(req, fs, N(fs, parent), name, S_IFDIR | (mode & 07777), 0, NULL, false,
			&n);
	reply_new(req, fs, r, n);
}

static void hb_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct hbfs *fs = FS(req);
	struct node *n = NULL;
	int r;

	if (strlen(link) > HBFS_SYMLINK_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	wrlock(fs);
	r = create_node(req, fs, N(fs, parent), name, S_IFLNK | 0777, 0, link, false, &n);
	reply_new(req, fs, r, n);
}

static int remove_name(struct hbfs *fs, struct node *d, const char *name, bool want_dir)
{
	struct jrec rec = { .b = BUF_INIT };
	struct node *c;
	int r = dir_load(fs, d);

	if (r < 0)
		return r;
	c = dir_lookup(fs, d, name);
	if (!c)
		return -ENOENT;
	if (want_dir) {
		if (!c->dir)
			return -ENOTDIR;
		r = dir_load(fs, c);
		if (r < 0)
			return r;
		if (c->dir->live)
			return -ENOTEMPTY;
	} else if (c->dir) {
		return -EISDIR;
	}
	struct node_meta dt = node_meta_save(d), ct = node_meta_save(c);
	rec.frees = true; /* past the upper limit too: how a full sandbox recovers */
	/* a file that keeps other names shows the change in its ctime, which
	 * a remount must find too */
	bool survives = !c->dir && c->nlink > 1;

	jrec_dirent(&rec, d->ino, name, 0);
	d->mtime = d->ctime = c->ctime = now_ts();
	jrec_inode(fs, &rec, d);
	if (survives)
		jrec_inode(fs, &rec, c);
	r = jrec_commit(fs, &rec);
	if (r < 0) {
		node_meta_restore(d, &dt);
		node_meta_restore(c, &ct);
		return r;
	}
	if (survives)
		c->flags |= NODE_META_JOURNALED;
	dir_set(fs, d, name, NULL);
	node_maybe_free(fs, c);
	return 0;
}

static void hb_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hbfs *fs = FS(req);
	int r;

	wrlock(fs);
	r = remove_name(fs, N(fs, parent), name, false);
	unlock(fs);
	fuse_reply_err(req, -r);
}

static void hb_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hbfs *fs = FS(req);
	int r;

	wrlock(fs);
	r = remove_name(fs, N(fs, parent), name, true);
	unlock(fs);
	fuse_reply_err(req, -r);
}

static bool is_ancestor(struct hbfs *fs, struct node *a, struct node *d)
{
	for (int depth = 0; depth < 100000; depth++) {
		if (d == a)
			return true;
		if (d == fs->root || !d->dir || !d->dir->parent)
			return false;
		d = d->dir->parent;
	}
	return true;
}

static int do_rename(struct hbfs *fs, struct node *d1, const char *name, struct node *d2,
		     const char *newname, unsigned flags)
{
	struct jrec rec = { .b = BUF_INIT };
	struct node *src, *dst;
	int r;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((r = check_name(newname)) < 0)
		return r;
	if ((r = dir_load(fs, d1)) < 0 || (r = dir_load(fs, d2)) < 0)
		return r;
	src = dir_lookup(fs, d1, name);
	if (!src)
		return -ENOENT;
	dst = dir_lookup(fs, d2, newname);
	if (flags & RENAME_EXCHANGE) {
		if (!dst)
			return -ENOENT;
		if ((src->dir && is_ancestor(fs, src, d2)) || (dst->dir && is_ancestor(fs, dst, d1)))
			return -EINVAL;
		jrec_dirent(&rec, d1->ino, name, dst->ino);
		jrec_dirent(&rec, d2->ino, newname, src->ino);
	} else {
		if (dst && (flags & RENAME_NOREPLACE))
			return -EEXIST;
		if (dst == src)
			return 0;
		if (src->dir && is_ancestor(fs, src, d2))
			return -EINVAL;
		if (dst) {
			if (src->dir && !dst->dir)
				return -ENOTDIR;
			if (!src->dir && dst->dir)
				return -EISDIR;
			if (dst->dir) {
				if ((r = dir_load(fs, dst)) < 0)
					return r;
				if (dst->dir->live)
					return -ENOTEMPTY;
			}
		}
		jrec_dirent(&rec, d2->ino, newname, src->ino);
		jrec_dirent(&rec, d1->ino, name, 0);
	}
	struct node_meta m1 = node_meta_save(d1), m2 = node_meta_save(d2), ms = node_meta_save(src);
	struct node_meta md = dst ? node_meta_save(dst) : ms;
	/* The moved nodes' ctimes change (and a replaced file's that keeps
	 * other names): in the same record, so that a remount has them. */
	bool dst_changes = dst && ((flags & RENAME_EXCHANGE) || (!dst->dir && dst->nlink > 1));

	d1->mtime = d1->ctime = d2->mtime = d2->ctime = src->ctime = now_ts();
	if (dst_changes)
		dst->ctime = src->ctime;
	jrec_inode(fs, &rec, d1);
	if (d2 != d1)
		jrec_inode(fs, &rec, d2);
	jrec_inode(fs, &rec, src);
	if (dst_changes)
		jrec_inode(fs, &rec, dst);
	r = jrec_commit(fs, &rec);
	if (r < 0) {
		if (dst)
			node_meta_restore(dst, &md);
		node_meta_restore(src, &ms);
		node_meta_restore(d2, &m2); /* d2 may be d1: both saved before any change */
		node_meta_restore(d1, &m1);
		return r;
	}
	src->flags |= NODE_META_JOURNALED;
	if (dst_changes)
		dst->flags |= NODE_META_JOURNALED;
	if (flags & RENAME_EXCHANGE) {
		dir_set(fs, d1, name, dst);
		dir_set(fs, d2, newname, src);
	} else {
		dir_set(fs, d2, newname, src);
		dir_set(fs, d1, name, NULL);
		if (dst)
			node_maybe_free(fs, dst);
	}
	return 0;
}

static void hb_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct hbfs *fs = FS(req);
	int r;

	wrlock(fs);
	r = do_rename(fs, N(fs, parent), name, N(fs, newparent), newname, flags);
	unlock(fs);
	fuse_reply_err(req, -r);
}

static void hb_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino), *d = N(fs, newparent);
	struct jrec rec = { .b = BUF_INIT };
	int r;

	wrlock(fs);
	if ((r = check_name(newname)) < 0)
		goto out;
	if (n->dir) {
		r = -EPERM;
		goto out;
	}
	if ((r = dir_load(fs, d)) < 0)
		goto out;
	if (dir_lookup(fs, d, newname)) {
		r = -EEXIST;
		goto out;
	}
	if (!n->nlink && !(n->flags & NODE_TMPFILE)) {
		r = -ENOENT;
		goto out;
	}
	if (n->nlink >= HBFS_LINK_MAX) {
		r = -EMLINK;
		goto out;
	}
	struct node_meta dt = node_meta_save(d), nt = node_meta_save(n);

	d->mtime = d->ctime = n->ctime = now_ts();
	/* its ctime (and for a tmpfile, its first name: journaled as a create
	 * is, xattrs and all) */
	if (n->flags & NODE_TMPFILE)
		jrec_inode_whole(fs, &rec, n);
	else
		jrec_inode(fs, &rec, n);
	jrec_dirent(&rec, d->ino, newname, n->ino);
	jrec_inode(fs, &rec, d);
	r = jrec_commit(fs, &rec);
	if (r < 0) {
		node_meta_restore(n, &nt);
		node_meta_restore(d, &dt);
	}
	if (r >= 0)
		r = dir_set(fs, d, newname, n);
	if (r >= 0) {
		n->flags &= ~NODE_TMPFILE;
		n->flags |= NODE_META_JOURNALED;
	}
out:
	reply_new(req, fs, r, n);
}

/* Open state: created at the first open, kept while open or pinned.
 * Without with_fd an upper file gets no fd here (requests open one each). */
static int node_open(struct hbfs *fs, struct node *n, bool with_fd)
{
	struct file_state *f = n->fst;
	int r;

	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->fd = -1;
		pthread_rwlock_init(&f->data_lock, NULL);
		n->fst = f;
	}
	if (with_fd && (n->flags & NODE_UPPER_DATA) && f->fd < 0) {
		r = upper_open_data(fs, n, O_RDWR, 0);
		if (r < 0)
			goto fail;
		f->fd = r;
	}
	if (!(n->flags & NODE_UPPER_DATA) && !f->chunk_end && n->lower >= 0) {
		r = lower_chunk_ends(fs, (uint32_t)n->lower, &f->chunk_end);
		if (r < 0)
			goto fail;
	}
	n->nopen++;
	return 0;
fail:
	if (!n->nopen) {
		pthread_rwlock_destroy(&f->data_lock);
		free(f);
		n->fst = NULL;
	}
	return r;
}

void node_close(struct hbfs *fs, struct node *n)
{
	if (n->nopen)
		n->nopen--;
	if (!n->nopen && n->fst) {
		if (n->fst->fd >= 0)
			close(n->fst->fd);
		free(n->fst->chunk_end);
		pthread_rwlock_destroy(&n->fst->data_lock);
		free(n->fst);
		n->fst = NULL;
	}
	node_maybe_free(fs, n);
}

/* Keep n alive and give it a data lock without opening its data file (a
 * commit pins every changed file at once: fds would run out). */
int node_open_pinned(struct hbfs *fs, struct node *n)
{
	if (!n->fst) {
		struct file_state *f = calloc(1, sizeof(*f));

		if (!f)
			return -ENOMEM;
		f->fd = -1;
		pthread_rwlock_init(&f->data_lock, NULL);
		n->fst = f;
	}
	n->nopen++;
	return 0;
}

/* The kernel opens files without telling the fs (no_open: hb_open answered
 * ENOSYS once), so a file gets its open state at its first read or write,
 * held for the kernel until it forgets the inode (forget_one): an unlinked
 * file stays readable while anything has it open, as before.  That state
 * never keeps an fd of its own; requests open the data file for their
 * duration, so fds stay bounded by creates.  Returns with n->fst set
 * (unless the kernel sends OPENs: then an open made it).
 *
 * The kernel's hold is its own even when n->fst exists already: that may be
 * only a commit's pin (node_open_pinned), which frees the state when the
 * commit ends, under the requests using it. */
static int lazy_state(struct hbfs *fs, struct node *n)
{
	int r = 0;

	/* NODE_KERNEL_OPEN goes only at FORGET, which no request of the
	 * kernel's on n can overtake: seen set, it stays set */
	if (!fs->no_open || (__atomic_load_n(&n->flags, __ATOMIC_ACQUIRE) & NODE_KERNEL_OPEN))
		return 0;
	wrlock(fs);
	if (!(n->flags & NODE_KERNEL_OPEN)) {
		r = node_open(fs, n, false);
		if (r >= 0)
			n->flags |= NODE_KERNEL_OPEN;
	}
	unlock(fs);
	return r;
}

/* *killed: an O_TRUNC cleared setuid/setgid (see kill_suidgid). */
static int open_prepare(fuse_req_t req, struct hbfs *fs, struct node *n, int flags,
			bool *killed)
{
	bool writing = (flags & O_ACCMODE) != O_RDONLY;
	uint32_t old_mode;
	int r;

	if (n->dir)
		return -EISDIR;
	if (!S_ISREG(n->mode))
		return -ENXIO;
	if ((writing || (flags & O_TRUNC)) && !(n->flags & NODE_UPPER_DATA)) {
		r = upper_copy_up(fs, n, (flags & O_TRUNC) ? 0 : -1);
		if (r < 0)
			return r;
		if (fs->no_open && n->fst && n->fst->fd >= 0) {
			/* lazy state keeps no fd; nobody used one while it was lower */
			close(n->fst->fd);
			n->fst->fd = -1;
		}
	}
	r = node_open(fs, n, !fs->no_open);
	if (r < 0)
		return r;
	if ((flags & O_TRUNC) && n->size) {
		r = do_truncate(fs, n, 0);
		if (r < 0) {
			node_close(fs, n);
			return r;
		}
	}
	old_mode = n->mode;
	*killed = (flags & O_TRUNC) && kill_flagged && kill_suidgid(req, fs, n, false);
	if (*killed) {
		r = journal_nodes(fs, n, NULL);
		if (r < 0) {
			n->mode = old_mode;
			node_close(fs, n);
			return r;
		}
	}
	return 0;
}

static void hb_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	bool killed = false;
	int r;

	if (fs->no_open) { /* once: the kernel then opens files by itself */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	wrlock(fs);
	r = open_prepare(req, fs, N(fs, ino), fi->flags, &killed);
	unlock(fs);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* The opener was interrupted: the kernel will not release. */
		wrlock(fs);
		node_close(fs, N(fs, ino));
		unlock(fs);
	}
	if (killed) /* the kernel's cached mode still has the bits */
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

/* The reply to a create: the kernel gets a lookup and an open of n, unless
 * the caller went away meanwhile (the reply then fails with ENOENT, and no
 * FORGET or RELEASE will come for them).  Takes the tree lock's hold. */
static void reply_created(fuse_req_t req, struct hbfs *fs, struct node *n,
			  struct fuse_file_info *fi)
{
	struct fuse_entry_param e;

	if (fs->no_open) {
		/* Once the kernel opens files by itself it sends no RELEASE for
		 * created ones either: this open is held like a lazy_state one,
		 * until FORGET (and a RELEASE, for creates before it learned
		 * that, is ignored: hb_release). */
		if (n->flags & NODE_KERNEL_OPEN)
			node_close(fs, n); /* it had one already */
		n->flags |= NODE_KERNEL_OPEN;
	}
	fill_entry(fs, n, &e);
	lookup_ref(n);
	unlock(fs);
	fi->keep_cache = 1;
	fi->noflush = 1;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		wrlock(fs);
		forget_one(fs, NID(fs, n), 1); /* with no_open, that also closes */
		if (!fs->no_open)
			node_close(fs, n);
		unlock(fs);
	}
}

/* O_TMPFILE (a TMPFILE request that io_read turned into a CREATE of "/"):
 * an open regular file without a name, which linkat() may name later (see
 * hb_link).  Until then nothing of it is journaled: after a crash its data
 * file is an orphan, removed at the next mount. */
static void hb_tmpfile(fuse_req_t req, struct hbfs *fs, struct node *d, mode_t mode,
		       struct fuse_file_info *fi)
{
	struct node *n = NULL;
	bool killed = false;
	int r;

	wrlock(fs);
	r = dir_takes_new(fs, d);
	if (r >= 0)
		r = new_node(req, fs, d, S_IFREG | (mode & 07777), 0, NULL, !fs->no_open, &n);
	if (r >= 0) {
		n->flags |= NODE_TMPFILE;
		r = open_prepare(req, fs, n, fi->flags & ~O_TRUNC, &killed);
		if (r < 0)
			node_maybe_free(fs, n);
	}
	if (r < 0) {
		unlock(fs);
		fuse_reply_err(req, -r);
		return;
	}
	/* its nlink 0 goes to the kernel as is: the VFS then refuses linkat()
	 * of an O_EXCL tmpfile, as on a native filesystem */
	reply_created(req, fs, n, fi);
}

static void hb_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *d = N(fs, parent), *n = NULL;
	bool killed = false; /* the entry's attributes carry the new mode */
	int r;

	if (!strcmp(name, "/")) { /* no name can be "/": only a tmpfile's */
		hb_tmpfile(req, fs, d, mode, fi);
		return;
	}
	if (fs->no_create) {
		/* Once told, the kernel makes new files with MKNOD and opens them
		 * as any other (no_open): no RELEASE per file, as a CREATE's
		 * open would end with. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	wrlock(fs);
	r = dir_load(fs, d);
	if (r >= 0)
		n = dir_lookup(fs, d, name);
	if (r >= 0 && n) {
		r = (fi->flags & O_EXCL) ? -EEXIST : 0;
		if (r >= 0)
			r = open_prepare(req, fs, n, fi->flags, &killed);
	} else if (r >= 0) {
		r = create_node(req, fs, d, name, S_IFREG | (mode & 07777), 0, NULL, !fs->no_open,
				&n);
		if (r >= 0)
			r = open_prepare(req, fs, n, fi->flags & ~O_TRUNC, &killed);
	}
	if (r < 0) {
		unlock(fs);
		fuse_reply_err(req, -r);
		return;
	}
	reply_created(req, fs, n, fi);
}

static void hb_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	struct file_state *f;
	bool upper;
	char *buf;
	ssize_t got;

	if (size > READ_MAX_BYTES)
		size = READ_MAX_BYTES;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if ((got = lazy_state(fs, n)) < 0) {
		fuse_reply_err(req, (int)-got);
		free(buf);
		return;
	}
	rdlock(fs);
	f = n->fst;
	upper = (n->flags & NODE_UPPER_DATA) && f;
	unlock(fs);
	if (!f) {
		got = -EBADF;
	} else if (upper) {
		bool temp;
		int fd;

		pthread_rwlock_rdlock(&f->data_lock);
		fd = get_fd(fs, n, O_RDONLY, &temp);
		got = fd < 0 ? fd : pread(fd, buf, size, off);
		if (got < 0 && fd >= 0)
			got = -errno;
		put_fd(fd, temp);
		pthread_rwlock_unlock(&f->data_lock);
	} else {
		got = lower_read(fs, (uint32_t)n->lower, f->chunk_end, buf, size, (uint64_t)off);
	}
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		fuse_reply_buf(req, buf, (size_t)got);
	free(buf);
}

/* Make sure n has its content upper and an open fd (a write can arrive on a
 * handle opened before another handle's copy-up... or through mmap).  In
 * no_open mode "open" means the kernel's own state (lazy_state), with no fd:
 * a state found without NODE_KERNEL_OPEN may be a commit's pin alone. */
static int ensure_upper_fd(struct hbfs *fs, struct node *n)
{
	int r;

	if (fs->no_open ? (n->flags & (NODE_UPPER_DATA | NODE_KERNEL_OPEN)) ==
				  (NODE_UPPER_DATA | NODE_KERNEL_OPEN)
			: (n->flags & NODE_UPPER_DATA) && n->fst && n->fst->fd >= 0)
		return 0;
	if ((r = lazy_state(fs, n)) < 0)
		return r;
	wrlock(fs);
	r = upper_copy_up(fs, n, -1);
	if (r >= 0 && (n->flags & NODE_KERNEL_OPEN)) {
		/* state without an fd of its own (lazy_state): the copy-up's goes;
		 * nobody used an fd of this file while it was lower */
		if (n->fst->fd >= 0)
			close(n->fst->fd);
		n->fst->fd = -1;
	} else if (r >= 0 && n->fst && n->fst->fd < 0) {
		r = upper_open_data(fs, n, O_RDWR, 0);
		if (r >= 0) {
			n->fst->fd = r;
			r = 0;
		}
	}
	if (r >= 0 && !n->fst)
		r = -EBADF;
	unlock(fs);
	return r;
}

/* Size and mtime from the data file itself (fd), which a remount believes; a
 * write flagged by the kernel clears setuid/setgid (journaled: the mode is
 * not the data file's).  The fstat is made under the tree lock: writes to
 * one file run at once (an O_DIRECT write split into requests, mmap
 * writeback), and a size read before another write's, applied after it,
 * would leave the file shorter than its data (an O_APPEND write would land
 * inside it). */
static int after_write(fuse_req_t req, struct hbfs *fs, struct node *n, int fd, bool *killed)
{
	struct stat st;
	uint32_t old_mode;
	int r = 0;

	wrlock(fs);
	if (fstat(fd, &st) < 0) {
		r = -errno;
		unlock(fs);
		return r;
	}
	n->size = (uint64_t)st.st_size;
	quota_settle(fs, n, &st, false);
	/* ctime as the write set it in the data file, which is what a remount
	 * finds there (replay_finish); no journal record per write */
	if (!timespec_equal(n->mtime, st.st_mtim))
		n->ctime = st.st_mtim;
	n->mtime = st.st_mtim;
	n->flags |= NODE_DATA_DIRTY;
	old_mode = n->mode;
	*killed = kill_flagged && kill_suidgid(req, fs, n, false);
	if (*killed && (r = journal_nodes(fs, n, NULL)) < 0)
		n->mode = old_mode;
	unlock(fs);
	return r;
}

static void hb_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	struct file_state *f;
	bool killed = false, temp = false;
	ssize_t room;
	int fd, r;

	r = ensure_upper_fd(fs, n);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	/* at the upper limit: a short write, as on a full disk */
	room = quota_grow_write(fs, n, (uint64_t)off, size);
	if (room < 0) {
		fuse_reply_err(req, (int)-room);
		return;
	}
	size = (size_t)room;
	f = n->fst;
	pthread_rwlock_rdlock(&f->data_lock);
	fd = get_fd(fs, n, O_RDWR, &temp);
	hbfs_test_pause(fs);
	r = fd < 0 ? fd : pwrite_all(fd, buf, size, off);
	pthread_rwlock_unlock(&f->data_lock);
	if (!r)
		r = after_write(req, fs, n, fd, &killed);
	put_fd(fd, temp);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
	if (killed) /* the kernel's cached mode still has the bits */
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

/* copy_file_range() between two files of the mount: data file to data file
 * in the kernel (or from the repository through a buffer when the source is
 * still lower), instead of the kernel's fallback, which moves every page
 * through a READ and a WRITE request (a 1 GiB cp took 8 s).  The kernel has
 * written back both ranges before asking and drops the destination's cached
 * pages after.  Only the destination's data lock is held, as for a write:
 * the source is read as any reader would, and holding both could deadlock
 * against a commit taking them in the other order. */
static void hb_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct hbfs *fs = FS(req);
	struct node *in = N(fs, ino_in), *out = N(fs, ino_out);
	struct file_state *f_in, *f_out;
	bool killed = false, in_upper;
	int in_fd = -1, r;
	ssize_t done = 0;

	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (len > COPY_RANGE_MAX_BYTES)
		len = COPY_RANGE_MAX_BYTES;
	r = ensure_upper_fd(fs, out);
	if (r >= 0)
		r = lazy_state(fs, in);
	if (r >= 0) {
		ssize_t room = quota_grow_write(fs, out, (uint64_t)off_out, len);

		if (room < 0)
			r = (int)room;
		else
			len = (size_t)room;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	rdlock(fs);
	f_in = in->fst;
	in_upper = (in->flags & NODE_UPPER_DATA) && f_in;
	/* an fd of its own, usable after the tree lock is let go */
	if (in_upper && f_in->fd >= 0 && (in_fd = fcntl(f_in->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		r = -errno;
	else if (in_upper && f_in->fd < 0 && (in_fd = upper_open_data(fs, in, O_RDONLY, 0)) < 0)
		r = in_fd;
	unlock(fs);
	if (!f_in || r < 0) {
		fuse_reply_err(req, f_in ? -r : EBADF);
		return;
	}
	f_out = out->fst;
	pthread_rwlock_rdlock(&f_out->data_lock);
	bool out_temp;
	int out_fd = get_fd(fs, out, O_RDWR, &out_temp);
	if (out_fd < 0) {
		done = out_fd;
	} else if (in_upper) {
		loff_t oi = off_in, oo = off_out;
		done = copy_file_range(in_fd, &oi, out_fd, &oo, len, 0);
		if (done < 0)
			done = -errno;
	} else if (len) {
		size_t want = len < READ_MAX_BYTES ? len : READ_MAX_BYTES;
		char *buf = malloc(want);

		done = buf ? lower_read(fs, (uint32_t)in->lower, f_in->chunk_end, buf, want,
					(uint64_t)off_in) : -ENOMEM;
		if (done > 0)
			r = pwrite_all(out_fd, buf, (size_t)done, off_out);
		if (r < 0)
			done = r;
		free(buf);
	}
	pthread_rwlock_unlock(&f_out->data_lock);
	if (in_fd >= 0)
		close(in_fd);
	if (done > 0 && (r = after_write(req, fs, out, out_fd, &killed)) < 0)
		done = r;
	put_fd(out_fd, out_temp);
	if (done < 0)
		fuse_reply_err(req, (int)-done);
	else
		fuse_reply_write(req, (size_t)done);
	if (killed)
		fuse_lowlevel_notify_inval_inode(fs->se, ino_out, -1, 0);
}

static void hb_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);

	if (fs->no_open) { /* opens end at FORGET (reply_created) */
		fuse_reply_err(req, 0);
		return;
	}
	wrlock(fs);
	node_close(fs, N(fs, ino));
	unlock(fs);
	fuse_reply_err(req, 0);
}

static void hb_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* Without an open reply there is no FOPEN_NOFLUSH: one ENOSYS stops
	 * FLUSH on every close (it has nothing to do here). */
	fuse_reply_err(req, FS(req)->no_open ? ENOSYS : 0);
}

static void hb_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	int fd = -1, r = 0;
	bool temp = false;

	rdlock(fs);
	if (n->flags & NODE_UPPER_DATA) {
		fd = get_fd(fs, n, O_RDONLY, &temp);
		if (fd < 0)
			r = -fd;
	}
	unlock(fs);
	if (fd >= 0 && (datasync ? fdatasync(fd) : fsync(fd)) < 0)
		r = errno;
	put_fd(fd, temp);
	if (!r)
		r = -upper_sync(fs);
	fuse_reply_err(req, r);
}

/* Directory handles hold a copy of the listing taken at opendir (and at a
 * rewind), so entries added or removed meanwhile never make readdir skip or
 * repeat others. */
/* Directories need no open state (readdir offsets are entry cookies, see
 * struct dir): where the kernel can do without OPENDIR we say so, and each
 * opendir/closedir on the mount costs no round trip; its listing is cached
 * by the kernel (FOPEN_CACHE_DIR, the kernel's default then) until the
 * directory changes. */
static void hb_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *d = N(fs, ino);

	if (!d->dir) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (fs->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->fh = 0;
	fi->keep_cache = 1;
	fi->cache_readdir = 1;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct hbfs *fs = FS(req);
	struct node *d = N(fs, ino), *parent;
	char *buf;
	size_t used = 0;
	bool ex;
	int r;

	(void)fi;
	if (size > READ_MAX_BYTES)
		size = READ_MAX_BYTES;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r = lock_loaded_dir(fs, d, &ex);
	if (r < 0) {
		unlock(fs);
		free(buf);
		fuse_reply_err(req, -r);
		return;
	}
	parent = d->dir->parent ? d->dir->parent : d;
	for (uint64_t dot = (uint64_t)off; dot < 2; dot++) {
		struct node *x = dot ? parent : d;
		size_t need;

		if (plus) {
			struct fuse_entry_param e = { .attr = { .st_ino = x->ino, .st_mode = x->mode } };
			need = fuse_add_direntry_plus(req, buf + used, size - used, dot ? ".." : ".", &e,
						      (off_t)dot + 1);
		} else {
			struct stat st = { .st_ino = x->ino, .st_mode = x->mode };
			need = fuse_add_direntry(req, buf + used, size - used, dot ? ".." : ".", &st,
						 (off_t)dot + 1);
		}
		if (need > size - used)
			goto full;
		used += need;
	}
	for (uint32_t i = dir_seek(d->dir, (uint64_t)off); i < d->dir->nents; i++) {
		const struct dir_ent *de = &d->dir->ents[i];
		struct node *n = de->child;
		size_t need;

		if (!n)
			continue;
		if (plus) {
			struct fuse_entry_param e;

			fill_entry(fs, n, &e);
			need = fuse_add_direntry_plus(req, buf + used, size - used, de->name, &e,
						      (off_t)de->cookie);
			if (need > size - used)
				break;
			lookup_ref(n);
		} else {
			struct stat st = { .st_ino = n->ino, .st_mode = n->mode };

			need = fuse_add_direntry(req, buf + used, size - used, de->name, &st,
						 (off_t)de->cookie);
			if (need > size - used)
				break;
		}
		used += need;
	}
full:
	unlock(fs);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void hb_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void hb_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void hb_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void hb_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -upper_sync(FS(req)));
}

static void hb_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct hbfs *fs = FS(req);
	struct statvfs sv;

	if (fstatvfs(fs->upper_fd, &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	quota_statfs(fs, &sv);
	sv.f_namemax = MANIFEST_NAME_MAX;
	sv.f_fsid = 0;
	fuse_reply_statfs(req, &sv);
}

/* Bytes of n's own xattrs, names and values (see HBFS_XATTR_NODE_MAX_BYTES). */
static size_t xattr_bytes(const struct node *n)
{
	size_t total = 0;

	for (uint32_t k = 0; k < n->nxattrs; k++)
		total += strlen(n->xattrs[k].name) + n->xattrs[k].len;
	return total;
}

/* Bytes listxattr() gives for n's own xattrs: each name and its NUL. */
static size_t xattr_list_bytes(const struct node *n)
{
	size_t total = 0;

	for (uint32_t k = 0; k < n->nxattrs; k++)
		total += strlen(n->xattrs[k].name) + 1;
	return total;
}

/* Remove xattr x of n (n owns its xattrs; x NULL: none to remove) and set
 * its mode, in one record; memory changes only once the record is in. */
static int xattr_drop(struct hbfs *fs, struct node *n, struct xattr *x, uint32_t mode)
{
	struct xattr gone = x ? *x : (struct xattr){ 0 };
	struct node_meta old = node_meta_save(n);
	int r;

	if (x)
		*x = n->xattrs[--n->nxattrs];
	n->mode = mode;
	n->ctime = now_ts();
	r = x ? journal_xattr(fs, n, gone.name, false) : journal_nodes(fs, n, NULL);
	if (r < 0) {
		node_meta_restore(n, &old);
		if (x) {
			n->xattrs[n->nxattrs++] = *x;
			*x = gone;
		}
	} else {
		free(gone.name);
		free(gone.value);
	}
	return r;
}

/* What setting an ACL does beside storing it (posix_acl_update_mode on
 * ext4): an access ACL sets the mode's permission bits (the group's from
 * its mask), and setgid goes when the kernel says the caller may not keep
 * it; an access ACL the mode says all of is not kept (returns 0, else 1).
 * value is stored-form; -EINVAL when malformed. */
static int acl_setting(const char *name, const uint8_t *value, size_t size, uint32_t *mode)
{
	int r;

	if (!strcmp(name, ACL_XATTR_DEFAULT))
		return acl_check(value, size) < 0 ? -EINVAL : 1;
	if (strcmp(name, ACL_XATTR_ACCESS))
		return 1;
	r = acl_equiv_mode(value, size, mode);
	if (r >= 0 && acl_kill_sgid)
		*mode &= ~(uint32_t)S_ISGID;
	return r;
}

/* Memory changes only once the record is in: a change the journal refused
 * (upper disk full) is not seen either, now or after a remount. */
static void hb_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	struct xattr *x, old;
	struct node_meta old_meta;
	uint32_t mode;
	uint8_t *copy;
	int r;

	if (strlen(name) > 255 || !*name) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (size > MANIFEST_MAX_XATTR_VALUE) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	wrlock(fs);
	r = node_xattrs_own(fs, n);
	if (r < 0)
		goto out;
	x = node_xattr_find(n, name);
	if (x && (flags & XATTR_CREATE)) {
		r = -EEXIST;
		goto out;
	}
	if (!x && (flags & XATTR_REPLACE)) {
		r = -ENODATA;
		goto out;
	}
	/* A new name must leave the list within what listxattr() can return
	 * (XATTR_LIST_MAX): past it every tool that lists (getfattr, cp -a,
	 * tar --xattrs) fails on the file with E2BIG. */
	if ((!x && (n->nxattrs >= 1024 ||
		    xattr_list_bytes(n) + strlen(name) + 1 > XATTR_LIST_MAX)) ||
	    xattr_bytes(n) - (x ? strlen(name) + x->len : 0) + strlen(name) + size >
		    HBFS_XATTR_NODE_MAX_BYTES) {
		r = -ENOSPC;
		goto out;
	}
	copy = memdup(value, size);
	if (!copy) {
		r = -ENOMEM;
		goto out;
	}
	xattr_shift_ids(fs, name, copy, size, false);
	mode = n->mode;
	r = acl_setting(name, copy, size, &mode);
	if (r <= 0) {
		free(copy);
		if (!r)
			r = xattr_drop(fs, n, x, mode);
		goto out;
	}
	if (!x) {
		x = node_xattr_add(n, name, NULL, 0);
		if (!x) {
			free(copy);
			r = -ENOMEM;
			goto out;
		}
	}
	old = *x;
	old_meta = node_meta_save(n);
	x->value = copy;
	x->len = (uint32_t)size;
	n->mode = mode;
	n->ctime = now_ts();
	r = journal_xattr(fs, n, name, false);
	if (r < 0) {
		*x = old;
		node_meta_restore(n, &old_meta);
		free(copy);
		if (!old.value) { /* it was new: the last one */
			free(x->name);
			n->nxattrs--;
		}
	} else {
		free(old.value);
	}
out:
	unlock(fs);
	fuse_reply_err(req, -r);
}

static void reply_sized(fuse_req_t req, const void *data, size_t len, size_t size)
{
	if (!size)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, data, len);
}

/* A value as the caller sees it: ids in it shifted (xattr_shift_ids). */
static void reply_value(fuse_req_t req, struct hbfs *fs, const char *name, const void *value,
			size_t len, size_t size)
{
	uint8_t *shifted;

	if (!fs->opts.uid_shift || !size || len > size) {
		reply_sized(req, value, len, size);
		return;
	}
	shifted = malloc(len ? len : 1);
	if (!shifted) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(shifted, value, len);
	xattr_shift_ids(fs, name, shifted, len, true);
	reply_sized(req, shifted, len, size);
	free(shifted);
}

static void hb_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct hbfs *fs = FS(req);
	const uint8_t *value;
	uint32_t len;

	rdlock(fs);
	if (node_xattr_get(fs, N(fs, ino), name, &value, &len))
		reply_value(req, fs, name, value, len, size);
	else
		fuse_reply_err(req, ENODATA);
	unlock(fs);
}

static void hb_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	struct buf b = { .max = HBFS_XATTR_LIST_MAX * 4 };
	int r = 0;

	rdlock(fs);
	if (n->flags & NODE_XATTR_OWN) {
		for (uint32_t k = 0; k < n->nxattrs && !r; k++)
			r = buf_append(&b, n->xattrs[k].name, strlen(n->xattrs[k].name) + 1);
	} else {
		const struct manifest_node *mn = manifest_node(fs->m, (uint32_t)n->lower);

		for (uint32_t k = 0; k < mn->nxattrs && !r; k++) {
			struct manifest_xattr x;

			manifest_xattr(fs->m, (uint32_t)n->lower, k, &x);
			r = buf_append(&b, x.name, strlen(x.name) + 1);
		}
	}
	unlock(fs);
	if (r < 0)
		fuse_reply_err(req, E2BIG);
	else
		reply_sized(req, b.data ? (void *)b.data : "", b.len, size);
	buf_free(&b);
}

static void hb_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	struct xattr *x;
	int r;

	wrlock(fs);
	r = node_xattrs_own(fs, n);
	if (r < 0)
		goto out;
	x = node_xattr_find(n, name);
	if (x)
		r = xattr_drop(fs, n, x, n->mode);
	else if (fs->posix_acl &&
		 (!strcmp(name, ACL_XATTR_ACCESS) || !strcmp(name, ACL_XATTR_DEFAULT)))
		r = 0; /* removing an ACL that is not there is no error (ext4) */
	else
		r = -ENODATA;
out:
	unlock(fs);
	fuse_reply_err(req, -r);
}

static void hb_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	off_t res = -1;
	int err = 0;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((err = -lazy_state(fs, n)) > 0) {
		fuse_reply_err(req, err);
		return;
	}
	rdlock(fs);
	if (n->flags & NODE_UPPER_DATA) {
		bool temp;
		int fd = get_fd(fs, n, O_RDONLY, &temp);

		res = fd < 0 ? -1 : lseek(fd, off, whence);
		if (res < 0)
			err = fd < 0 ? -fd : errno;
		put_fd(fd, temp);
	} else if (off < 0 || (uint64_t)off >= n->size) {
		err = ENXIO;
	} else if (n->lower < 0 || !n->fst || !n->fst->chunk_end ||
		   !manifest_node(fs->m, (uint32_t)n->lower)->nchunks) {
		res = whence == SEEK_DATA ? off : (off_t)n->size;
	} else {
		const struct manifest_node *mn = manifest_node(fs->m, (uint32_t)n->lower);
		const struct manifest_chunk *c = manifest_chunks(fs->m, (uint32_t)n->lower);
		const uint64_t *ends = n->fst->chunk_end;
		bool want_hole = whence == SEEK_HOLE;

		res = whence == SEEK_DATA ? -1 : (off_t)n->size;
		for (uint32_t k = 0; k < mn->nchunks; k++) {
			if (ends[k] <= (uint64_t)off)
				continue;
			if (oid_is_zero(&c[k].id) == want_hole) {
				uint64_t start = ends[k] - c[k].size;

				res = (off_t)(start > (uint64_t)off ? start : (uint64_t)off);
				break;
			}
		}
		if (res < 0)
			err = ENXIO;
	}
	unlock(fs);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_lseek(req, res);
}

static void hb_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct hbfs *fs = FS(req);
	struct node *n = N(fs, ino);
	bool killed = false, temp = false;
	int fd, r;

	r = ensure_upper_fd(fs, n);
	/* an allocation counts up to its end, inside the size or not (a
	 * punched hole keeps the size, and so its charge) */
	if (r >= 0 && !(mode & FALLOC_FL_PUNCH_HOLE))
		r = quota_grow(fs, n, (uint64_t)off + (uint64_t)len);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	pthread_rwlock_rdlock(&n->fst->data_lock);
	fd = get_fd(fs, n, O_RDWR, &temp);
	r = fd < 0 ? fd : fallocate(fd, mode, off, len) < 0 ? -errno : 0;
	pthread_rwlock_unlock(&n->fst->data_lock);
	if (!r)
		r = after_write(req, fs, n, fd, &killed);
	put_fd(fd, temp);
	fuse_reply_err(req, -r);
	if (killed)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

static void hb_init(void *userdata, struct fuse_conn_info *conn)
{
	struct hbfs *fs = userdata;

	/* Files open without a message (hb_open answers ENOSYS once): no OPEN
	 * round trip per open of a file; O_TRUNC then arrives as a SETATTR, so
	 * no atomic truncating open.  HIBERBOX_FS_OPEN_REQUESTS=1 keeps OPENs
	 * (for A/B measurements). */
	fs->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) &&
		      !getenv("HIBERBOX_FS_OPEN_REQUESTS");
	fs->no_create = fs->no_open && !getenv("HIBERBOX_FS_CREATE_REQUESTS");
	if ((conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) && !fs->no_open)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	else /* libfuse wants it by default */
		conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	fs->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	/* Data is written through: no writeback cache, so mtime/size are ours. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	/* We clear setuid/setgid (kill_suidgid): see hbfs_io. */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ; /* requests go through io_read */
	/* POSIX ACLs as ext4 has them: the kernel reads (and caches) them for
	 * its permission checks; keeping them and the mode in step, the
	 * inheritance of default ACLs and so the umask (the kernel leaves new
	 * modes unmasked: FUSE_DONT_MASK) are ours (acl.h, acl_inherit). */
	fs->posix_acl = (conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK);
	if (fs->posix_acl)
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	if (!fuse_session_custom_io(fs->se, &hbfs_io, fuse_session_fd(fs->se))) {
		/* the extended SETXATTR came with protocol 7.33 */
		setxattr_ext = fs->posix_acl && conn->proto_minor >= 33;
		__atomic_store_n(&init_reply_pending, true, __ATOMIC_RELEASE);
	}
	conn->max_readahead = 1u << 20;
	/* One write() of up to 1 MiB arrives as one request, so a commit
	 * captures it wholly or not at all (and big writes cost fewer trips). */
	conn->max_write = 1u << 20;
	/* The payload a ring entry holds: max_write, which libfuse also makes
	 * max_pages. */
	if (__atomic_load_n(&init_reply_pending, __ATOMIC_ACQUIRE) && !uring_opted_out() &&
	    uring_enable()) {
		int r = uring_start(fs->se, fuse_session_fd(fs->se), conn->max_write,
				    request_prepare, &fs->uring);

		if (r < 0)
			fprintf(stderr, "hiberbox-fs: io_uring queues: %s; requests stay on /dev/fuse\n",
				strerror(-r));
		uring_pending = fs->uring;
	}
}

const struct fuse_lowlevel_ops hbfs_ops = {
	.init = hb_init,
	.lookup = hb_lookup,
	.forget = hb_forget,
	.forget_multi = hb_forget_multi,
	.getattr = hb_getattr,
	.setattr = hb_setattr,
	.readlink = hb_readlink,
	.mknod = hb_mknod,
	.mkdir = hb_mkdir,
	.symlink = hb_symlink,
	.unlink = hb_unlink,
	.rmdir = hb_rmdir,
	.rename = hb_rename,
	.link = hb_link,
	.open = hb_open,
	.create = hb_create,
	.read = hb_read,
	.write = hb_write,
	.copy_file_range = hb_copy_file_range,
	.flush = hb_flush,
	.release = hb_release,
	.fsync = hb_fsync,
	.opendir = hb_opendir,
	.readdir = hb_readdir,
	.readdirplus = hb_readdirplus,
	.releasedir = hb_releasedir,
	.fsyncdir = hb_fsyncdir,
	.statfs = hb_statfs,
	.setxattr = hb_setxattr,
	.getxattr = hb_getxattr,
	.listxattr = hb_listxattr,
	.removexattr = hb_removexattr,
	.lseek = hb_lseek,
	.fallocate = hb_fallocate,
};
