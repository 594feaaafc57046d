/* The recycler (recycler.c): online compaction of the data file, moving
 * blocks from its tail into free space below them.  Its callers hold
 * recycle_lock, so one move pass runs at a time.
 */
#ifndef CAS_RECYCLER_H
#define CAS_RECYCLER_H

#include <stdbool.h>
#include <stdint.h>

struct cas_store;

/* Is there enough free space inside the data file to compact?  Yes from
 * compact_after percent until it falls below half that (recycle_lock).
 */
bool cas_recycler_wanted (struct cas_store *s);
/* Move up to BUDGET bytes of blocks from the tail into free space below
 * them (FORCE: even below the compact_after threshold).  Returns the bytes
 * moved.  One caller at a time (the background thread, or compact).
 */
uint64_t cas_recycle_pass (struct cas_store *s, uint64_t budget, bool force);

#endif
