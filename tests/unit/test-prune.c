/* The retention policy's choices (snapshot/prune.c), on made-up listings:
 * groups by host and directory, newest by time to the nanosecond whatever
 * the listing order, tagged ones extra, snapshots of no directory kept. */
#include "snapshot/snapshot.h"

#include "test.h"

static struct repo_snapshot_summary items[16];
static size_t n;

static void add(const char *host, const char *source, int64_t sec, uint32_t nsec, const char *tags)
{
	struct repo_snapshot_summary *s = &items[n];

	memset(s, 0, sizeof(*s));
	s->id.b[0] = (uint8_t)n;
	snprintf(s->info.host, sizeof(s->info.host), "%s", host);
	snprintf(s->info.source, sizeof(s->info.source), "%s", source);
	s->info.time_sec = sec;
	s->info.time_nsec = nsec;
	snprintf(s->tags, sizeof(s->tags), "%s", tags);
	n++;
}

static void check_verdicts(const struct repo_prune_policy *p, const enum repo_prune_verdict *want)
{
	enum repo_prune_verdict got[16];

	CHECK_OK(repo_prune_select(items, n, p, got));
	for (size_t i = 0; i < n; i++) {
		CHECK(got[i] == want[i]);
		if (got[i] != want[i])
			fprintf(stderr, "  item %zu: %s, expected %s\n", i, repo_prune_reason(got[i]),
				repo_prune_reason(want[i]));
	}
}

int main(void)
{
	/* listed out of time order on purpose (clocks of different hosts) */
	add("h1", "/w", 100, 5, "");     /* 0 */
	add("h1", "/w", 100, 9, "");     /* 1: newest of h1:/w (same second, later ns) */
	add("h1", "/w", 50, 0, "");      /* 2 */
	add("h1", "/w", 99, 0, "rel");   /* 3: tagged */
	add("h2", "/w", 10, 0, "");      /* 4: same path, another host: its own group */
	add("h1", "", 1, 0, "");         /* 5: a commit */
	add("h1", "/v", 20, 0, "");      /* 6 */
	add("h1", "/v", 30, 0, "");      /* 7 */

	enum repo_prune_verdict last1[] = { PRUNE_REMOVE, PRUNE_KEEP_LAST, PRUNE_REMOVE, PRUNE_KEEP_TAGGED,
					    PRUNE_KEEP_LAST, PRUNE_KEEP_NO_SOURCE, PRUNE_REMOVE,
					    PRUNE_KEEP_LAST };
	check_verdicts(&(struct repo_prune_policy){ .keep_last = 1, .keep_within_sec = -1, .now_sec = 200 },
		       last1);

	enum repo_prune_verdict last2[] = { PRUNE_KEEP_LAST, PRUNE_KEEP_LAST, PRUNE_REMOVE, PRUNE_KEEP_TAGGED,
					    PRUNE_KEEP_LAST, PRUNE_KEEP_NO_SOURCE, PRUNE_KEEP_LAST,
					    PRUNE_KEEP_LAST };
	check_verdicts(&(struct repo_prune_policy){ .keep_last = 2, .keep_within_sec = -1, .now_sec = 200 },
		       last2);

	/* only the newest of each directory (whatever the tag of another) */
	enum repo_prune_verdict last0[] = { PRUNE_REMOVE, PRUNE_KEEP_NEWEST, PRUNE_REMOVE, PRUNE_KEEP_TAGGED,
					    PRUNE_KEEP_NEWEST, PRUNE_KEEP_NO_SOURCE, PRUNE_REMOVE,
					    PRUNE_KEEP_NEWEST };
	check_verdicts(&(struct repo_prune_policy){ .keep_last = 0, .keep_within_sec = -1, .now_sec = 200 },
		       last0);

	/* within 150 s of 200: taken at 50 and later (the bound included) */
	enum repo_prune_verdict within[] = { PRUNE_KEEP_WITHIN, PRUNE_KEEP_NEWEST, PRUNE_KEEP_WITHIN,
					     PRUNE_KEEP_TAGGED, PRUNE_KEEP_NEWEST, PRUNE_KEEP_NO_SOURCE,
					     PRUNE_REMOVE, PRUNE_KEEP_NEWEST };
	check_verdicts(&(struct repo_prune_policy){ .keep_last = 0, .keep_within_sec = 150, .now_sec = 200 },
		       within);

	/* one directory only */
	enum repo_prune_verdict only_v[] = { PRUNE_KEEP_OTHER_SOURCE, PRUNE_KEEP_OTHER_SOURCE,
					     PRUNE_KEEP_OTHER_SOURCE, PRUNE_KEEP_OTHER_SOURCE,
					     PRUNE_KEEP_OTHER_SOURCE, PRUNE_KEEP_NO_SOURCE, PRUNE_REMOVE,
					     PRUNE_KEEP_NEWEST };
	check_verdicts(&(struct repo_prune_policy){ .keep_last = 0, .keep_within_sec = -1, .now_sec = 200,
						    .source = "/v", .host = "h1" },
		       only_v);

	/* an empty repository */
	n = 0;
	check_verdicts(&(struct repo_prune_policy){ .keep_last = 0, .keep_within_sec = -1 }, NULL);
	TEST_MAIN_END();
}
