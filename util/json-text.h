/* File names in JSON: names are bytes, JSON strings are UTF-8.  A name that
 * is not UTF-8 goes out twice: "<key>" escaped for people to read and
 * "<key>_hex" exactly, for programs to use; readers take "<key>_hex" first. */
#pragma once
#include <jansson.h>
#include <stddef.h>

/* A JSON string of s, escaped as text_for_json() does if it is not UTF-8;
 * NULL when out of memory. */
json_t *json_text(const char *s);

/* obj[key] = s as above, and obj[key "_hex"] when s is not UTF-8.
 * 0 or -ENOMEM. */
int json_object_set_text(json_t *obj, const char *key, const char *s);

/* The bytes obj holds under key (from "<key>_hex" if there), copied into out
 * (size bytes, terminated); NULL if there is neither, or the hex is not
 * hex, holds a NUL, or does not fit (out is then ""). */
const char *json_object_get_text(json_t *obj, const char *key, char *out, size_t size);
