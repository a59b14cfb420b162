#include "util/json-text.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fileio.h"
#include "util/text.h"

json_t *json_text(const char *s)
{
	size_t size = strlen(s) * 4 + 1; /* every byte may become \xNN */
	char *esc = malloc(size);
	json_t *j = esc ? json_string(text_for_json(s, esc, size)) : NULL;

	free(esc);
	return j;
}

int json_object_set_text(json_t *obj, const char *key, const char *s)
{
	size_t n = strlen(s);
	char hkey[128], *hex;
	int r;

	if (json_object_set_new(obj, key, json_text(s)) < 0)
		return -ENOMEM;
	if (utf8_valid(s, n))
		return 0;
	if (!(hex = malloc(2 * n + 1)))
		return -ENOMEM;
	hex_format((const uint8_t *)s, n, hex);
	snprintf(hkey, sizeof(hkey), "%s_hex", key);
	r = json_object_set_new(obj, hkey, json_string(hex)) < 0 ? -ENOMEM : 0;
	free(hex);
	return r;
}

const char *json_object_get_text(json_t *obj, const char *key, char *out, size_t size)
{
	char hkey[128];
	const char *hex, *text;
	size_t n;

	if (size == 0)
		return NULL;
	out[0] = '\0';
	snprintf(hkey, sizeof(hkey), "%s_hex", key);
	if ((hex = json_string_value(json_object_get(obj, hkey)))) {
		n = strlen(hex);
		if (n % 2 || n / 2 >= size || hex_parse(hex, (uint8_t *)out, n / 2) < 0 ||
		    memchr(out, '\0', n / 2)) {
			out[0] = '\0';
			return NULL;
		}
		out[n / 2] = '\0';
		return out;
	}
	if (!(text = json_string_value(json_object_get(obj, key))) || strlen(text) >= size)
		return NULL;
	memcpy(out, text, strlen(text) + 1);
	return out;
}
