/* zstd with per-thread contexts.  nbdkit's worker threads call us
 * concurrently; a ZSTD_CCtx is not thread-safe, and creating one per call
 * costs more than compressing a 64 KiB block, so each thread keeps its own,
 * released by a thread-key destructor.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>

#include <stdlib.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "util/compress.h"
#include "util/log.h"

struct ctxs {
  ZSTD_CCtx *c;
  ZSTD_DCtx *d;
};

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void
free_ctxs (void *p)
{
  struct ctxs *x = p;

  ZSTD_freeCCtx (x->c);
  ZSTD_freeDCtx (x->d);
  free (x);
}

static void
make_key (void)
{
  pthread_key_create (&key, free_ctxs);
}

static struct ctxs *
get_ctxs (void)
{
  struct ctxs *x;

  pthread_once (&key_once, make_key);
  x = pthread_getspecific (key);
  if (x == NULL) {
    x = calloc (1, sizeof *x);
    if (x == NULL)
      return NULL;
    x->c = ZSTD_createCCtx ();
    x->d = ZSTD_createDCtx ();
    if (x->c == NULL || x->d == NULL || pthread_setspecific (key, x) != 0) {
      free_ctxs (x);
      errno = ENOMEM;
      return NULL;
    }
  }
  return x;
}

long
cas_compress (void *dst, size_t cap, const void *src, size_t len, int level)
{
  struct ctxs *x = get_ctxs ();
  size_t r;

  if (x == NULL) {
    cas_error ("zstd: cannot allocate a context: %m");
    return -1;
  }
  r = ZSTD_compressCCtx (x->c, dst, cap, src, len, level);
  if (ZSTD_isError (r)) {
    if (ZSTD_getErrorCode (r) == ZSTD_error_dstSize_tooSmall)
      return 0;                 /* incompressible: the caller stores it raw */
    cas_error ("zstd compress: %s", ZSTD_getErrorName (r));
    errno = EIO;
    return -1;
  }
  return (long) r;
}

int
cas_decompress (void *dst, size_t out_len, const void *src, size_t len)
{
  struct ctxs *x = get_ctxs ();
  size_t r;

  if (x == NULL) {
    cas_error ("zstd: cannot allocate a context: %m");
    return -1;
  }
  r = ZSTD_decompressDCtx (x->d, dst, out_len, src, len);
  if (ZSTD_isError (r) || r != out_len) {
    cas_error ("zstd decompress: %s",
               ZSTD_isError (r) ? ZSTD_getErrorName (r) : "wrong length");
    errno = EIO;
    return -1;
  }
  return 0;
}
