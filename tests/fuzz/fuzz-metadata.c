/* libFuzzer target: the metadata parsers.
 *
 * At start-up we build a small real store (disks, a snapshot, a deleted
 * disk, a few hundred blocks, some deduplicated, some compressed, a
 * journal with records of every type) and keep its files.  Each input is a selector byte and the
 * new contents of one metadata file (selector % 3 -> 0: superblock,
 * 1: checkpoint, 2: the journal); we restore the store, put the input in
 * place, and run the offline check and a read-only open over it.  Both
 * must return an error or succeed, never crash, hang or leak.  When
 * selector & 4, the harness first recomputes every checksum of the input,
 * so that mutations reach the parsing and replay behind the checksums.
 *
 * With CASDISK_FUZZ_SEEDS=DIR set, writes the real files as seeds to DIR
 * and exits.
 */
#include <config.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "casdisk.h"
#include "format.h"
#include "util/crc32c.h"
#include "util/util.h"

static char dir[256] = "/tmp/casdisk-fuzzXXXXXX";
static char names[3][64] = { "superblock", "checkpoint", "" };
static uint8_t *orig[3];
static size_t orig_len[3];

static void
quiet (bool error, const char *msg)
{
  (void) error;
  (void) msg;
}

static void
put_file (const char *name, const uint8_t *buf, size_t len)
{
  char path[256];
  FILE *f;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  f = fopen (path, "w");
  if (f == NULL || (len && fwrite (buf, 1, len, f) != len))
    abort ();
  fclose (f);
}

static char first_dir[256];

static void
remove_dirs (void)
{
  char cmd[600];

  snprintf (cmd, sizeof cmd, "rm -rf '%s' '%s'", first_dir, dir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", dir);
}

static void
build_template (void)
{
  struct cas_create_opts co;
  struct cas_store *s;
  uint8_t block[4096];

  if (mkdtemp (dir) == NULL)
    abort ();
  strcpy (first_dir, dir);
  atexit (remove_dirs);
  cas_create_opts_default (&co);
  co.block_size = 4096;
  if (cas_store_create (dir, &co, "a", 1 << 20) == -1 || (s = cas_store_open (dir, NULL)) == NULL)
    abort ();
  struct cas_disk *a = cas_disk_find (s, "a"), *b = cas_disk_add (s, "b", 1 << 20);
  for (int i = 0; i < 64; i++) {
    memset (block, i % 5 ? 'a' + i % 7 : 0, sizeof block);
    for (int k = 0; k < i; k++)
      block[k * 61 % 4096] = k;
    if (cas_disk_write (a, block, sizeof block, i * 4096) == -1 ||
        cas_disk_write (b, block, 1000, i * 8192 + 17) == -1)
      abort ();
  }
  cas_disk_zero (a, 300000, 4096);
  /* A snapshot and a tombstone (deleted disk) in the checkpoint. */
  if (cas_snapshot_create (s, "a", "s0") == NULL || cas_disk_clone (s, "b", "t") == NULL ||
      cas_disk_delete (s, "t") == -1)
    abort ();
  cas_store_close (s);          /* checkpoint of generation 2, journal.3 follows */
  /* Now records in journal.3 without a checkpoint after them: kill the
   * store "uncleanly" by never closing a second open.
   */
  s = cas_store_open (dir, NULL);
  a = cas_disk_find (s, "a");
  for (int i = 0; i < 16; i++) {
    memset (block, 'z' - i, sizeof block);
    cas_disk_write (a, block, sizeof block, i * 4096 * 3);
  }
  cas_disk_zero (a, 4096 * 100, 4096 * 20);
  cas_disk_add (s, "c", 4096);
  /* DISK_CLONE and DISK_DEL records (a slot reused, a snapshot deleted). */
  if (cas_disk_clone (s, "a", "d") == NULL || cas_snapshot_create (s, "b", "s1") == NULL ||
      cas_disk_delete (s, "c") == -1 || cas_snapshot_delete (s, "a", "s0") == -1)
    abort ();
  cas_store_flush (s);
  /* Copy the files as they are now, records after the checkpoint and all:
   * the state a crash would leave.  Then close the original.
   */
  {
    char cmd[600];
    snprintf (cmd, sizeof cmd, "cp -a %s %s.tpl", dir, dir);
    if (system (cmd) != 0)
      abort ();
    cas_store_close (s);
    strcat (dir, ".tpl");
  }
  {
    /* The journal that follows the checkpoint in the copy. */
    DIR *dh = opendir (dir);
    struct dirent *de;
    uint64_t best = 0;
    while (dh && (de = readdir (dh)) != NULL)
      if (strncmp (de->d_name, "journal.", 8) == 0 && strtoull (de->d_name + 8, NULL, 10) > best)
        best = strtoull (de->d_name + 8, NULL, 10);
    if (dh)
      closedir (dh);
    snprintf (names[2], sizeof names[2], "journal.%" PRIu64, best);
  }
  for (int i = 0; i < 3; i++) {
    char path[512];
    FILE *f;
    snprintf (path, sizeof path, "%s/%s", dir, names[i]);
    f = fopen (path, "r");
    if (f == NULL)
      abort ();
    orig[i] = malloc (1 << 22);
    orig_len[i] = fread (orig[i], 1, 1 << 22, f);
    fclose (f);
  }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  (void) argc;
  (void) argv;
  cas_set_log (quiet);
  build_template ();
  const char *seeds = getenv ("CASDISK_FUZZ_SEEDS");
  if (seeds) {
    for (int i = 0; i < 3; i++) {
      char path[512];
      snprintf (path, sizeof path, "%s/seed-%d", seeds, i);
      FILE *f = fopen (path, "w");
      if (f == NULL)
        abort ();
      fputc (i | 4, f);
      fwrite (orig[i], 1, orig_len[i], f);
      fclose (f);
    }
    exit (0);
  }
  return 0;
}

/* Make the checksums of a (mutated) metadata file valid again. */
static void
fix_checksums (int which, uint8_t *p, size_t len)
{
  if (which == 0 && len == CAS_SB_SIZE) {
    put_le32 (p + SB_CRC, 0);
    put_le32 (p + SB_CRC, cas_crc32c (0, p, len));
  }
  else if (which == 1 && len >= CKPT_HDR_SIZE) {
    put_le32 (p + CKPT_BODY_CRC, cas_crc32c (0, p + CKPT_HDR_SIZE, len - CKPT_HDR_SIZE));
    put_le32 (p + CKPT_HDR_CRC, 0);
    put_le32 (p + CKPT_HDR_CRC, cas_crc32c (0, p, CKPT_HDR_SIZE));
  }
  else if (which == 2 && len >= JRN_HDR_SIZE) {
    put_le32 (p + JRN_HDR_CRC, 0);
    put_le32 (p + JRN_HDR_CRC, cas_crc32c (0, p, JRN_HDR_SIZE));
    /* Records first, then each batch's CRC over its records, then the
     * BATCH records' own checksums.
     */
    for (int pass = 0; pass < 2; pass++)
      for (size_t pos = JRN_HDR_SIZE; pos + JREC_HDR_SIZE <= len; ) {
        const size_t total = round_up (JREC_HDR_SIZE + get_le16 (p + pos + 6), 8);
        if (pos + total > len)
          break;
        const bool batch = get_le16 (p + pos + 4) == JREC_BATCH && total == JREC_BATCH_SIZE;
        if (pass == 0 && !batch)
          put_le32 (p + pos, cas_crc32c (0, p + pos + 4, total - 4));
        if (pass == 1 && batch) {
          uint32_t blen = get_le32 (p + pos + JREC_HDR_SIZE);
          if (blen > len - pos - JREC_BATCH_SIZE)
            blen = len - pos - JREC_BATCH_SIZE;
          put_le32 (p + pos + JREC_HDR_SIZE + 4, cas_crc32c (0, p + pos + JREC_BATCH_SIZE, blen));
          put_le32 (p + pos, cas_crc32c (0, p + pos + 4, total - 4));
        }
        pos += total;
      }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct cas_check_result res;
  struct cas_open_opts o;

  if (size < 1)
    return 0;
  const int which = data[0] % 3;
  for (int i = 0; i < 3; i++)
    put_file (names[i], orig[i], orig_len[i]);
  if (data[0] & 4) {
    uint8_t *copy = malloc (size);
    if (copy == NULL)
      abort ();
    memcpy (copy, data + 1, size - 1);
    fix_checksums (which, copy, size - 1);
    put_file (names[which], copy, size - 1);
    free (copy);
  }
  else
    put_file (names[which], data + 1, size - 1);
  cas_store_check (dir, NULL, NULL, &res);
  cas_open_opts_default (&o);
  o.readonly = true;
  struct cas_store *s = cas_store_open (dir, &o);
  if (s) {
    /* Read everything: a store that opens must serve reads safely. */
    static uint8_t buf[1 << 20];
    for (size_t i = 0; i < cas_store_ndisks (s); i++) {
      struct cas_disk *d = cas_store_disk (s, i);
      if (d == NULL)
        continue;               /* a deleted disk's slot */
      for (uint64_t off = 0; off < cas_disk_size (d); off += sizeof buf) {
        const uint64_t n = cas_disk_size (d) - off < sizeof buf ? cas_disk_size (d) - off : sizeof buf;
        cas_disk_read (d, buf, n, off);
      }
    }
    cas_store_close (s);
  }
  return 0;
}
