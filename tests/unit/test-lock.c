/* Repository locks (snapshot/lock.c) on a local store: shared locks coexist,
 * exclusive and shared exclude each other (waiting up to wait_ms), stale locks
 * (dead pid, old lock of another host, old unreadable object) are removed,
 * live ones block with a message naming their holder, and many threads
 * hammering the lock never get two exclusive holders at once.  Pins: found
 * by their snapshot while they live, gone when ended, and no lock waits on
 * them. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/repo-int.h"
#include "tests/unit/test.h"
#include "util/fileio.h"

static char root[256];
static struct repo repo;

static int count_one(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int first_name(const char *name, uint64_t size, int64_t mtime, void *arg)
{
	snprintf(arg, 128, "%s", name);
	return 0;
}

static int lock_objects(void)
{
	int n = 0;

	store_list(repo.store, REPO_LOCKS_PREFIX, count_one, &n);
	return n;
}

static void put_raw_lock(const char *name, const char *json)
{
	CHECK_OK(store_put(repo.store, name, json, strlen(json), 0));
}

static void put_lock(const char *name, bool exclusive, const char *host, long long pid,
		     long long t)
{
	char json[512];

	snprintf(json, sizeof(json),
		 "{\"exclusive\":%s,\"host\":\"%s\",\"pid\":%lld,\"time\":%lld}",
		 exclusive ? "true" : "false", host, pid, t);
	put_raw_lock(name, json);
}

static int pin_objects(void)
{
	int n = 0;

	store_list(repo.store, REPO_PINS_PREFIX, count_one, &n);
	return n;
}

static void test_pins(void)
{
	struct oid a, b;
	struct repo_pin *p = NULL;
	struct repo_pin_holder h;
	struct repo_lock *x = NULL;

	memset(&a, 0xaa, sizeof(a));
	memset(&b, 0xbb, sizeof(b));
	CHECK(repo_pin_find(&repo, &a, &h) == 0);
	CHECK_OK(repo_pin_start(&repo, &a, "mounted at /m", &p));
	/* written by its own thread: wait for it (a minute at most; a loaded
	 * machine can leave the thread unscheduled for more than 1 s) */
	for (int i = 0; i < 30000 && pin_objects() == 0; i++)
		usleep(2000);
	CHECK(pin_objects() == 1);
	CHECK(repo_pin_find(&repo, &a, &h) == 1);
	CHECK(!strcmp(h.what, "mounted at /m") && h.pid == getpid());
	CHECK(repo_pin_find(&repo, &b, &h) == 0);
	/* a pin is no lock: gc's exclusive lock does not wait for it */
	CHECK_OK(repo_lock_acquire(&repo, true, 0, &x));
	repo_lock_release(x);
	repo_pin_end(p);
	CHECK(pin_objects() == 0);
	CHECK(repo_pin_find(&repo, &a, &h) == 0);
	/* ended at once, before its thread wrote it: nothing left behind */
	CHECK_OK(repo_pin_start(&repo, &b, "short", &p));
	repo_pin_end(p);
	CHECK(pin_objects() == 0);
}

static uint64_t elapsed_ms(uint64_t start)
{
	return (now_ns() - start) / 1000000ull;
}

static void test_shared_coexist(void)
{
	struct repo_lock *a = NULL, *b = NULL;

	CHECK_OK(repo_lock_acquire(&repo, false, 0, &a));
	CHECK_OK(repo_lock_acquire(&repo, false, 0, &b));
	CHECK(a && b);
	CHECK(lock_objects() == 2);
	repo_lock_release(a);
	repo_lock_release(b);
	CHECK(lock_objects() == 0);
	repo_lock_release(NULL);
}

static void test_busy_message(void)
{
	struct repo_lock *s = NULL, *x = NULL;
	char host[256], want[512];
	uint64_t start;

	gethostname(host, sizeof(host));
	CHECK_OK(repo_lock_acquire(&repo, false, 0, &s));
	start = now_ns();
	CHECK_ERR(repo_lock_acquire(&repo, true, 0, &x), -EBUSY);
	CHECK(x == NULL);
	CHECK(elapsed_ms(start) < 1000);
	snprintf(want, sizeof(want), "repository is busy: a snapshot writer running as pid %d on host %s since ",
		 (int)getpid(), host);
	CHECK(strstr(hb_errmsg(-EBUSY), want) != NULL);
	if (!strstr(hb_errmsg(-EBUSY), want))
		fprintf(stderr, "got: %s\n", hb_errmsg(-EBUSY));
	/* The waiter withdrew its own lock object. */
	CHECK(lock_objects() == 1);
	repo_lock_release(s);

	/* -EBUSY only after wait_ms, naming gc. */
	CHECK_OK(repo_lock_acquire(&repo, true, 0, &x));
	start = now_ns();
	CHECK_ERR(repo_lock_acquire(&repo, false, 300, &s), -EBUSY);
	CHECK(elapsed_ms(start) >= 290);
	CHECK(elapsed_ms(start) < 3000);
	snprintf(want, sizeof(want), "repository is busy: gc running as pid %d on host %s since ",
		 (int)getpid(), host);
	CHECK(strstr(hb_errmsg(-EBUSY), want) != NULL);
	/* Two exclusive locks conflict too. */
	CHECK_ERR(repo_lock_acquire(&repo, true, 50, &s), -EBUSY);
	repo_lock_release(x);
	CHECK(lock_objects() == 0);
}

struct delayed_release {
	struct repo_lock *lock;
	unsigned ms;
};

static void *release_later(void *arg)
{
	struct delayed_release *d = arg;
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)d->ms * 1000000L };

	nanosleep(&ts, NULL);
	repo_lock_release(d->lock);
	return NULL;
}

/* A holder of kind `first` releases after 200 ms; a waiter of kind `second`
 * gets the lock then, not before. */
static void test_waits_for(bool first, bool second)
{
	struct delayed_release d = { .ms = 200 };
	struct repo_lock *w = NULL;
	pthread_t t;
	uint64_t start;

	CHECK_OK(repo_lock_acquire(&repo, first, 0, &d.lock));
	start = now_ns();
	pthread_create(&t, NULL, release_later, &d);
	CHECK_OK(repo_lock_acquire(&repo, second, 5000, &w));
	CHECK(elapsed_ms(start) >= 150);
	CHECK(elapsed_ms(start) < 4000);
	pthread_join(t, NULL);
	CHECK(lock_objects() == 1);
	repo_lock_release(w);
	CHECK(lock_objects() == 0);
}

static void own_boot_id(char *out, size_t size)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

	out[0] = '\0';
	if (f) {
		if (!fgets(out, (int)size, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
}

static void test_stale(void)
{
	struct repo_lock *x = NULL;
	char host[256], json[512], boot[64], path[512];
	pid_t child;
	long long now = (long long)time(NULL);

	gethostname(host, sizeof(host));
	own_boot_id(boot, sizeof(boot));

	/* A dead pid on this host: ignored and removed. */
	child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	put_lock("locks/00000000000000000000000000000001", true, host, child, now);
	/* With a boot id that matches, the same. */
	snprintf(json, sizeof(json),
		 "{\"exclusive\":false,\"host\":\"%s\",\"pid\":%d,\"time\":%lld,\"boot_id\":\"%s\"}",
		 host, (int)child, now, boot);
	put_raw_lock("locks/00000000000000000000000000000002", json);
	/* A live pid of a previous boot of this host: stale once old. */
	snprintf(json, sizeof(json),
		 "{\"exclusive\":true,\"host\":\"%s\",\"pid\":1,\"time\":%lld,\"boot_id\":\"not-this-boot\"}",
		 host, now - 2 * 3600);
	put_raw_lock("locks/00000000000000000000000000000003", json);
	/* Another host, two hours old: stale. */
	put_lock("locks/00000000000000000000000000000004", false, "elsewhere.invalid", 1, now - 7200);
	CHECK_OK(repo_lock_acquire(&repo, true, 0, &x));
	CHECK(lock_objects() == 1);
	repo_lock_release(x);
	CHECK(lock_objects() == 0);

	/* A live pid on this host (init) blocks... */
	put_lock("locks/00000000000000000000000000000005", false, host, 1, now - 600);
	CHECK_ERR(repo_lock_acquire(&repo, true, 0, &x), -EBUSY);
	CHECK(strstr(hb_errmsg(-EBUSY), "running as pid 1 on host") != NULL);
	/* ...unless it has not been rewritten for two hours: a live holder
	 * refreshes it every 5 minutes, so its pid now belongs to another. */
	put_lock("locks/00000000000000000000000000000005", false, host, 1, now - 7200);
	CHECK_OK(repo_lock_acquire(&repo, true, 0, &x));
	repo_lock_release(x);
	CHECK(lock_objects() == 0);

	/* Another host, recent: blocks, whatever the pid. */
	put_lock("locks/00000000000000000000000000000006", true, "elsewhere.invalid", 999999, now - 60);
	CHECK_ERR(repo_lock_acquire(&repo, false, 0, &x), -EBUSY);
	CHECK(strstr(hb_errmsg(-EBUSY), "gc running as pid 999999 on host elsewhere.invalid") != NULL);
	store_remove(repo.store, "locks/00000000000000000000000000000006");

	/* An unreadable lock blocks while recent and goes once an hour old. */
	put_raw_lock("locks/00000000000000000000000000000007", "{\"exclusive\": tr");
	CHECK_ERR(repo_lock_acquire(&repo, false, 0, &x), -EBUSY);
	CHECK(strstr(hb_errmsg(-EBUSY), "locks/00000000000000000000000000000007 cannot be read") != NULL);
	snprintf(path, sizeof(path), "%s/locks/00000000000000000000000000000007", root);
	{
		struct timespec old[2] = { { .tv_sec = now - 7200 }, { .tv_sec = now - 7200 } };

		CHECK(utimensat(AT_FDCWD, path, old, 0) == 0);
	}
	CHECK_OK(repo_lock_acquire(&repo, false, 0, &x));
	repo_lock_release(x);
	CHECK(lock_objects() == 0);

	/* Well-formed JSON of the wrong shape is unreadable too (not a crash). */
	put_raw_lock("locks/00000000000000000000000000000008", "[1,2,3]");
	CHECK_ERR(repo_lock_acquire(&repo, false, 0, &x), -EBUSY);
	put_raw_lock("locks/00000000000000000000000000000008",
		     "{\"exclusive\":1,\"host\":\"h\",\"pid\":1,\"time\":1}");
	CHECK_ERR(repo_lock_acquire(&repo, false, 0, &x), -EBUSY);
	store_remove(repo.store, "locks/00000000000000000000000000000008");
	CHECK(lock_objects() == 0);
}

/* Many threads take exclusive and shared locks in a loop: an exclusive holder
 * must always be alone. */
static atomic_int inside_exclusive, inside_shared, violations, acquired;

static void *hammer(void *arg)
{
	long id = (long)arg;

	for (int i = 0; i < 12; i++) {
		bool exclusive = (i + id) % 3 == 0;
		struct repo_lock *l = NULL;

		if (repo_lock_acquire(&repo, exclusive, 20000, &l) < 0) {
			atomic_fetch_add(&violations, 1000);
			continue;
		}
		atomic_fetch_add(&acquired, 1);
		if (exclusive) {
			if (atomic_fetch_add(&inside_exclusive, 1) != 0 ||
			    atomic_load(&inside_shared) != 0)
				atomic_fetch_add(&violations, 1);
			usleep(2000);
			atomic_fetch_sub(&inside_exclusive, 1);
		} else {
			atomic_fetch_add(&inside_shared, 1);
			if (atomic_load(&inside_exclusive) != 0)
				atomic_fetch_add(&violations, 1);
			usleep(2000);
			atomic_fetch_sub(&inside_shared, 1);
		}
		repo_lock_release(l);
	}
	return NULL;
}

/* A holder whose lock another process removed (taking it for stale) must
 * not write it again nor go on as if it held it. */
static void test_lost(void)
{
	struct repo_lock *x = NULL;
	char name[128] = "";

	CHECK_OK(repo_lock_acquire(&repo, false, 0, &x));
	CHECK_OK(repo_lock_check(x));
	repo_lock_refresh(x);
	CHECK(lock_objects() == 1);
	CHECK_OK(repo_lock_check(x));
	store_list(repo.store, REPO_LOCKS_PREFIX, first_name, name);
	CHECK_OK(store_remove(repo.store, name));
	repo_lock_refresh(x);
	CHECK(lock_objects() == 0); /* not written again */
	CHECK_ERR(repo_lock_check(x), -ESTALE);
	CHECK(strstr(hb_errmsg(-ESTALE), "removed meanwhile") != NULL);
	repo_lock_release(x);
	CHECK(lock_objects() == 0);
}

static void test_mutual_exclusion(void)
{
	pthread_t t[4];

	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(atomic_load(&violations) == 0);
	CHECK(atomic_load(&acquired) == 48);
	CHECK(lock_objects() == 0);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/hb-test-lock-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_OK(store_local_open(root, 1, &repo.store));
	if (!repo.store)
		return 1;

	test_shared_coexist();
	test_busy_message();
	test_lost();
	test_waits_for(false, true);
	test_waits_for(true, false);
	test_waits_for(true, true);
	test_stale();
	test_pins();
	test_mutual_exclusion();

	store_free(repo.store);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", root);
	}
	TEST_MAIN_END();
}
