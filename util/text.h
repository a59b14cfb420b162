/* Text for JSON: file names and paths are bytes, JSON strings are UTF-8. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Whether s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF), as JSON libraries require. */
bool utf8_valid(const char *s, size_t len);

/* s itself if it is UTF-8; else a copy in out with every byte >= 0x80
 * written as "\xNN" (at most size - 1 bytes, always terminated). */
const char *text_for_json(const char *s, char *out, size_t size);
