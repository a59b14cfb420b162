/* A fixed pool of worker threads running submitted jobs.
 *
 * Snapshot create and restore spread files and chunks over all cores with it.
 * The queue is bounded so that a fast producer cannot buffer a whole tree in
 * memory; when it is full, workqueue_submit() runs the job in the caller's
 * thread, which also makes it safe for a job to submit more jobs.
 */
#pragma once

struct workqueue;

typedef void (*workqueue_fn)(void *arg);

/* nthreads 0 means one per online CPU.  @return NULL on allocation failure. */
struct workqueue *workqueue_new(unsigned nthreads, unsigned max_queued);
/* Queue fn(arg); runs it inline if the queue is full.  @return 0 or -ENOMEM. */
int workqueue_submit(struct workqueue *wq, workqueue_fn fn, void *arg);
/* Wait until every submitted job has finished. */
void workqueue_wait(struct workqueue *wq);
unsigned workqueue_threads(const struct workqueue *wq);
/* Wait, stop the threads and free.  NULL is fine. */
void workqueue_free(struct workqueue *wq);
/* Number of online CPUs (at least 1). */
unsigned cpu_count(void);
