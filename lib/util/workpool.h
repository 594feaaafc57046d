/* A small pool of helper threads for CPU work that a request can split
 * into independent items (the key and zstd of the whole blocks of
 * one multi-block write).  The caller works too: cas_workpool_run hands
 * the items out to the helpers and takes them itself, so a batch never
 * waits for a helper to become free, and a pool with no helper (or a
 * stopped one) simply runs every item in the caller.
 */
#ifndef CAS_WORKPOOL_H
#define CAS_WORKPOOL_H

#include <stddef.h>

struct cas_workpool;

/* One item of a batch: I in [0, n).  Runs in the caller or in a helper,
 * concurrently with the other items of the batch; must not take a lock
 * that the caller of cas_workpool_run may hold, nor wait for another item.
 */
typedef void (*cas_work_fn) (void *opaque, size_t i);

/* Start NTHREADS helpers (0 is allowed: a pool that runs everything in
 * the caller).  Returns NULL with errno set (logged) if a thread cannot
 * be started; the helpers already started are stopped.  Threads do not
 * survive fork(): start the pool in the process that will use it.
 */
struct cas_workpool *cas_workpool_start (unsigned nthreads);

/* Stop the helpers and join them.  A helper finishes the item it is
 * running; items not yet taken are left to the callers of
 * cas_workpool_run, which finish their batches themselves.  May be called
 * while other threads are inside cas_workpool_run; later calls of
 * cas_workpool_run run every item in their caller.  Idempotent.
 */
void cas_workpool_stop (struct cas_workpool *p) __attribute__((nonnull));

/* Stop (if not yet) and free.  No thread may be inside cas_workpool_run.
 * P may be NULL.
 */
void cas_workpool_free (struct cas_workpool *p);

/* Call FN (OPAQUE, i) exactly once for each i in [0, N), in this thread
 * and in the helpers, and return when every call has returned (their
 * effects are then visible to the caller).  P may be NULL: every item
 * runs here, in order; so do they when as many other threads are inside
 * cas_workpool_run as P has helpers (each helper has a caller to help).  Any thread, any locks held (the pool's own lock
 * is a leaf, never held while an item runs).
 */
void cas_workpool_run (struct cas_workpool *p, cas_work_fn fn, void *opaque, size_t n)
  __attribute__((nonnull (2)));

/* The number of helpers running (0 once stopped). */
unsigned cas_workpool_threads (struct cas_workpool *p) __attribute__((nonnull));

#endif
