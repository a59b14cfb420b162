/* Which snapshots a retention policy lets go (snapshot.h: repo_prune_select).
 *
 * Snapshots are grouped by the directory they were taken of (host and
 * source path): "the last N" means the last N of each workspace, not of the
 * whole repository, where a busy directory would push out a quiet one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapshot.h"
#include "util/error.h"

static bool same_group(const struct manifest_info *a, const struct manifest_info *b)
{
	return !strcmp(a->source, b->source) && !strcmp(a->host, b->host);
}

static bool newer(const struct manifest_info *a, const struct manifest_info *b)
{
	return a->time_sec != b->time_sec ? a->time_sec > b->time_sec : a->time_nsec > b->time_nsec;
}

int repo_prune_select(const struct repo_snapshot_summary *items, size_t n,
		      const struct repo_prune_policy *p, enum repo_prune_verdict *out)
{
	bool *done;

	if (!(done = calloc(n ? n : 1, sizeof(*done))))
		return hb_err(-ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct manifest_info *in = &items[i].info;

		if (!in->source[0])
			out[i] = PRUNE_KEEP_NO_SOURCE;
		else if (p->source && (strcmp(in->source, p->source) || strcmp(in->host, p->host)))
			out[i] = PRUNE_KEEP_OTHER_SOURCE;
		else if (items[i].tags[0])
			out[i] = PRUNE_KEEP_TAGGED;
		else
			out[i] = PRUNE_REMOVE;
	}
	/* each group on its own, newest first: a selection sort over the
	 * group's members is fine at the few thousand snapshots a repository
	 * lists */
	for (size_t g = 0; g < n; g++) {
		uint64_t rank = 0; /* among the candidates: tagged ones are extra */
		bool newest = true;

		if (done[g] || !items[g].info.source[0])
			continue;
		for (;;) {
			size_t best = n;

			for (size_t i = g; i < n; i++)
				if (!done[i] && same_group(&items[i].info, &items[g].info) &&
				    (best == n || newer(&items[i].info, &items[best].info)))
					best = i;
			if (best == n)
				break;
			done[best] = true;
			if (out[best] == PRUNE_REMOVE) {
				if (++rank <= p->keep_last)
					out[best] = PRUNE_KEEP_LAST;
				else if (newest)
					out[best] = PRUNE_KEEP_NEWEST;
				else if (p->keep_within_sec >= 0 &&
					 items[best].info.time_sec >= p->now_sec - p->keep_within_sec)
					out[best] = PRUNE_KEEP_WITHIN;
			}
			newest = false;
		}
	}
	free(done);
	return 0;
}

const char *repo_prune_reason(enum repo_prune_verdict v)
{
	switch (v) {
	case PRUNE_REMOVE: return "remove";
	case PRUNE_KEEP_NEWEST: return "newest of its directory";
	case PRUNE_KEEP_LAST: return "within --keep-last";
	case PRUNE_KEEP_WITHIN: return "within --keep-within";
	case PRUNE_KEEP_TAGGED: return "tagged";
	case PRUNE_KEEP_NO_SOURCE: return "not of a directory (a commit or an image)";
	case PRUNE_KEEP_OTHER_SOURCE: return "of another directory";
	}
	return "?";
}
