/* The store (store.c): create, open with recovery (the order of steps;
 * loading itself is meta/load.c), checkpoints, adding disks, freeing.
 * Starting its threads and closing it are ops/lifecycle.c's.  The state
 * it opens is struct cas_store (meta/state.h), with the lock order.
 */
#ifndef CAS_STORE_H
#define CAS_STORE_H

#include "casdisk.h"

struct cas_block;
struct cas_checker;
struct cas_store;

struct cas_store *cas_store_open_internal (const char *dir, const struct cas_open_opts *opts,
                                           struct cas_checker *checker);
int cas_store_checkpoint (struct cas_store *s);
void cas_free_block (struct cas_block *b);
/* Free S and everything it holds, closing its files (which drops the
 * store's lock).  Nothing is written: cas_store_close (ops/lifecycle.c)
 * flushes, checkpoints and tidies first.  No other thread may be left.
 */
void cas_store_free (struct cas_store *s);

#endif
