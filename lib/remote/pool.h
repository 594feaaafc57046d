/* A pool's block objects as a whole: the walk over every "blk.*" object
 * and the readers `casdisk remote` needs on each (its header, its whole
 * frame, its holders), over the block-object layer (objects.h).
 * Compiled only when configure found librados (HAVE_RADOS).
 *
 * Walk.  cas_rados_pool_walk() lists the pool's objects (the default
 * namespace) with rados_nobjects_list_*, in the pool's hash order, and
 * calls back for each one whose name starts with "blk.".  Every listing
 * call is one OSD op, bounded by the connection's op timeout
 * (cas_rados_open sets rados_osd_op_timeout): a stopped OSD ends the walk
 * with ETIMEDOUT after about that time, never a hang.  Objects created or
 * removed during the walk may or may not be seen (RADOS listing gives no
 * snapshot); an object seen and then removed reads back as ENOENT, which
 * the readers below return without logging, so that a caller may treat it
 * as "gone meanwhile".
 *
 * Holders.  A block object's references are kept twice (objects.h): by
 * cls_cas in the "chunk_refs" xattr (the references that count: the
 * class removes the object when the last is dropped), and as one omap key
 * "ref.<holder>" per holder (the guard that keeps one reference per
 * holder).  cas_rados_pool_refs() reads the first through the objects
 * layer's reader, cas_rados_pool_marks() the second; `remote check`
 * compares them.  A holder "exists" when an object of its name exists in
 * the pool (cas_rados_pool_object_exists).
 *
 * Frames.  check and scrub use the objects layer's
 * cas_rados_frame_problem(), which checks a frame as cas_rados_unframe()
 * does but logs nothing and returns what is wrong, so that they can report
 * it as one of their problems; with HEADER_ONLY it checks the header
 * against the object's size without the stored bytes (their CRC needs the
 * whole object: scrub).
 *
 * Errors follow the engine's convention (lib/log.h): -1 with errno set,
 * after one cas_error line naming the pool and the object, except for
 * ENOENT from the readers (not logged, see above).  errno: ETIMEDOUT,
 * ENOENT, ENOMEM, EUCLEAN (undecodable references), ENOTSUP (references
 * without holder names), EIO otherwise.
 */
#ifndef CAS_REMOTE_POOL_H
#define CAS_REMOTE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "casdisk.h"
#include "remote/objects.h"

/* The largest object a block frame can be. */
#define CAS_RADOS_FRAME_MAX (CAS_RADOS_HDR_LEN + CAS_MAX_BLOCK_SIZE + 4 * (CAS_MAX_BLOCK_SIZE / 4096))  /* sectored */

/* Is NAME "blk." and 64 lowercase hex digits?  Then true, with the
 * digest in SHA. */
bool cas_rados_parse_block_name (const char *name, uint8_t sha[32]) __attribute__((nonnull));

/* Call FN (ARG, NAME, SHA) for every object of R's pool whose name starts
 * with "blk.": SHA is the digest its name spells, or NULL when the rest
 * of the name is not 64 lowercase hex digits (not a block object casdisk
 * made).  NAME is valid during the call only.  FN returns 0 to go on;
 * another value stops the walk and is returned.  *OTHERS (may be NULL):
 * the objects listed that do not start with "blk.".  Returns 0, FN's
 * value, or -1 with errno set (logged).
 */
int cas_rados_pool_walk (struct cas_rados *r,
                         int (*fn) (void *arg, const char *name, const uint8_t *sha),
                         void *arg, uint64_t *others)
  __attribute__((nonnull (1, 2)));

/* What the first CAS_RADOS_HDR_LEN bytes and the size of an object say. */
struct cas_rados_obj {
  uint64_t size;                /* the object's size (rados_stat) */
  time_t mtime;                 /* its last change (rados_stat) */
  struct cas_rados_frame_info frame;    /* the header's fields, if header_ok */
  bool header_ok;               /* a good header whose stored length fits the size */
  char problem[160];            /* else what is wrong */
};

/* Stat block NAME and read its header, in one read op, and check the
 * header (not the stored bytes' CRC).  Returns 0 with *O (a bad header is
 * a success with O->header_ok false), or -1 with errno set: ENOENT (not
 * logged), or logged.
 */
int cas_rados_pool_stat_block (struct cas_rados *r, const char *name, struct cas_rados_obj *o)
  __attribute__((nonnull));

/* Read block NAME whole (stat and read in one op) into BUF (CAP bytes):
 * *LEN its size, *MTIME (may be NULL) its mtime.  ERANGE (logged): larger
 * than CAP; ENOENT (not logged).
 */
int cas_rados_pool_read_block (struct cas_rados *r, const char *name, void *buf, size_t cap,
                               size_t *len, time_t *mtime)
  __attribute__((nonnull (1, 2, 3, 5)));

/* A list of holder names, malloc'd; free with cas_rados_holders_free. */
struct cas_rados_holders {
  uint32_t n, cap;
  char **names;
};
void cas_rados_holders_free (struct cas_rados_holders *h);

/* The holders cls_cas records on block SHA (the objects layer's refs
 * reader), in its order, repeated if a holder holds two (a multiset).
 * Errors as cas_rados_block_refs (logged), but ENOENT is not logged.
 */
int cas_rados_pool_refs (struct cas_rados *r, const uint8_t sha[32], struct cas_rados_holders *out)
  __attribute__((nonnull));

/* The holders with a "ref.<holder>" omap key on object NAME, in key
 * order.  ENOENT (not logged).
 */
int cas_rados_pool_marks (struct cas_rados *r, const char *name, struct cas_rados_holders *out)
  __attribute__((nonnull));

/* Does object NAME exist in the pool?  1 yes, 0 no, -1 error (logged). */
int cas_rados_pool_object_exists (struct cas_rados *r, const char *name) __attribute__((nonnull));

#endif
