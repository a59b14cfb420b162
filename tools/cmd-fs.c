/* Filesystem commands: mount, commit, umount, mounts. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fs/fs.h"
#include "tools/cli.h"
#include "util/error.h"
#include "util/fileio.h"
#include "util/size.h"
#include "util/json-text.h"

static const char mount_help[] =
	"Mount a snapshot read-write.  Nothing is restored up front: file data is\n"
	"read from the repository chunk by chunk on access.  Writes go to the upper\n"
	"directory; mounting again with the same --upper after a crash recovers them.\n\n"
	"Options:\n"
	"  --upper DIR      upper directory (default: a new one under $HIBERBOX_HOME/upper)\n"
	"  --uid-shift N    present stored uid/gid 0..65535 as N..N+65535\n"
	"  --disk-limit SIZE  the mount is a disk of SIZE (e.g. 10G, 512M): the\n"
	"                   snapshot's files and what is written count; writes\n"
	"                   beyond get ENOSPC, df shows the limit\n"
	"                   (--upper-limit, its old name, works too)\n"
	"  --foreground     serve in this process until unmounted\n"
	"  --debug          libfuse debug output (implies --foreground)\n"
	"  --force          mount over a directory that is not empty (hiding its files)\n";

/* S3 limits for a mount's reads, unless the environment sets them. */
#define MOUNT_S3_DEADLINE_MS "20000"
#define MOUNT_S3_STALL_MS "10000"

static int cmd_mount(int argc, char **argv)
{
	static const char shorts[] = "hu:s:L:fdF";
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "upper", required_argument, NULL, 'u' },
		{ "uid-shift", required_argument, NULL, 's' },
		{ "disk-limit", required_argument, NULL, 'L' },
		/* its name from when it bounded the upper alone */
		{ "upper-limit", required_argument, NULL, 'L' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "force", no_argument, NULL, 'F' },
		{ 0 }
	};
	struct hbfs_opts mo = { .ready_fd = -1 };
	bool force = false, empty;
	const char *loc;
	char *end;
	int c, r, li;

	/* li: which long option it was, to name the one given (-1: a short one) */
	for (li = -1; (c = getopt_long(argc, argv, shorts, opts, &li)) != -1; li = -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("mount", mount_help);
		if (r)
			continue;
		switch (c) {
		case 'u':
			mo.upper = optarg;
			break;
		case 's': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || v > UINT32_MAX - HBFS_UID_SHIFT_RANGE)
				return cli_usage("mount", "bad --uid-shift '%s'", optarg);
			mo.uid_shift = (uint32_t)v;
			break;
		}
		case 'L':
			/* below a few blocks not even the journal's first
			 * records would fit: surely a mistake */
			if (size_parse(optarg, &mo.upper_limit) < 0 || mo.upper_limit < (64u << 10))
				return cli_usage("mount", "bad --%s '%s' (a size of at least "
							  "64K, e.g. 10G)", li >= 0 ? opts[li].name : "disk-limit", optarg);
			break;
		case 'f':
			mo.foreground = true;
			break;
		case 'd':
			mo.debug = true;
			break;
		case 'F':
			force = true;
			break;
		default:
			return cli_bad_option("mount", argv, shorts, opts);
		}
	}
	if (argc - optind != 2)
		return cli_usage("mount", "expected ID|TAG and MOUNTPOINT");
	loc = cli_repo_location();
	if (!loc)
		return cli_fail(-ENOENT, "mount");
	mo.repo = loc;
	mo.snapshot = argv[optind];
	mo.mountpoint = argv[optind + 1];
	/* Like restore into a non-empty directory: most likely the wrong one. */
	/* (errors are left to the mount, which names them better) */
	if (!force && dir_is_empty(AT_FDCWD, mo.mountpoint, &empty) == 0 && !empty)
		return cli_fail(hb_err(-ENOTEMPTY, "%s is not empty: the mount would hide its files "
						   "(--force mounts over it anyway)",
				       mo.mountpoint),
				"mount");
	/* A program reading through the mount should get EIO within seconds
	 * when the bucket is unreachable, not after a batch job's patience. */
	setenv("HIBERBOX_S3_DEADLINE_MS", MOUNT_S3_DEADLINE_MS, 0);
	setenv("HIBERBOX_S3_TIMEOUT_MS", MOUNT_S3_STALL_MS, 0);
	r = hbfs_mount(&mo);
	if (r < 0)
		return cli_fail(r, NULL);
	return 0;
}

static int cmd_commit(int argc, char **argv)
{
	static const char shorts[] = "ht:";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { "tag", required_argument, NULL, 't' },
					      { 0 } };
	const char *tag = NULL;
	char hex[OID_HEX_BYTES];
	struct oid id;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("commit",
				    "Turn a live mount into a new snapshot; it stays mounted and\n"
				    "writable.  Prints the new snapshot id.\n\n"
				    "Options:\n  --tag NAME   also tag the new snapshot\n");
		if (r)
			continue;
		if (c == 't')
			tag = optarg;
		else
			return cli_bad_option("commit", argv, shorts, opts);
	}
	if (argc - optind != 1)
		return cli_usage("commit", "expected MOUNTPOINT");
	if (tag && (r = repo_tag_valid(tag)) < 0)
		return cli_fail(r, NULL); /* its message names the tag and the rule */
	r = hbfs_commit(argv[optind], tag, &id);
	if (r < 0)
		return cli_fail(r, NULL);
	oid_format(&id, hex);
	if (cli.json) {
		json_t *j = json_object();

		json_object_set_new(j, "id", json_string(hex));
		if (tag)
			json_object_set_new(j, "tag", json_string(tag));
		cli_print_json(j);
	} else {
		printf("%s\n", hex);
	}
	return 0;
}

static int cmd_umount(int argc, char **argv)
{
	static const char shorts[] = "h";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("umount",
				    "Flush and unmount a hiberbox mount.  Also clears a mount whose\n"
				    "filesystem process died (the mountpoint then says ENOTCONN).\n");
		if (!r)
			return cli_bad_option("umount", argv, shorts, opts);
	}
	if (argc - optind != 1)
		return cli_usage("umount", "expected MOUNTPOINT");
	r = hbfs_umount(argv[optind]);
	if (r < 0)
		return cli_fail(r, NULL);
	return 0;
}

static int cmd_mounts(int argc, char **argv)
{
	static const char shorts[] = "h";
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	struct hbfs_mount_info *list;
	size_t n;
	int c, r;

	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if ((r = cli_common_option(c)) < 0)
			return cli_help("mounts", "List the hiberbox mounts of this host.\n\n"
					      "Options:\n  --json   machine-readable output\n");
		if (!r)
			return cli_bad_option("mounts", argv, shorts, opts);
	}
	if (argc - optind != 0)
		return cli_usage("mounts", "no arguments expected");
	r = hbfs_list_mounts(&list, &n);
	if (r < 0)
		return cli_fail(r, "mounts");
	if (cli.json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *j = json_object();

			json_object_set_text(j, "mountpoint", list[i].mountpoint);
			json_object_set_new(j, "snapshot", json_string(list[i].snapshot));
			json_object_set_new(j, "last_commit", list[i].last_commit[0]
						       ? json_string(list[i].last_commit) : json_null());
			json_object_set_text(j, "upper", list[i].upper);
			json_object_set_text(j, "repo", list[i].repo);
			json_object_set_new(j, "pid", json_integer(list[i].pid));
			json_object_set_new(j, "alive", json_boolean(list[i].alive));
			json_object_set_new(j, "uid_shift", json_integer(list[i].uid_shift));
			json_object_set_new(j, "limit", list[i].limit
					    ? json_integer((json_int_t)list[i].limit) : json_null());
			json_object_set_new(j, "used", list[i].used_known
					    ? json_integer((json_int_t)list[i].used) : json_null());
			json_array_append_new(a, j);
		}
		cli_print_json(a);
	} else {
		for (size_t i = 0; i < n; i++) {
			char disk[80] = "", used[32] = "?", limit[32];

			if (list[i].used_known)
				cli_format_bytes(list[i].used, used, sizeof(used));
			if (list[i].limit)
				snprintf(disk, sizeof(disk), "  disk %s of %s", used,
					 cli_format_bytes(list[i].limit, limit, sizeof(limit)));
			/* paths escaped: a newline in one forged a row */
			cli_put_name(list[i].mountpoint, stdout);
			printf("  %.12s  ", list[i].snapshot);
			cli_put_name(list[i].upper, stdout);
			printf("  pid %d%s%s\n", (int)list[i].pid, disk, list[i].alive ? "" : "  (dead)");
		}
	}
	free(list);
	return 0;
}

const struct cli_command cli_commands_fs[] = {
	{ "mount", "[--upper DIR] [--uid-shift N] [--disk-limit SIZE] [--foreground] ID|TAG MOUNTPOINT",
	  "mount a snapshot read-write (copy-on-write, lazy)", cmd_mount },
	{ "commit", "[--tag NAME] MOUNTPOINT", "snapshot a live mount", cmd_commit },
	{ "umount", "MOUNTPOINT", "flush and unmount", cmd_umount },
	{ "mounts", "[--json]", "list live mounts", cmd_mounts },
	{ NULL, NULL, NULL, NULL }
};
