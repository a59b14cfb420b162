/* Replay main for fuzz targets built without libFuzzer (gcc, or clang
 * without -Dfuzz=true): runs LLVMFuzzerTestOneInput once over each file
 * named on the command line, and over every regular file in each directory
 * named (not recursive).  Options starting with '-' are libFuzzer's and are
 * ignored, so the same command line works for both builds.  Exits non-zero
 * if an input cannot be read; a crash in the target is the failure mode. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <fcntl.h>

#include "util/buf.h"
#include "util/fileio.h"

#define FUZZ_INPUT_MAX_BYTES (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path, unsigned *count)
{
	struct buf b = BUF_INIT;
	int r = read_file(AT_FDCWD, path, FUZZ_INPUT_MAX_BYTES, &b);

	if (r < 0) {
		fprintf(stderr, "fuzz-main: %s: %s\n", path, strerror(-r));
		return 1;
	}
	/* a copy of exactly the input's size, so ASan catches a read past it */
	{
		uint8_t *exact = malloc(b.len ? b.len : 1);

		if (!exact) {
			buf_free(&b);
			return 1;
		}
		if (b.len)
			memcpy(exact, b.data, b.len);
		LLVMFuzzerTestOneInput(exact, b.len);
		free(exact);
	}
	buf_free(&b);
	(*count)++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, unsigned *count)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	int bad = 0;

	if (!d) {
		fprintf(stderr, "fuzz-main: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **p;

			cap = cap ? cap * 2 : 64;
			p = realloc(names, cap * sizeof(*names));
			if (!p) {
				closedir(d);
				return 1;
			}
			names = p;
		}
		if (asprintf(&names[n], "%s/%s", dir, de->d_name) < 0) {
			closedir(d);
			return 1;
		}
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str); /* the same order on every run */
	for (size_t k = 0; k < n; k++) {
		struct stat st;

		if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode))
			bad |= run_file(names[k], count);
		free(names[k]);
	}
	free(names);
	return bad;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int bad = 0;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (argv[i][0] == '-')
			continue;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "fuzz-main: %s: %s\n", argv[i], strerror(errno));
			bad = 1;
		} else if (S_ISDIR(st.st_mode)) {
			bad |= run_dir(argv[i], &count);
		} else {
			bad |= run_file(argv[i], &count);
		}
	}
	/* the empty input, always */
	LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
	printf("%u inputs replayed%s\n", count, bad ? " (some unreadable)" : "");
	return bad;
}
