/* Per-disk request counters: requests, bytes and errors per operation,
 * bumped where requests enter the engine (store_io.c) and read by the
 * live status and the metrics (metrics.c).
 *
 * The data path takes no lock for them: each bump is a relaxed atomic
 * add.  A reader may see one operation's request counted before its bytes;
 * the figures are for monitoring, not accounting, so that is fine.
 */
#ifndef CAS_COUNTERS_H
#define CAS_COUNTERS_H

#include <stdint.h>

#include "casdisk.h"

struct cas_op_counters {
  uint64_t requests[CAS_OP_COUNT];  /* atomic: requests received */
  uint64_t bytes[CAS_OP_COUNT];     /* atomic: bytes of the successful ones */
  uint64_t errors[CAS_OP_COUNT];    /* atomic: requests that failed */
};

/* Count one request of OP over BYTES that returned R (0 or -1); returns R
 * and leaves errno alone, so "return cas_op_done (...)" keeps the error
 * convention.
 */
static inline int
cas_op_done (struct cas_op_counters *c, enum cas_op op, uint64_t bytes, int r)
{
  __atomic_add_fetch (&c->requests[op], 1, __ATOMIC_RELAXED);
  if (r == 0)
    __atomic_add_fetch (&c->bytes[op], bytes, __ATOMIC_RELAXED);
  else
    __atomic_add_fetch (&c->errors[op], 1, __ATOMIC_RELAXED);
  return r;
}

#endif
