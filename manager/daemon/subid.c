/* Subordinate id ranges (subid.h). */
#include "manager/daemon/subid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines are "user:first:count" (user may be a name or a number). */
static bool file_overlaps(const char *path, uint64_t start, uint64_t count)
{
	FILE *f = fopen(path, "re");
	char line[512];
	bool hit = false;

	if (!f)
		return false;
	while (!hit && fgets(line, sizeof(line), f)) {
		char *first = strchr(line, ':'), *end;
		uint64_t lo, n;

		if (!first || line[0] == '#')
			continue;
		lo = strtoull(first + 1, &end, 10);
		if (end == first + 1 || *end != ':')
			continue;
		n = strtoull(end + 1, &end, 10);
		if (n == 0 || lo > UINT64_MAX - n)
			continue;
		hit = lo < start + count && start < lo + n;
	}
	fclose(f);
	return hit;
}

bool subid_overlaps(uint64_t start, uint64_t count)
{
	const char *u = getenv("HIBERBOX_SUBUID_FILE"), *g = getenv("HIBERBOX_SUBGID_FILE");

	return file_overlaps(u && *u ? u : "/etc/subuid", start, count) ||
	       file_overlaps(g && *g ? g : "/etc/subgid", start, count);
}
