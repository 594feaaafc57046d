/* nbdkit-casdisk-plugin: serves the disks of a casdisk store over NBD.
 *
 * This file is glue: it parses keys, picks the disk from the export name,
 * and calls the engine (lib/casdisk.h).  Life cycle, as nbdkit drives it:
 *
 *   .config / .config_complete   parse and validate the keys
 *   .get_ready                   create the store if missing, open it (lock,
 *                                recovery): errors still reach the terminal,
 *                                and no thread is started because nbdkit may
 *                                fork after this
 *   .after_fork                  start the engine's background thread, its
 *                                worker pool (workers=N) and its control
 *                                channel (DIR/control.sock)
 *   .cleanup                     stop them, flush, checkpoint, unlock
 *
 * Engine calls return -1 with errno set and the message already logged, so
 * the callbacks only return -1 and nbdkit sends errno to the client.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "casdisk.h"

/* The engine does its own locking; reads take none. */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Settings from the command line (written by .config only). */
static const char *store_dir;
static const char *disk_name;          /* default export; NULL = automatic */
static uint64_t size;                  /* 0 = not given */
static struct cas_create_opts create_opts;
static bool block_size_given, compression_given;
static struct cas_open_opts open_opts;
static bool metrics;                   /* metrics=true: DIR/metrics.prom */
static char *metrics_file;             /* metrics-file=PATH (absolute) */

/* -D casdisk.engine=1 turns on the engine's debug messages (seen with -v). */
NBDKIT_DLL_PUBLIC int casdisk_debug_engine;

/* The open store (from .get_ready to .cleanup). */
static struct cas_store *store;
static struct cas_disk *default_disk;   /* at startup; may be deleted online later */
static char default_name[CAS_DISK_NAME_MAX + 1];  /* what the empty export name serves */

static void
log_to_nbdkit (bool error, const char *msg)
{
  if (error)
    nbdkit_error ("%s", msg);
  else
    nbdkit_debug ("%s", msg);
}

static void
casdisk_load (void)
{
  cas_set_log (log_to_nbdkit);
  cas_create_opts_default (&create_opts);
  cas_open_opts_default (&open_opts);
  open_opts.control = true;
}

static void
casdisk_unload (void)
{
  /* .cleanup has closed the store. */
  free (metrics_file);
}

static int
parse_size_key (const char *key, const char *value, uint64_t *out)
{
  if (cas_parse_size (value, out) == -1) {
    nbdkit_error ("%s: cannot parse '%s' as a size (e.g. 10G, 512M, 65536)", key, value);
    return -1;
  }
  return 0;
}

static int
parse_bool_key (const char *key, const char *value, bool *out)
{
  const int r = nbdkit_parse_bool (value);

  if (r == -1) {
    nbdkit_error ("%s: '%s' is not a boolean (true/false, on/off, 1/0)", key, value);
    return -1;
  }
  *out = r;
  return 0;
}

static int
casdisk_config (const char *key, const char *value)
{
  if (strcmp (key, "store") == 0) {
    store_dir = value;
  }
  else if (strcmp (key, "disk") == 0) {
    if (!cas_disk_name_valid (value)) {
      nbdkit_error ("disk: '%s' is not a valid disk name (letters, digits, '-', '_', '.')",
                    value);
      return -1;
    }
    disk_name = value;
  }
  else if (strcmp (key, "size") == 0) {
    if (parse_size_key (key, value, &size) == -1)
      return -1;
    if (size == 0 || size > CAS_MAX_DISK_SIZE) {
      nbdkit_error ("size: %s is out of range (1 byte to 64T)", value);
      return -1;
    }
  }
  else if (strcmp (key, "block-size") == 0) {
    uint64_t bs;
    if (parse_size_key (key, value, &bs) == -1)
      return -1;
    if (bs < CAS_MIN_BLOCK_SIZE || bs > CAS_MAX_BLOCK_SIZE || (bs & (bs - 1))) {
      nbdkit_error ("block-size: %s is not a power of two from 4K to 64K", value);
      return -1;
    }
    create_opts.block_size = bs;
    block_size_given = true;
  }
  else if (strcmp (key, "compression") == 0) {
    char *end;
    long level;
    if (strcmp (value, "off") == 0)
      level = 0;
    else {
      errno = 0;
      level = strtol (value, &end, 10);
      if (errno || end == value || *end || level < 0 || level > CAS_MAX_LEVEL) {
        nbdkit_error ("compression: '%s' is not 'off' or a zstd level from 1 to %d",
                      value, CAS_MAX_LEVEL);
        return -1;
      }
    }
    create_opts.compression_level = level;
    compression_given = true;
  }
  else if (strcmp (key, "compact-after") == 0) {
    char *end;
    errno = 0;
    const unsigned long v = strtoul (value, &end, 10);
    if (errno || end == value || *end || v > 100) {
      nbdkit_error ("compact-after: '%s' is not a percentage (0 to 100)", value);
      return -1;
    }
    open_opts.compact_after = v;
  }
  else if (strcmp (key, "recycle-rate") == 0) {
    if (parse_size_key (key, value, &open_opts.recycle_rate) == -1)
      return -1;
    if (open_opts.recycle_rate == 0) {
      nbdkit_error ("recycle-rate: must be more than 0 bytes per second");
      return -1;
    }
  }
  else if (strcmp (key, "control") == 0) {
    if (parse_bool_key (key, value, &open_opts.control) == -1)
      return -1;
  }
  else if (strcmp (key, "readonly") == 0) {
    if (parse_bool_key (key, value, &open_opts.readonly) == -1)
      return -1;
  }
  else if (strcmp (key, "metrics") == 0) {
    if (parse_bool_key (key, value, &metrics) == -1)
      return -1;
  }
  else if (strcmp (key, "metrics-file") == 0) {
    free (metrics_file);
    metrics_file = nbdkit_absolute_path (value);
    if (metrics_file == NULL)
      return -1;
  }
  else if (strcmp (key, "metrics-interval") == 0) {
    char *end;
    errno = 0;
    const unsigned long v = strtoul (value, &end, 10);
    if (errno || end == value || *end || v < 1 || v > 86400) {
      nbdkit_error ("metrics-interval: '%s' is not a number of seconds (1 to 86400)", value);
      return -1;
    }
    open_opts.metrics_interval = v;
  }
  else if (strcmp (key, "recycle-tranquility") == 0) {
    char *end;
    errno = 0;
    const unsigned long v = strtoul (value, &end, 10);
    if (errno || end == value || *end || v > 100) {
      nbdkit_error ("recycle-tranquility: '%s' is not a number from 0 to 100", value);
      return -1;
    }
    open_opts.recycle_tranquility = v;
  }
  else if (strcmp (key, "gc-delay") == 0) {
    char *end;
    errno = 0;
    const unsigned long v = strtoul (value, &end, 10);
    if (errno || end == value || *end || v > 86400 * 30) {
      nbdkit_error ("gc-delay: '%s' is not a number of seconds (0 to 2592000)", value);
      return -1;
    }
    open_opts.gc_delay = v;
  }
  else if (strcmp (key, "gc-pressure") == 0) {
    char *end;
    errno = 0;
    const unsigned long v = strtoul (value, &end, 10);
    if (strcmp (value, "off") == 0)
      open_opts.gc_pressure = 0;
    else if (errno || end == value || *end || v == 0 || v > 10000) {
      nbdkit_error ("gc-pressure: '%s' is not a percentage (1 to 10000) or 'off'", value);
      return -1;
    }
    else
      open_opts.gc_pressure = v;
  }
  else if (strcmp (key, "keep-erased") == 0) {
    if (strcmp (value, "all") == 0)
      open_opts.keep_erased = CAS_KEEP_ERASED_ALL;
    else if (parse_size_key (key, value, &open_opts.keep_erased) == -1)
      return -1;
  }
  else if (strcmp (key, "secure-erase") == 0) {
    if (parse_bool_key (key, value, &open_opts.secure_erase) == -1)
      return -1;
  }
  else if (strcmp (key, "runtime-asserts") == 0) {
    if (parse_bool_key (key, value, &open_opts.runtime_asserts) == -1)
      return -1;
  }
  else if (strcmp (key, "cache") == 0) {
    if (parse_size_key (key, value, &open_opts.cache_bytes) == -1)
      return -1;
  }
  else if (strcmp (key, "direct-io") == 0) {
    if (parse_bool_key (key, value, &open_opts.direct_io) == -1)
      return -1;
  }
  else if (strcmp (key, "small-write-log") == 0) {
    bool on;
    if (parse_bool_key (key, value, &on) == -1)
      return -1;
    open_opts.rewrite_small_writes = !on;
  }
  else if (strcmp (key, "small-write-log-size") == 0) {
    if (parse_size_key (key, value, &open_opts.small_write_log_bytes) == -1)
      return -1;
    if (open_opts.small_write_log_bytes < (1u << 20)) {
      nbdkit_error ("small-write-log-size: %s is below the minimum of 1M", value);
      return -1;
    }
  }
  else if (strcmp (key, "checkpoint-after") == 0) {
    if (parse_size_key (key, value, &open_opts.checkpoint_bytes) == -1)
      return -1;
    if (open_opts.checkpoint_bytes < 65536) {
      nbdkit_error ("checkpoint-after: %s is below the minimum of 64K", value);
      return -1;
    }
  }
  else if (strcmp (key, "workers") == 0) {
    char *end;
    errno = 0;
    const unsigned long v = strtoul (value, &end, 10);
    if (errno || end == value || *end || v > CAS_MAX_WORKERS) {
      nbdkit_error ("workers: '%s' is not a number of threads (0 to %d)", value,
                    CAS_MAX_WORKERS);
      return -1;
    }
    open_opts.workers = v;
  }
  else {
    nbdkit_error ("unknown parameter '%s' (see nbdkit casdisk --help)", key);
    return -1;
  }
  return 0;
}

static int
casdisk_config_complete (void)
{
  cas_set_debug (casdisk_debug_engine != 0);
  if (store_dir == NULL) {
    nbdkit_error ("store=DIR is required: the directory of the casdisk store "
                  "(created if it does not exist)");
    return -1;
  }
  if (open_opts.cache_bytes && !open_opts.direct_io) {
    nbdkit_error ("cache=SIZE needs direct-io=true (without it the host's page cache "
                  "caches the data file)");
    return -1;
  }
  if (metrics && metrics_file == NULL &&
      asprintf (&metrics_file, "%s/%s", store_dir, CAS_METRICS_FILE) == -1) {
    metrics_file = NULL;
    nbdkit_error ("metrics: %m");
    return -1;
  }
  open_opts.metrics_file = metrics_file;
  if (open_opts.metrics_interval && metrics_file == NULL) {
    nbdkit_error ("metrics-interval needs metrics=true or metrics-file=PATH");
    return -1;
  }
  if (metrics_file && !open_opts.control) {
    nbdkit_error ("metrics files are written by the control channel: drop control=false");
    return -1;
  }
  return 0;
}

#define casdisk_config_help \
  "store=DIR          (required) The store directory; created if missing.\n" \
  "size=SIZE          Size of the disk to create if the store or disk is new.\n" \
  "disk=NAME          The disk served for the default export name.\n" \
  "block-size=SIZE    Block size of a new store (4K..64K, default 64K).\n" \
  "compression=N|off  zstd level of a new store (default 1).\n" \
  "gc-delay=SECONDS   Delay before unreferenced blocks are freed (default 30).\n" \
  "gc-pressure=PERCENT|off  Free them at once while they take more than\n" \
  "                   PERCENT of the space live blocks take (default 25).\n" \
  "compact-after=PCT  Compact once this % of the data file is free, down to half\n" \
  "                   of it (default 20).\n" \
  "recycle-rate=SIZE  Bytes per second the recycler may move (default 64M).\n" \
  "recycle-tranquility=N  The recycler rests N times as long as it worked (default 2).\n" \
  "keep-erased=SIZE|all  Erase freed space until SIZE is erased (default all).\n" \
  "secure-erase=BOOL  Erase freed space by writing zeroes (default false).\n" \
  "checkpoint-after=SIZE  Checkpoint once the journal reaches SIZE (default 64M).\n" \
  "direct-io=BOOL     Read and write blocks with O_DIRECT and libaio (default false).\n" \
  "cache=SIZE         With direct-io: cache this much of recent blocks (default 0).\n" \
  "small-write-log=BOOL Log writes of up to 16K into part of a block and rebuild\n" \
  "                   the block later, once (default true; not with direct-io).\n" \
  "small-write-log-size=SIZE Memory for logged writes not yet merged (default 64M).\n" \
  "runtime-asserts=BOOL  Verify the space map after every recycler step.\n" \
  "workers=N          Threads hashing and compressing one write (default: CPUs).\n" \
  "readonly=BOOL      Open the store read-only: shared lock, no writes, no background\n" \
  "                   work (use with nbdkit -r; default false).\n" \
  "control=BOOL       Serve DIR/control.sock for casdisk status etc. (default true).\n" \
  "metrics=BOOL       Write Prometheus metrics to DIR/metrics.prom (default false).\n" \
  "metrics-file=PATH  Write them to PATH instead.\n" \
  "metrics-interval=S Seconds between metrics rewrites (default 10)."

/* Create the store or the disk if they do not exist yet. */
static int
create_if_missing (const char *name)
{
  struct stat st;

  if (!cas_store_exists (store_dir)) {
    if (open_opts.readonly) {
      nbdkit_error ("%s is not a casdisk store, and readonly=true cannot create one", store_dir);
      return -1;
    }
    if (stat (store_dir, &st) == 0 && !S_ISDIR (st.st_mode)) {
      nbdkit_error ("store: %s exists and is not a directory", store_dir);
      return -1;
    }
    if (size == 0) {
      nbdkit_error ("%s is not a casdisk store yet: give size=SIZE to create one", store_dir);
      return -1;
    }
    nbdkit_debug ("creating store %s with disk '%s' of %" PRIu64 " bytes",
                  store_dir, name, size);
    return cas_store_create (store_dir, &create_opts, name, size);
  }
  return 0;
}

static int
casdisk_get_ready (void)
{
  const char *name = disk_name ? disk_name : CAS_DEFAULT_DISK_NAME;

  if (create_if_missing (name) == -1)
    return -1;
  store = cas_store_open (store_dir, &open_opts);
  if (store == NULL)
    return -1;
  if ((block_size_given && create_opts.block_size != cas_store_block_size (store)) ||
      (compression_given &&
       create_opts.compression_level != cas_store_compression_level (store))) {
    nbdkit_error ("%s was created with block-size=%" PRIu32 " compression=%d; "
                  "block-size and compression apply only when creating a store",
                  store_dir, cas_store_block_size (store), cas_store_compression_level (store));
    return -1;
  }
  default_disk = cas_disk_find (store, name);
  /* No disk0: serve the first disk (not a snapshot). */
  for (size_t i = 0; default_disk == NULL && disk_name == NULL && size == 0 &&
         i < cas_store_ndisks (store); i++) {
    struct cas_disk *d = cas_store_disk (store, i);
    if (d && !cas_disk_is_snapshot (d))
      default_disk = d;
  }
  if (default_disk == NULL) {
    if (size == 0 || open_opts.readonly) {
      nbdkit_error ("%s has no disk '%s'%s", store_dir, name,
                    open_opts.readonly ? " (readonly=true cannot create it)"
                    : ": give size=SIZE to create it");
      return -1;
    }
    default_disk = cas_disk_add (store, name, size);
    if (default_disk == NULL)
      return -1;
  }
  if (size && cas_disk_size (default_disk) != size) {
    nbdkit_error ("disk '%s' is %" PRIu64 " bytes, not size=%" PRIu64
                  " (resizing is not supported; omit size= to serve it)",
                  cas_disk_name (default_disk), cas_disk_size (default_disk), size);
    return -1;
  }
  snprintf (default_name, sizeof default_name, "%s", cas_disk_name (default_disk));
  return 0;
}

static int
casdisk_after_fork (void)
{
  return cas_store_start (store);
}

static void
casdisk_cleanup (void)
{
  if (store && cas_store_close (store) == -1)
    nbdkit_error ("closing %s failed: the store will recover when opened again", store_dir);
  store = NULL;
}

/* Every disk and every snapshot ("disk@snap", read-only). */
static int
casdisk_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  const size_t n = cas_store_ndisks (store);

  for (size_t i = 0; i < n; i++) {
    const struct cas_disk *d = cas_store_disk (store, i);
    if (d && nbdkit_add_export (exports, cas_disk_name (d),
                                cas_disk_is_snapshot (d) ? "snapshot (read-only)" : NULL) == -1)
      return -1;
  }
  return 0;
}

static const char *
casdisk_default_export (int readonly, int is_tls)
{
  return default_name;
}

static void *
casdisk_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  struct cas_disk *d;

  /* The default disk is looked up by name at every connection: it may
   * have been deleted (and another disk given its name) online.  nbdkit
   * has usually replaced the empty name with default_export's already.
   */
  const bool dflt = name == NULL || *name == '\0' || strcmp (name, default_name) == 0;
  d = cas_disk_find (store, dflt ? default_name : name);
  if (d == NULL && dflt)
    nbdkit_error ("the default disk '%s' was deleted; name a disk as the export "
                  "(nbdinfo --list shows the disks)", default_name);
  else if (d == NULL)
    nbdkit_error ("no disk named '%s' in this store (nbdinfo --list shows the disks)", name);
  return d;
}

static int64_t
casdisk_get_size (void *handle)
{
  return cas_disk_size (handle);
}

static int
casdisk_block_size (void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
  *minimum = 1;                         /* any alignment works */
  *preferred = cas_store_block_size (store);
  *maximum = 32 * 1024 * 1024;          /* of reads and writes; trim and zero may be larger */
  return 0;
}

/* Snapshots and read-only stores: nbdkit then refuses writes itself. */
static int casdisk_can_write (void *handle)
{
  return !open_opts.readonly && !cas_disk_is_snapshot (handle);
}
static int casdisk_can_flush (void *handle) { return 1; }
static int casdisk_can_trim (void *handle) { return 1; }
static int casdisk_can_zero (void *handle) { return 1; }
static int casdisk_can_fast_zero (void *handle) { return 1; }   /* zeroing never writes data */
static int casdisk_can_extents (void *handle) { return 1; }
static int casdisk_can_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
/* A flush is store-wide: it makes every connection's completed writes durable. */
static int casdisk_can_multi_conn (void *handle) { return 1; }
static int casdisk_can_cache (void *handle) { return NBDKIT_CACHE_NONE; }

static int
casdisk_pread (void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
  return cas_disk_read (handle, buf, count, offset);
}

static int
fua (uint32_t flags)
{
  return flags & NBDKIT_FLAG_FUA ? cas_store_flush (store) : 0;
}

static int
casdisk_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (cas_disk_write (handle, buf, count, offset) == -1)
    return -1;
  return fua (flags);
}

static int
casdisk_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (cas_disk_zero (handle, count, offset) == -1)
    return -1;
  return fua (flags);
}

static int
casdisk_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (cas_disk_zero (handle, count, offset) == -1)
    return -1;
  return fua (flags);
}

static int
casdisk_flush (void *handle, uint32_t flags)
{
  return cas_disk_flush (handle);
}

static int
add_extent (void *opaque, uint64_t offset, uint64_t length, bool zero)
{
  return nbdkit_add_extent (opaque, offset, length,
                            zero ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0);
}

static int
casdisk_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                 struct nbdkit_extents *extents)
{
  return cas_disk_extents (handle, offset, count, add_extent, extents);
}

static struct nbdkit_plugin plugin = {
  .name              = "casdisk",
  .version           = PACKAGE_VERSION,
  .longname          = "casdisk: deduplicating, compressing virtual disks",
  .load              = casdisk_load,
  .unload            = casdisk_unload,
  .config            = casdisk_config,
  .config_complete   = casdisk_config_complete,
  .config_help       = casdisk_config_help,
  .magic_config_key  = "store",
  .get_ready         = casdisk_get_ready,
  .after_fork        = casdisk_after_fork,
  .cleanup           = casdisk_cleanup,
  .list_exports      = casdisk_list_exports,
  .default_export    = casdisk_default_export,
  .open              = casdisk_open,
  .get_size          = casdisk_get_size,
  .block_size        = casdisk_block_size,
  .can_write         = casdisk_can_write,
  .can_flush         = casdisk_can_flush,
  .can_trim          = casdisk_can_trim,
  .can_zero          = casdisk_can_zero,
  .can_fast_zero     = casdisk_can_fast_zero,
  .can_extents       = casdisk_can_extents,
  .can_fua           = casdisk_can_fua,
  .can_multi_conn    = casdisk_can_multi_conn,
  .can_cache         = casdisk_can_cache,
  .pread             = casdisk_pread,
  .pwrite            = casdisk_pwrite,
  .zero              = casdisk_zero,
  .trim              = casdisk_trim,
  .flush             = casdisk_flush,
  .extents           = casdisk_extents,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
