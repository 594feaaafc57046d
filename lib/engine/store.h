/* The store (store.c): create, open with recovery (the order of steps;
 * loading itself is meta/load.c), checkpoints, adding disks, closing the
 * files.  The state it opens is struct cas_store (meta/state.h), with
 * the lock order.
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

#endif
