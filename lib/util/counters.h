/* Per-disk request counters: requests, bytes and errors per operation,
 * bumped where requests enter the engine (store_io.c) and read by the
 * live status and the metrics (metrics.c).
 *
 * The data path takes no lock for them: each bump is a relaxed atomic
 * add, into one of CAS_OP_SHARDS copies, the calling thread's (threads
 * take shards in turn), so that threads do not fight over one cache line
 * (measured on 2 threads: 35 ns per request on a shared line, see
 * docs/control.md).  Readers sum the shards.  A reader may see one
 * operation's request counted before its bytes; the figures are for
 * monitoring, not accounting, so that is fine.
 */
#ifndef CAS_COUNTERS_H
#define CAS_COUNTERS_H

#include <stdint.h>

#include "casdisk.h"

#define CAS_OP_SHARDS 16

struct cas_op_shard {
  uint64_t requests[CAS_OP_COUNT];  /* atomic: requests received */
  uint64_t bytes[CAS_OP_COUNT];     /* atomic: bytes of the successful ones */
  uint64_t errors[CAS_OP_COUNT];    /* atomic: requests that failed */
  /* Padding: shards never share a cache line, whatever the alignment of
   * the disk structure (calloc gives 16 bytes, not 64).
   */
  char pad[64 + (64 - 3 * CAS_OP_COUNT * sizeof (uint64_t) % 64) % 64];
};

struct cas_op_counters {
  struct cas_op_shard shard[CAS_OP_SHARDS];
};

/* Count one request of OP over BYTES that returned R (0 or -1); returns R
 * and leaves errno alone, so "return cas_op_done (...)" keeps the error
 * convention.
 */
/* The calling thread's shard: 0 = not chosen yet, else shard + 1.
 * (sched_getcpu would follow migrations, but measured 4 to 5 times
 * slower than the shared counters it replaces where glibc has no rseq.)
 */
extern __thread unsigned cas_op_thread_shard __attribute__((tls_model ("initial-exec")));
unsigned cas_op_pick_shard (void);

static inline int
cas_op_done (struct cas_op_counters *c, enum cas_op op, uint64_t bytes, int r)
{
  const unsigned k = cas_op_thread_shard ? cas_op_thread_shard - 1 : cas_op_pick_shard ();
  struct cas_op_shard *sh = &c->shard[k];

  __atomic_add_fetch (&sh->requests[op], 1, __ATOMIC_RELAXED);
  if (r == 0)
    __atomic_add_fetch (&sh->bytes[op], bytes, __ATOMIC_RELAXED);
  else
    __atomic_add_fetch (&sh->errors[op], 1, __ATOMIC_RELAXED);
  return r;
}

#endif
