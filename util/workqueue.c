#include "util/workqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct job {
	workqueue_fn fn;
	void *arg;
};

/* Lock order: only `lock`; jobs run without it. */
struct workqueue {
	pthread_mutex_t lock;
	pthread_cond_t has_work;
	pthread_cond_t idle;
	struct job *ring;
	unsigned cap, head, count;
	unsigned running; /* jobs being executed by workers */
	unsigned nthreads;
	int stopping;
	pthread_t *threads;
};

unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

static void *worker_main(void *arg)
{
	struct workqueue *wq = arg;

	pthread_mutex_lock(&wq->lock);
	for (;;) {
		struct job job;

		while (wq->count == 0 && !wq->stopping)
			pthread_cond_wait(&wq->has_work, &wq->lock);
		if (wq->count == 0 && wq->stopping)
			break;
		job = wq->ring[wq->head];
		wq->head = (wq->head + 1) % wq->cap;
		wq->count--;
		wq->running++;
		pthread_mutex_unlock(&wq->lock);
		job.fn(job.arg);
		pthread_mutex_lock(&wq->lock);
		wq->running--;
		if (wq->count == 0 && wq->running == 0)
			pthread_cond_broadcast(&wq->idle);
	}
	pthread_mutex_unlock(&wq->lock);
	return NULL;
}

struct workqueue *workqueue_new(unsigned nthreads, unsigned max_queued)
{
	struct workqueue *wq = calloc(1, sizeof(*wq));

	if (!wq)
		return NULL;
	if (nthreads == 0)
		nthreads = cpu_count();
	if (max_queued == 0)
		max_queued = 4 * nthreads;
	wq->cap = max_queued;
	wq->ring = calloc(max_queued, sizeof(*wq->ring));
	wq->threads = calloc(nthreads, sizeof(*wq->threads));
	if (!wq->ring || !wq->threads)
		goto fail;
	pthread_mutex_init(&wq->lock, NULL);
	pthread_cond_init(&wq->has_work, NULL);
	pthread_cond_init(&wq->idle, NULL);
	for (unsigned i = 0; i < nthreads; i++) {
		if (pthread_create(&wq->threads[i], NULL, worker_main, wq) != 0)
			break;
		wq->nthreads++;
	}
	if (wq->nthreads == 0) {
		pthread_mutex_destroy(&wq->lock);
		pthread_cond_destroy(&wq->has_work);
		pthread_cond_destroy(&wq->idle);
		goto fail;
	}
	return wq;
fail:
	free(wq->ring);
	free(wq->threads);
	free(wq);
	return NULL;
}

int workqueue_submit(struct workqueue *wq, workqueue_fn fn, void *arg)
{
	pthread_mutex_lock(&wq->lock);
	if (wq->count == wq->cap) {
		pthread_mutex_unlock(&wq->lock);
		fn(arg);
		return 0;
	}
	wq->ring[(wq->head + wq->count) % wq->cap] = (struct job){ fn, arg };
	wq->count++;
	pthread_cond_signal(&wq->has_work);
	pthread_mutex_unlock(&wq->lock);
	return 0;
}

void workqueue_wait(struct workqueue *wq)
{
	pthread_mutex_lock(&wq->lock);
	while (wq->count > 0 || wq->running > 0)
		pthread_cond_wait(&wq->idle, &wq->lock);
	pthread_mutex_unlock(&wq->lock);
}

unsigned workqueue_threads(const struct workqueue *wq)
{
	return wq->nthreads;
}

void workqueue_free(struct workqueue *wq)
{
	if (!wq)
		return;
	workqueue_wait(wq);
	pthread_mutex_lock(&wq->lock);
	wq->stopping = 1;
	pthread_cond_broadcast(&wq->has_work);
	pthread_mutex_unlock(&wq->lock);
	for (unsigned i = 0; i < wq->nthreads; i++)
		pthread_join(wq->threads[i], NULL);
	pthread_mutex_destroy(&wq->lock);
	pthread_cond_destroy(&wq->has_work);
	pthread_cond_destroy(&wq->idle);
	free(wq->ring);
	free(wq->threads);
	free(wq);
}
