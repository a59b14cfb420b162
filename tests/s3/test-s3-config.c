/* s3_config_from_env with the AWS CLI's shared files: profiles, which source
 * wins, and the errors for a missing profile or a malformed file.  Needs no
 * server, so it runs with the unit tests (and under the sanitizers). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3/s3.h"
#include "tests/unit/test.h"
#include "util/error.h"

static char scratch[4096];

static void write_text(const char *rel, const char *text)
{
	char path[8192];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", scratch, rel);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
}

static void clear_env(void)
{
	static const char *const names[] = {
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
		"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE",
		"HIBERBOX_S3_PATH_STYLE",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unsetenv(names[i]);
	setenv("HOME", scratch, 1);
}

static const char CREDENTIALS[] =
	"# written by aws configure\n"
	"[default]\n"
	"aws_access_key_id = AKDEFAULT\n"
	"aws_secret_access_key = SECRETDEFAULT\n"
	"\n"
	"[dev]\n"
	"aws_access_key_id=AKDEV\n"
	"aws_secret_access_key=SECRETDEV\n"
	"aws_session_token = TOKENDEV\n";

static const char CONFIG[] =
	"[default]\n"
	"region = eu-west-1\n"
	"endpoint_url = http://127.0.0.1:9000\n"
	"s3 =\n"
	"    addressing_style = path\n"
	"    max_concurrent_requests = 20\n"
	"; a comment\n"
	"[profile dev]\n"
	"region: eu-central-1\n"
	"services = mine\n"
	"[services mine]\n"
	"s3 =\n"
	"  endpoint_url = http://127.0.0.1:1\n"
	"[profile cfgonly]\n"
	"aws_access_key_id = AKCFG\n"
	"aws_secret_access_key = SECRETCFG\n"
	"[sso-session x]\n"
	"sso_region = us-east-1\n";

static void test_profiles(void)
{
	struct s3_config cfg;
	char other[8192];

	clear_env();
	/* No file, no environment. */
	CHECK_ERR(s3_config_from_env(&cfg), -EINVAL);
	CHECK(strstr(hb_errmsg(-EINVAL), "AWS_ACCESS_KEY_ID"));
	CHECK(strstr(hb_errmsg(-EINVAL), "profile \"default\""));

	write_text(".aws/credentials", CREDENTIALS);
	write_text(".aws/config", CONFIG);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.access_key_id, "AKDEFAULT") && !strcmp(cfg.secret_access_key, "SECRETDEFAULT"));
	CHECK(!cfg.session_token[0]);
	CHECK(!strcmp(cfg.region, "eu-west-1"));
	CHECK(!strcmp(cfg.endpoint, "http://127.0.0.1:9000") && cfg.path_style);

	setenv("AWS_PROFILE", "dev", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.access_key_id, "AKDEV") && !strcmp(cfg.secret_access_key, "SECRETDEV"));
	CHECK(!strcmp(cfg.session_token, "TOKENDEV"));
	CHECK(!strcmp(cfg.region, "eu-central-1"));
	/* The services section's endpoint is not read (the simple form only). */
	CHECK(!cfg.endpoint[0] && !cfg.path_style);

	/* Keys may sit in the config file too. */
	setenv("AWS_PROFILE", "cfgonly", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.access_key_id, "AKCFG") && !strcmp(cfg.region, "us-east-1"));

	/* The environment wins: keys as a pair (the profile's token not mixed in),
	 * region, endpoint, the S3 one over the general one. */
	setenv("AWS_PROFILE", "dev", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SECRETENV", 1);
	setenv("AWS_REGION", "us-west-2", 1);
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.access_key_id, "AKENV") && !strcmp(cfg.secret_access_key, "SECRETENV"));
	CHECK(!cfg.session_token[0]);
	CHECK(!strcmp(cfg.region, "us-west-2"));
	CHECK(!strcmp(cfg.endpoint, "http://127.0.0.1:2"));
	setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.endpoint, "http://127.0.0.1:3"));
	unsetenv("AWS_ENDPOINT_URL");
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.endpoint, "http://127.0.0.1:3"));

	/* Half a pair in the environment is named, not completed from a file. */
	unsetenv("AWS_SECRET_ACCESS_KEY");
	CHECK_ERR(s3_config_from_env(&cfg), -EINVAL);
	CHECK(strstr(hb_errmsg(-EINVAL), "AWS_SECRET_ACCESS_KEY is not"));
	clear_env();

	/* Files elsewhere, "~/" meaning the home directory. */
	snprintf(other, sizeof(other), "%s/other", scratch);
	mkdir(other, 0700);
	write_text("other/creds", "[default]\naws_access_key_id = AKOTHER\naws_secret_access_key = S\n");
	setenv("AWS_SHARED_CREDENTIALS_FILE", "~/other/creds", 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent/hb-config", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.access_key_id, "AKOTHER") && !strcmp(cfg.region, "us-east-1"));
	clear_env();
}

static void test_errors(void)
{
	struct s3_config cfg;
	char path[8192];
	const char *msg;

	clear_env();
	write_text(".aws/credentials", CREDENTIALS);
	write_text(".aws/config", CONFIG);
	setenv("AWS_PROFILE", "nope", 1);
	CHECK_ERR(s3_config_from_env(&cfg), -EINVAL);
	msg = hb_errmsg(-EINVAL);
	snprintf(path, sizeof(path), "%s/.aws/credentials", scratch);
	CHECK(strstr(msg, "\"nope\"") && strstr(msg, path) && !strchr(msg, '\n'));
	snprintf(path, sizeof(path), "%s/.aws/config", scratch);
	CHECK(strstr(msg, path) && !strstr(msg, "SECRET"));
	setenv("AWS_CONFIG_FILE", "/nonexistent/hb-config", 1);
	CHECK_ERR(s3_config_from_env(&cfg), -EINVAL);
	CHECK(strstr(hb_errmsg(-EINVAL), "/nonexistent/hb-config (no such file)"));
	clear_env();

	/* The default profile need not exist. */
	write_text(".aws/credentials", "[other]\naws_access_key_id = A\naws_secret_access_key = B\n");
	setenv("AWS_ACCESS_KEY_ID", "A", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "B", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	clear_env();

	/* Malformed lines: file and line named, the line's text (a secret, maybe) not. */
	static const char *const bad[] = {
		"[default]\naws_access_key_id = A\nwJalrXUtnFEMIbadsecret\n",
		"[default]\naws_access_key_id = A\n[defaultwJalrXUtnFEMI\n",
		"# keys\n\naws_secret_access_key = wJalrXUtnFEMI\n",
		"[default]\naws_access_key_id = A\n= wJalrXUtnFEMI\n",
	};
	snprintf(path, sizeof(path), "%s/.aws/credentials line 3", scratch);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_text(".aws/credentials", bad[i]);
		CHECK_ERR(s3_config_from_env(&cfg), -EBADMSG);
		msg = hb_errmsg(-EBADMSG);
		CHECK(strstr(msg, path) && !strstr(msg, "wJalrXUtnFEMI"));
	}
	write_text(".aws/credentials", CREDENTIALS);
	write_text(".aws/config", "[default]\nregion = eu west\n");
	CHECK_ERR(s3_config_from_env(&cfg), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "config line 2: region"));
	write_text(".aws/config", "[default]\nendpoint_url = 127.0.0.1:9000\n");
	CHECK_ERR(s3_config_from_env(&cfg), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "config line 2: endpoint_url"));
	{
		char text[1024];

		snprintf(text, sizeof(text), "[default]\naws_secret_access_key = %0300d\n", 7);
		write_text(".aws/config", text);
		CHECK_ERR(s3_config_from_env(&cfg), -ENAMETOOLONG);
		CHECK(strstr(hb_errmsg(-ENAMETOOLONG), "config line 2: aws_secret_access_key is too long"));
	}
	/* What the environment overrides is not read, so not checked either
	 * (botocore ignores it): a bad region or endpoint_url, a secret too long. */
	write_text(".aws/config", "[default]\nregion = eu west\nendpoint_url = 127.0.0.1:9000\n");
	setenv("AWS_REGION", "eu-north-1", 1);
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.region, "eu-north-1") && !strcmp(cfg.endpoint, "http://127.0.0.1:4"));
	unsetenv("AWS_REGION");
	unsetenv("AWS_ENDPOINT_URL");
	setenv("AWS_DEFAULT_REGION", "eu-north-1", 1);
	setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5", 1);
	CHECK_OK(s3_config_from_env(&cfg));
	CHECK(!strcmp(cfg.region, "eu-north-1") && !strcmp(cfg.endpoint, "http://127.0.0.1:5"));
	unsetenv("AWS_ENDPOINT_URL_S3"); /* the endpoint_url is read again: an error */
	CHECK_ERR(s3_config_from_env(&cfg), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "config line 3: endpoint_url"));
	unsetenv("AWS_DEFAULT_REGION");
	{
		char text[1024];

		snprintf(text, sizeof(text), "[default]\naws_secret_access_key = %0300d\n", 7);
		write_text(".aws/config", text);
		setenv("AWS_ACCESS_KEY_ID", "AKENV", 1); /* half a pair: the file's keys count */
		CHECK_ERR(s3_config_from_env(&cfg), -ENAMETOOLONG);
		setenv("AWS_SECRET_ACCESS_KEY", "SECRETENV", 1);
		CHECK_OK(s3_config_from_env(&cfg));
		CHECK(!strcmp(cfg.secret_access_key, "SECRETENV"));
		unsetenv("AWS_ACCESS_KEY_ID");
		unsetenv("AWS_SECRET_ACCESS_KEY");
	}
	/* A section that is not the profile's may hold what it likes. */
	write_text(".aws/config", "[profile x]\nregion = not a region\n");
	CHECK_OK(s3_config_from_env(&cfg));
	clear_env();
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(scratch, sizeof(scratch), "%s/hb-test-s3-config.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	{
		char aws[8192];

		snprintf(aws, sizeof(aws), "%s/.aws", scratch);
		mkdir(aws, 0700);
	}
	test_profiles();
	test_errors();
	{
		char cmd[8400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", scratch);
	}
	TEST_MAIN_END();
}
