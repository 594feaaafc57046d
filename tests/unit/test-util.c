/* Unit tests for util.c (size parsing, clocks, zero detection) and the
 * inline helpers of util.h (little-endian access, rounding, scoped locks).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "casdisk.h"
#include "util/util.h"

/* ---- cas_parse_size ---- */

static uint64_t
parse_ok (const char *str)
{
  uint64_t v = UINT64_C(0xdeadbeef);

  errno = 0;
  cr_assert_eq (cas_parse_size (str, &v), 0, "cas_parse_size (\"%s\") failed: errno %d",
                str, errno);
  return v;
}

static void
parse_bad (const char *str)
{
  uint64_t v = UINT64_C(0xdeadbeef);

  errno = 0;
  cr_assert_eq (cas_parse_size (str, &v), -1, "cas_parse_size (\"%s\") accepted it: %" PRIu64,
                str, v);
  cr_assert_eq (errno, EINVAL, "cas_parse_size (\"%s\"): errno %d (%s), expected EINVAL",
                str, errno, strerror (errno));
  cr_assert_eq (v, UINT64_C(0xdeadbeef), "cas_parse_size (\"%s\") wrote *out on failure", str);
}

Test (parse_size, plain_numbers)
{
  cr_assert_eq (parse_ok ("0"), 0);
  cr_assert_eq (parse_ok ("1"), 1);
  cr_assert_eq (parse_ok ("4096"), 4096);
  cr_assert_eq (parse_ok ("0004096"), 4096);
  cr_assert_eq (parse_ok ("18446744073709551615"), UINT64_MAX);
}

Test (parse_size, binary_units)
{
  cr_assert_eq (parse_ok ("512K"), 512 * UINT64_C(1024));
  cr_assert_eq (parse_ok ("512k"), 512 * UINT64_C(1024));
  cr_assert_eq (parse_ok ("10G"), 10 * (UINT64_C(1) << 30));
  cr_assert_eq (parse_ok ("3M"), 3 * (UINT64_C(1) << 20));
  cr_assert_eq (parse_ok ("2T"), 2 * (UINT64_C(1) << 40));
  cr_assert_eq (parse_ok ("1P"), UINT64_C(1) << 50);
  cr_assert_eq (parse_ok ("16383P"), 16383 * (UINT64_C(1) << 50));
  cr_assert_eq (parse_ok ("100B"), 100);
  cr_assert_eq (parse_ok ("0G"), 0);
}

Test (parse_size, unit_spellings)
{
  cr_assert_eq (parse_ok ("1KiB"), 1024);
  cr_assert_eq (parse_ok ("1kib"), 1024);
  cr_assert_eq (parse_ok ("1KB"), 1024);
  cr_assert_eq (parse_ok ("1kb"), 1024);
  cr_assert_eq (parse_ok ("64MiB"), 64 * (UINT64_C(1) << 20));
  cr_assert_eq (parse_ok ("4GiB"), UINT64_C(4) << 30);
}

Test (parse_size, bad_syntax)
{
  parse_bad ("");
  parse_bad ("abc");
  parse_bad ("10X");
  parse_bad ("K");
  parse_bad ("-1");
  parse_bad ("+1");
  parse_bad (" 1");
  parse_bad ("1 ");
  parse_bad ("10 G");
  parse_bad ("1.5G");
  parse_bad ("1KBB");
  parse_bad ("1KiBx");
  parse_bad ("1Bi");            /* no "i" after a plain byte count */
  parse_bad ("1E");             /* exbibytes are not supported */
  parse_bad ("0x10");
}

Test (parse_size, overflow)
{
  /* One more than UINT64_MAX, in the digits and through the multiplier:
   * the header promises -1 + EINVAL.
   */
  parse_bad ("18446744073709551616");
  parse_bad ("99999999999999999999999");
  parse_bad ("16384P");
  parse_bad ("17179869184G");
  parse_bad ("18446744073709551615K");
}

/* ---- cas_is_zero ---- */

Test (is_zero, empty_and_all_zero)
{
  uint8_t *buf = calloc (1, 65536 + 64);

  cr_assert_not_null (buf);
  cr_assert (cas_is_zero (buf, 0));
  cr_assert (cas_is_zero (buf, 1));
  cr_assert (cas_is_zero (buf, 16));
  cr_assert (cas_is_zero (buf, 17));
  cr_assert (cas_is_zero (buf, 65536));
  cr_assert (cas_is_zero (buf + 3, 65536 - 3));   /* unaligned */
  free (buf);
}

Test (is_zero, one_set_byte_anywhere)
{
  /* Every length up to 80 bytes with a single non-zero byte at every
   * position, at several alignments: covers the 16-byte head and the
   * shifted compare of the tail.
   */
  uint8_t buf[96 + 8];

  for (size_t align = 0; align < 4; align++)
    for (size_t len = 1; len <= 80; len++)
      for (size_t pos = 0; pos < len; pos++) {
        memset (buf, 0, sizeof buf);
        buf[align + pos] = 0x80;
        cr_assert_not (cas_is_zero (buf + align, len),
                       "len %zu: the byte at %zu is set but reported zero", len, pos);
        /* The set byte just past the end must not matter. */
        if (pos == len - 1 && len > 1)
          cr_assert (cas_is_zero (buf + align, len - 1), "len %zu", len - 1);
      }
}

Test (is_zero, last_byte_of_a_big_block)
{
  const size_t len = 65536;
  uint8_t *buf = calloc (1, len);

  cr_assert_not_null (buf);
  buf[len - 1] = 1;
  cr_assert_not (cas_is_zero (buf, len));
  buf[len - 1] = 0;
  buf[len / 2] = 0xff;
  cr_assert_not (cas_is_zero (buf, len));
  cr_assert (cas_is_zero (buf, len / 2));
  free (buf);
}

/* ---- clocks ---- */

Test (clock, monotonic_and_consistent)
{
  const uint64_t a = cas_now_ns ();
  const struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };

  nanosleep (&ts, NULL);
  const uint64_t b = cas_now_ns ();
  cr_assert_geq (b - a, UINT64_C(20) * 1000 * 1000, "slept 20 ms, clock moved %" PRIu64 " ns",
                 b - a);
  cr_assert_lt (b - a, UINT64_C(5) * 1000 * 1000 * 1000);
  const uint64_t s = cas_now ();
  cr_assert_geq (s, b / 1000000000);
  cr_assert_leq (s, cas_now_ns () / 1000000000);
}

/* ---- util.h inline helpers ---- */

Test (util_h, little_endian_round_trip)
{
  uint8_t b[8];

  put_le16 (b, 0x1234);
  cr_assert_eq (b[0], 0x34);
  cr_assert_eq (b[1], 0x12);
  cr_assert_eq (get_le16 (b), 0x1234);
  put_le32 (b, 0x89abcdefu);
  cr_assert_eq (b[0], 0xef);
  cr_assert_eq (b[3], 0x89);
  cr_assert_eq (get_le32 (b), 0x89abcdefu);
  put_le64 (b, UINT64_C(0x0123456789abcdef));
  cr_assert_eq (b[0], 0xef);
  cr_assert_eq (b[7], 0x01);
  cr_assert_eq (get_le64 (b), UINT64_C(0x0123456789abcdef));
  put_le64 (b, UINT64_MAX);
  cr_assert_eq (get_le64 (b), UINT64_MAX);
  cr_assert_eq (get_le32 (b), UINT32_MAX);
}

Test (util_h, rounding_and_powers)
{
  cr_assert_eq (round_up (0, 512), 0);
  cr_assert_eq (round_up (1, 512), 512);
  cr_assert_eq (round_up (512, 512), 512);
  cr_assert_eq (round_up (513, 512), 1024);
  cr_assert_eq (round_up (65535, 4096), 65536);
  cr_assert_not (is_power_of_2 (0));
  cr_assert (is_power_of_2 (1));
  cr_assert (is_power_of_2 (4096));
  cr_assert (is_power_of_2 (UINT64_C(1) << 63));
  cr_assert_not (is_power_of_2 (4097));
  cr_assert_not (is_power_of_2 (3 * 4096));
}

static pthread_mutex_t scoped = PTHREAD_MUTEX_INITIALIZER;

static int
locked_then_return (void)
{
  SCOPED_LOCK (l, &scoped);
  /* Held inside the scope... */
  return pthread_mutex_trylock (&scoped);
}

Test (util_h, scoped_lock_unlocks_on_return)
{
  cr_assert_eq (locked_then_return (), EBUSY, "SCOPED_LOCK did not take the lock");
  /* ...and released when the scope ends. */
  cr_assert_eq (pthread_mutex_trylock (&scoped), 0, "SCOPED_LOCK did not release the lock");
  pthread_mutex_unlock (&scoped);
}
