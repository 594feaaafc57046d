/* Runtime asserts (verify.c): with runtime_asserts, the space map is
 * checked against the index and the blocks against the maps after every
 * step of the background work and every whole-disk operation.  The check
 * itself takes ckpt_lock for writing; see each function for recycle_lock.
 */
#ifndef CAS_VERIFY_H
#define CAS_VERIFY_H

#include "meta/state.h"

/* With runtime_asserts: cas_store_verify(), aborting with the problems
 * logged if there is any.  STEP names the step just done.  The caller
 * holds recycle_lock (the background work), so that no erase or move is
 * half done: an extent being punched is in none of the allocator's lists.
 */
void cas_runtime_assert (struct cas_store *s, const char *step);
/* The same from a thread that does not hold recycle_lock (clone, snapshot
 * and delete, from the control channel or the tool): takes it.
 */
void cas_runtime_assert_fg (struct cas_store *s, const char *step);
/* Step STEP (named NAME) of the background work is done: call the test
 * hook, then cas_runtime_assert.
 */
void cas_step (struct cas_store *s, enum cas_recycle_step step, const char *name);

#endif
