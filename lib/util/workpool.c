/* The helper pool: batches of independent items shared between the
 * thread that posts them and a few helper threads.
 *
 * A batch lives on its caller's stack.  cas_workpool_run puts it at the
 * tail of the pool's queue, wakes the helpers, and then takes items
 * itself like any helper does.  Items are handed out in order, one at a
 * time, under the pool's lock: a batch's next item is `next`, and the
 * batch leaves the queue when its last item has been handed out, so a
 * helper only ever finds batches with items left.  Whoever ran an item
 * counts it in `done`; the caller returns once done == n, after which no
 * helper touches the batch again (the helper that finished the last item
 * counted it under the lock and forgot the batch).
 *
 * The caller never waits for a helper to start an item, only for items
 * already started to end: with no helper free (or none at all, or the
 * pool stopped) it runs its whole batch alone.  So stopping the pool
 * while batches are queued loses nothing: each helper ends its current
 * item and exits, and the callers run what is left.
 *
 * Several batches may be queued at once (concurrent requests); helpers
 * serve the oldest first.  But a caller keeps its batch to itself when
 * as many other callers are already in cas_workpool_run as there are
 * helpers: the CPUs the pool was sized for all have a batch then, and
 * moving items to another thread only adds cache misses on the request's
 * data (measured: docs/performance.md).
 *
 * Locking: `lock` guards the queue, every queued batch's next and done,
 * and `stop`.  It is a leaf (nothing is taken under it) and is never held
 * while an item runs, so items may take the engine's locks and callers
 * may hold any of them.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/log.h"
#include "util/workpool.h"

struct batch {
  cas_work_fn fn;
  void *opaque;
  size_t n;                     /* items */
  size_t next;                  /* lock: the next item to hand out */
  size_t done;                  /* lock: items that have returned */
  struct batch *prev, *qnext;   /* lock: in the queue while next < n */
};

struct cas_workpool {
  pthread_mutex_t lock;         /* see the top of this file; a leaf */
  pthread_cond_t work;          /* helpers wait here for a batch or stop */
  pthread_cond_t finished;      /* callers wait here for their last items */
  struct batch *head, *tail;    /* lock: batches with items not handed out */
  bool stop;                    /* lock: helpers exit; run() works alone */
  unsigned nthreads;            /* lock: helpers started and not yet joined */
  unsigned size;                /* helpers asked for (constant) */
  unsigned callers;             /* atomic: threads inside cas_workpool_run */
  pthread_t *threads;
};

/* lock held.  Take B off the queue (its last item was handed out). */
static void
dequeue (struct cas_workpool *p, struct batch *b)
{
  assert (b->next == b->n);
  if (b->prev)
    b->prev->qnext = b->qnext;
  else
    p->head = b->qnext;
  if (b->qnext)
    b->qnext->prev = b->prev;
  else
    p->tail = b->prev;
  b->prev = b->qnext = NULL;
}

/* lock held.  Hand out B's next item. */
static size_t
take (struct cas_workpool *p, struct batch *b)
{
  assert (b->next < b->n);
  const size_t i = b->next++;
  if (b->next == b->n)
    dequeue (p, b);
  return i;
}

/* Run item I of B with the lock dropped; count it.  lock held. */
static void
run_item (struct cas_workpool *p, struct batch *b, size_t i)
{
  pthread_mutex_unlock (&p->lock);
  b->fn (b->opaque, i);
  pthread_mutex_lock (&p->lock);
  assert (b->done < b->n);
  if (++b->done == b->n)
    pthread_cond_broadcast (&p->finished);
}

static void *
helper_main (void *arg)
{
  struct cas_workpool *p = arg;
  sigset_t all;

  /* Signals are for the threads of whoever owns the process. */
  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, NULL);
  pthread_mutex_lock (&p->lock);
  for (;;) {
    while (!p->stop && p->head == NULL)
      pthread_cond_wait (&p->work, &p->lock);
    if (p->stop)
      break;
    struct batch *b = p->head;
    run_item (p, b, take (p, b));
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

struct cas_workpool *
cas_workpool_start (unsigned nthreads)
{
  struct cas_workpool *p = calloc (1, sizeof *p);

  if (p == NULL || (nthreads && (p->threads = calloc (nthreads, sizeof *p->threads)) == NULL)) {
    cas_error ("worker pool: %m");
    free (p);
    return NULL;
  }
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->work, NULL);
  pthread_cond_init (&p->finished, NULL);
  p->size = nthreads;
  for (; p->nthreads < nthreads; p->nthreads++) {
    const int err = pthread_create (&p->threads[p->nthreads], NULL, helper_main, p);
    if (err) {
      errno = err;
      cas_error ("worker pool: starting thread %u of %u: %m", p->nthreads + 1, nthreads);
      cas_workpool_free (p);
      errno = err;
      return NULL;
    }
  }
  return p;
}

void
cas_workpool_stop (struct cas_workpool *p)
{
  pthread_mutex_lock (&p->lock);
  const bool was_stopped = p->stop;
  const unsigned n = p->nthreads;
  p->stop = true;
  pthread_cond_broadcast (&p->work);
  pthread_mutex_unlock (&p->lock);
  if (was_stopped)
    return;                     /* the first stop joins */
  for (unsigned t = 0; t < n; t++)
    pthread_join (p->threads[t], NULL);
  pthread_mutex_lock (&p->lock);
  p->nthreads = 0;
  pthread_mutex_unlock (&p->lock);
}

void
cas_workpool_free (struct cas_workpool *p)
{
  if (p == NULL)
    return;
  cas_workpool_stop (p);
  assert (p->head == NULL);     /* no caller inside run() */
  pthread_cond_destroy (&p->finished);
  pthread_cond_destroy (&p->work);
  pthread_mutex_destroy (&p->lock);
  free (p->threads);
  free (p);
}

/* Every item in the calling thread, in order. */
static void
run_alone (cas_work_fn fn, void *opaque, size_t n)
{
  for (size_t i = 0; i < n; i++)
    fn (opaque, i);
}

void
cas_workpool_run (struct cas_workpool *p, cas_work_fn fn, void *opaque, size_t n)
{
  struct batch b = { .fn = fn, .opaque = opaque, .n = n };

  if (p == NULL || n < 2) {
    run_alone (fn, opaque, n);
    return;
  }
  if (__atomic_fetch_add (&p->callers, 1, __ATOMIC_RELAXED) >= p->size) {
    run_alone (fn, opaque, n);  /* every helper has a caller to help already */
    __atomic_sub_fetch (&p->callers, 1, __ATOMIC_RELAXED);
    return;
  }
  pthread_mutex_lock (&p->lock);
  if (p->stop || p->nthreads == 0) {
    pthread_mutex_unlock (&p->lock);
    run_alone (fn, opaque, n);
    __atomic_sub_fetch (&p->callers, 1, __ATOMIC_RELAXED);
    return;
  }
  b.prev = p->tail;
  if (p->tail)
    p->tail->qnext = &b;
  else
    p->head = &b;
  p->tail = &b;
  pthread_cond_broadcast (&p->work);
  while (b.next < b.n)
    run_item (p, &b, take (p, &b));
  while (b.done < b.n)
    pthread_cond_wait (&p->finished, &p->lock);
  pthread_mutex_unlock (&p->lock);
  __atomic_sub_fetch (&p->callers, 1, __ATOMIC_RELAXED);
}

unsigned
cas_workpool_threads (struct cas_workpool *p)
{
  pthread_mutex_lock (&p->lock);
  const unsigned n = p->nthreads;
  pthread_mutex_unlock (&p->lock);
  return n;
}
