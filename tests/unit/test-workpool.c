/* Unit tests for the worker pool (workpool.c), and for the multi-block
 * write path that uses it (store_io.c): a store written with helpers must
 * end up exactly like one written without (the same blocks, the same
 * bytes at the same places of the data file), and read back the same.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "format.h"
#include "meta/state.h"
#include "util/crc32c.h"
#include "util/util.h"
#include "util/workpool.h"

#include "fixture.h"

/* ---- the pool alone ---- */

#define MAX_ITEMS 4096

struct record {
  size_t n;
  unsigned sleep_us;            /* per item */
  unsigned runs[MAX_ITEMS];     /* atomic: times item i ran */
  pthread_t who[MAX_ITEMS];     /* the thread that ran it */
  uint32_t result[MAX_ITEMS];   /* what item i computed */
  size_t order[MAX_ITEMS];      /* items in the order they started */
  size_t started;               /* atomic */
  bool out_of_range;            /* atomic: an item number >= n was run */
};

/* The value item I must compute: a CRC of a buffer derived from I. */
static uint32_t
expected (size_t i)
{
  uint8_t buf[512];

  fill_random (buf, sizeof buf, i + 1);
  return cas_crc32c ((uint32_t) i, buf, sizeof buf);
}

static void
item (void *opaque, size_t i)
{
  struct record *r = opaque;

  /* No cr_assert here: items run in helper threads too. */
  if (i >= r->n) {
    __atomic_store_n (&r->out_of_range, true, __ATOMIC_RELAXED);
    return;
  }
  r->order[__atomic_fetch_add (&r->started, 1, __ATOMIC_RELAXED)] = i;
  __atomic_add_fetch (&r->runs[i], 1, __ATOMIC_RELAXED);
  r->who[i] = pthread_self ();
  if (r->sleep_us)
    usleep (r->sleep_us);
  r->result[i] = expected (i);
}

static struct record *
record_new (size_t n, unsigned sleep_us)
{
  struct record *r = calloc (1, sizeof *r);

  cr_assert_not_null (r);
  cr_assert_leq (n, MAX_ITEMS);
  r->n = n;
  r->sleep_us = sleep_us;
  return r;
}

/* Every item ran exactly once and computed the right value. */
static void
check_all_once (const struct record *r)
{
  cr_assert (!r->out_of_range, "an item beyond the batch ran");
  cr_assert_eq (r->started, r->n, "%zu of %zu items started", r->started, r->n);
  for (size_t i = 0; i < r->n; i++) {
    cr_assert_eq (r->runs[i], 1, "item %zu ran %u times", i, r->runs[i]);
    cr_assert_eq (r->result[i], expected (i), "item %zu computed the wrong value", i);
  }
}

/* How many different threads ran items; whether SELF was one of them. */
static size_t
threads_used (const struct record *r, pthread_t self, bool *self_worked)
{
  pthread_t seen[64];
  size_t nseen = 0;

  *self_worked = false;
  for (size_t i = 0; i < r->n; i++) {
    size_t k = 0;
    while (k < nseen && !pthread_equal (seen[k], r->who[i]))
      k++;
    if (k == nseen && nseen < 64)
      seen[nseen++] = r->who[i];
    if (pthread_equal (r->who[i], self))
      *self_worked = true;
  }
  return nseen;
}

static void
pool_setup (void)
{
  errors[0] = '\0';
  cas_set_log (capture);
}

TestSuite (workpool, .init = pool_setup, .timeout = 60);

Test (workpool, null_pool_runs_in_order_in_the_caller)
{
  struct record *r = record_new (100, 0);
  bool self_worked;

  cas_workpool_run (NULL, item, r, r->n);
  check_all_once (r);
  for (size_t i = 0; i < r->n; i++)
    cr_assert_eq (r->order[i], i, "item %zu ran at position %zu", r->order[i], i);
  cr_assert_eq (threads_used (r, pthread_self (), &self_worked), 1);
  cr_assert (self_worked);
  free (r);
}

Test (workpool, no_helpers_runs_everything_in_the_caller)
{
  struct cas_workpool *p = cas_workpool_start (0);
  struct record *r = record_new (50, 0);
  bool self_worked;

  cr_assert_not_null (p, "%s", errors);
  cr_assert_eq (cas_workpool_threads (p), 0);
  cas_workpool_run (p, item, r, r->n);
  check_all_once (r);
  cr_assert_eq (threads_used (r, pthread_self (), &self_worked), 1);
  cr_assert (self_worked);
  cas_workpool_free (p);
  free (r);
}

Test (workpool, empty_and_single_batches)
{
  struct cas_workpool *p = cas_workpool_start (2);
  struct record *r = record_new (1, 0);
  bool self_worked;

  cr_assert_not_null (p, "%s", errors);
  cas_workpool_run (p, item, r, 0);
  cr_assert_eq (r->started, 0, "an empty batch ran an item");
  cas_workpool_run (p, item, r, 1);
  check_all_once (r);
  cr_assert_eq (threads_used (r, pthread_self (), &self_worked), 1);
  cr_assert (self_worked, "a batch of one runs in the caller");
  cas_workpool_free (p);
  free (r);
}

Test (workpool, one_helper_and_the_caller_share_the_items)
{
  struct cas_workpool *p = cas_workpool_start (1);
  struct record *r = record_new (60, 2000);
  bool self_worked;

  cr_assert_not_null (p, "%s", errors);
  cr_assert_eq (cas_workpool_threads (p), 1);
  cas_workpool_run (p, item, r, r->n);
  check_all_once (r);
  /* 60 items of 2 ms: the helper, awake after a few microseconds, takes
   * some; the caller takes the first at once.
   */
  cr_assert_eq (threads_used (r, pthread_self (), &self_worked), 2,
                "the items ran in %zu threads", threads_used (r, pthread_self (), &self_worked));
  cr_assert (self_worked, "the caller did not work");
  cas_workpool_free (p);
  free (r);
}

Test (workpool, many_items_three_helpers)
{
  struct cas_workpool *p = cas_workpool_start (3);

  cr_assert_not_null (p, "%s", errors);
  for (int round = 0; round < 20; round++) {
    struct record *r = record_new (MAX_ITEMS, 0);
    cas_workpool_run (p, item, r, r->n);
    check_all_once (r);
    free (r);
  }
  cas_workpool_free (p);
}

/* Several callers at once: batches queue up, each completes exactly. */
struct caller {
  struct cas_workpool *p;
  int rounds;
  bool ok;
};

static void *
caller_main (void *arg)
{
  struct caller *c = arg;

  for (int k = 0; k < c->rounds; k++) {
    struct record *r = record_new (200 + k, k % 3 ? 0 : 50);
    cas_workpool_run (c->p, item, r, r->n);
    for (size_t i = 0; i < r->n; i++)
      if (r->runs[i] != 1 || r->result[i] != expected (i))
        return NULL;
    free (r);
  }
  c->ok = true;
  return NULL;
}

Test (workpool, concurrent_callers)
{
  struct cas_workpool *p = cas_workpool_start (2);
  struct caller c[4];
  pthread_t t[4];

  cr_assert_not_null (p, "%s", errors);
  for (int i = 0; i < 4; i++) {
    c[i] = (struct caller) { .p = p, .rounds = 30 };
    cr_assert_eq (pthread_create (&t[i], NULL, caller_main, &c[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join (t[i], NULL);
    cr_assert (c[i].ok, "caller %d saw an item run twice, never, or wrong", i);
  }
  cas_workpool_free (p);
}

/* Stop the pool while a batch is half done: the helper ends its item,
 * the caller runs the rest; nothing runs twice or is lost.
 */
struct stopper_arg {
  struct cas_workpool *p;
  struct record *r;
};

static void *
run_batch (void *arg)
{
  struct stopper_arg *a = arg;

  cas_workpool_run (a->p, item, a->r, a->r->n);
  return NULL;
}

Test (workpool, stop_with_work_queued)
{
  struct cas_workpool *p = cas_workpool_start (1);
  struct stopper_arg a = { .p = p, .r = record_new (200, 1000) };
  pthread_t t;
  struct timespec t0, t1;

  cr_assert_not_null (p, "%s", errors);
  cr_assert_eq (pthread_create (&t, NULL, run_batch, &a), 0);
  /* Wait (bounded) until the batch is under way, then stop. */
  for (int i = 0; i < 2000 && __atomic_load_n (&a.r->started, __ATOMIC_RELAXED) < 10; i++)
    usleep (1000);
  cr_assert_geq (a.r->started, 10, "the batch did not start");
  clock_gettime (CLOCK_MONOTONIC, &t0);
  cas_workpool_stop (p);
  clock_gettime (CLOCK_MONOTONIC, &t1);
  const size_t at_stop = __atomic_load_n (&a.r->started, __ATOMIC_RELAXED);
  cr_assert_lt (at_stop, a.r->n, "the whole batch ran before the stop: the test proves nothing");
  /* stop waits for the helper's current item (1 ms), not for the batch. */
  const double waited = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  cr_assert_lt (waited, 0.1, "stop took %.3f s", waited);
  cr_assert_eq (cas_workpool_threads (p), 0);
  pthread_join (t, NULL);
  check_all_once (a.r);

  /* A stopped pool still runs batches, in the caller alone. */
  struct record *r = record_new (30, 0);
  bool self_worked;
  cas_workpool_run (p, item, r, r->n);
  check_all_once (r);
  cr_assert_eq (threads_used (r, pthread_self (), &self_worked), 1);
  cr_assert (self_worked);
  cas_workpool_stop (p);        /* idempotent */
  cas_workpool_free (p);
  free (a.r);
  free (r);
}

/* Item 0 is slow, the others quick: the caller keeps item 0, the
 * helper finishes the rest and is then idle while the caller is still
 * inside cas_workpool_run.
 */
static void
slow_first (void *opaque, size_t i)
{
  struct record *r = opaque;

  if (i == 0) {
    __atomic_add_fetch (&r->started, 1, __ATOMIC_RELAXED);   /* counted here, not in item */
    usleep (300 * 1000);
    __atomic_sub_fetch (&r->started, 1, __ATOMIC_RELAXED);
  }
  item (r, i);
}

static void *
run_slow_first (void *arg)
{
  struct stopper_arg *a = arg;

  cas_workpool_run (a->p, slow_first, a->r, a->r->n);
  return NULL;
}

Test (workpool, a_second_caller_runs_alone_when_every_helper_has_one)
{
  struct cas_workpool *p = cas_workpool_start (1);
  struct stopper_arg a = { .p = p, .r = record_new (3, 0) };
  struct record *r = record_new (50, 1000);
  pthread_t t;
  bool self_worked;

  cr_assert_not_null (p, "%s", errors);
  cr_assert_eq (pthread_create (&t, NULL, run_slow_first, &a), 0);
  for (int i = 0; i < 2000 && __atomic_load_n (&a.r->started, __ATOMIC_RELAXED) < 3; i++)
    usleep (1000);
  cr_assert_eq (a.r->started, 3, "the first batch did not start");
  /* The helper is idle now, and the first caller still inside run. */
  cas_workpool_run (p, item, r, r->n);
  const bool first_still_running = __atomic_load_n (&a.r->runs[0], __ATOMIC_RELAXED) == 0;
  check_all_once (r);
  cr_assert_eq (threads_used (r, pthread_self (), &self_worked), 1,
                "the helper took items of a second caller");
  cr_assert (self_worked);
  pthread_join (t, NULL);
  check_all_once (a.r);
  cr_assert (first_still_running, "the first batch ended too early: the test proves nothing");

  /* Alone again: the helper helps. */
  struct record *r2 = record_new (50, 1000);
  cas_workpool_run (p, item, r2, r2->n);
  check_all_once (r2);
  cr_assert_eq (threads_used (r2, pthread_self (), &self_worked), 2);
  cas_workpool_free (p);
  free (a.r);
  free (r);
  free (r2);
}

/* ---- multi-block writes with and without helpers ---- */

static void
store_setup (void)
{
  fixture_setup ("workpool");
}

/* Every suite here has the same timeout: with different ones,
 * Criterion's runner leaked 48 bytes under AddressSanitizer.
 */
TestSuite (pool_writes, .init = store_setup, .fini = fixture_teardown, .timeout = 60);

#define DISK_SIZE (UINT64_C(24) << 20)

/* One store at DIR/NAME, written with WORKERS threads per write; with
 * TWIN's key secret if TWIN is not NULL (the keys, and so the pieces'
 * CRC seeds, are then the same in both).
 */
static struct cas_store *
make_store (const char *name, uint32_t bs, int level, unsigned workers, bool direct,
            const struct cas_store *twin, char *path, size_t len)
{
  struct cas_create_opts co = { .block_size = bs, .compression_level = level };
  struct cas_open_opts oo;

  snprintf (path, len, "%s/%s", dir, name);
  cr_assert_eq (cas_store_create (path, &co, "disk0", DISK_SIZE), 0, "create: %s", errors);
  if (twin) {
    char sbpath[500];
    size_t n;
    snprintf (sbpath, sizeof sbpath, "%s/" CAS_SB_NAME, path);
    uint8_t *sb = slurp (sbpath, &n);
    cr_assert_eq (n, CAS_SB_SIZE);
    memcpy (sb + SB_KEY_SECRET, twin->keyfn.secret, CAS_KEY_SECRET_LEN);
    put_le32 (sb + SB_CRC, 0);
    put_le32 (sb + SB_CRC, cas_crc32c (0, sb, CAS_SB_SIZE));
    spit (sbpath, sb, n);
    free (sb);
  }
  cas_open_opts_default (&oo);
  oo.gc_delay = 3600;
  oo.workers = workers;
  oo.direct_io = direct;
  oo.cache_bytes = direct ? 8u << 20 : 0;
  struct cas_store *s = cas_store_open (path, &oo);
  if (s == NULL && direct && strstr (errors, "direct-io"))
    cr_skip_test ("%s cannot do direct I/O: %s", dir, errors);
  cr_assert_not_null (s, "open: %s", errors);
  cr_assert_eq (cas_store_start (s), 0, "start: %s", errors);
  return s;
}

/* Block K of the test's data: random, compressible text, all zero, or a
 * repeat of an earlier block (dedup within one request and across).
 */
static void
make_block (uint8_t *p, uint32_t bs, uint64_t k, unsigned salt)
{
  switch (k % 7) {
  case 0: case 3: fill_random (p, bs, k * 131 + salt); break;
  case 1: case 5: fill_text (p, bs, k * 17 + salt); break;
  case 2: memset (p, 0, bs); break;
  case 4: fill_random (p, bs, 1000000 + k % 3); break;      /* repeats */
  case 6: fill_text (p, bs, 2000000 + k % 2); break;        /* repeats */
  }
}

struct wr {
  uint64_t off;
  uint32_t len;
  unsigned salt;
};

/* Unaligned ends, rounds longer than the pool's batch (1 MiB), rewrites of
 * known content, and an overwrite of part of the first write with zeroes.
 */
static const struct wr writes[] = {
  { 12345, (3u << 20) + 3000, 1 },
  { 8u << 20, 2u << 20, 1 },            /* same salt: content the index knows */
  { 8u << 20, 1u << 20, 2 },            /* overwrite: the old blocks die */
  { 14u << 20, 5u << 20, 3 },
  { 1u << 20, 1u << 20, 9 },            /* all zero (salt 9, below) */
};

static void
fill_write (uint8_t *buf, const struct wr *w, uint32_t bs)
{
  uint8_t *blk = malloc (bs);

  cr_assert_not_null (blk);
  for (uint32_t pos = 0; pos < w->len; pos += bs) {
    const uint32_t n = w->len - pos < bs ? w->len - pos : bs;
    if (w->salt == 9)
      memset (blk, 0, bs);
    else
      make_block (blk, bs, pos / bs, w->salt);
    memcpy (buf + pos, blk, n);
  }
  free (blk);
}

static void
same_with_and_without_helpers (uint32_t bs, int level, bool direct)
{
  char off_path[400], on_path[400];
  struct cas_store *off = make_store ("off", bs, level, 1, direct, NULL, off_path, sizeof off_path);
  struct cas_store *on = make_store ("on", bs, level, 3, direct, off, on_path, sizeof on_path);
  struct cas_disk *doff = disk0 (off), *don = disk0 (on);
  uint8_t *model = calloc (1, DISK_SIZE), *back = malloc (DISK_SIZE);

  cr_assert_not_null (model);
  cr_assert_not_null (back);
  cr_assert_null (off->pool, "workers=1 started helpers");
  cr_assert_not_null (on->pool, "workers=3 started no helpers");
  cr_assert_eq (cas_workpool_threads (on->pool), 2);

  for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
    const struct wr *w = &writes[i];
    uint8_t *buf = malloc (w->len);
    cr_assert_not_null (buf);
    fill_write (buf, w, bs);
    memcpy (model + w->off, buf, w->len);
    write_ok (doff, buf, w->len, w->off);
    write_ok (don, buf, w->len, w->off);
    free (buf);
  }

  /* Both read back what was written. */
  cr_assert_eq (cas_disk_read (don, back, DISK_SIZE, 0), 0, "%s", errors);
  cr_assert_eq (memcmp (back, model, DISK_SIZE), 0, "the store written with helpers reads back wrong");
  cr_assert_eq (cas_disk_read (doff, back, DISK_SIZE, 0), 0, "%s", errors);
  cr_assert_eq (memcmp (back, model, DISK_SIZE), 0, "the store written alone reads back wrong");

  /* The same blocks, stored the same way. */
  struct cas_store_stats soff, son;
  cr_assert_eq (cas_store_stats (off, &soff), 0);
  cr_assert_eq (cas_store_stats (on, &son), 0);
  cr_assert_gt (soff.nblocks, 10);
  cr_assert_eq (son.nblocks, soff.nblocks, "blocks: %" PRIu64 " with helpers, %" PRIu64 " without",
                son.nblocks, soff.nblocks);
  cr_assert_eq (son.stored_bytes, soff.stored_bytes);
  cr_assert_eq (son.dead_blocks, soff.dead_blocks);
  cr_assert_gt (soff.dead_blocks, 0, "the overwrite left no dead block");
  cr_assert_eq (son.data_file_end, soff.data_file_end);
  struct cas_disk_stats dsoff, dson;
  cr_assert_eq (cas_disk_stats (doff, &dsoff), 0);
  cr_assert_eq (cas_disk_stats (don, &dson), 0);
  cr_assert_eq (dson.logical_bytes, dsoff.logical_bytes);
  cr_assert_eq (dson.unique_bytes, dsoff.unique_bytes);
  cr_assert_eq (dson.stored_bytes, dsoff.stored_bytes);
  if (level > 0)
    cr_assert_lt (dsoff.stored_bytes, dsoff.unique_bytes, "nothing was compressed");

  /* Blocks are stored in request order by the writing thread: the data
   * files are the same, byte for byte.
   */
  char path[500];
  size_t loff, lon;
  cr_assert_eq (cas_store_flush (off), 0);
  cr_assert_eq (cas_store_flush (on), 0);
  snprintf (path, sizeof path, "%s/" CAS_DATA_NAME, off_path);
  uint8_t *foff = slurp (path, &loff);
  snprintf (path, sizeof path, "%s/" CAS_DATA_NAME, on_path);
  uint8_t *fon = slurp (path, &lon);
  cr_assert_gt (loff, 0);
  cr_assert_eq (lon, loff, "data file: %zu bytes with helpers, %zu without", lon, loff);
  cr_assert_eq (memcmp (fon, foff, loff), 0, "the data files differ");
  free (foff);
  free (fon);

  close_ok (on);
  close_ok (off);

  /* And after a reopen. */
  struct cas_open_opts oo;
  cas_open_opts_default (&oo);
  struct cas_store *s = cas_store_open (on_path, &oo);
  cr_assert_not_null (s, "%s", errors);
  cr_assert_eq (cas_disk_read (disk0 (s), back, DISK_SIZE, 0), 0, "%s", errors);
  cr_assert_eq (memcmp (back, model, DISK_SIZE), 0, "reads back wrong after a reopen");
  close_ok (s);
  free (model);
  free (back);
}

Test (pool_writes, same_store_64k_blocks_compressed)
{
  same_with_and_without_helpers (65536, 1, false);
}

Test (pool_writes, same_store_4k_blocks_compressed)
{
  same_with_and_without_helpers (4096, 1, false);
}

Test (pool_writes, same_store_64k_blocks_uncompressed)
{
  same_with_and_without_helpers (65536, 0, false);
}

/* The data file written with O_DIRECT, and the block cache (cache=8M). */
Test (pool_writes, same_store_64k_blocks_direct_io)
{
  same_with_and_without_helpers (65536, 1, true);
}
