// Exclude patterns of snapshot create: which entries of a tree to leave out.
// (Line comments here: the examples hold the two characters that open a
// block comment.)
//
// A pattern without '/' is matched (fnmatch) against an entry's name at any
// depth ("*.o", "node_modules").  A pattern with a '/' is matched against
// the whole path from the root of the tree, one path component per pattern
// component, so '*' and '?' never cross a '/' ("build/out", "cache/*.tmp";
// a leading '/' is the root too).  A component "**" matches any number of
// components, none included ("**/dist" is dist at any depth, "src/**/test"
// every test below src), except at the end, where it matches one or more:
// "cache/**" leaves out what is in cache, not cache itself.  "." components
// are dropped; ".." is refused.  A trailing '/' is ignored.  An entry left
// out takes all below it along: the walk does not look inside.
//
// Patterns are parsed once; matching an entry allocates nothing.
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct exclude_set;

/* Parse patterns (none is fine: nothing is excluded).  @return 0, or
 * -EINVAL with a message naming a pattern that cannot match anything (empty,
 * or longer than PATH_MAX), or -ENOMEM. */
int exclude_set_new(const char *const *patterns, size_t n, struct exclude_set **out);
void exclude_set_free(struct exclude_set *s);
/* Is the entry name, in the directory at dirpath (relative to the root, ""
 * for the root), left out? */
bool exclude_set_match(const struct exclude_set *s, const char *dirpath, const char *name);
