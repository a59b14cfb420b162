/* See testhook.h. */
#include "snapshot/testhook.h"

#include <fcntl.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_HOOKS_MAX 8

void test_hook_wait(const char *env)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static const char *done[TEST_HOOKS_MAX];
	const char *fifo = getenv(env);
	bool first = true;
	char buf[64];
	int fd;

	if (!fifo || !fifo[0])
		return;
	pthread_mutex_lock(&lock);
	for (int k = 0; k < TEST_HOOKS_MAX && done[k]; k++)
		if (strcmp(done[k], env) == 0)
			first = false;
	for (int k = 0; first && k < TEST_HOOKS_MAX; k++)
		if (!done[k]) {
			done[k] = env;
			break;
		}
	/* Held while waiting: other threads reaching a hook wait too, so
	 * nothing gets past it before the test has made its change. */
	if (first && (fd = open(fifo, O_RDONLY | O_CLOEXEC)) >= 0) {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
	pthread_mutex_unlock(&lock);
}
