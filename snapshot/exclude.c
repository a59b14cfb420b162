/* Exclude patterns (exclude.h). */
#include "snapshot/exclude.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

struct exclude_pat {
	char *text;          /* the components, each NUL-terminated */
	const char **parts;  /* into text; "**" components are kept as "**" */
	size_t nparts;
	bool by_name;        /* no '/': parts[0] against the entry's name */
};

struct exclude_set {
	struct exclude_pat *pats;
	size_t n;
	bool any_path; /* some pattern needs the entry's whole path */
};

static bool is_globstar(const char *part)
{
	return part[0] == '*' && part[1] == '*' && part[2] == '\0';
}

/* Split p into components: "." and empty ones dropped, runs of "**"
 * folded into one (they match the same). */
static int parse_pattern(const char *p, struct exclude_pat *out)
{
	size_t len = strlen(p), cap = 1;

	if (len == 0 || len >= PATH_MAX)
		return hb_err(-EINVAL, "exclude pattern '%.64s%s': %s", p, len > 64 ? "..." : "",
			      len ? "longer than PATH_MAX" : "empty");
	out->by_name = !strchr(p, '/');
	if (!(out->text = strdup(p)))
		return -ENOMEM;
	for (const char *c = p; *c; c++)
		cap += *c == '/';
	if (!(out->parts = calloc(cap, sizeof(*out->parts))))
		return -ENOMEM;
	out->nparts = 0;
	for (char *save = NULL, *part = strtok_r(out->text, "/", &save); part;
	     part = strtok_r(NULL, "/", &save)) {
		if (!out->by_name && !strcmp(part, "."))
			continue;
		if (!out->by_name && !strcmp(part, ".."))
			return hb_err(-EINVAL, "exclude pattern '%s': '..' would leave the tree", p);
		if (out->nparts && is_globstar(part) && is_globstar(out->parts[out->nparts - 1]))
			continue;
		out->parts[out->nparts++] = part;
	}
	if (out->nparts == 0)
		return hb_err(-EINVAL, "exclude pattern '%s' names the root itself", p);
	return 0;
}

void exclude_set_free(struct exclude_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->pats[i].text);
		free(s->pats[i].parts);
	}
	free(s->pats);
	free(s);
}

int exclude_set_new(const char *const *patterns, size_t n, struct exclude_set **out)
{
	struct exclude_set *s = calloc(1, sizeof(*s));
	int r = 0;

	*out = NULL;
	if (!s || !(s->pats = calloc(n ? n : 1, sizeof(*s->pats)))) {
		free(s);
		return -ENOMEM;
	}
	for (; s->n < n; s->n++) {
		struct exclude_pat *pat = &s->pats[s->n];

		if ((r = parse_pattern(patterns[s->n], pat)) < 0) {
			s->n++; /* freed with the others */
			exclude_set_free(s);
			return r;
		}
		s->any_path |= !pat->by_name;
	}
	*out = s;
	return 0;
}

/* Do parts[i..] match the path components from comp on (NUL-separated,
 * ending at end)?  A "**" tries every split; patterns are short, paths
 * shallow, so the backtracking stays small. */
static bool match_parts(const struct exclude_pat *pat, size_t i, const char *comp, const char *end)
{
	for (; i < pat->nparts; i++) {
		if (is_globstar(pat->parts[i])) {
			if (i + 1 == pat->nparts)
				return comp < end; /* one or more */
			for (const char *c = comp; c < end; c += strlen(c) + 1)
				if (match_parts(pat, i + 1, c, end))
					return true;
			return match_parts(pat, i + 1, end, end);
		}
		if (comp >= end || fnmatch(pat->parts[i], comp, 0) != 0)
			return false;
		comp += strlen(comp) + 1;
	}
	return comp >= end;
}

bool exclude_set_match(const struct exclude_set *s, const char *dirpath, const char *name)
{
	char path[PATH_MAX + NAME_MAX + 2];
	size_t dl, nl;

	if (!s)
		return false;
	for (size_t i = 0; i < s->n; i++)
		if (s->pats[i].by_name && fnmatch(s->pats[i].parts[0], name, 0) == 0)
			return true;
	if (!s->any_path)
		return false;
	/* The path, split in place into NUL-terminated components. */
	dl = strlen(dirpath);
	nl = strlen(name);
	if (dl + nl + 2 > sizeof(path))
		return false; /* longer than any path the walk can open */
	memcpy(path, dirpath, dl);
	if (dl)
		path[dl++] = '\0';
	memcpy(path + dl, name, nl + 1);
	for (size_t k = 0; k < dl; k++)
		if (path[k] == '/')
			path[k] = '\0';
	for (size_t i = 0; i < s->n; i++)
		if (!s->pats[i].by_name && match_parts(&s->pats[i], 0, path, path + dl + nl + 1))
			return true;
	return false;
}
