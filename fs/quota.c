/* The disk limit: what a sandbox's tree may take, as a disk of that size
 * would (mount --disk-limit, hbfs_opts.upper_limit).  The tree is the lower
 * snapshot's files plus the upper directory's data files and journal, so
 * the limit holds across any number of commits and remounts: what a commit
 * moved into the lower snapshot still counts on the next mount.
 *
 * Counted in memory (fs->used, under quota_lock) from the start of the
 * mount: every lower regular file counts its manifest size rounded to a
 * block, once per hard-link group (quota_lower_init, one pass over the
 * manifest); a node that stands for a lower file carries that charge in
 * n->charged, so that its copy-up takes nothing more and its data file's
 * charge replaces the lower one, and its last name and handle going gives
 * it back.  Replay charges every data file it finds and the journal as it
 * is, so a remount or a restart after SIGKILL starts from the truth on disk.
 * Growth is checked before it is made; what shrinks is settled after. */
#include <errno.h>
#include <pthread.h>

#include "fs/fs-int.h"

static uint64_t round_block(uint64_t v)
{
	const uint64_t block = HBFS_LIMIT_BLOCK_BYTES;

	return (v + block - 1) / block * block;
}

uint64_t quota_charge_of(const struct stat *st)
{
	uint64_t logical = round_block((uint64_t)st->st_size);
	uint64_t allocated = (uint64_t)st->st_blocks * 512u;

	/* a sparse file counts whole: a hole is a promise of disk the
	 * sandbox can fill with no further growth of its size */
	return logical > allocated ? logical : allocated;
}

/* Lower entry i (a hard-link group's leader) as the limit counts it: its
 * size, which the manifest has, rounded as a data file's is.  Holes count,
 * as in a data file: the manifest keeps no allocation. */
static uint64_t lower_charge(const struct hbfs *fs, uint32_t i)
{
	const struct manifest_node *mn = manifest_node(fs->m, i);

	return S_ISREG(mn->mode) ? round_block(mn->size) : 0;
}

void quota_lower_init(struct hbfs *fs)
{
	uint64_t sum;

	if (!fs->upper_limit)
		return;
	/* lower_charge's rule, for every group at once */
	sum = manifest_file_bytes(fs->m, HBFS_LIMIT_BLOCK_BYTES);
	pthread_mutex_lock(&fs->quota_lock);
	fs->used += sum;
	pthread_mutex_unlock(&fs->quota_lock);
}

void quota_lower_node(struct hbfs *fs, struct node *n)
{
	if (fs->upper_limit && n->lower >= 0)
		n->charged = lower_charge(fs, (uint32_t)n->lower);
}

/* Charges n up to want bytes, or (partial) as much of it as fits: what n
 * is charged now, which is below want only when it did not all fit. */
static uint64_t grow_locked(struct hbfs *fs, struct node *n, uint64_t want, bool partial)
{
	uint64_t room;

	if (want <= n->charged)
		return want;
	room = fs->used < fs->upper_limit ? fs->upper_limit - fs->used : 0;
	if (want - n->charged > room && !partial)
		return n->charged;
	if (want - n->charged > room)
		want = n->charged + room - room % HBFS_LIMIT_BLOCK_BYTES;
	fs->used += want - n->charged;
	n->charged = want;
	return want;
}

int quota_grow(struct hbfs *fs, struct node *n, uint64_t end)
{
	uint64_t want = round_block(end), got;

	if (!fs->upper_limit)
		return 0;
	pthread_mutex_lock(&fs->quota_lock);
	got = grow_locked(fs, n, want, false);
	pthread_mutex_unlock(&fs->quota_lock);
	return got >= want ? 0 : -ENOSPC;
}

ssize_t quota_grow_write(struct hbfs *fs, struct node *n, uint64_t off, size_t len)
{
	uint64_t got;

	if (!fs->upper_limit || !len)
		return (ssize_t)len;
	pthread_mutex_lock(&fs->quota_lock);
	got = grow_locked(fs, n, round_block(off + len), true);
	pthread_mutex_unlock(&fs->quota_lock);
	if (got >= off + len)
		return (ssize_t)len;
	return got > off ? (ssize_t)(got - off) : -ENOSPC;
}

void quota_settle(struct hbfs *fs, struct node *n, const struct stat *st, bool exact)
{
	uint64_t now = quota_charge_of(st);

	if (!fs->upper_limit)
		return;
	pthread_mutex_lock(&fs->quota_lock);
	if (exact || now > n->charged) {
		fs->used = fs->used - n->charged + now;
		n->charged = now;
	}
	pthread_mutex_unlock(&fs->quota_lock);
}

void quota_release(struct hbfs *fs, struct node *n)
{
	uint64_t left = 0;

	if (!fs->upper_limit)
		return;
	/* a node still referenced lost a data file it was getting (a copy-up
	 * undone): its lower file is what it shows again */
	if (n->lower >= 0 && (n->nlink || n->nlookup || n->nopen))
		left = lower_charge(fs, (uint32_t)n->lower);
	pthread_mutex_lock(&fs->quota_lock);
	fs->used = fs->used - n->charged + left;
	n->charged = left;
	pthread_mutex_unlock(&fs->quota_lock);
}

void quota_usage(struct hbfs *fs, uint64_t *used, uint64_t *limit)
{
	pthread_mutex_lock(&fs->quota_lock);
	*used = fs->used;
	*limit = fs->upper_limit;
	pthread_mutex_unlock(&fs->quota_lock);
}

int quota_journal_check(struct hbfs *fs, uint64_t len, bool frees)
{
	int r = 0;

	if (!fs->upper_limit || frees)
		return 0;
	pthread_mutex_lock(&fs->quota_lock);
	if (fs->used + len > fs->upper_limit)
		r = -ENOSPC;
	pthread_mutex_unlock(&fs->quota_lock);
	return r;
}

void quota_journal_done(struct hbfs *fs, uint64_t len)
{
	if (!fs->upper_limit)
		return;
	pthread_mutex_lock(&fs->quota_lock);
	fs->used += len;
	pthread_mutex_unlock(&fs->quota_lock);
}

void quota_statfs(struct hbfs *fs, struct statvfs *sv)
{
	uint64_t used, bsize = sv->f_frsize ? sv->f_frsize : sv->f_bsize;
	uint64_t blocks, free_blocks;

	if (!fs->upper_limit || !bsize)
		return;
	pthread_mutex_lock(&fs->quota_lock);
	used = fs->used;
	pthread_mutex_unlock(&fs->quota_lock);
	blocks = fs->upper_limit / bsize;
	free_blocks = used < fs->upper_limit ? (fs->upper_limit - used) / bsize : 0;
	sv->f_blocks = blocks;
	if (sv->f_bfree > free_blocks)
		sv->f_bfree = free_blocks;
	if (sv->f_bavail > free_blocks)
		sv->f_bavail = free_blocks;
}
