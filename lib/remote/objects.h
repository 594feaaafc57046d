/* The block objects of the remote tier: content-addressed blocks kept in
 * a Ceph RADOS pool, each referenced by the holders (disks) that use it.
 * Compiled only when configure found librados (HAVE_RADOS).
 *
 * Connection.  cas_rados_open() connects to one pool: a librados cluster
 * handle and an I/O context on the pool.  Before connecting it sets
 * rados_osd_op_timeout, rados_mon_op_timeout and client_mount_timeout to
 * the op timeout (default 30 s), overriding the configuration file, so
 * that every call below ends within about that time: an OSD that stopped
 * or whose pool is full, or a lost monitor, gives an error
 * (ETIMEDOUT, or the OSD's own), never a hang.  Write operations carry
 * LIBRADOS_OPERATION_FULL_TRY, so a full OSD or pool answers a put_ref
 * with ENOSPC at once instead of holding it until the timeout; get_ref
 * and put, which store no data, still succeed (tested).
 * Thread safety: a librados I/O context is thread-safe and struct
 * cas_rados is read-only after cas_rados_open(), so every function here
 * may be called from any thread, concurrently, on one struct cas_rados;
 * only cas_rados_close() must be called once, alone, after all others.
 * A struct cas_rados_batch belongs to one thread at a time.
 *
 * Names.  A block's object is named "blk." followed by the lowercase hex
 * of the SHA-256 of the block's uncompressed content
 * (cas_rados_block_name).  Equal names mean equal plain content; the
 * stored bytes of two writers may differ (one compressed, one not), and
 * the object keeps those of the writer that created it.  This layer does
 * not decode blocks: the caller checks a block read back against its
 * name after decoding it.
 *
 * Frames.  An object's content is a self-describing frame: a 32-byte
 * header, all fields little-endian,
 *
 *    0  magic "CASBLK1\0"             8 bytes
 *    8  format version                u32 = 1
 *   12  flags                         u32: 0 (raw), CAS_BLK_COMPRESSED or
 *                                     CAS_BLK_SECTORED (lib/format.h)
 *   16  plain length                  u32: the uncompressed block's size,
 *                                     1 .. CAS_MAX_BLOCK_SIZE
 *   20  stored length                 u32: bytes after the header
 *   24  CRC-32C of the stored bytes   u32
 *   28  CRC-32C of bytes 0..27        u32
 *
 * followed by the stored bytes: the engine's encoded block, opaque here
 * but for its length: raw, stored length = plain length; sectored,
 * stored length = cas_sectored_len (plain length); compressed, 1 ..
 * plain length.  cas_rados_frame() builds one, cas_rados_unframe() checks
 * one and refuses, with EUCLEAN and a message naming the object, a bad
 * magic, version, header CRC, flags, lengths or data CRC.
 *
 * References.  Block objects are created and referenced through the
 * OSD's "cas" object class (cls_cas, shipped and loaded by default with
 * the OSD).  A reference is keyed by a holder: the name of an object in
 * the same pool ("disk.<uuid>") that need not exist; cls_cas keeps the
 * references as a list of such object ids (hobject_t: name, head snap,
 * hash 0, the pool's id) in the object's "chunk_refs" xattr, and removes
 * the object when its last reference is dropped.
 *
 * What cls_cas of Ceph 16.2 does, tested against a 16.2.15 OSD (by the
 * "cls_cas" suite of tests/unit/test-rados.c):
 *  - its by-object references are a multiset, not a set: the same holder
 *    taking a second reference is counted twice and must be dropped
 *    twice (chunk_create_or_get_ref and chunk_get_ref do not check);
 *  - chunk_put_ref by a holder that holds none fails with ENOLINK; the
 *    put of the last reference removes the object, data and xattrs;
 *  - chunk_create_or_get_ref returns nothing that tells whether it
 *    created the object, and chunk_get_ref on a missing object fails
 *    with ENOENT;
 *  - it writes "chunk_refs" in its plain encoding: { u8 version 1,
 *    u8 compat 1, u32 length, u8 type (1 = by object), { u8 1, u8 1,
 *    u32 length, u32 count, count x hobject_t } }, hobject_t being
 *    { u8 version 4, u8 compat 3, u32 length, string key, string name,
 *    u64 snap, u32 hash, u8 max, string namespace, s64 pool }, strings as
 *    u32 length and bytes.  (Its coarser encodings, by hash, by pool or a
 *    bare count, are never written by 16.2; cas_rados_block_refs refuses
 *    them with ENOTSUP.)
 *
 * So this layer makes each holder hold at most one reference per block,
 * and learns whether an operation created the object, with omap entries
 * of the block object checked and changed in the same atomic write
 * operation as the class call (the OSD applies all of a write op's
 * steps or none):
 *  - the omap key "ref.<holder>" (value "1") marks a holder's reference;
 *  - put_ref is one write op: (1) omap_cmp of the key with FAILOK, whose
 *    result is ENOENT exactly when the object did not exist when the op
 *    ran, that is when this op created it; (2) exec
 *    cas.chunk_create_or_get_ref with the frame; (3) omap_cmp key == ""
 *    (absent), which cancels the whole op (ECANCELED: nothing changed)
 *    when the holder already held a reference; (4) omap_set the key.
 *    One round trip; "created" comes from step (1) of the same op, so it
 *    is exact, not a hint, even with many writers racing;
 *  - get_ref: omap_cmp key == "" (ENOENT: no object; ECANCELED: already
 *    held, a success), exec cas.chunk_get_ref, omap_set the key;
 *  - put: omap_cmp key == "1" (ENOENT: no object; ECANCELED: the holder
 *    holds none, ENOLINK), omap_rm the key, exec cas.chunk_put_ref, then
 *    an omap_cmp with FAILOK that fails with ENOENT when the class
 *    removed the object (the "removed" result).
 * A reference taken twice by one holder, or dropped by a holder holding
 * none, is thus a success that changes nothing (get_ref) or ENOLINK
 * (put): a retry after a timeout never counts twice.  The pool must
 * support omap (a replicated pool).  Objects must be changed only
 * through this layer: a cls_cas reference taken without its omap key
 * would not be seen by the guard.
 *
 * Errors follow the engine's convention (lib/log.h): -1 with errno set,
 * after one cas_error line naming the pool, the object and the librados
 * error, e.g. "remote rados:casdisk: blk.3fa9...: put_ref by disk.x:
 * Connection timed out".  errno: ETIMEDOUT (op timeout), ENOSPC (a full
 * pool or OSD: ENOSPC or EDQUOT), ENOENT (no such object or pool),
 * ENOLINK (put by a holder holding no reference), EUCLEAN (a bad frame
 * read back, or undecodable references), EINVAL (bad arguments, a bad
 * frame handed to put_ref), ERANGE (a buffer too small), ENOMEM, and EIO
 * for any other failure (a missing object class among them).
 */
#ifndef CAS_REMOTE_OBJECTS_H
#define CAS_REMOTE_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rados/librados.h>

struct cas_rados;
struct cas_rados_batch;

struct cas_rados_opts {
  const char *pool;             /* required */
  const char *conf;             /* ceph.conf; NULL = $CEPH_CONF or librados's default search */
  const char *id;               /* client id; NULL = "admin" (client.admin) */
  unsigned op_timeout_s;        /* 0 = 30 */
};

#define CAS_RADOS_DEFAULT_TIMEOUT 30
#define CAS_RADOS_HDR_LEN   32u
#define CAS_RADOS_NAME_LEN  68          /* "blk." + 64 hex digits, without the NUL */
#define CAS_RADOS_HOLDER_MAX 200        /* bytes of a holder name: printable ASCII, no space */
#define CAS_RADOS_MAGIC     "CASBLK1"   /* 8 bytes with its NUL */
#define CAS_RADOS_VERSION   1u

/* Connect to pool O->pool.  Returns 0 and *OUT, or -1 with errno set
 * (EINVAL: bad options; ENOENT: no such pool or configuration file;
 * ETIMEDOUT: no monitor answered within the op timeout; EIO otherwise).
 */
int cas_rados_open (const struct cas_rados_opts *o, struct cas_rados **out)
  __attribute__((nonnull));
void cas_rados_close (struct cas_rados *r);

const char *cas_rados_pool (const struct cas_rados *r) __attribute__((nonnull));
/* The pool's I/O context, for tests and tools (thread-safe, owned by R). */
rados_ioctx_t cas_rados_ioctx (const struct cas_rados *r) __attribute__((nonnull));

/* ---- Names and frames (no I/O). ---- */

/* "blk." + lowercase hex of SHA, NUL-terminated. */
void cas_rados_block_name (const uint8_t sha[32], char out[CAS_RADOS_NAME_LEN + 1])
  __attribute__((nonnull));

/* The header fields of a frame. */
struct cas_rados_frame_info {
  uint32_t flags;               /* 0, CAS_BLK_COMPRESSED or CAS_BLK_SECTORED */
  uint32_t plain_len;           /* the uncompressed block's size */
  uint32_t stored_len;          /* the stored bytes after the header */
};

/* Build the frame of STORED_LEN stored bytes STORED (FLAGS, PLAIN_LEN as
 * in the header) in FRAME, which has CAP bytes.  Returns 0 and
 * *FRAME_LEN = CAS_RADOS_HDR_LEN + STORED_LEN, or -1 with errno EINVAL
 * (bad flags or lengths) or ERANGE (CAP too small).
 */
int cas_rados_frame (uint32_t flags, uint32_t plain_len, const void *stored, uint32_t stored_len,
                     void *frame, size_t cap, uint32_t *frame_len)
  __attribute__((nonnull (3, 5, 7)));

/* What is wrong with the LEN-byte frame FRAME (NULL: nothing; else a
 * constant or MSG, MSG_LEN bytes), without logging; *INFO the header's
 * fields once the header is good.  HEADER_ONLY: FRAME holds just the
 * header and LEN is the object's size (the data CRC is not checked).
 */
const char *cas_rados_frame_problem (const void *frame, size_t len, bool header_only,
                                     struct cas_rados_frame_info *info, char *msg, size_t msg_len)
  __attribute__((nonnull (1, 4, 5)));

/* Check the LEN-byte frame FRAME of object NAME (for messages; NULL:
 * "frame").  Returns 0 with *INFO and *STORED (pointing into FRAME), or
 * -1 with errno EUCLEAN after a message naming the object and the bad
 * field.
 */
int cas_rados_unframe (const char *name, const void *frame, size_t len,
                       struct cas_rados_frame_info *info, const void **stored)
  __attribute__((nonnull (2, 4, 5)));

/* ---- Block objects: one round trip each, bounded by the op timeout. ---- */

/* Create block SHA's object with the LEN-byte FRAME, or take a reference
 * to the existing one, for HOLDER: one atomic write op (cls_cas
 * chunk_create_or_get_ref).  *CREATED (may be NULL): this call created
 * the object.  A holder that already holds a reference keeps exactly one
 * (a success, *CREATED false).  The frame is checked first (EINVAL).
 */
int cas_rados_block_put_ref (struct cas_rados *r, const uint8_t sha[32], const char *holder,
                             const void *frame, uint32_t len, bool *created)
  __attribute__((nonnull (1, 2, 3, 4)));

/* Take HOLDER's reference to block SHA's existing object, without its
 * data (cls_cas chunk_get_ref).  ENOENT: no such object.  Already held:
 * a success that changes nothing.
 */
int cas_rados_block_get_ref (struct cas_rados *r, const uint8_t sha[32], const char *holder)
  __attribute__((nonnull));

/* Drop HOLDER's reference to block SHA (cls_cas chunk_put_ref); the
 * object is removed with its last reference: *REMOVED (may be NULL).
 * ENOENT: no such object; ENOLINK: HOLDER holds no reference.
 */
int cas_rados_block_put (struct cas_rados *r, const uint8_t sha[32], const char *holder,
                         bool *removed)
  __attribute__((nonnull (1, 2, 3)));

/* Read block SHA's whole frame in one op (stat and read), check it, and
 * put the stored bytes in BUF (CAP bytes) and the header's fields in
 * *INFO.  ENOENT: no such object; EUCLEAN: a bad frame; ERANGE: the
 * stored bytes do not fit in CAP.
 */
int cas_rados_block_read (struct cas_rados *r, const uint8_t sha[32], void *buf, uint32_t cap,
                          struct cas_rados_frame_info *info)
  __attribute__((nonnull));

/* Does block SHA's object exist?  1 yes, 0 no (not logged), -1 error.
 * Only a hint for a later put_ref: another holder may create or remove
 * it in between; put_ref's *CREATED is the exact answer.
 */
int cas_rados_block_exists (struct cas_rados *r, const uint8_t sha[32]) __attribute__((nonnull));

/* Call FN (ARG, HOLDER) for each reference that cls_cas records on block
 * SHA (the decoded "chunk_refs" xattr), in cls_cas's order; *COUNT (may
 * be NULL): the number of references.  FN returns 0 to go on; another
 * value stops the walk and is returned.  ENOENT: no such object;
 * EUCLEAN: undecodable; ENOTSUP: an encoding without holder names.
 */
int cas_rados_block_refs (struct cas_rados *r, const uint8_t sha[32],
                          int (*fn) (void *arg, const char *holder), void *arg, uint32_t *count)
  __attribute__((nonnull (1, 2)));

/* ---- Asynchronous put_ref: a flush submits its blocks, then waits for
 * all of them before it publishes metadata. ---- */

/* A batch of at most MAX_IN_FLIGHT operations outstanding at once (0 =
 * 64): adding one more first waits for the oldest.  NULL with errno set
 * on failure (ENOMEM).
 */
struct cas_rados_batch *cas_rados_batch_new (struct cas_rados *r, unsigned max_in_flight)
  __attribute__((nonnull));

/* Submit cas_rados_block_put_ref (R, SHA, HOLDER, FRAME, LEN, CREATED)
 * asynchronously (librados copies FRAME: the caller may reuse it at
 * once).  *CREATED (may be NULL) is set when the op completes, by
 * cas_rados_batch_wait at the latest, and must stay valid until then.
 * Returns 0, or -1 with errno set when the op could not be submitted
 * (EINVAL: bad arguments or frame); a failure of the op itself is
 * reported by cas_rados_batch_wait.
 */
int cas_rados_batch_put_ref (struct cas_rados_batch *b, const uint8_t sha[32], const char *holder,
                             const void *frame, uint32_t len, bool *created)
  __attribute__((nonnull (1, 2, 3, 4)));

/* Wait for every op submitted since the last wait.  Returns 0 if all
 * succeeded; else -1 with errno of the first failure (each failure was
 * logged once, naming its object), and *FAILED (may be NULL) the number
 * of failed ops.  The batch is then empty and may be reused.
 */
int cas_rados_batch_wait (struct cas_rados_batch *b, unsigned *failed)
  __attribute__((nonnull (1)));

/* Wait for what is outstanding (failures logged) and free B. */
void cas_rados_batch_free (struct cas_rados_batch *b);

#endif
