/* Per-disk request counters (counters.h): each thread's shard. */
#include <config.h>

#include "util/counters.h"

__thread unsigned cas_op_thread_shard __attribute__((tls_model ("initial-exec")));

unsigned
cas_op_pick_shard (void)
{
  static unsigned next;
  const unsigned k = __atomic_fetch_add (&next, 1, __ATOMIC_RELAXED) % CAS_OP_SHARDS;

  cas_op_thread_shard = k + 1;
  return k;
}
