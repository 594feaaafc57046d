/* A pool's block objects as a whole (pool.h): the walk over "blk.*"
 * objects and the readers of one object's header, frame and holders.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>

#include "casdisk.h"
#include "util/crc32c.h"
#include "format.h"
#include "util/log.h"
#include "util/util.h"
#include "remote/objects.h"
#include "remote/pool.h"

#define BLOCK_PREFIX "blk."
#define REF_PREFIX "ref."
#define MARKS_PER_OP 256        /* omap keys read per round trip */

/* Log "remote rados:POOL: OBJ: WHAT: <error>" for librados's RET and
 * return -1 with errno mapped as objects.c maps it. */
static int
fail (struct cas_rados *r, const char *obj, const char *what, int ret)
{
  errno = -ret;
  cas_error ("remote rados:%s: %s: %s: %m", cas_rados_pool (r), obj, what);
  switch (-ret) {
  case ETIMEDOUT: case ENOENT: case ENOMEM: errno = -ret; break;
  default: errno = EIO; break;
  }
  return -1;
}

bool
cas_rados_parse_block_name (const char *name, uint8_t sha[32])
{
  if (strncmp (name, BLOCK_PREFIX, 4) != 0 || strlen (name) != CAS_RADOS_NAME_LEN)
    return false;
  for (int i = 0; i < 64; i++) {
    const char c = name[4 + i];
    int v;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else
      return false;
    if (i % 2 == 0)
      sha[i / 2] = v << 4;
    else
      sha[i / 2] |= v;
  }
  return true;
}

/* ---- The walk ---- */

int
cas_rados_pool_walk (struct cas_rados *r,
                     int (*fn) (void *arg, const char *name, const uint8_t *sha),
                     void *arg, uint64_t *others)
{
  rados_list_ctx_t ctx;
  uint64_t n_others = 0;
  int ret, rc = 0;

  ret = rados_nobjects_list_open (cas_rados_ioctx (r), &ctx);
  if (ret < 0)
    return fail (r, "(list)", "cannot list the pool's objects", ret);
  /* Bounded: every call is an OSD op under the op timeout, and the pool
   * holds finitely many objects. */
  for (;;) {
    const char *entry;
    size_t entry_len;
    uint8_t sha[32];

    ret = rados_nobjects_list_next2 (ctx, &entry, NULL, NULL, &entry_len, NULL, NULL);
    if (ret == -ENOENT) {
      ret = 0;
      break;
    }
    if (ret < 0)
      break;
    if (entry_len < 4 || memcmp (entry, BLOCK_PREFIX, 4) != 0 || memchr (entry, 0, entry_len)) {
      n_others++;
      continue;
    }
    if ((rc = fn (arg, entry, cas_rados_parse_block_name (entry, sha) ? sha : NULL)) != 0)
      break;
  }
  rados_nobjects_list_close (ctx);
  if (ret < 0)
    return fail (r, "(list)", "listing the pool's objects", ret);
  if (others)
    *others = n_others;
  return rc;
}

/* ---- One object ---- */

/* Stat object NAME and read up to CAP bytes of it from its start, in one
 * op: *SIZE, *MTIME, *GOT.  0, or -1 with errno: ENOENT (not logged), or
 * logged as failing to WHAT.
 */
static int
stat_and_read (struct cas_rados *r, const char *name, const char *what, void *buf, size_t cap,
               uint64_t *size, time_t *mtime, size_t *got)
{
  int stat_rv = 0, read_rv = 0;

  rados_read_op_t op = rados_create_read_op ();
  if (!op)
    return fail (r, name, what, -ENOMEM);
  rados_read_op_stat (op, size, mtime, &stat_rv);
  rados_read_op_read (op, 0, cap, buf, got, &read_rv);
  int ret = rados_read_op_operate (op, cas_rados_ioctx (r), name, 0);
  rados_release_read_op (op);
  if (ret == 0 && (stat_rv < 0 || read_rv < 0))
    ret = stat_rv < 0 ? stat_rv : read_rv;
  if (ret == -ENOENT) {
    errno = ENOENT;
    return -1;
  }
  if (ret < 0)
    return fail (r, name, what, ret);
  return 0;
}

int
cas_rados_pool_stat_block (struct cas_rados *r, const char *name, struct cas_rados_obj *o)
{
  uint8_t hdr[CAS_RADOS_HDR_LEN];
  size_t hdr_len = 0;
  const char *bad;

  memset (o, 0, sizeof *o);
  if (stat_and_read (r, name, "stat and read the header", hdr, sizeof hdr,
                     &o->size, &o->mtime, &hdr_len) == -1)
    return -1;
  if (hdr_len < CAS_RADOS_HDR_LEN || o->size < CAS_RADOS_HDR_LEN) {
    snprintf (o->problem, sizeof o->problem, "%" PRIu64 " bytes, shorter than a frame header",
              o->size);
    return 0;
  }
  bad = cas_rados_frame_problem (hdr, o->size, true, &o->frame, o->problem, sizeof o->problem);
  if (bad) {
    if (bad != o->problem)
      snprintf (o->problem, sizeof o->problem, "%s", bad);
    return 0;
  }
  o->header_ok = true;
  return 0;
}

int
cas_rados_pool_read_block (struct cas_rados *r, const char *name, void *buf, size_t cap,
                           size_t *len, time_t *mtime)
{
  uint64_t size = 0;
  time_t mt = 0;
  size_t got = 0;

  /* An object larger than CAP shows in the stat's size. */
  if (stat_and_read (r, name, "read", buf, cap, &size, &mt, &got) == -1)
    return -1;
  if (size > cap) {
    errno = ERANGE;
    cas_error ("remote rados:%s: %s: read: %" PRIu64 " bytes, larger than any block frame (%zu)",
               cas_rados_pool (r), name, size, cap);
    return -1;
  }
  if (got != size) {
    errno = EIO;
    cas_error ("remote rados:%s: %s: read: %zu bytes of %" PRIu64, cas_rados_pool (r), name,
               got, size);
    return -1;
  }
  *len = got;
  if (mtime)
    *mtime = mt;
  return 0;
}

/* ---- Holders ---- */

void
cas_rados_holders_free (struct cas_rados_holders *h)
{
  for (uint32_t i = 0; i < h->n; i++)
    free (h->names[i]);
  free (h->names);
  h->names = NULL;
  h->n = h->cap = 0;
}

/* Append a copy of the LEN bytes NAME.  0 or -1 (ENOMEM, not logged). */
static int
holders_add (struct cas_rados_holders *h, const char *name, size_t len)
{
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? 2 * h->cap : 8;
    char **n = realloc (h->names, cap * sizeof *n);
    if (!n)
      return -1;
    h->names = n;
    h->cap = cap;
  }
  if (!(h->names[h->n] = strndup (name, len)))
    return -1;
  h->n++;
  return 0;
}

static int
add_ref (void *arg, const char *holder)
{
  return holders_add (arg, holder, strlen (holder)) == -1 ? -ENOMEM : 0;
}

int
cas_rados_pool_refs (struct cas_rados *r, const uint8_t sha[32], struct cas_rados_holders *out)
{
  char name[CAS_RADOS_NAME_LEN + 1];

  memset (out, 0, sizeof *out);
  /* The objects layer logs every failure; a block removed since it was
   * listed is the caller's "gone meanwhile", so look first (a hint: it
   * may still go in between, and then its ENOENT is logged). */
  cas_rados_block_name (sha, name);
  uint64_t size;
  time_t mtime;
  int ret = rados_stat (cas_rados_ioctx (r), name, &size, &mtime);
  if (ret == -ENOENT) {
    errno = ENOENT;
    return -1;
  }
  if (ret < 0)
    return fail (r, name, "stat", ret);
  int rc = cas_rados_block_refs (r, sha, add_ref, out, NULL);
  if (rc == -ENOMEM) {
    cas_rados_holders_free (out);
    return fail (r, name, "refs", -ENOMEM);
  }
  if (rc != 0) {
    const int saved = errno;
    cas_rados_holders_free (out);
    errno = saved;
    return -1;
  }
  return 0;
}

int
cas_rados_pool_marks (struct cas_rados *r, const char *name, struct cas_rados_holders *out)
{
  char *after = NULL;           /* the last key read: the next op starts after it */
  unsigned char more = 1;

  memset (out, 0, sizeof *out);
  /* Bounded: each round trip reads MARKS_PER_OP keys after the last one,
   * and an object has finitely many. */
  while (more) {
    rados_omap_iter_t it = NULL;
    int rv = 0;
    more = 0;
    rados_read_op_t op = rados_create_read_op ();
    if (!op) {
      free (after);
      cas_rados_holders_free (out);
      return fail (r, name, "omap", -ENOMEM);
    }
    rados_read_op_omap_get_vals2 (op, after ? after : "", REF_PREFIX, MARKS_PER_OP, &it, &more, &rv);
    int ret = rados_read_op_operate (op, cas_rados_ioctx (r), name, 0);
    rados_release_read_op (op);
    if (ret == 0 && rv < 0)
      ret = rv;
    if (ret < 0) {
      if (it)
        rados_omap_get_end (it);
      free (after);
      cas_rados_holders_free (out);
      if (ret == -ENOENT) {
        errno = ENOENT;
        return -1;
      }
      return fail (r, name, "omap: read the ref. keys", ret);
    }
    uint32_t got = 0;
    for (;;) {
      char *key, *val;
      size_t klen, vlen;
      if (rados_omap_get_next2 (it, &key, &val, &klen, &vlen) < 0 || key == NULL)
        break;
      got++;
      free (after);
      after = strndup (key, klen);
      if (!after ||
          holders_add (out, key + strlen (REF_PREFIX), klen - strlen (REF_PREFIX)) == -1) {
        free (after);
        rados_omap_get_end (it);
        cas_rados_holders_free (out);
        return fail (r, name, "omap", -ENOMEM);
      }
    }
    rados_omap_get_end (it);
    if (got == 0)
      break;
  }
  free (after);
  return 0;
}

int
cas_rados_pool_object_exists (struct cas_rados *r, const char *name)
{
  uint64_t size;
  time_t mtime;
  int ret = rados_stat (cas_rados_ioctx (r), name, &size, &mtime);
  if (ret == 0)
    return 1;
  if (ret == -ENOENT)
    return 0;
  return fail (r, name, "stat", ret);
}
