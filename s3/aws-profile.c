/* The AWS CLI's shared credentials and config files (see aws-profile.h).
 *
 * Messages name files and line numbers, never a value: a malformed line may
 * hold half a secret.
 */
#include "s3/aws-profile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/fileio.h"

enum aws_file_kind { AWS_CREDENTIALS_FILE, AWS_CONFIG_FILE };

struct aws_key {
	const char *name;
	size_t offset; /* of the field in struct aws_profile */
	size_t size;
};

#define AWS_KEY(n, field) { n, offsetof(struct aws_profile, field), sizeof(((struct aws_profile *)0)->field) }
static const struct aws_key aws_keys[] = {
	AWS_KEY("aws_access_key_id", access_key_id),
	AWS_KEY("aws_secret_access_key", secret_access_key),
	AWS_KEY("aws_session_token", session_token),
	AWS_KEY("region", region),
	AWS_KEY("endpoint_url", endpoint),
};

/* path from the environment variable env, else HOME/default_rel; "" when
 * there is no home to put it in (then there is no file). */
static int file_path(const char *env, const char *default_rel, char *out, size_t size)
{
	const char *v = getenv(env), *home = getenv("HOME");
	const char *rest = NULL;
	int n;

	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());

		home = pw && pw->pw_dir ? pw->pw_dir : "";
	}
	if (v && *v) {
		if (strncmp(v, "~/", 2) != 0) {
			n = snprintf(out, size, "%s", v);
			goto done;
		}
		rest = v + 2;
	} else
		rest = default_rel;
	if (!*home) {
		out[0] = '\0';
		return 0;
	}
	n = snprintf(out, size, "%s/%s", home, rest);
done:
	if (n < 0 || (size_t)n >= size)
		return hb_err(-ENAMETOOLONG, "%s: path too long", v && *v ? env : "HOME");
	return 0;
}

static char *trim(char *s, char *end)
{
	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	return s;
}

/* Is this section the profile's, in this kind of file? */
static bool section_is_profile(const char *section, const char *profile, enum aws_file_kind kind)
{
	if (kind == AWS_CREDENTIALS_FILE)
		return strcmp(section, profile) == 0;
	if (strcmp(profile, "default") == 0 && strcmp(section, "default") == 0)
		return true;
	if (strncmp(section, "profile", 7) != 0 || !isspace((unsigned char)section[7]))
		return false;
	section += 7;
	while (isspace((unsigned char)*section))
		section++;
	return strcmp(section, profile) == 0;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);

	return v && *v;
}

/* Does the environment give this setting?  Then it wins (s3_config_from_env)
 * and the profile's value is never used: botocore ignores it, bad or not,
 * and so does this file (no check of its form or length). */
static bool overridden_by_env(const char *key)
{
	if (!strcmp(key, "region"))
		return env_set("AWS_REGION") || env_set("AWS_DEFAULT_REGION");
	if (!strcmp(key, "endpoint_url"))
		return env_set("AWS_ENDPOINT_URL_S3") || env_set("AWS_ENDPOINT_URL");
	/* The keys come as a pair, the token with them (credentials_from). */
	return env_set("AWS_ACCESS_KEY_ID") && env_set("AWS_SECRET_ACCESS_KEY");
}

static int value_ok(const char *path, unsigned line, const char *key, const char *v)
{
	if (!strcmp(key, "region") &&
	    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(v))
		return hb_err(-EBADMSG, "%s line %u: region \"%s\" is not a region name", path,
			      line, v);
	if (!strcmp(key, "endpoint_url") && strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
		return hb_err(-EBADMSG, "%s line %u: endpoint_url must start with http:// or https://",
			      path, line);
	return 0;
}

/* Parse one file's text (NUL-terminated, in place) and copy the profile's
 * keys into p, over what is there.  *found: the profile's section is there. */
static int parse_file(char *text, const char *path, enum aws_file_kind kind, struct aws_profile *p,
		      bool *found)
{
	bool in_section = false, in_profile = false, has_key = false;
	unsigned line = 0;
	char *next = text;

	while (*next) {
		char *start = next, *end = strchr(start, '\n'), *s;

		line++;
		if (end)
			next = end + 1;
		else
			next = end = start + strlen(start);
		bool indented = start < end && (*start == ' ' || *start == '\t');
		s = trim(start, end);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (indented && has_key)
			continue; /* a sub-setting of the key above (s3 = ...), or its value's next line */
		if (*s == '[') {
			size_t n = strlen(s);

			if (n < 3 || s[n - 1] != ']')
				return hb_err(-EBADMSG, "%s line %u: malformed section header", path, line);
			s[n - 1] = '\0';
			s = trim(s + 1, s + n - 1);
			in_section = true;
			in_profile = section_is_profile(s, p->name, kind);
			*found = *found || in_profile;
			has_key = false;
			continue;
		}
		char *sep = s + strcspn(s, "=:");

		if (!*sep || sep == s)
			return hb_err(-EBADMSG, "%s line %u: expected 'key = value'", path, line);
		if (!in_section)
			return hb_err(-EBADMSG, "%s line %u: a key before any [section]", path, line);
		has_key = true;
		if (!in_profile)
			continue;
		char *key = trim(s, sep), *value = trim(sep + 1, sep + 1 + strlen(sep + 1));

		for (size_t i = 0; i < sizeof(aws_keys) / sizeof(aws_keys[0]); i++) {
			char *dst = (char *)p + aws_keys[i].offset;
			int r;

			if (strcasecmp(key, aws_keys[i].name) != 0 ||
			    overridden_by_env(aws_keys[i].name))
				continue;
			if (strlen(value) >= aws_keys[i].size)
				return hb_err(-ENAMETOOLONG, "%s line %u: %s is too long (at most %zu bytes)",
					      path, line, aws_keys[i].name, aws_keys[i].size - 1);
			if (*value && (r = value_ok(path, line, aws_keys[i].name, value)) < 0)
				return r;
			if (*value) /* empty: not set, as the CLI reads it */
				memcpy(dst, value, strlen(value) + 1);
		}
	}
	return 0;
}

/* @return 1 read, 0 no such file, or an error. */
static int read_one(const char *path, enum aws_file_kind kind, struct aws_profile *p, bool *found)
{
	struct buf b = BUF_INIT;
	int r;

	if (!*path)
		return 0;
	b.max = AWS_PROFILE_FILE_MAX_BYTES + 1;
	r = read_file(AT_FDCWD, path, AWS_PROFILE_FILE_MAX_BYTES, &b);
	if (r == -ENOENT || r == -ENOTDIR) {
		hb_err_clear();
		buf_free(&b);
		return 0;
	}
	if (r < 0) {
		buf_free(&b);
		if (r == -EFBIG)
			return hb_err(r, "%s: over %u bytes, not an AWS %s file", path,
				      AWS_PROFILE_FILE_MAX_BYTES,
				      kind == AWS_CONFIG_FILE ? "config" : "credentials");
		return hb_err_sys(r, "cannot read %s", path);
	}
	if (memchr(b.data, '\0', b.len)) {
		buf_free(&b);
		return hb_err(-EBADMSG, "%s: holds a NUL byte, not an AWS %s file", path,
			      kind == AWS_CONFIG_FILE ? "config" : "credentials");
	}
	if ((r = buf_append(&b, "", 1)) == 0)
		r = parse_file((char *)b.data, path, kind, p, found);
	buf_free(&b);
	return r < 0 ? r : 1;
}

int aws_profile_load(struct aws_profile *p)
{
	const char *env_profile = getenv("AWS_PROFILE");
	struct aws_profile from_credentials;
	bool found = false;
	int have_config, have_credentials, r;

	memset(p, 0, sizeof(*p));
	if (env_profile && *env_profile) {
		if (strlen(env_profile) >= sizeof(p->name))
			return hb_err(-ENAMETOOLONG, "AWS_PROFILE is too long (at most %zu bytes)",
				      sizeof(p->name) - 1);
		memcpy(p->name, env_profile, strlen(env_profile) + 1);
	} else
		snprintf(p->name, sizeof(p->name), "default");
	if ((r = file_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", p->credentials_file,
			   sizeof(p->credentials_file))) < 0 ||
	    (r = file_path("AWS_CONFIG_FILE", ".aws/config", p->config_file,
			   sizeof(p->config_file))) < 0)
		return r;
	if ((have_config = read_one(p->config_file, AWS_CONFIG_FILE, p, &found)) < 0)
		return have_config;
	/* The credentials file wins key by key: parse it apart, then lay it over. */
	from_credentials = *p;
	for (size_t i = 0; i < sizeof(aws_keys) / sizeof(aws_keys[0]); i++)
		((char *)&from_credentials + aws_keys[i].offset)[0] = '\0';
	if ((have_credentials = read_one(p->credentials_file, AWS_CREDENTIALS_FILE,
					 &from_credentials, &found)) < 0)
		return have_credentials;
	for (size_t i = 0; i < sizeof(aws_keys) / sizeof(aws_keys[0]); i++) {
		const char *src = (const char *)&from_credentials + aws_keys[i].offset;

		if (*src)
			memcpy((char *)p + aws_keys[i].offset, src, aws_keys[i].size);
	}
	explicit_bzero(&from_credentials, sizeof(from_credentials));
	if (!found && env_profile && *env_profile)
		return hb_err(-EINVAL, "AWS_PROFILE names profile \"%s\", which is not in %s%s or %s%s",
			      p->name, *p->credentials_file ? p->credentials_file : "~/.aws/credentials",
			      have_credentials ? "" : " (no such file)",
			      *p->config_file ? p->config_file : "~/.aws/config",
			      have_config ? "" : " (no such file)");
	return 0;
}
