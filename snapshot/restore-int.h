/* The read side of snapshot restore (restore-fetch.c), shared with the file
 * side (restore.c).
 *
 * restore.c knows files: it creates them, writes bytes where they belong and
 * sets their metadata.  restore-fetch.c knows packs: it plans every chunk the
 * restored files need by pack, reads each pack in as few ranges as possible
 * with many requests in flight, verifies every chunk and hands its bytes to
 * restore.c as soon as its range has arrived, while other ranges are still
 * on the way.
 */
#pragma once
#include <stdatomic.h>

#include "util/workqueue.h"

#include "snapshot/repo-int.h"

/* A range read holds at most this much (memory: fetchers x this)... */
#define RESTORE_RANGE_MAX_BYTES (8u << 20)
/* ... and at least this much when the restore is small: ranges are cut so
 * that there are about RESTORE_RANGES_PER_FETCHER per fetcher, which keeps
 * every fetcher busy and lets files be written while most bytes are still
 * on the way, instead of after a few big ranges have landed. */
#define RESTORE_RANGE_MIN_BYTES (1u << 20)
#define RESTORE_RANGES_PER_FETCHER 2
/* Ranges fetched but not yet written hold at most this much memory (one
 * range is always allowed): fetchers wait for writers beyond it. */
#define RESTORE_LANDED_MAX_BYTES (128u << 20)
/* Blobs closer than this are read in one range, the gap read and dropped:
 * a request costs a round trip, a few hundred KiB cost less on any link
 * where round trips matter. */
#define RESTORE_RANGE_GAP_BYTES (256u << 10)

struct restore_fetch {
	struct repo *repo;
	const struct manifest *m;
	char *const *paths; /* relative path of every entry, for messages */
	unsigned fetchers;  /* ranges in flight */
	/* Where landed ranges are decoded, verified and handed to put: the
	 * restore's pool of file creators (few threads: creating files, the
	 * slow part, gains nothing from more threads than cores and contends
	 * in the filesystem).  Jobs are queued here as ranges land. */
	struct workqueue *writers;
	/* Called from the fetch threads once for every chunk use (file entry,
	 * byte offset in it), with its verified bytes.  @return 0, or a negative
	 * errno with a message: the restore stops. */
	int (*put)(void *arg, uint32_t file, uint64_t off, const void *data, size_t len);
	/* Record a failure of the fetch side (its message is in hb_err). */
	void (*fail)(void *arg, int r);
	void *arg;
	/* Non-zero once any part of the restore failed: no new range starts. */
	const _Atomic int *cancel;
};

struct restore_fetch_run;

/* Plan the chunks of `files` (regular file entries stored as chunks; holes
 * are skipped) and start reading them on f->fetchers threads.  f and files
 * must live until restore_fetch_wait.  @return 0, or a negative errno with a
 * message when planning failed (nothing was started). */
int restore_fetch_start(const struct restore_fetch *f, const uint32_t *files, size_t nfiles,
			struct restore_fetch_run **out);
/* Wait for every started range to be fetched and written (f->writers is
 * waited for: all its jobs, not only the ranges) and free the run.
 * Failures went to f->fail. */
void restore_fetch_wait(struct restore_fetch_run *run);
