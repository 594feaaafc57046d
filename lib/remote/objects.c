/* The block objects of the remote tier (objects.h): a librados
 * connection, frames, and create-or-reference through cls_cas with the
 * holder guard in the same write op.
 *
 * The inputs of cls_cas are Ceph's encoding, written here by hand:
 * little-endian integers, strings and buffers as a u32 length and the
 * bytes, and a structure as ENCODE_START's version byte, compat byte and
 * u32 length before its fields.
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

struct cas_rados {
  rados_t cluster;
  rados_ioctx_t io;
  int64_t pool_id;
  char *pool;
};

/* Header field offsets. */
#define H_MAGIC      0
#define H_VERSION    8
#define H_FLAGS     12
#define H_PLAIN     16
#define H_STORED    20
#define H_DATA_CRC  24
#define H_HDR_CRC   28

#define REF_KEY_PREFIX "ref."
#define REF_KEY_MAX (sizeof REF_KEY_PREFIX + CAS_RADOS_HOLDER_MAX)
#define CHUNK_REFS_ATTR "chunk_refs"
#define CHUNK_REFS_MAX (16u << 20)      /* the largest xattr read back */

/* Write ops: a full pool answers ENOSPC (or EDQUOT) at once instead of
 * holding the op until the timeout. */
#define WRITE_FLAGS LIBRADOS_OPERATION_FULL_TRY

/* ---- Errors ---- */

/* errno for librados's negative RET. */
static int
map_errno (int ret)
{
  switch (-ret) {
  case ETIMEDOUT: return ETIMEDOUT;
  case ENOSPC: case EDQUOT: return ENOSPC;
  case ENOENT: return ENOENT;
  case ENOMEM: return ENOMEM;
  default: return EIO;
  }
}

/* Log "remote rados:POOL: OBJ: WHAT: <librados error>" and return -1
 * with errno mapped from RET. */
static int
fail (const struct cas_rados *r, const char *obj, const char *what, int ret)
{
  errno = -ret;
  if (ret == -EOPNOTSUPP)
    cas_error ("remote rados:%s: %s: %s: %m (does the OSD load the cas object class?)",
               r->pool, obj, what);
  else
    cas_error ("remote rados:%s: %s: %s: %m", r->pool, obj, what);
  errno = map_errno (ret);
  return -1;
}

static bool
holder_ok (const char *holder)
{
  size_t n = strlen (holder);
  if (n == 0 || n > CAS_RADOS_HOLDER_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (holder[i] <= ' ' || holder[i] > '~')
      return false;
  return true;
}

static int
check_holder (const struct cas_rados *r, const char *obj, const char *holder)
{
  if (holder_ok (holder))
    return 0;
  errno = EINVAL;
  cas_error ("remote rados:%s: %s: bad holder name \"%.*s\" (1 to %d printable bytes, no space)",
             r->pool, obj, CAS_RADOS_HOLDER_MAX + 1, holder, CAS_RADOS_HOLDER_MAX);
  return -1;
}

static void
ref_key (char out[REF_KEY_MAX], const char *holder)
{
  snprintf (out, REF_KEY_MAX, "%s%s", REF_KEY_PREFIX, holder);
}

/* ---- Connection ---- */

int
cas_rados_open (const struct cas_rados_opts *o, struct cas_rados **out)
{
  const char *pool = o->pool ? o->pool : "";
  const char *conf = o->conf ? o->conf : getenv ("CEPH_CONF");
  const char *conf_msg = conf ? conf : "default search";
  const char *id = o->id ? o->id : "admin";
  unsigned timeout = o->op_timeout_s ? o->op_timeout_s : CAS_RADOS_DEFAULT_TIMEOUT;
  char name[256], tbuf[16];
  const char *step;
  int ret;

  if (!*pool || !*id || strlen (id) > 200) {
    errno = EINVAL;
    cas_error ("remote rados:%s: a pool name and a client id are needed", pool);
    return -1;
  }
  struct cas_rados *r = calloc (1, sizeof *r);
  if (!r || !(r->pool = strdup (pool))) {
    free (r);
    errno = ENOMEM;
    cas_error ("remote rados:%s: %m", pool);
    return -1;
  }
  snprintf (name, sizeof name, "client.%s", id);
  snprintf (tbuf, sizeof tbuf, "%u", timeout);

  step = "cannot create a cluster handle";
  if ((ret = rados_create2 (&r->cluster, "ceph", name, 0)) < 0) {
    r->cluster = NULL;
    goto err;
  }
  step = "cannot read the configuration";
  /* NULL: librados searches $CEPH_CONF, then the default places. */
  if ((ret = rados_conf_read_file (r->cluster, o->conf)) < 0)
    goto err;
  step = "bad $CEPH_ARGS";
  if ((ret = rados_conf_parse_env (r->cluster, NULL)) < 0)
    goto err;
  step = "cannot set the op timeouts";
  if ((ret = rados_conf_set (r->cluster, "rados_osd_op_timeout", tbuf)) < 0 ||
      (ret = rados_conf_set (r->cluster, "rados_mon_op_timeout", tbuf)) < 0 ||
      (ret = rados_conf_set (r->cluster, "client_mount_timeout", tbuf)) < 0)
    goto err;
  step = "cannot connect";
  if ((ret = rados_connect (r->cluster)) < 0)
    goto err;
  step = "cannot open the pool";
  if ((ret = rados_ioctx_create (r->cluster, pool, &r->io)) < 0) {
    r->io = NULL;
    goto err;
  }
  r->pool_id = rados_ioctx_get_id (r->io);
  *out = r;
  return 0;

err:
  errno = -ret;
  cas_error ("remote rados:%s: %s (conf %s, %s): %m", pool, step, conf_msg, name);
  cas_rados_close (r);
  errno = map_errno (ret);
  return -1;
}

void
cas_rados_close (struct cas_rados *r)
{
  if (!r)
    return;
  if (r->io)
    rados_ioctx_destroy (r->io);
  if (r->cluster)
    rados_shutdown (r->cluster);
  free (r->pool);
  free (r);
}

const char *
cas_rados_pool (const struct cas_rados *r)
{
  return r->pool;
}

rados_ioctx_t
cas_rados_ioctx (const struct cas_rados *r)
{
  return r->io;
}

/* ---- Names and frames ---- */

void
cas_rados_block_name (const uint8_t sha[32], char out[CAS_RADOS_NAME_LEN + 1])
{
  static const char digits[] = "0123456789abcdef";

  memcpy (out, "blk.", 4);
  for (int i = 0; i < 32; i++) {
    out[4 + 2 * i] = digits[sha[i] >> 4];
    out[4 + 2 * i + 1] = digits[sha[i] & 15];
  }
  out[CAS_RADOS_NAME_LEN] = '\0';
}

/* NULL if FLAGS and the lengths are consistent, else what is wrong. */
static const char *
check_lengths (uint32_t flags, uint32_t plain_len, uint32_t stored_len)
{
  if (flags != 0 && flags != CAS_BLK_COMPRESSED && flags != CAS_BLK_SECTORED)
    return "bad flags";
  if (plain_len == 0 || plain_len > CAS_MAX_BLOCK_SIZE)
    return "bad plain length";
  switch (flags) {
  case 0:
    if (stored_len != plain_len)
      return "raw, stored length is not the plain length";
    break;
  case CAS_BLK_SECTORED:
    if (stored_len != cas_sectored_len (plain_len))
      return "sectored, stored length is not the plain length and its piece CRCs";
    break;
  case CAS_BLK_COMPRESSED:
    if (stored_len == 0 || stored_len > plain_len)
      return "compressed, stored length is not 1 to the plain length";
    break;
  }
  return NULL;
}

int
cas_rados_frame (uint32_t flags, uint32_t plain_len, const void *stored, uint32_t stored_len,
                 void *frame, size_t cap, uint32_t *frame_len)
{
  const char *bad = check_lengths (flags, plain_len, stored_len);
  uint8_t *h = frame;

  if (bad) {
    errno = EINVAL;
    cas_error ("remote rados: frame: %s (flags %#" PRIx32 ", plain %" PRIu32 ", stored %" PRIu32 ")",
               bad, flags, plain_len, stored_len);
    return -1;
  }
  if (cap < CAS_RADOS_HDR_LEN + (size_t) stored_len) {
    errno = ERANGE;
    cas_error ("remote rados: frame: %zu bytes of room for a frame of %" PRIu32 " bytes",
               cap, CAS_RADOS_HDR_LEN + stored_len);
    return -1;
  }
  memcpy (h + H_MAGIC, CAS_RADOS_MAGIC, 8);
  put_le32 (h + H_VERSION, CAS_RADOS_VERSION);
  put_le32 (h + H_FLAGS, flags);
  put_le32 (h + H_PLAIN, plain_len);
  put_le32 (h + H_STORED, stored_len);
  put_le32 (h + H_DATA_CRC, cas_crc32c (0, stored, stored_len));
  put_le32 (h + H_HDR_CRC, cas_crc32c (0, h, H_HDR_CRC));
  memmove (h + CAS_RADOS_HDR_LEN, stored, stored_len);
  *frame_len = CAS_RADOS_HDR_LEN + stored_len;
  return 0;
}

/* Check header HDR (CAS_RADOS_HDR_LEN bytes) of a frame with DATA_LEN
 * bytes after it, and DATA unless it is NULL (the header alone).  NULL if
 * good, else what is wrong (a constant or MSG).
 */
static const char *
check_frame (const uint8_t *hdr, const void *data, size_t data_len,
             struct cas_rados_frame_info *info, char *msg, size_t msg_len)
{
  const char *bad;
  uint32_t v, c;

  if (memcmp (hdr + H_MAGIC, CAS_RADOS_MAGIC, 8) != 0)
    return "bad magic (not a casdisk block frame)";
  if ((v = get_le32 (hdr + H_HDR_CRC)) != (c = cas_crc32c (0, hdr, H_HDR_CRC))) {
    snprintf (msg, msg_len, "bad header CRC %08" PRIx32 ", computed %08" PRIx32, v, c);
    return msg;
  }
  if ((v = get_le32 (hdr + H_VERSION)) != CAS_RADOS_VERSION) {
    snprintf (msg, msg_len, "format version %" PRIu32 ", this casdisk reads %u", v,
              CAS_RADOS_VERSION);
    return msg;
  }
  info->flags = get_le32 (hdr + H_FLAGS);
  info->plain_len = get_le32 (hdr + H_PLAIN);
  info->stored_len = get_le32 (hdr + H_STORED);
  if ((bad = check_lengths (info->flags, info->plain_len, info->stored_len)) != NULL) {
    snprintf (msg, msg_len, "%s (flags %#" PRIx32 ", plain %" PRIu32 ", stored %" PRIu32 ")",
              bad, info->flags, info->plain_len, info->stored_len);
    return msg;
  }
  if (info->stored_len != data_len) {
    snprintf (msg, msg_len, "stored length %" PRIu32 ", but %zu bytes follow the header",
              info->stored_len, data_len);
    return msg;
  }
  if (data && (v = get_le32 (hdr + H_DATA_CRC)) != (c = cas_crc32c (0, data, data_len))) {
    snprintf (msg, msg_len, "bad data CRC %08" PRIx32 ", computed %08" PRIx32, v, c);
    return msg;
  }
  return NULL;
}

const char *
cas_rados_frame_problem (const void *frame, size_t len, bool header_only,
                         struct cas_rados_frame_info *info, char *msg, size_t msg_len)
{
  const uint8_t *f = frame;

  if (len < CAS_RADOS_HDR_LEN) {
    snprintf (msg, msg_len, "%zu bytes, shorter than a frame header", len);
    return msg;
  }
  return check_frame (f, header_only ? NULL : f + CAS_RADOS_HDR_LEN, len - CAS_RADOS_HDR_LEN,
                      info, msg, msg_len);
}

int
cas_rados_unframe (const char *name, const void *frame, size_t len,
                   struct cas_rados_frame_info *info, const void **stored)
{
  char msg[160];
  const char *bad;
  struct cas_rados_frame_info fi;

  if ((bad = cas_rados_frame_problem (frame, len, false, &fi, msg, sizeof msg)) != NULL) {
    errno = EUCLEAN;
    cas_error ("remote rados: %s: %s", name ? name : "frame", bad);
    return -1;
  }
  *info = fi;
  *stored = (const uint8_t *) frame + CAS_RADOS_HDR_LEN;
  return 0;
}

/* ---- Ceph's encoding, by hand ---- */

struct enc {
  uint8_t *buf;
  size_t len, cap;
};

/* The caller sized BUF: these never overflow it (asserted by enc_ok). */
static void
enc_bytes (struct enc *e, const void *p, size_t n)
{
  if (e->len + n > e->cap) {
    e->len = e->cap + 1;        /* poisoned: enc_ok fails */
    return;
  }
  memcpy (e->buf + e->len, p, n);
  e->len += n;
}

static void
enc_le (struct enc *e, uint64_t v, int n)
{
  uint8_t b[8];
  for (int i = 0; i < n; i++)
    b[i] = v >> (8 * i);
  enc_bytes (e, b, n);
}

static void
enc_blob (struct enc *e, const void *p, size_t n)
{
  enc_le (e, n, 4);
  enc_bytes (e, p, n);
}

/* ENCODE_START (V, COMPAT): returns where the length goes. */
static size_t
enc_start (struct enc *e, uint8_t v, uint8_t compat)
{
  enc_le (e, v, 1);
  enc_le (e, compat, 1);
  size_t at = e->len;
  enc_le (e, 0, 4);
  return at;
}

static void
enc_finish (struct enc *e, size_t at)
{
  if (e->len <= e->cap)
    put_le32 (e->buf + at, e->len - at - 4);
}

static bool
enc_ok (const struct enc *e)
{
  return e->len <= e->cap;
}

/* The hobject_t of HOLDER's head object in the pool: key "", name,
 * CEPH_NOSNAP, hash 0, max false, namespace "", pool id.  cls_cas
 * compares whole hobjects, so every call encodes a holder the same way. */
static void
enc_hobject (struct enc *e, const char *holder, int64_t pool)
{
  size_t at = enc_start (e, 4, 3);
  enc_blob (e, "", 0);
  enc_blob (e, holder, strlen (holder));
  enc_le (e, UINT64_C(0xfffffffffffffffe), 8);
  enc_le (e, 0, 4);
  enc_le (e, 0, 1);
  enc_blob (e, "", 0);
  enc_le (e, (uint64_t) pool, 8);
  enc_finish (e, at);
}

#define HOBJECT_MAX (6 + 4 + 4 + CAS_RADOS_HOLDER_MAX + 8 + 4 + 1 + 4 + 8)
#define OP_OVERHEAD (6 + HOBJECT_MAX + 8 + 4)

/* cls_cas_chunk_create_or_get_ref_op { hobject_t source; u64 flags;
 * bufferlist data; } v1 into E (malloc'd).  Returns 0 or -1 (ENOMEM). */
static int
enc_create_or_get (struct enc *e, const char *holder, int64_t pool, const void *data, size_t n)
{
  e->len = 0;
  e->cap = OP_OVERHEAD + n;
  if (!(e->buf = malloc (e->cap)))
    return -1;
  size_t at = enc_start (e, 1, 1);
  enc_hobject (e, holder, pool);
  enc_le (e, 0, 8);             /* no FLAG_VERIFY: two writers' frames may differ */
  enc_blob (e, data, n);
  enc_finish (e, at);
  return enc_ok (e) ? 0 : (errno = EOVERFLOW, -1);
}

/* cls_cas_chunk_get_ref_op and cls_cas_chunk_put_ref_op: { hobject_t
 * source; } v1, in BUF (OP_OVERHEAD bytes). */
static void
enc_source_op (struct enc *e, uint8_t *buf, const char *holder, int64_t pool)
{
  e->buf = buf;
  e->len = 0;
  e->cap = OP_OVERHEAD;
  size_t at = enc_start (e, 1, 1);
  enc_hobject (e, holder, pool);
  enc_finish (e, at);
}

/* ---- put_ref: the op and its outcome, shared with the batch ---- */

struct put_ref_op {
  rados_write_op_t op;
  int probe_rv, exec_rv, guard_rv;
  char key[REF_KEY_MAX];
};

/* Validate the arguments and build the write op in P.  Returns 0 or -1
 * (logged). */
static int
put_ref_prepare (struct cas_rados *r, const char *name, const char *holder,
                 const void *frame, uint32_t len, struct put_ref_op *p)
{
  struct cas_rados_frame_info fi;
  char msg[160];
  const char *bad;
  struct enc e;

  if (check_holder (r, name, holder) == -1)
    return -1;
  if ((bad = cas_rados_frame_problem (frame, len, false, &fi, msg, sizeof msg)) != NULL) {
    errno = EINVAL;             /* the caller's frame, not a stored one */
    cas_error ("remote rados:%s: %s: put_ref by %s: refusing a bad frame: %s", r->pool, name,
               holder, bad);
    return -1;
  }
  if (enc_create_or_get (&e, holder, r->pool_id, frame, len) == -1) {
    free (e.buf);
    cas_error ("remote rados:%s: %s: put_ref by %s: %m", r->pool, name, holder);
    return -1;
  }
  ref_key (p->key, holder);
  const char *keys[1] = { p->key };
  const char *vals[1] = { "1" };
  const size_t lens[1] = { 1 };
  p->probe_rv = p->exec_rv = p->guard_rv = 0;
  p->op = rados_create_write_op ();
  if (!p->op) {
    free (e.buf);
    errno = ENOMEM;
    cas_error ("remote rados:%s: %s: put_ref by %s: %m", r->pool, name, holder);
    return -1;
  }
  /* (1) ENOENT exactly when the object does not exist before this op. */
  rados_write_op_omap_cmp (p->op, p->key, LIBRADOS_CMPXATTR_OP_EQ, "", 0, &p->probe_rv);
  rados_write_op_set_flags (p->op, LIBRADOS_OP_FLAG_FAILOK);
  /* (2) create with the frame, or add the reference */
  rados_write_op_exec (p->op, "cas", "chunk_create_or_get_ref", (const char *) e.buf, e.len,
                       &p->exec_rv);
  free (e.buf);                 /* librados copied it */
  /* (3) the holder holds none yet, or the whole op is cancelled */
  rados_write_op_omap_cmp (p->op, p->key, LIBRADOS_CMPXATTR_OP_EQ, "", 0, &p->guard_rv);
  /* (4) mark the holder's reference */
  rados_write_op_omap_set (p->op, keys, vals, lens, 1);
  return 0;
}

/* The outcome of P's op, which returned RET. */
static int
put_ref_result (struct cas_rados *r, const char *name, const char *holder,
                const struct put_ref_op *p, int ret, bool *created)
{
  char what[64 + CAS_RADOS_HOLDER_MAX];

  if (ret == 0) {
    if (created)
      *created = p->probe_rv == -ENOENT;
    return 0;
  }
  if (ret == -ECANCELED && p->guard_rv == -ECANCELED) {
    if (created)              /* already held: nothing changed */
      *created = false;
    return 0;
  }
  snprintf (what, sizeof what, "put_ref by %s", holder);
  if (p->exec_rv < 0)
    ret = p->exec_rv;
  return fail (r, name, what, ret);
}

int
cas_rados_block_put_ref (struct cas_rados *r, const uint8_t sha[32], const char *holder,
                         const void *frame, uint32_t len, bool *created)
{
  char name[CAS_RADOS_NAME_LEN + 1];
  struct put_ref_op p;

  cas_rados_block_name (sha, name);
  if (put_ref_prepare (r, name, holder, frame, len, &p) == -1)
    return -1;
  int ret = rados_write_op_operate (p.op, r->io, name, NULL, WRITE_FLAGS);
  rados_release_write_op (p.op);
  return put_ref_result (r, name, holder, &p, ret, created);
}

/* ---- get_ref, put ---- */

int
cas_rados_block_get_ref (struct cas_rados *r, const uint8_t sha[32], const char *holder)
{
  char name[CAS_RADOS_NAME_LEN + 1], key[REF_KEY_MAX], what[64 + CAS_RADOS_HOLDER_MAX];
  uint8_t buf[OP_OVERHEAD];
  struct enc e;
  int guard_rv = 0, exec_rv = 0;

  cas_rados_block_name (sha, name);
  if (check_holder (r, name, holder) == -1)
    return -1;
  enc_source_op (&e, buf, holder, r->pool_id);
  ref_key (key, holder);
  const char *keys[1] = { key };
  const char *vals[1] = { "1" };
  const size_t lens[1] = { 1 };
  rados_write_op_t op = rados_create_write_op ();
  if (!op)
    return fail (r, name, "get_ref", -ENOMEM);
  /* ENOENT: no object; ECANCELED: already held */
  rados_write_op_omap_cmp (op, key, LIBRADOS_CMPXATTR_OP_EQ, "", 0, &guard_rv);
  rados_write_op_exec (op, "cas", "chunk_get_ref", (const char *) e.buf, e.len, &exec_rv);
  rados_write_op_omap_set (op, keys, vals, lens, 1);
  int ret = rados_write_op_operate (op, r->io, name, NULL, WRITE_FLAGS);
  rados_release_write_op (op);
  if (ret == 0)
    return 0;
  if (ret == -ECANCELED && guard_rv == -ECANCELED)
    return 0;
  snprintf (what, sizeof what, "get_ref by %s", holder);
  if (ret == -ENOENT) {
    errno = ENOENT;
    cas_error ("remote rados:%s: %s: %s: no such block object", r->pool, name, what);
    return -1;
  }
  return fail (r, name, what, exec_rv < 0 ? exec_rv : ret);
}

int
cas_rados_block_put (struct cas_rados *r, const uint8_t sha[32], const char *holder,
                     bool *removed)
{
  char name[CAS_RADOS_NAME_LEN + 1], key[REF_KEY_MAX], what[64 + CAS_RADOS_HOLDER_MAX];
  uint8_t buf[OP_OVERHEAD];
  struct enc e;
  int guard_rv = 0, exec_rv = 0, gone_rv = 0;

  cas_rados_block_name (sha, name);
  if (check_holder (r, name, holder) == -1)
    return -1;
  enc_source_op (&e, buf, holder, r->pool_id);
  ref_key (key, holder);
  const char *keys[1] = { key };
  rados_write_op_t op = rados_create_write_op ();
  if (!op)
    return fail (r, name, "put", -ENOMEM);
  /* ENOENT: no object; ECANCELED: HOLDER holds no reference */
  rados_write_op_omap_cmp (op, key, LIBRADOS_CMPXATTR_OP_EQ, "1", 1, &guard_rv);
  rados_write_op_omap_rm_keys (op, keys, 1);
  rados_write_op_exec (op, "cas", "chunk_put_ref", (const char *) e.buf, e.len, &exec_rv);
  /* ENOENT when the class removed the object with its last reference */
  rados_write_op_omap_cmp (op, key, LIBRADOS_CMPXATTR_OP_EQ, "", 0, &gone_rv);
  rados_write_op_set_flags (op, LIBRADOS_OP_FLAG_FAILOK);
  int ret = rados_write_op_operate (op, r->io, name, NULL, WRITE_FLAGS);
  rados_release_write_op (op);
  if (ret == 0) {
    if (removed)
      *removed = gone_rv == -ENOENT;
    return 0;
  }
  snprintf (what, sizeof what, "put by %s", holder);
  if (ret == -ENOENT && guard_rv == -ENOENT) {
    errno = ENOENT;
    cas_error ("remote rados:%s: %s: %s: no such block object", r->pool, name, what);
    return -1;
  }
  if (ret == -ECANCELED && guard_rv == -ECANCELED) {
    errno = ENOLINK;
    cas_error ("remote rados:%s: %s: %s: the holder holds no reference", r->pool, name, what);
    return -1;
  }
  if (exec_rv == -ENOLINK) {
    errno = EIO;
    cas_error ("remote rados:%s: %s: %s: the holder's mark is there but cls_cas has no "
               "reference from it (changed outside casdisk?)", r->pool, name, what);
    return -1;
  }
  return fail (r, name, what, exec_rv < 0 ? exec_rv : ret);
}

/* ---- read, exists ---- */

int
cas_rados_block_read (struct cas_rados *r, const uint8_t sha[32], void *buf, uint32_t cap,
                      struct cas_rados_frame_info *info)
{
  char name[CAS_RADOS_NAME_LEN + 1], msg[160];
  uint8_t hdr[CAS_RADOS_HDR_LEN];
  size_t hdr_len = 0, data_len = 0;
  uint64_t size = 0;
  int stat_rv = 0, hdr_rv = 0, data_rv = 0;
  struct cas_rados_frame_info fi;
  const char *bad;

  cas_rados_block_name (sha, name);
  rados_read_op_t op = rados_create_read_op ();
  if (!op)
    return fail (r, name, "read", -ENOMEM);
  rados_read_op_stat (op, &size, NULL, &stat_rv);
  rados_read_op_read (op, 0, CAS_RADOS_HDR_LEN, (char *) hdr, &hdr_len, &hdr_rv);
  rados_read_op_read (op, CAS_RADOS_HDR_LEN, cap, buf, &data_len, &data_rv);
  int ret = rados_read_op_operate (op, r->io, name, 0);
  rados_release_read_op (op);
  if (ret == 0 && (stat_rv < 0 || hdr_rv < 0 || data_rv < 0))
    ret = stat_rv < 0 ? stat_rv : hdr_rv < 0 ? hdr_rv : data_rv;
  if (ret == -ENOENT) {
    errno = ENOENT;
    cas_error ("remote rados:%s: %s: read: no such block object", r->pool, name);
    return -1;
  }
  if (ret < 0)
    return fail (r, name, "read", ret);
  if (hdr_len < CAS_RADOS_HDR_LEN || size < CAS_RADOS_HDR_LEN) {
    errno = EUCLEAN;
    cas_error ("remote rados:%s: %s: read: %" PRIu64 " bytes, shorter than a frame header",
               r->pool, name, size);
    return -1;
  }
  /* Lengths first: a frame larger than BUF is the caller's problem when
   * its header is good. */
  if (size - CAS_RADOS_HDR_LEN > data_len) {
    uint32_t stored = get_le32 (hdr + H_STORED);
    if (get_le32 (hdr + H_HDR_CRC) == cas_crc32c (0, hdr, H_HDR_CRC) &&
        memcmp (hdr, CAS_RADOS_MAGIC, 8) == 0 && stored == size - CAS_RADOS_HDR_LEN) {
      errno = ERANGE;
      cas_error ("remote rados:%s: %s: read: %" PRIu32 " stored bytes, room for %" PRIu32,
                 r->pool, name, stored, cap);
      return -1;
    }
    errno = EUCLEAN;
    cas_error ("remote rados:%s: %s: read: bad frame: %" PRIu64 " bytes after the header, "
               "the header says %" PRIu32, r->pool, name, size - CAS_RADOS_HDR_LEN, stored);
    return -1;
  }
  if ((bad = check_frame (hdr, buf, data_len, &fi, msg, sizeof msg)) != NULL) {
    errno = EUCLEAN;
    cas_error ("remote rados:%s: %s: read: bad frame: %s", r->pool, name, bad);
    return -1;
  }
  *info = fi;
  return 0;
}

int
cas_rados_block_exists (struct cas_rados *r, const uint8_t sha[32])
{
  char name[CAS_RADOS_NAME_LEN + 1];
  uint64_t size;
  time_t mtime;

  cas_rados_block_name (sha, name);
  int ret = rados_stat (r->io, name, &size, &mtime);
  if (ret == 0)
    return 1;
  if (ret == -ENOENT)
    return 0;
  return fail (r, name, "stat", ret);
}

/* ---- refs: decoding cls_cas's "chunk_refs" ---- */

struct dec {
  const uint8_t *p, *end;
  bool bad;
};

static uint64_t
dec_le (struct dec *d, int n)
{
  uint64_t v = 0;
  if (d->bad || d->end - d->p < n) {
    d->bad = true;
    return 0;
  }
  for (int i = n - 1; i >= 0; i--)
    v = v << 8 | d->p[i];
  d->p += n;
  return v;
}

/* A string: its bytes in place, *LEN. */
static const uint8_t *
dec_str (struct dec *d, uint32_t *len)
{
  *len = dec_le (d, 4);
  if (d->bad || (uint64_t) (d->end - d->p) < *len) {
    d->bad = true;
    return NULL;
  }
  const uint8_t *s = d->p;
  d->p += *len;
  return s;
}

/* DECODE_START: a structure of version >= MIN_V whose compat we read
 * (compat <= MAX_COMPAT).  Returns the end of the structure, or NULL. */
static const uint8_t *
dec_start (struct dec *d, uint8_t min_v, uint8_t max_compat)
{
  uint8_t v = dec_le (d, 1), compat = dec_le (d, 1);
  uint32_t len = dec_le (d, 4);
  if (d->bad || v < min_v || compat > max_compat || (uint64_t) (d->end - d->p) < len) {
    d->bad = true;
    return NULL;
  }
  return d->p + len;
}

int
cas_rados_block_refs (struct cas_rados *r, const uint8_t sha[32],
                      int (*fn) (void *arg, const char *holder), void *arg, uint32_t *count)
{
  char name[CAS_RADOS_NAME_LEN + 1];
  char holder[CAS_RADOS_HOLDER_MAX + 1];
  size_t cap = 4096;
  char *buf = NULL;
  int ret;

  cas_rados_block_name (sha, name);
  for (;;) {                    /* bounded: CHUNK_REFS_MAX */
    char *nb = realloc (buf, cap);
    if (!nb) {
      free (buf);
      return fail (r, name, "refs", -ENOMEM);
    }
    buf = nb;
    ret = rados_getxattr (r->io, name, CHUNK_REFS_ATTR, buf, cap);
    if (ret != -ERANGE || cap >= CHUNK_REFS_MAX)
      break;
    cap *= 4;
  }
  if (ret < 0) {
    free (buf);
    if (ret == -ENOENT) {
      errno = ENOENT;
      cas_error ("remote rados:%s: %s: refs: no such block object", r->pool, name);
      return -1;
    }
    if (ret == -ENODATA) {
      errno = EUCLEAN;
      cas_error ("remote rados:%s: %s: refs: no %s xattr (not made by cls_cas)",
                 r->pool, name, CHUNK_REFS_ATTR);
      return -1;
    }
    return fail (r, name, "refs: getxattr " CHUNK_REFS_ATTR, ret);
  }

  struct dec d = { (const uint8_t *) buf, (const uint8_t *) buf + ret, false };
  const char *bad = NULL;
  uint32_t n = 0, i;
  int rc = 0;
  const uint8_t *end = dec_start (&d, 1, 1);       /* chunk_refs_t */
  uint8_t type = dec_le (&d, 1);
  if (!d.bad && type != 1) {
    free (buf);
    errno = ENOTSUP;
    cas_error ("remote rados:%s: %s: refs: cls_cas keeps them in encoding type %u, "
               "without holder names", r->pool, name, type);
    return -1;
  }
  const uint8_t *set_end = dec_start (&d, 1, 1);   /* chunk_refs_by_object_t */
  n = dec_le (&d, 4);
  if (!d.bad && (set_end > end || n > (uint64_t) (set_end - d.p) / 6))
    d.bad = true;
  for (i = 0; i < n && !d.bad && rc == 0; i++) {
    uint32_t klen, olen, nslen;
    const uint8_t *hend = dec_start (&d, 4, 4);    /* hobject_t: v4 has the pool */
    struct dec h = { d.p, hend ? hend : d.p, d.bad };
    dec_str (&h, &klen);
    const uint8_t *oid = dec_str (&h, &olen);
    dec_le (&h, 8);              /* snap */
    dec_le (&h, 4);              /* hash */
    dec_le (&h, 1);              /* max */
    dec_str (&h, &nslen);
    dec_le (&h, 8);              /* pool */
    if (h.bad || hend > set_end) {
      d.bad = true;
      break;
    }
    if (olen > CAS_RADOS_HOLDER_MAX || memchr (oid, 0, olen)) {
      bad = "a holder name too long or with a NUL";
      break;
    }
    memcpy (holder, oid, olen);
    holder[olen] = '\0';
    d.p = hend;                  /* skip fields of later versions */
    if (fn)
      rc = fn (arg, holder);
  }
  free (buf);
  if (d.bad || bad) {
    errno = EUCLEAN;
    cas_error ("remote rados:%s: %s: refs: cannot decode %s: %s", r->pool, name,
               CHUNK_REFS_ATTR, bad ? bad : "truncated or unknown version");
    return -1;
  }
  if (count && rc == 0)
    *count = n;
  return rc;
}

/* ---- Batches ---- */

struct batch_entry {
  bool busy;
  rados_completion_t c;
  struct put_ref_op p;
  bool *created;
  char name[CAS_RADOS_NAME_LEN + 1];
  char holder[CAS_RADOS_HOLDER_MAX + 1];
};

struct cas_rados_batch {
  struct cas_rados *r;
  unsigned max, next;           /* entries; the next slot, round robin: the oldest */
  unsigned failed;
  int first_errno;
  struct batch_entry *e;
};

struct cas_rados_batch *
cas_rados_batch_new (struct cas_rados *r, unsigned max_in_flight)
{
  struct cas_rados_batch *b = calloc (1, sizeof *b);
  if (b) {
    b->r = r;
    b->max = max_in_flight ? max_in_flight : 64;
    b->e = calloc (b->max, sizeof *b->e);
  }
  if (!b || !b->e) {
    free (b);
    errno = ENOMEM;
    cas_error ("remote rados:%s: batch: %m", r->pool);
    return NULL;
  }
  return b;
}

/* Wait for entry E's op and record its outcome. */
static void
batch_complete (struct cas_rados_batch *b, struct batch_entry *e)
{
  rados_aio_wait_for_complete (e->c);
  int ret = rados_aio_get_return_value (e->c);
  rados_aio_release (e->c);
  rados_release_write_op (e->p.op);
  e->busy = false;
  if (put_ref_result (b->r, e->name, e->holder, &e->p, ret, e->created) == -1) {
    if (b->failed++ == 0)
      b->first_errno = errno;
  }
}

int
cas_rados_batch_put_ref (struct cas_rados_batch *b, const uint8_t sha[32], const char *holder,
                         const void *frame, uint32_t len, bool *created)
{
  struct batch_entry *e = &b->e[b->next];
  struct cas_rados *r = b->r;

  if (e->busy)                  /* the oldest op: wait for it to free its slot */
    batch_complete (b, e);
  cas_rados_block_name (sha, e->name);
  if (put_ref_prepare (r, e->name, holder, frame, len, &e->p) == -1)
    return -1;
  snprintf (e->holder, sizeof e->holder, "%s", holder);
  e->created = created;
  e->c = NULL;
  int ret = rados_aio_create_completion2 (NULL, NULL, &e->c);
  if (ret == 0)
    ret = rados_aio_write_op_operate (e->p.op, r->io, e->c, e->name, NULL, WRITE_FLAGS);
  if (ret < 0) {
    if (e->c)
      rados_aio_release (e->c);
    rados_release_write_op (e->p.op);
    e->c = NULL;
    return fail (r, e->name, "put_ref: submit", ret);
  }
  e->busy = true;
  b->next = (b->next + 1) % b->max;
  return 0;
}

int
cas_rados_batch_wait (struct cas_rados_batch *b, unsigned *failed)
{
  /* Oldest first: from the next slot round. */
  for (unsigned k = 0; k < b->max; k++) {
    struct batch_entry *e = &b->e[(b->next + k) % b->max];
    if (e->busy)
      batch_complete (b, e);
  }
  unsigned n = b->failed;
  int err = b->first_errno;
  b->failed = 0;
  b->first_errno = 0;
  if (failed)
    *failed = n;
  if (n == 0)
    return 0;
  errno = err;
  return -1;
}

void
cas_rados_batch_free (struct cas_rados_batch *b)
{
  if (!b)
    return;
  cas_rados_batch_wait (b, NULL);
  free (b->e);
  free (b);
}
