/* Direct I/O on the data file with libaio (direct-io=true).
 *
 * Why: the guest has its own page cache; reading and writing the data
 * file through the host's page cache keeps a second copy of the same
 * data.  With O_DIRECT the transfers go between the device and casdisk's
 * buffers.  Why libaio: a request that covers several blocks submits all
 * of their transfers with one io_submit and waits for all of them, so the
 * device works on them together instead of one pread after another
 * (docs/performance.md has the numbers).
 *
 * The pool.  An io context is a kernel queue with its own completion
 * ring; a batch must collect its own completions, so a context serves one
 * batch at a time.  The pool has DIO_CONTEXTS of them, each guarded by its
 * mutex from the first io_submit of a batch to its last completion.  A
 * thread tries the contexts without waiting, starting at its own (threads
 * are spread round-robin), and waits for its own only when every one is
 * busy.  The mutexes are leaves: nothing else is taken while one is held,
 * and callers may hold any lock of the store (and be inside an RCU
 * read-side section) when they call in.
 *
 * Contexts are set up on first use, not at open: nbdkit opens the store
 * before it forks to become a daemon, and a child cannot use its parent's
 * io contexts.  Each context remembers the process that set it up and is
 * set up again in a new one.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libaio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "storage/dio.h"
#include "storage/io.h"
#include "util/log.h"
#include "util/util.h"

#define DIO_CONTEXTS 8          /* io contexts in the pool */
#define DIO_DEPTH    64         /* transfers in flight per context (bigger batches: rounds) */
#define DIO_BUF_ALIGN 4096u     /* buffers: enough for any file system we accept */
#define DIO_UNKNOWN_ALIGN 4096u /* assumed when the file system does not say */

struct dio_ctx {
  pthread_mutex_t lock;         /* one batch at a time: guards everything below */
  pid_t pid;                    /* the process that set up ctx; 0 = not yet */
  io_context_t ctx;
  struct iocb iocbs[DIO_DEPTH];
  struct iocb *ptrs[DIO_DEPTH];
  struct io_event events[DIO_DEPTH];
};

struct cas_dio {
  int fd;                       /* the data file, O_DIRECT */
  uint32_t align;               /* offset and length alignment, <= CAS_GRANULE */
  unsigned next_slot;           /* atomic: hands threads their first context */
  struct dio_ctx ctx[DIO_CONTEXTS];
};

static __thread unsigned thread_slot;   /* 1 + this thread's context; 0 = none yet */

/* The file system's required alignment of offsets for direct I/O of
 * PATH, DIO_UNKNOWN_ALIGN if it does not say.
 */
static uint32_t
fs_align (const char *path, uint32_t *mem_align)
{
  *mem_align = 0;
#ifdef STATX_DIOALIGN
  struct statx stx;
  if (statx (AT_FDCWD, path, 0, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0) {
    *mem_align = stx.stx_dio_mem_align;
    return stx.stx_dio_offset_align;
  }
#else
  (void) path;
#endif
  return DIO_UNKNOWN_ALIGN;
}

int
cas_dio_open (const char *path, bool readonly, struct cas_dio **out)
{
  uint32_t mem_align;
  const uint32_t align = fs_align (path, &mem_align);
  struct cas_dio *dio;

  if (align > CAS_GRANULE || (align & (align - 1)) || mem_align > DIO_BUF_ALIGN) {
    errno = EINVAL;
    if (align == DIO_UNKNOWN_ALIGN && mem_align == 0)
      cas_error ("direct-io: the file system of %s does not report its direct I/O alignment "
                 "(statx STATX_DIOALIGN), taken as %u bytes, more than the data file's "
                 "%u-byte granule; direct I/O cannot be used there", path, align, CAS_GRANULE);
    else
      cas_error ("direct-io: the file system of %s wants direct I/O aligned to %u bytes "
                 "(buffers to %u), more than the data file's %u-byte granule allows; "
                 "direct I/O cannot be used there", path, align, mem_align, CAS_GRANULE);
    return -1;
  }
  dio = calloc (1, sizeof *dio);
  if (dio == NULL) {
    cas_error ("direct-io: %m");
    return -1;
  }
  dio->align = align;
  dio->fd = open (path, (readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
  if (dio->fd == -1) {
    if (errno == EINVAL)
      cas_error ("direct-io: the file system of %s refuses O_DIRECT", path);
    else
      cas_error ("direct-io: open %s: %m", path);
    free (dio);
    return -1;
  }
  /* Some file systems accept the flag at open and refuse the transfers. */
  {
    CLEANUP_FREE void *probe = cas_dio_alloc (CAS_GRANULE);
    if (probe == NULL || pread (dio->fd, probe, CAS_GRANULE, 0) == -1) {
      const int saved = errno;
      if (probe)
        cas_error ("direct-io: a direct read of %s failed: %m", path);
      close (dio->fd);
      free (dio);
      errno = saved;
      return -1;
    }
  }
  for (int i = 0; i < DIO_CONTEXTS; i++)
    pthread_mutex_init (&dio->ctx[i].lock, NULL);
  cas_debug ("direct-io: %s, alignment %u bytes, %d io contexts of %d", path, align,
             DIO_CONTEXTS, DIO_DEPTH);
  *out = dio;
  return 0;
}

void
cas_dio_close (struct cas_dio *dio)
{
  if (dio == NULL)
    return;
  for (int i = 0; i < DIO_CONTEXTS; i++) {
    if (dio->ctx[i].pid == getpid ())
      io_destroy (dio->ctx[i].ctx);
    pthread_mutex_destroy (&dio->ctx[i].lock);
  }
  close (dio->fd);
  free (dio);
}

uint32_t
cas_dio_align (const struct cas_dio *dio)
{
  return dio->align;
}

int
cas_dio_fd (const struct cas_dio *dio)
{
  return dio->fd;
}

void *
cas_dio_alloc (size_t len)
{
  void *p;
  const size_t n = round_up (len > 0 ? len : 1, DIO_BUF_ALIGN);
  const int r = posix_memalign (&p, DIO_BUF_ALIGN, n);

  if (r != 0) {
    errno = r;
    cas_error ("direct-io buffer of %zu bytes: %m", n);
    return NULL;
  }
  return p;
}

/* A context of the pool, locked; set up in this process.  NULL on error. */
static struct dio_ctx *
take_ctx (struct cas_dio *dio)
{
  if (thread_slot == 0)
    thread_slot = 1 + __atomic_fetch_add (&dio->next_slot, 1, __ATOMIC_RELAXED) % DIO_CONTEXTS;
  const unsigned mine = thread_slot - 1;
  struct dio_ctx *c = NULL;

  for (unsigned i = 0; i < DIO_CONTEXTS && c == NULL; i++)
    if (pthread_mutex_trylock (&dio->ctx[(mine + i) % DIO_CONTEXTS].lock) == 0)
      c = &dio->ctx[(mine + i) % DIO_CONTEXTS];
  if (c == NULL) {
    c = &dio->ctx[mine];
    pthread_mutex_lock (&c->lock);
  }
  const pid_t pid = getpid ();
  if (c->pid != pid) {
    /* First use, or the first in a forked child (the parent's context is
     * not ours to destroy).
     */
    memset (&c->ctx, 0, sizeof c->ctx);
    const int r = io_setup (DIO_DEPTH, &c->ctx);
    if (r < 0) {
      errno = -r;
      cas_error ("direct-io: io_setup: %m");
      pthread_mutex_unlock (&c->lock);
      return NULL;
    }
    c->pid = pid;
  }
  return c;
}

/* Submit OPS[0..n) (n <= DIO_DEPTH) on C and wait for every one that was
 * submitted.  C locked.
 */
static int
run_batch (struct cas_dio *dio, struct dio_ctx *c, const struct cas_dio_op *ops, unsigned n,
           bool write, const char *what)
{
  unsigned submitted = 0, done = 0;
  int err = 0;
  uint64_t err_off = 0;
  const char *err_why = NULL;

  for (unsigned i = 0; i < n; i++) {
    const size_t len = round_up (ops[i].len, dio->align);
    assert (ops[i].off % CAS_GRANULE == 0 && (uintptr_t) ops[i].buf % DIO_BUF_ALIGN == 0);
    if (write) {
      if (cas_io_before_write (dio->fd, ops[i].buf, len, ops[i].off, what) == -1)
        return -1;
      io_prep_pwrite (&c->iocbs[i], dio->fd, ops[i].buf, len, ops[i].off);
    }
    else {
      if (cas_io_before_read (dio->fd, ops[i].off, what) == -1)
        return -1;
      io_prep_pread (&c->iocbs[i], dio->fd, ops[i].buf, len, ops[i].off);
    }
    c->iocbs[i].data = (void *) &ops[i];
    c->ptrs[i] = &c->iocbs[i];
  }
  while (submitted < n) {
    const int r = io_submit (c->ctx, n - submitted, c->ptrs + submitted);
    if (r > 0) {
      submitted += r;
      continue;
    }
    if (r == -EINTR)
      continue;
    if ((r == -EAGAIN || r == 0) && done < submitted) {
      /* The queue is full: let some finish (collected below). */
      struct io_event *ev = c->events;
      const int got = io_getevents (c->ctx, 1, DIO_DEPTH, ev, NULL);
      for (int k = 0; k < got; k++) {
        const struct cas_dio_op *op = ev[k].data;
        const long res = (long) ev[k].res;
        if (err == 0 && (res < 0 || (size_t) res < op->len)) {
          err = res < 0 ? (int) -res : EIO;
          err_off = op->off;
          err_why = res < 0 ? NULL : "short transfer: the file is truncated";
        }
      }
      if (got > 0)
        done += got;
      continue;
    }
    err = r < 0 ? -r : EAGAIN;
    err_off = ops[submitted].off;
    err_why = NULL;
    break;
  }
  /* Every submitted transfer must end before its buffer is given back. */
  while (done < submitted) {
    const int got = io_getevents (c->ctx, submitted - done, submitted - done, c->events, NULL);
    if (got == -EINTR)
      continue;
    if (got < 0) {
      /* Cannot happen with a valid context; waiting again is all we can do. */
      cas_error ("direct-io: io_getevents: %s", strerror (-got));
      continue;
    }
    for (int k = 0; k < got; k++) {
      const struct cas_dio_op *op = c->events[k].data;
      const long res = (long) c->events[k].res;
      if (err == 0 && (res < 0 || (size_t) res < op->len)) {
        err = res < 0 ? (int) -res : EIO;
        err_off = op->off;
        err_why = res < 0 ? NULL : "short transfer: the file is truncated";
      }
    }
    done += got;
  }
  if (err) {
    errno = err;
    if (err_why)
      cas_error ("%s %s at offset %" PRIu64 ": %s", write ? "write" : "read", what, err_off,
                 err_why);
    else
      cas_error ("%s %s at offset %" PRIu64 ": %m", write ? "write" : "read", what, err_off);
    errno = err;
    return -1;
  }
  return 0;
}

static int
transfer (struct cas_dio *dio, const struct cas_dio_op *ops, unsigned n, bool write,
          const char *what)
{
  for (unsigned i = 0; i < n; i += DIO_DEPTH) {
    struct dio_ctx *c = take_ctx (dio);
    if (c == NULL)
      return -1;
    const int r = run_batch (dio, c, ops + i, n - i < DIO_DEPTH ? n - i : DIO_DEPTH, write, what);
    pthread_mutex_unlock (&c->lock);
    if (r == -1)
      return -1;
  }
  return 0;
}

int
cas_dio_read (struct cas_dio *dio, const struct cas_dio_op *ops, unsigned n, const char *what)
{
  return transfer (dio, ops, n, false, what);
}

int
cas_dio_write (struct cas_dio *dio, const struct cas_dio_op *ops, unsigned n, const char *what)
{
  return transfer (dio, ops, n, true, what);
}
