/* Lower content: the hot-list prefetch (the rest of lower.c's interface is in
 * fs-int.h). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct hbfs;

/* Start decoding the hot list of the mounted snapshot (the chunks the
 * previous mount read first, in that order) into the chunk cache in the
 * background, a bounded window ahead of what readers have used.  Best
 * effort: failures only mean the chunks are read on demand. */
void lower_prefetch_hot(struct hbfs *fs);

struct lower_stats {
	uint32_t hot_count;      /* chunks in the mounted snapshot's hot list */
	uint32_t prefetched;     /* of them decoded by the prefetch */
	uint32_t prefetch_hits;  /* prefetched chunks a reader then used */
	uint32_t prefetch_failed;
	uint32_t fetched;        /* chunks read from the repository (all causes) */
	uint32_t recorded;       /* hot list recorded so far for the next commit */
	bool prefetch_done;
};
void lower_stats(struct hbfs *fs, struct lower_stats *out);
