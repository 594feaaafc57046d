/* File I/O at the engine's boundary with the backing storage.  Every read
 * and write of a store file goes through here: full transfers (short reads
 * and EINTR handled), errors logged with the file's role and offset.
 */
#ifndef CAS_IO_H
#define CAS_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Read exactly LEN bytes at OFF.  A read past end of file is an error
 * (EIO: the file is truncated).  WHAT names the file in messages.
 */
int cas_pread_full (int fd, void *buf, size_t len, uint64_t off, const char *what)
  __attribute__((nonnull));
/* The same into several buffers, from one file range starting at OFF. */
struct iovec;
int cas_preadv_full (int fd, const struct iovec *iov, int iovcnt, uint64_t off, const char *what)
  __attribute__((nonnull));
int cas_pwrite_full (int fd, const void *buf, size_t len, uint64_t off, const char *what)
  __attribute__((nonnull));
int cas_fdatasync (int fd, const char *what) __attribute__((nonnull));
int cas_fsync_dir (const char *dir) __attribute__((nonnull));
/* Deallocate [off, off+len) (reads as zeroes afterwards). */
int cas_punch_hole (int fd, uint64_t off, uint64_t len, const char *what)
  __attribute__((nonnull));
/* Read a whole (small) file into a malloc'd buffer. */
int cas_read_file (const char *path, void **buf, size_t *len) __attribute__((nonnull));
/* Write a file atomically: DIR/NAME.tmp, fsync, rename over DIR/NAME, fsync DIR. */
int cas_write_file_atomic (const char *dir, const char *name, const void *buf, size_t len)
  __attribute__((nonnull));
/* Create PATH (truncating it), open read-write. */
int cas_create_file (const char *path, int *fd) __attribute__((nonnull));
int cas_ftruncate (int fd, uint64_t size, const char *what) __attribute__((nonnull));
/* Unlink PATH; a missing file is not an error. */
int cas_unlink (const char *path) __attribute__((nonnull));
/* Name what the calling thread's next store-file operations are for
 * (NULL: nothing in particular), in the I/O log of the crash harness, so
 * that it can tell which step of the background work a crash point falls
 * in.  Free when the log is off.
 */
void cas_io_context (const char *label);
/* For transfers done outside this file (dio.c, with libaio): what
 * cas_pwrite_full and cas_pread_full do before the transfer.  Log a write
 * of LEN bytes of BUF at OFF in the I/O log, and inject the faults of
 * CASDISK_FAULT: -1 with errno set (EIO or ENOSPC; the error logged, the
 * write not in the I/O log) if this one must fail.
 */
int cas_io_before_write (int fd, const void *buf, size_t len, uint64_t off, const char *what)
  __attribute__((nonnull));
int cas_io_before_read (int fd, uint64_t off, const char *what) __attribute__((nonnull));
/* Allocated bytes (st_blocks * 512) and apparent size of PATH; 0 if missing. */
int cas_file_usage (const char *path, uint64_t *allocated, uint64_t *apparent)
  __attribute__((nonnull));


/* Fault injection (CASDISK_FAULT, see the comment at the top of io.c). */
enum cas_fault_op {
  CAS_FAULT_NONE, CAS_FAULT_READ, CAS_FAULT_WRITE, CAS_FAULT_SYNC, CAS_FAULT_TRUNCATE,
  CAS_FAULT_PUNCH, CAS_FAULT_CREATE, CAS_FAULT_RENAME, CAS_FAULT_UNLINK, CAS_FAULT_DIRSYNC,
};
enum cas_fault_when { CAS_FAULT_EVERY, CAS_FAULT_ONCE, CAS_FAULT_STICKY };
#define CAS_FAULT_MAX 8
struct cas_fault {
  enum cas_fault_op op;
  char file[64];                /* prefix of the base name; "" = every file */
  unsigned long n;              /* >= 1 */
  int err;                      /* EIO or ENOSPC */
  enum cas_fault_when when;
};
/* Parse SPEC (SPEC[,SPEC...]) into at most MAX faults: their number, or
 * -1 (EINVAL) if it does not parse.  Exposed for the unit tests.
 */
int cas_fault_parse (const char *spec, struct cas_fault *out, size_t max)
  __attribute__((nonnull));
/* Does the CALL-th matching call (from 1) of F fail? */
bool cas_fault_hit (const struct cas_fault *f, unsigned long call) __attribute__((nonnull));
/* How many failures CASDISK_FAULT has injected in this process. */
unsigned long cas_fault_count (void);

#endif
