/* Size parsing, clocks, zero detection. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <time.h>

#include "casdisk.h"
#include "util/util.h"

int
cas_parse_size (const char *str, uint64_t *out)
{
  const char *p = str;
  uint64_t v = 0, mult = 1;

  if (!isdigit ((unsigned char) *p)) {
    errno = EINVAL;
    return -1;
  }
  while (isdigit ((unsigned char) *p)) {
    const unsigned d = *p++ - '0';
    if (v > (UINT64_MAX - d) / 10) {
      errno = EINVAL;
      return -1;
    }
    v = v * 10 + d;
  }
  switch (toupper ((unsigned char) *p)) {
  case '\0': break;
  case 'B': mult = 1; p++; break;
  case 'K': mult = UINT64_C(1) << 10; p++; break;
  case 'M': mult = UINT64_C(1) << 20; p++; break;
  case 'G': mult = UINT64_C(1) << 30; p++; break;
  case 'T': mult = UINT64_C(1) << 40; p++; break;
  case 'P': mult = UINT64_C(1) << 50; p++; break;
  default: errno = EINVAL; return -1;
  }
  /* Accept "K", "KB", "KiB" and their case variants. */
  if (mult > 1) {
    if (*p == 'i' || *p == 'I') p++;
    if (*p == 'b' || *p == 'B') p++;
  }
  if (*p != '\0') {
    errno = EINVAL;
    return -1;
  }
  if (v > UINT64_MAX / mult) {
    errno = EINVAL;
    return -1;
  }
  *out = v * mult;
  return 0;
}

uint64_t
cas_now (void)
{
  return cas_now_ns () / 1000000000;
}

uint64_t
cas_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
cas_is_zero (const void *p, size_t len)
{
  const unsigned char *b = p;

  /* Check the first 16 bytes, then compare the buffer with itself shifted:
   * memcmp is vectorised, which beats a byte loop by far.
   */
  const size_t head = len < 16 ? len : 16;
  for (size_t i = 0; i < head; i++)
    if (b[i])
      return 0;
  return len <= 16 || memcmp (b, b + 16, len - 16) == 0;
}
