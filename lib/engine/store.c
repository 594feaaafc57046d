/* The store: create, open with recovery, checkpoint, free; disks.  Starting
 * its threads and closing it (stop them, flush, checkpoint, tidy, free)
 * are ops/lifecycle.c's.
 *
 * Opening a store (cas_store_open_internal):
 *
 *   1. lock the superblock file (flock: exclusive to write, shared to read)
 *      and validate it;
 *   2. load the checkpoint (generation G) and replay journal.G, journal.G+1
 *      ... (a checkpoint that crashed before it was renamed into place
 *      leaves two journals; both are replayed in order);
 *   3. recount every block's references from the maps: the count is
 *      authoritative, a stored refcount that disagrees is reported (and a
 *      count that does not fit in 31 bits refused, see recount in
 *      meta/load.c);
 *   4. rebuild the allocator from the blocks' locations; blocks nobody
 *      references are dead and wait for the delayed GC again;
 *   5. when writable: deallocate the gaps (a crash can leave written but
 *      never-recorded blocks there), cut the data file at the end of the
 *      last block, write a fresh checkpoint and start an empty journal.
 *
 * Step 2 applies each record through meta/load.c, which also does steps
 * 3, 4 and the tidying of 5 (cas_load_finish); this file keeps their
 * order and writes the checkpoint.
 *
 * So a store is always open on a fresh checkpoint + empty journal, and
 * recovery costs one read of the metadata plus one checkpoint write: no
 * scan of the data.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "engine/store.h"
#include "engine/store_io.h"
#include "format.h"
#include "meta/ckpt.h"
#include "meta/disk.h"
#include "meta/journal.h"
#include "meta/load.h"
#include "meta/overlay.h"
#include "meta/state.h"
#include "storage/bcache.h"
#include "storage/dio.h"
#include "storage/io.h"
#include "storage/ptcache.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/util.h"

/* Piece tables cached (ptcache.h): 80 bytes a slot, 5 MiB at most,
 * touched only as partial reads of sectored blocks fill it; the tables of
 * 4 GiB of 64 KiB blocks.
 */
#define PTCACHE_SLOTS 65536

void
cas_create_opts_default (struct cas_create_opts *o)
{
  memset (o, 0, sizeof *o);
  o->block_size = CAS_DEFAULT_BLOCK_SIZE;
  o->compression_level = CAS_DEFAULT_LEVEL;
}

void
cas_open_opts_default (struct cas_open_opts *o)
{
  memset (o, 0, sizeof *o);
  o->gc_delay = CAS_DEFAULT_GC_DELAY;
  o->gc_pressure = CAS_DEFAULT_GC_PRESSURE;
  o->compact_after = CAS_DEFAULT_COMPACT_AFTER;
  o->recycle_rate = CAS_DEFAULT_RECYCLE_RATE;
  o->recycle_tranquility = CAS_DEFAULT_TRANQUILITY;
  o->keep_erased = CAS_KEEP_ERASED_ALL;
  o->workers = CAS_WORKERS_AUTO;
}

static void
path_of (const char *dir, const char *name, char *buf, size_t len)
{
  snprintf (buf, len, "%s/%s", dir, name);
}

bool
cas_store_exists (const char *dir)
{
  char path[4096];

  path_of (dir, CAS_SB_NAME, path, sizeof path);
  return access (path, F_OK) == 0;
}

/* ---- creation ---- */

static int
validate_create (const struct cas_create_opts *o)
{
  if (!is_power_of_2 (o->block_size) ||
      o->block_size < CAS_MIN_BLOCK_SIZE || o->block_size > CAS_MAX_BLOCK_SIZE) {
    errno = EINVAL;
    cas_error ("block size %" PRIu32 " is not a power of two between %u and %u",
               o->block_size, CAS_MIN_BLOCK_SIZE, CAS_MAX_BLOCK_SIZE);
    return -1;
  }
  if (o->compression_level < 0 || o->compression_level > CAS_MAX_LEVEL) {
    errno = EINVAL;
    cas_error ("compression level %d is out of range (0 = off, 1 .. %d)",
               o->compression_level, CAS_MAX_LEVEL);
    return -1;
  }
  return 0;
}

static int
validate_disk (const char *name, uint64_t size, uint32_t block_size)
{
  if (!cas_disk_name_valid (name)) {
    errno = EINVAL;
    cas_error ("disk name '%s' is not valid: use 1 to %d letters, digits, '-', '_' or '.', "
               "not starting with '-' or '.'", name, CAS_DISK_NAME_MAX);
    return -1;
  }
  if (size == 0 || size > CAS_MAX_DISK_SIZE) {
    errno = EINVAL;
    cas_error ("disk size %" PRIu64 " is out of range (1 byte .. 64 TiB)", size);
    return -1;
  }
  (void) block_size;
  return 0;
}

int
cas_store_create (const char *dir, const struct cas_create_opts *opts,
                  const char *first_disk, uint64_t first_size)
{
  uint8_t sb[CAS_SB_SIZE] = { 0 };
  char path[4096];
  DIR *dh;
  struct dirent *de;
  int fd;

  if (validate_create (opts) == -1 ||
      (first_disk && validate_disk (first_disk, first_size, opts->block_size) == -1))
    return -1;
  if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
    cas_error ("create store directory %s: %m", dir);
    return -1;
  }
  if (cas_store_exists (dir)) {
    errno = EEXIST;
    cas_error ("%s is already a casdisk store", dir);
    return -1;
  }
  dh = opendir (dir);
  if (dh == NULL) {
    cas_error ("open %s: %m", dir);
    return -1;
  }
  while ((de = readdir (dh)) != NULL)
    if (strcmp (de->d_name, ".") && strcmp (de->d_name, "..") &&
        strcmp (de->d_name, CAS_DATA_NAME) && strcmp (de->d_name, CAS_CKPT_NAME) &&
        strcmp (de->d_name, "journal.1") && strcmp (de->d_name, "superblock.tmp") &&
        strcmp (de->d_name, "checkpoint.tmp")) {
      cas_error ("%s is not empty and not a casdisk store (found '%s')", dir, de->d_name);
      closedir (dh);            /* after the message: it frees de */
      errno = ENOTEMPTY;
      return -1;
    }
  closedir (dh);

  /* The superblock goes last: until it exists, this is not a store, and a
   * crash half-way leaves a directory that create accepts again.
   */
  memcpy (sb + SB_MAGIC, CAS_SB_MAGIC, 8);
  put_le32 (sb + SB_VERSION, opts->sha256_keys ? 3 : CAS_FORMAT_VERSION);
  if (getrandom (sb + SB_UUID, 16, 0) != 16 ||
      (!opts->sha256_keys &&
       getrandom (sb + SB_KEY_SECRET, CAS_KEY_SECRET_LEN, 0) != CAS_KEY_SECRET_LEN)) {
    cas_error ("getrandom: %m");
    return -1;
  }
  put_le32 (sb + SB_KEY_FN, opts->sha256_keys ? CAS_KEY_SHA256 : CAS_KEY_SIPHASH13);
  put_le32 (sb + SB_BLOCK_SIZE, opts->block_size);
  put_le32 (sb + SB_LEVEL, opts->compression_level);
  put_le64 (sb + SB_CTIME, (uint64_t) time (NULL));
  put_le32 (sb + SB_CRC, cas_crc32c (0, sb, sizeof sb));

  path_of (dir, CAS_DATA_NAME, path, sizeof path);
  if (cas_create_file (path, &fd) == -1)
    return -1;
  close (fd);
  if (cas_ckpt_write_empty (dir, sb + SB_UUID, first_disk, first_size, opts->block_size) == -1)
    return -1;
  {
    struct cas_store tmp = { .dir = (char *) dir };
    memcpy (tmp.uuid, sb + SB_UUID, 16);
    if (cas_journal_create (&tmp, 1, 1, &fd) == -1)
      return -1;
    close (fd);
  }
  return cas_write_file_atomic (dir, CAS_SB_NAME, sb, sizeof sb);
}

void
cas_free_block (struct cas_block *b)
{
  cas_block_free (b);
}

static int
read_superblock (struct cas_store *s)
{
  uint8_t sb[CAS_SB_SIZE], copy[CAS_SB_SIZE];
  ssize_t n = pread (s->sb_fd, sb, sizeof sb, 0);

  if (n < 8 || memcmp (sb + SB_MAGIC, CAS_SB_MAGIC, 8) != 0) {
    errno = EINVAL;
    cas_error ("%s is not a casdisk store (bad superblock magic)", s->dir);
    return -1;
  }
  if (get_le32 (sb + SB_VERSION) > CAS_FORMAT_VERSION && n >= 16) {
    errno = ENOTSUP;
    cas_error ("%s: store format version %" PRIu32 " is newer than this casdisk supports (%d): "
               "upgrade casdisk", s->dir, get_le32 (sb + SB_VERSION), CAS_FORMAT_VERSION);
    return -1;
  }
  if (n != CAS_SB_SIZE) {
    errno = EUCLEAN;
    cas_error ("%s: corrupted store: superblock is truncated (%zd bytes)", s->dir, n);
    return -1;
  }
  memcpy (copy, sb, sizeof copy);
  put_le32 (copy + SB_CRC, 0);
  if (cas_crc32c (0, copy, sizeof copy) != get_le32 (sb + SB_CRC)) {
    errno = EUCLEAN;
    cas_error ("%s: corrupted store: superblock checksum mismatch", s->dir);
    return -1;
  }
  memcpy (s->uuid, sb + SB_UUID, 16);
  s->keyfn.fn = get_le32 (sb + SB_KEY_FN);
  memcpy (s->keyfn.secret, sb + SB_KEY_SECRET, CAS_KEY_SECRET_LEN);
  if (s->keyfn.fn != CAS_KEY_SHA256 && s->keyfn.fn != CAS_KEY_SIPHASH13) {
    errno = EUCLEAN;
    cas_error ("%s: corrupted store: unknown key function %" PRIu32 " in the superblock",
               s->dir, s->keyfn.fn);
    return -1;
  }
  s->version = get_le32 (sb + SB_VERSION);
  s->block_size = get_le32 (sb + SB_BLOCK_SIZE);
  s->level = get_le32 (sb + SB_LEVEL);
  if (!is_power_of_2 (s->block_size) || s->block_size < CAS_MIN_BLOCK_SIZE ||
      s->block_size > CAS_MAX_BLOCK_SIZE || s->level < 0 || s->level > CAS_MAX_LEVEL) {
    errno = EUCLEAN;
    cas_error ("%s: corrupted store: bad block size or compression level in the superblock",
               s->dir);
    return -1;
  }
  return 0;
}

void
cas_store_free (struct cas_store *s)
{
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->ndisks; i++)
    cas_disk_free (s->disks[i]);
  while (s->retired) {
    struct cas_disk *d = s->retired;
    s->retired = d->retired_next;
    cas_disk_free (d);
  }
  cas_ovl_destroy (s);
  cas_index_destroy (&s->index, cas_free_block);
  cas_alloc_destroy (&s->alloc);
  if (s->jfd >= 0)
    close (s->jfd);
  if (s->bcache) {
    struct cas_bcache_stats st;
    cas_bcache_stats (s->bcache, &st);
    cas_debug ("cache: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " of %" PRIu64
               " blocks held", st.hits, st.misses, st.entries, st.capacity);
    cas_bcache_free (s->bcache);
  }
  cas_dio_close (s->dio);
  if (s->ptcache) {
    struct cas_ptcache_stats st;
    cas_ptcache_stats (s->ptcache, &st);
    cas_debug ("piece tables: %" PRIu64 " hits, %" PRIu64 " misses", st.hits, st.misses);
    cas_ptcache_free (s->ptcache);
  }
  if (s->data_fd >= 0)
    close (s->data_fd);
  if (s->sb_fd >= 0)
    close (s->sb_fd);           /* releases the lock */
  free (s->active.p);
  free (s->flushing.p);
  free (s->dir);
  free (s);
}

static int
open_files (struct cas_store *s)
{
  char path[4096];
  const int mode = s->readonly ? O_RDONLY : O_RDWR;
  struct stat st;

  if (stat (s->dir, &st) == -1 || !S_ISDIR (st.st_mode)) {
    errno = ENOENT;
    cas_error ("%s: no such store directory", s->dir);
    return -1;
  }
  path_of (s->dir, CAS_SB_NAME, path, sizeof path);
  s->sb_fd = open (path, O_RDONLY | O_CLOEXEC);
  if (s->sb_fd == -1) {
    if (errno == ENOENT)
      cas_error ("%s is not a casdisk store (no superblock)", s->dir);
    else
      cas_error ("open %s: %m", path);
    return -1;
  }
  if (flock (s->sb_fd, (s->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) {
      errno = EBUSY;
      cas_error ("%s is in use by another process (nbdkit or casdisk): the store is locked",
                 s->dir);
    }
    else
      cas_error ("lock %s: %m", path);
    return -1;
  }
  if (read_superblock (s) == -1)
    return -1;
  path_of (s->dir, CAS_DATA_NAME, path, sizeof path);
  s->data_fd = open (path, mode | O_CLOEXEC);
  if (s->data_fd == -1) {
    if (errno == ENOENT) {
      errno = EUCLEAN;
      cas_error ("%s: corrupted store: the data file is missing", s->dir);
    }
    else
      cas_error ("open %s: %m", path);
    return -1;
  }
  if (s->opts.direct_io && cas_dio_open (path, s->readonly, &s->dio) == -1)
    return -1;
  s->small_log = s->version >= 5 && !s->dio && !s->opts.rewrite_small_writes;
  if (s->dio && s->opts.cache_bytes &&
      (s->bcache = cas_bcache_new (s->opts.cache_bytes, s->block_size)) == NULL)
    return -1;
  if (s->block_size > CAS_PIECE && (s->ptcache = cas_ptcache_new (PTCACHE_SLOTS)) == NULL) {
    cas_error ("open %s: %m", s->dir);
    return -1;
  }
  return 0;
}

/* Make the journals FIRST..s->gen that were just replayed durable, with
 * the directory (names created, renamed or removed by a checkpoint that
 * crashed).  After kill -9 between a journal write and its sync, the tail
 * replay applied may be only in the page cache: tidying the data file on
 * its word before it is durable would let a power loss bring back the
 * journal without the tail, naming space that was punched.
 */
static int
sync_replayed (struct cas_store *s, uint64_t first)
{
  char path[4096];

  for (uint64_t g = first; g <= s->gen; g++) {
    cas_journal_path (s, g, path, sizeof path);
    const int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
      if (errno == ENOENT && s->checker)
        continue;               /* repair recreates a missing journal */
      cas_error ("open %s: %m", path);
      return -1;
    }
    const int r = cas_fdatasync (fd, path);
    close (fd);
    if (r == -1)
      return -1;
  }
  return cas_fsync_dir (s->dir);
}

/* Remove journals older than GEN (a checkpoint of GEN covers them). */
static void
remove_old_journals (struct cas_store *s, uint64_t gen)
{
  char path[4096];

  for (uint64_t g = gen - 1; g > 0 && cas_journal_exists (s, g); g--) {
    cas_journal_path (s, g, path, sizeof path);
    cas_unlink (path);
  }
}

struct cas_store *
cas_store_open_internal (const char *dir, const struct cas_open_opts *opts,
                         struct cas_checker *checker)
{
  struct cas_store *s = calloc (1, sizeof *s);
  struct cas_load ld = { 0 };
  CLEANUP_FREE uint8_t *ckpt = NULL;
  size_t ckpt_len;
  char path[4096];
  uint64_t gen, seq, end = 0;
  bool torn = false;

  if (s == NULL || (s->dir = strdup (dir)) == NULL) {
    free (s);
    cas_error ("open store: %m");
    return NULL;
  }
  s->sb_fd = s->data_fd = s->jfd = -1;
  s->ref_max = CAS_REF_MAX;
  s->gc_pressure_floor = CAS_GC_PRESSURE_FLOOR;
  if (opts)
    s->opts = *opts;
  else
    cas_open_opts_default (&s->opts);
  if (s->opts.checkpoint_bytes == 0)
    s->opts.checkpoint_bytes = CAS_DEFAULT_CKPT_BYTES;
  if (s->opts.recycle_rate == 0)
    s->opts.recycle_rate = CAS_DEFAULT_RECYCLE_RATE;
  s->checker = checker;
  s->readonly = s->opts.readonly || (checker != NULL && !checker->repair);
  pthread_mutex_init (&s->disks_lock, NULL);
  for (int i = 0; i < CAS_NSTRIPES; i++)
    pthread_mutex_init (&s->stripes[i], NULL);
  pthread_mutex_init (&s->ckpt_mutex, NULL);
  {
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init (&a);
    pthread_rwlockattr_setkind_np (&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init (&s->ckpt_lock, &a);
    pthread_rwlockattr_destroy (&a);
  }
  pthread_mutex_init (&s->jlock, NULL);
  pthread_mutex_init (&s->flush_lock, NULL);
  pthread_mutex_init (&s->sync_lock, NULL);
  s->batch_max = CAS_BATCH_MAX;
  pthread_mutex_init (&s->bg_lock, NULL);
  pthread_cond_init (&s->bg_cond, NULL);
  pthread_cond_init (&s->bg_done, NULL);
  s->opened_ns = cas_now_ns ();
  pthread_mutex_init (&s->recycle_lock, NULL);
  pthread_mutex_init (&s->merge_lock, NULL);
  pthread_cond_init (&s->merge_cond, NULL);
  s->ovl_budget = s->opts.small_write_log_bytes ? s->opts.small_write_log_bytes
    : CAS_DEFAULT_SMALL_LOG_BYTES;
  if (cas_ovl_init (s) == -1)
    goto err;

  if (open_files (s) == -1)
    goto err;
  path_of (dir, CAS_CKPT_NAME, path, sizeof path);
  if (access (path, F_OK) == -1) {
    errno = EUCLEAN;
    cas_error ("%s: corrupted store: the checkpoint file is missing", dir);
    goto err;
  }
  if (cas_read_file (path, (void **) &ckpt, &ckpt_len) == -1 ||
      cas_index_init (&s->index, ckpt_len / CKPT_BLOCK_SIZE) == -1 ||
      cas_alloc_init (&s->alloc, cas_stored_max (s->block_size)) == -1)
    goto err;
  s->alloc.keep_erased = s->opts.keep_erased;
  if (s->opts.key_bits > 0 && s->opts.key_bits < 64)
    s->index.key_mask = (UINT64_C(1) << s->opts.key_bits) - 1;
  if (cas_ckpt_load (s, &ld, ckpt, ckpt_len, &gen, &seq) == -1)
    goto err;
  s->gen = gen;
  if (!cas_journal_exists (s, gen) &&
      cas_problem (s, "journal.%" PRIu64 " is missing", gen) == -1)
    goto err;
  /* Replay journal.G, then journal.G+1 if a checkpoint was interrupted.
   * A torn tail before a newer journal is possible (cutting it at open is
   * not synced at once, and a power loss can bring it back); the newer
   * journal's first sequence number proves nothing was lost in between.
   * A newer journal whose header never became durable (the checkpoint
   * that created it crashed) holds nothing: it is dropped.
   */
  for (uint64_t g = gen; cas_journal_exists (s, g); g++) {
    if (g > gen && cas_journal_unborn (s, g)) {
      cas_debug ("journal.%" PRIu64 " was never completed (interrupted checkpoint): dropped", g);
      if (!s->readonly) {
        cas_journal_path (s, g, path, sizeof path);
        if (cas_unlink (path) == -1)
          goto err;
      }
      break;
    }
    if (cas_journal_replay (s, &ld, g, &seq, &end, &torn) == -1)
      goto err;
    s->gen = g;
  }
  s->next_seq = seq;
  s->durable_seq = seq - 1;
  if (!s->readonly && sync_replayed (s, gen) == -1)
    goto err;
  if (cas_load_finish (s, &ld) == -1)
    goto err;
  cas_load_free (&ld);

  if (!s->readonly) {
    /* Continue the last journal after its last valid record (cutting a
     * torn tail), then try to start afresh with a checkpoint.  If that
     * fails (a full file system), the recovered journal serves on.
     */
    cas_journal_path (s, s->gen, path, sizeof path);
    s->jfd = open (path, O_RDWR | O_CLOEXEC);
    if (s->jfd == -1 && errno == ENOENT && s->checker && s->checker->repair) {
      /* Repairing a store that lost its journal: the checkpoint alone is
       * consistent; start a journal after it.
       */
      if (cas_journal_create (s, s->gen, s->next_seq, &s->jfd) == -1)
        goto err;
      end = JRN_HDR_SIZE;
      torn = false;
    }
    if (s->jfd == -1) {
      cas_error ("open %s: %m", path);
      goto err;
    }
    if (torn && cas_ftruncate (s->jfd, end, "journal") == -1)
      goto err;
    s->jpos = s->jreserved = end;
    cas_journal_reserve (s);
    if (cas_store_checkpoint (s) == -1)
      cas_error ("%s: could not write a checkpoint at open (see above); "
                 "continuing with the recovered journal", dir);
    /* Direct I/O writes no small-write log: rebuild the blocks that a
     * buffered open left with pending small writes.  Until then (or if
     * that fails) their disks are read through the buffered path.
     */
    if (s->dio && cas_ovl_count (s) > 0 &&
        cas_ovl_merge_some (s, 0, UINT64_MAX, UINT32_MAX) == -1)
      cas_error ("%s: could not merge the small writes a buffered open left (see above); "
                 "their disks are read without direct I/O", dir);
  }
  cas_debug ("opened %s: %zu disks, %" PRIu64 " blocks, generation %" PRIu64,
             dir, s->ndisks, s->index.count, s->gen);
  return s;

 err:
  cas_load_free (&ld);          /* blocks not yet in the index are only in LD */
  cas_store_free (s);
  return NULL;
}

struct cas_store *
cas_store_open (const char *dir, const struct cas_open_opts *opts)
{
  return cas_store_open_internal (dir, opts, NULL);
}

/* ---- checkpoint ---- */

/* The checkpoint holds maps, not pending small writes (overlay.h): each is
 * restated, compacted, at the head of the new journal, which is synced
 * before the checkpoint can replace the journals that held them.
 * ckpt_lock held for writing (so the age list does not change).
 */
static int
restate_one (void *opaque, struct cas_ovl *o)
{
  struct cas_store *s = opaque;
  /* Writers are excluded, readers are not: a read of a patched block
   * walks its patches under the stripe lock.
   */
  SCOPED_LOCK (sl, stripe_of (s, o->d, o->v));

  if (cas_ovl_compact (s, o, s->block_size) == -1)
    return -1;
  SCOPED_LOCK (jl, &s->jlock);
  for (const struct cas_patch *p = o->head; p; p = p->next)
    cas_journal_append_patch (s, o->d->id, o->v, p->off, p->data, p->len);
  return 0;
}

/* Appends the records; the caller syncs them (after letting writers go:
 * they append after them).  Returns the bytes appended, or -1.
 */
static int64_t
restate_patches (struct cas_store *s)
{
  if (cas_ovl_count (s) == 0)
    return 0;
  if (cas_ovl_each (s, restate_one, s) == -1)
    return -1;
  SCOPED_LOCK (jl, &s->jlock);
  return s->active.len;         /* it was empty: the flush above took it all */
}

/* Write a checkpoint of the current state.  The journal switches to a new
 * generation at the snapshot point:
 *
 *   under ckpt_lock (write): flush; snapshot; create journal.G+1; switch;
 *     restate the pending small writes (append them first in G+1).
 *   then: sync journal.G+1 (with the restated patches, and whatever writers
 *     appended after them); write checkpoint (G+1) atomically; remove
 *     journal.G.
 *
 * A crash before the rename leaves checkpoint G + journal.G + journal.G+1,
 * which replay in order; after it, checkpoint G+1 + journal.G+1.
 */
int
cas_store_checkpoint (struct cas_store *s)
{
  SCOPED_LOCK (cm, &s->ckpt_mutex);
  CLEANUP_FREE uint8_t *buf = NULL;
  size_t len;
  uint64_t gen, old_gen;
  int newfd;

  assert (!s->readonly);
  if (cas_check_failed (s, "checkpoint") == -1)
    return -1;
  pthread_rwlock_wrlock (&s->ckpt_lock);
  if (cas_journal_sync (s) == -1)
    goto err_unlock;
  {
    SCOPED_LOCK (fl, &s->flush_lock);
    old_gen = s->gen;
    gen = s->gen + 1;
    if (cas_ckpt_serialize (s, gen, s->next_seq, &buf, &len) == -1 ||
        cas_journal_create (s, gen, s->next_seq, &newfd) == -1)
      goto err_unlock;
    close (s->jfd);
    s->jfd = newfd;
    s->jpos = JRN_HDR_SIZE;
    s->jreserved = 0;
    s->gen = gen;
    cas_journal_reserve (s);
  }
  const int64_t restated = restate_patches (s);
  if (restated == -1)
    goto err_unlock;
  /* What the journal holds already: the next checkpoint counts from here. */
  __atomic_store_n (&s->jrestated, JRN_HDR_SIZE + JREC_BATCH_SIZE + (uint64_t) restated,
                    __ATOMIC_RELAXED);
  pthread_rwlock_unlock (&s->ckpt_lock);
  /* The restated patches must be durable before the checkpoint that does
   * not hold them replaces the journals that do.
   */
  if (restated > 0 && cas_journal_sync (s) == -1)
    return -1;                  /* journal.G and G+1 still replay correctly */

  if (cas_write_file_atomic (s->dir, CAS_CKPT_NAME, buf, len) == -1)
    return -1;                  /* journal.G and G+1 still replay correctly */
  remove_old_journals (s, gen);
  (void) old_gen;
  return 0;

 err_unlock:
  pthread_rwlock_unlock (&s->ckpt_lock);
  return -1;
}

/* ---- disks ---- */

struct cas_disk *
cas_disk_add (struct cas_store *s, const char *name, uint64_t size)
{
  struct cas_disk *d;
  uint8_t rec[JREC_DISK_ADD_LEN] = { 0 };
  uint32_t id;

  if (s->readonly) {
    errno = EROFS;
    cas_error ("cannot add disk '%s': the store is open read-only", name);
    return NULL;
  }
  if (validate_disk (name, size, s->block_size) == -1)
    return NULL;
  pthread_rwlock_rdlock (&s->ckpt_lock);
  {
    SCOPED_LOCK (dl, &s->disks_lock);
    if (cas_disk_find_locked (s, name) != NULL) {
      pthread_rwlock_unlock (&s->ckpt_lock);
      errno = EEXIST;
      cas_error ("disk '%s' already exists", name);
      return NULL;
    }
    if (cas_disk_free_slot (s, &id) == -1 || (d = cas_disk_new (s, id, name, size, 0)) == NULL) {
      pthread_rwlock_unlock (&s->ckpt_lock);
      return NULL;
    }
    put_le32 (rec, d->id);
    put_le32 (rec + 4, strlen (name));
    put_le64 (rec + 8, size);
    memcpy (rec + 16, name, strlen (name));
    {
      SCOPED_LOCK (jl, &s->jlock);
      cas_journal_append (s, JREC_DISK_ADD, rec, sizeof rec);
    }
    cas_disk_publish (s, d);
  }
  pthread_rwlock_unlock (&s->ckpt_lock);
  if (cas_journal_sync (s) == -1)
    return NULL;
  return d;
}

uint32_t cas_store_block_size (const struct cas_store *s) { return s->block_size; }
int cas_store_compression_level (const struct cas_store *s) { return s->level; }
const char *cas_store_dir (const struct cas_store *s) { return s->dir; }
