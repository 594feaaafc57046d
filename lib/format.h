/* The on-disk format, version 4.  docs/format.md is the prose version of
 * this file; keep the two in step.  All integers are little-endian; every
 * structure carries a CRC-32C.
 *
 * A store is a directory:
 *
 *   superblock      immutable after creation: magic, version, uuid, block
 *                   size, compression level.  Also the lock file (flock).
 *   data            the block pack: stored (compressed or raw) blocks at
 *                   512-byte aligned offsets, no headers; the index says
 *                   where each block is.  Never overwritten in place while
 *                   any durable metadata points at it.
 *   checkpoint      a full snapshot of the metadata at generation G: disks,
 *                   blocks (hash, location, refcount, checksum), map pages.
 *   journal.G       the write-ahead log of metadata changes since the
 *                   checkpoint of generation G (and journal.G+1 after it,
 *                   while a checkpoint is being written).
 */
#ifndef CAS_FORMAT_H
#define CAS_FORMAT_H

#include <assert.h>
#include <stdint.h>

#define CAS_FORMAT_VERSION 5        /* 2: sectored raw blocks (CAS_BLK_SECTORED);
                                       3: hash fields hold the 8-byte key (then zeroes);
                                       4: the superblock names the key function;
                                       5: PATCH records (the small-write log) */
#define CAS_GRANULE        512u       /* allocation unit in the data file */
#define CAS_MAP_PAGE       4096u      /* map entries per map page */

#define CAS_SB_NAME     "superblock"
#define CAS_DATA_NAME   "data"
#define CAS_CKPT_NAME   "checkpoint"
#define CAS_JOURNAL_FMT "journal.%" PRIu64

/* ---- superblock (4096 bytes) ---- */
#define CAS_SB_MAGIC "CASDISK\0"
#define CAS_SB_SIZE 4096
#define SB_MAGIC       0   /* 8 bytes */
#define SB_VERSION     8   /* u32 format version */
#define SB_CRC        12   /* u32 crc32c of bytes [0,SB_SIZE) with this field 0 */
#define SB_UUID       16   /* 16 bytes */
#define SB_BLOCK_SIZE 32   /* u32 */
#define SB_LEVEL      36   /* u32 zstd level, 0 = off */
#define SB_CTIME      40   /* u64 creation time, seconds since the epoch */
#define SB_KEY_FN     48   /* u32 key function, CAS_KEY_* (hash.h); 0 before version 4 */
#define SB_KEY_SECRET 64   /* 16 bytes: SipHash's key (random), zero for SHA-256 */

/* ---- checkpoint ----
 * header (64 bytes), then the body:
 *   ndisks  disk records  (CKPT_DISK_SIZE each)
 *   nblocks block records (CKPT_BLOCK_SIZE each)
 *   npages  page records  (CKPT_PAGE_SIZE each)
 */
#define CAS_CKPT_MAGIC "CASCKPT\0"
#define CKPT_HDR_SIZE   64
#define CKPT_MAGIC       0  /* 8 bytes */
#define CKPT_VERSION     8  /* u32 */
#define CKPT_HDR_CRC    12  /* u32 crc32c of the header with this field 0 */
#define CKPT_GEN        16  /* u64 generation G: journal.G follows it */
#define CKPT_NEXT_SEQ   24  /* u64 sequence number of journal.G's first record */
#define CKPT_NDISKS     32  /* u32 */
#define CKPT_BODY_CRC   36  /* u32 crc32c of the body */
#define CKPT_NBLOCKS    40  /* u64 */
#define CKPT_NPAGES     48  /* u64 */
#define CKPT_NEXT_ID    56  /* u64 next block id to assign */

#define CKPT_DISK_SIZE  96  /* id u32, name_len u32, size u64, name[64], flags u32,
                               12 reserved (zero) */
#define CKPT_DISK_FLAGS 80

/* Disk flags (checkpoint disk records, DISK_CLONE records). */
#define CAS_DISK_SNAPSHOT 1u     /* read-only point-in-time copy, named "disk@snap" */
#define CAS_DISK_DELETED  2u     /* a tombstone: the slot is free; name and size empty */
#define CAS_DISK_FLAGS    3u
#define CKPT_BLOCK_SIZE 64  /* id u64, offset u64, hash[32], stored_len u32,
                               flags u32, refcount u32, crc u32 */
#define CKPT_PAGE_SIZE (16 + 8 * CAS_MAP_PAGE)  /* disk u32, 0 u32, page u64, ids */

/* Block flags. */
#define CAS_BLK_COMPRESSED  1u   /* stored as one zstd frame */
#define CAS_BLK_QUARANTINED 2u   /* failed verification: never used for dedup */
#define CAS_BLK_SECTORED    4u   /* raw, followed by one CRC-32C per piece */
#define CAS_BLK_FLAGS       7u

/* Sectored raw blocks (block size > CAS_PIECE): the block's bytes, then a
 * table of block_size / CAS_PIECE little-endian CRC-32C values, one per
 * piece, each seeded with cas_piece_seed().  A read of part of the block
 * reads and checks only the pieces it covers and their table entries.
 */
#define CAS_PIECE           4096u
static inline uint32_t
cas_sectored_len (uint32_t block_size)
{
  return block_size + 4 * (block_size / CAS_PIECE);
}
/* The largest stored length of a block of BLOCK_SIZE bytes. */
static inline uint32_t
cas_stored_max (uint32_t block_size)
{
  return cas_sectored_len (block_size);
}
/* Seed of piece I's CRC: the low 32 bits of the block's key xor I, so a
 * table that belongs to other content or to another piece does not match.
 */
static inline uint32_t
cas_piece_seed (uint64_t key, uint32_t i)
{
  return (uint32_t) key ^ i;
}

/* ---- journal ----
 * header (64 bytes), then records, each 8-byte aligned:
 *   crc u32   crc32c of the record from byte 4 to the end of the payload
 *   type u16
 *   len u16   payload length
 *   seq u64   global sequence number, consecutive
 *   payload
 * Each flush writes one batch: a BATCH record, then the records, with a
 * CRC over them all.  Replay applies whole batches and stops at the first
 * incomplete one: the torn tail of the last flush, whose sectors may have
 * reached the disk in any order.  A batch is written only after the data
 * file is synced (and after the previous batch), so every record points at
 * durable data, and nothing complete can follow a torn batch.
 */
#define CAS_JOURNAL_MAGIC "CASJRNL\0"
#define JRN_HDR_SIZE 64
#define JRN_MAGIC      0   /* 8 bytes */
#define JRN_VERSION    8   /* u32 */
#define JRN_HDR_CRC   12   /* u32 */
#define JRN_GEN       16   /* u64 */
#define JRN_FIRST_SEQ 24   /* u64 */
#define JRN_UUID      32   /* 16 bytes: the store's uuid */

#define JREC_HDR_SIZE 16
enum cas_jrec_type {
  JREC_BLOCK_NEW = 1,   /* id u64, offset u64, hash[32], stored_len u32, flags u32, crc u32, 0 u32 */
  JREC_BLOCK_DEL = 2,   /* id u64 */
  JREC_MAP_SET   = 3,   /* disk u32, 0 u32, vblock u64, block id u64 (0 = zero) */
  JREC_MAP_ZERO  = 4,   /* disk u32, 0 u32, first vblock u64, count u64 */
  JREC_DISK_ADD  = 5,   /* id u32, name_len u32, size u64, name[64] */
  JREC_BLOCK_MOVE = 6,  /* id u64, new offset u64: the recycler moved the block */
  JREC_BATCH     = 7,   /* starts each flush's batch: length u32 (bytes of the
                           records that follow), crc u32 (CRC-32C of them),
                           count u32, 0 u32; its seq is the first record's */
  JREC_DISK_CLONE = 8,  /* id u32, name_len u32, size u64, name[64], source disk u32,
                           flags u32: a new disk whose map is the source's, now */
  JREC_DISK_DEL  = 9,   /* id u32, 0 u32: every map entry released, slot free */
  JREC_PATCH     = 10,  /* disk u32, offset u32 (in the block), vblock u64, len u32,
                           0 u32, then len bytes of data: a small write (format 5)
                           over the block's content, until the next MAP_SET or
                           MAP_ZERO of that block (or DISK_DEL of the disk) */
};
#define JREC_LAST_TYPE JREC_PATCH
#define JREC_PATCH_HDR_LEN 24
#define CAS_PATCH_MAX (16u << 10)  /* data bytes of a PATCH record, at most */
#define JREC_BLOCK_NEW_LEN 64
#define JREC_BLOCK_DEL_LEN 8
#define JREC_MAP_SET_LEN   24
#define JREC_MAP_ZERO_LEN  24
#define JREC_DISK_ADD_LEN  80
#define JREC_BLOCK_MOVE_LEN 16
#define JREC_BATCH_LEN     16
#define JREC_DISK_CLONE_LEN 88
#define JREC_DISK_DEL_LEN  8
#define JREC_BATCH_SIZE    (JREC_HDR_SIZE + JREC_BATCH_LEN)
#define JREC_MAX_LEN       88

/* The largest payload a record of TYPE may have. */
static inline unsigned
cas_jrec_max_len (unsigned type)
{
  return type == JREC_PATCH ? JREC_PATCH_HDR_LEN + CAS_PATCH_MAX : JREC_MAX_LEN;
}

static_assert (JREC_PATCH_HDR_LEN + CAS_PATCH_MAX <= UINT16_MAX, "a PATCH record's length fits");
static_assert (CKPT_PAGE_SIZE == 16 + 8 * 4096, "checkpoint page record size");
static_assert (JREC_HDR_SIZE + JREC_MAX_LEN <= 128, "journal record fits a stack buffer");

#endif
