/* The local store: objects written whole or not at all, no-replace puts,
 * names that would leave the directory refused, short objects reported, and
 * the descriptor cache for packs never serving a file that was replaced or
 * removed under it. */
#include "snapshot/store.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "test.h"

static char root[64];

static bool get_is(struct store *s, const char *name, const char *want)
{
	struct buf b = BUF_INIT;
	bool same = store_get(s, name, 0, STORE_GET_ALL, &b) == 0 && b.len == strlen(want) &&
		    memcmp(b.data, want, b.len) == 0;

	buf_free(&b);
	return same;
}

static void test_put_get(struct store *s)
{
	struct buf b = BUF_INIT;
	uint64_t size = 0;

	CHECK_OK(store_put(s, "snapshots/a", "hello", 5, STORE_PUT_NOREPLACE));
	CHECK(get_is(s, "snapshots/a", "hello"));
	CHECK_ERR(store_put(s, "snapshots/a", "other", 5, STORE_PUT_NOREPLACE), -EEXIST);
	CHECK(get_is(s, "snapshots/a", "hello"));
	CHECK_OK(store_put(s, "snapshots/a", "replaced", 8, 0));
	CHECK(get_is(s, "snapshots/a", "replaced"));
	CHECK_OK(store_stat(s, "snapshots/a", &size));
	CHECK(size == 8);
	CHECK_ERR(store_stat(s, "snapshots/none", NULL), -ENOENT);
	CHECK_ERR(store_get(s, "snapshots/none", 0, STORE_GET_ALL, &b), -ENOENT);
	/* a range past the end is a short object, not fewer bytes */
	CHECK_ERR(store_get(s, "snapshots/a", 4, 10, &b), -EBADMSG);
	CHECK_OK(store_get(s, "snapshots/a", 2, 3, &b));
	CHECK(b.len == 3 && memcmp(b.data, "pla", 3) == 0);
	CHECK_OK(store_remove(s, "snapshots/a"));
	CHECK_ERR(store_remove(s, "snapshots/a"), -ENOENT);
	buf_free(&b);
}

static void test_bad_names(struct store *s)
{
	struct buf b = BUF_INIT;
	const char *bad[] = { "", "/etc/passwd", "../x", "packs/../../x", "a//b", "a/./b", "a/" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_ERR(store_put(s, bad[i], "x", 1, 0), -EINVAL);
		CHECK_ERR(store_get(s, bad[i], 0, STORE_GET_ALL, &b), -EINVAL);
		CHECK_ERR(store_remove(s, bad[i]), -EINVAL);
	}
	buf_free(&b);
}

/* A pack is read through a cached descriptor.  Replaced by a put (a copy cut
 * short is replaced by the writer's whole one) or removed and written again
 * (gc, then the same pack stored anew), it must be read from the new file. */
static void test_pack_replaced(struct store *s)
{
	const char *pack = "packs/00/00aa";

	CHECK_OK(store_put(s, pack, "cut", 3, STORE_PUT_NOREPLACE));
	CHECK(get_is(s, pack, "cut")); /* its descriptor is cached now */
	CHECK_OK(store_put(s, pack, "whole pack", 10, 0));
	CHECK(get_is(s, pack, "whole pack"));
	CHECK_OK(store_remove(s, pack));
	CHECK_OK(store_put(s, pack, "again", 5, STORE_PUT_NOREPLACE));
	CHECK(get_is(s, pack, "again"));
	/* replaced behind the store's back (rename over it): invalidate, as a
	 * reader does when verification fails, reads the new file */
	{
		char path[128], tmp[128];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", root, pack);
		snprintf(tmp, sizeof(tmp), "%s/%s.new", root, pack);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0 && write(fd, "fixed", 5) == 5);
		close(fd);
		CHECK(rename(tmp, path) == 0);
		store_invalidate(s, pack);
		CHECK(get_is(s, pack, "fixed"));
	}
}

int main(void)
{
	struct store *s = NULL;
	char cmd[128];

	snprintf(root, sizeof(root), "/tmp/hb-test-store-local-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_OK(store_local_open(root, 1, &s));
	if (!s)
		return 1;
	test_put_get(s);
	test_bad_names(s);
	test_pack_replaced(s);
	store_free(s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures != 0;
}
