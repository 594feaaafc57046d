/* The fixture shared by the store-level unit tests (ckpt, check, journal):
 * a scratch store per test, captured engine errors and check reports,
 * helpers that assert on every call, and a way to "crash" a store by
 * running code in a child that exits without closing it.
 *
 * Each test file calls fixture_setup ("NAME") from its suite's .init and
 * uses fixture_teardown as .fini.
 */
#ifndef CASDISK_TEST_FIXTURE_H
#define CASDISK_TEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/stat.h>
#include <ftw.h>

#include "casdisk.h"

#define BS 4096

#define CHILD_CHECK(x) \
  do { if (!(x)) { fprintf (stderr, "child: line %d: %s\n%s", __LINE__, #x, errors); \
                   return 1; } } while (0)

extern char dir[256];
extern char store[300];
extern char errors[16384];
extern pthread_mutex_t errors_lock;
extern char reports[16384];

void capture (bool error, const char *msg);
void fixture_setup (const char *name);
int rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw);
void fixture_teardown (void);
void fill_random (uint8_t *p, size_t len, uint64_t seed);
void fill_text (uint8_t *p, size_t len, unsigned seed);
void create (int level, uint64_t size);
void create_sha256_keys (int level, uint64_t size);   /* a version 3 store */
struct cas_store * open_rw (void);
struct cas_disk * disk0 (struct cas_store *s);
void write_ok (struct cas_disk *d, const void *buf, uint32_t count, uint64_t off);
void read_expect (struct cas_disk *d, const void *want, uint32_t count, uint64_t off);
void read_zero (struct cas_disk *d, uint32_t count, uint64_t off);
void close_ok (struct cas_store *s);
void report (void *opaque, const char *problem);
int check (void);
void check_clean (void);
void in_crashing_child (int (*fn) (void));
void path_of (const char *name, char *buf, size_t len);
uint64_t journal_gen (int *count);
void journal_path (char *buf, size_t len);
uint8_t * slurp (const char *path, size_t *len);
void spit (const char *path, const void *buf, size_t len);

#endif
