/* util/workqueue: every job runs exactly once, jobs may submit jobs, wait
 * really waits, and the work is spread over the threads. */
#include "util/workqueue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

#define NJOBS 20000

static atomic_int runs[NJOBS];

static void count_job(void *arg)
{
	atomic_fetch_add(&runs[(intptr_t)arg], 1);
}

static void test_exactly_once(unsigned nthreads, unsigned max_queued)
{
	struct workqueue *wq = workqueue_new(nthreads, max_queued);
	int wrong = 0;

	CHECK(wq != NULL);
	if (!wq)
		return;
	CHECK(workqueue_threads(wq) == (nthreads ? nthreads : cpu_count()));
	for (int i = 0; i < NJOBS; i++)
		atomic_store(&runs[i], 0);
	for (intptr_t i = 0; i < NJOBS; i++)
		CHECK_OK(workqueue_submit(wq, count_job, (void *)i));
	workqueue_wait(wq);
	for (int i = 0; i < NJOBS; i++)
		wrong += atomic_load(&runs[i]) != 1;
	CHECK(wrong == 0);
	/* The queue is reusable after a wait. */
	for (intptr_t i = 0; i < 100; i++)
		workqueue_submit(wq, count_job, (void *)i);
	workqueue_wait(wq);
	for (int i = 0; i < 100; i++)
		wrong += atomic_load(&runs[i]) != 2;
	CHECK(wrong == 0);
	workqueue_free(wq);
}

/* A job that submits two children until depth 0: a full binary tree. */
struct tree {
	struct workqueue *wq;
	atomic_int nodes;
};

struct node {
	struct tree *t;
	int depth;
};

static void tree_job(void *arg)
{
	struct node *n = arg;

	atomic_fetch_add(&n->t->nodes, 1);
	if (n->depth > 0) {
		for (int i = 0; i < 2; i++) {
			struct node *c = malloc(sizeof(*c));

			c->t = n->t;
			c->depth = n->depth - 1;
			workqueue_submit(n->t->wq, tree_job, c);
		}
	}
	free(n);
}

static void test_nested(unsigned max_queued)
{
	struct tree t = { .wq = workqueue_new(3, max_queued) };
	struct node *root = malloc(sizeof(*root));

	atomic_init(&t.nodes, 0);
	root->t = &t;
	root->depth = 12;
	workqueue_submit(t.wq, tree_job, root);
	workqueue_wait(t.wq);
	/* Every node ran before wait returned. */
	CHECK(atomic_load(&t.nodes) == (1 << 13) - 1);
	workqueue_free(t.wq);
}

/* wait returns only after slow jobs finish; jobs run on several threads. */
static pthread_t seen[64];
static atomic_int nseen, slow_done;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void slow_job(void *arg)
{
	pthread_t self = pthread_self();
	int i, n;

	usleep(2000);
	pthread_mutex_lock(&seen_lock);
	n = atomic_load(&nseen);
	for (i = 0; i < n; i++)
		if (pthread_equal(seen[i], self))
			break;
	if (i == n && n < 64)
		seen[atomic_fetch_add(&nseen, 1)] = self;
	pthread_mutex_unlock(&seen_lock);
	atomic_fetch_add(&slow_done, 1);
}

static void test_wait_and_spread(void)
{
	struct workqueue *wq = workqueue_new(4, 64);

	for (int i = 0; i < 40; i++)
		workqueue_submit(wq, slow_job, NULL);
	workqueue_wait(wq);
	CHECK(atomic_load(&slow_done) == 40);
	CHECK(atomic_load(&nseen) >= 2);
	workqueue_wait(wq); /* nothing pending: returns at once */
	/* free waits for queued jobs too. */
	for (int i = 0; i < 10; i++)
		workqueue_submit(wq, slow_job, NULL);
	workqueue_free(wq);
	CHECK(atomic_load(&slow_done) == 50);
	workqueue_free(NULL);
	CHECK(cpu_count() >= 1);
}

int main(void)
{
	test_exactly_once(4, 0);
	test_exactly_once(0, 1);   /* a queue of one: most jobs run inline */
	test_exactly_once(2, 100000);
	test_nested(1);
	test_nested(16);
	test_nested(10000);
	test_wait_and_spread();
	TEST_MAIN_END();
}
