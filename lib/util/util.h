/* Small helpers shared by the engine modules. */
#ifndef CAS_UTIL_H
#define CAS_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

/* Little-endian field access for on-disk structures. */
static inline void put_le16 (void *p, uint16_t v) { uint8_t *b = p; b[0] = v; b[1] = v >> 8; }
static inline void put_le32 (void *p, uint32_t v) { uint8_t *b = p; for (int i = 0; i < 4; i++) b[i] = v >> (8 * i); }
static inline void put_le64 (void *p, uint64_t v) { uint8_t *b = p; for (int i = 0; i < 8; i++) b[i] = v >> (8 * i); }
static inline uint16_t get_le16 (const void *p) { const uint8_t *b = p; return b[0] | (uint16_t) b[1] << 8; }
static inline uint32_t get_le32 (const void *p)
{ const uint8_t *b = p; uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | b[i]; return v; }
static inline uint64_t get_le64 (const void *p)
{ const uint8_t *b = p; uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | b[i]; return v; }

static inline uint64_t round_up (uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }
static inline int is_power_of_2 (uint64_t v) { return v && !(v & (v - 1)); }

/* Scoped cleanup: no error path forgets an unlock or a free. */
static inline void cleanup_free (void *p) { free (*(void **) p); }
#define CLEANUP_FREE __attribute__((cleanup (cleanup_free)))
static inline void cleanup_unlock (pthread_mutex_t **m) { if (*m) pthread_mutex_unlock (*m); }
#define SCOPED_LOCK(name, mutex) \
  pthread_mutex_t *name __attribute__((cleanup (cleanup_unlock))) = (mutex); \
  pthread_mutex_lock (name)

/* Seconds since an arbitrary point (CLOCK_MONOTONIC). */
uint64_t cas_now (void);
/* Monotonic nanoseconds. */
uint64_t cas_now_ns (void);

/* True if the LEN bytes at P are all zero. */
int cas_is_zero (const void *p, size_t len);

#endif
