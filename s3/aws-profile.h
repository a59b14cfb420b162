/* The AWS CLI's shared files (`aws configure`): one profile's keys, region
 * and endpoint, for s3_config_from_env to use where the environment says
 * nothing.  Private to s3/.
 *
 * Files: AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials, sections
 * [NAME]) and AWS_CONFIG_FILE (default ~/.aws/config, sections
 * [profile NAME], [default] for the default profile); a leading "~/" is the
 * home directory.  The profile is AWS_PROFILE, else "default".  Keys read:
 * aws_access_key_id, aws_secret_access_key, aws_session_token, region,
 * endpoint_url; from either file, the credentials file winning, as the AWS
 * CLI merges them.  Only the simple form: a `services` section and the
 * indented sub-settings under a key (`s3 =` / `  addressing_style = path`)
 * are skipped, not an error.  Lines are INI as botocore reads them: `#` or
 * `;` starts a comment line (not an inline one), `=` or `:` separates.
 */
#pragma once

#include "s3/s3.h"

#define AWS_PROFILE_FILE_MAX_BYTES (1u << 20)

struct aws_profile {
	char name[128];
	char credentials_file[1024];
	char config_file[1024];
	char access_key_id[sizeof(((struct s3_config *)0)->access_key_id)];
	char secret_access_key[sizeof(((struct s3_config *)0)->secret_access_key)];
	char session_token[sizeof(((struct s3_config *)0)->session_token)];
	char region[sizeof(((struct s3_config *)0)->region)];
	char endpoint[sizeof(((struct s3_config *)0)->endpoint)];
};

/* Read the profile from both files; a missing file is empty.  Fields the
 * files do not set are "", and so are those the environment sets
 * (AWS_REGION or AWS_DEFAULT_REGION; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL;
 * the keys and token when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are
 * both set): their values in the files are not read, nor checked.
 * @return 0; -EINVAL for a profile named by AWS_PROFILE that neither file
 *         has ("... not in FILE1 or FILE2"); -EBADMSG for a malformed line
 *         or a bad region or endpoint ("FILE line N: ..."; never a value of
 *         a key); -ENAMETOOLONG for a value too long; other errnos for a
 *         file that cannot be read. */
int aws_profile_load(struct aws_profile *p);
