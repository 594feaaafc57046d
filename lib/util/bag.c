/* A multiset of block pointers: see bag.h. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "util/bag.h"

static size_t
slot (const struct cas_bag *g, const struct cas_block *b)
{
  size_t j = ((uintptr_t) b >> 4) * UINT64_C(0x9e3779b97f4a7c15) & g->mask;

  while (g->v[j].b && g->v[j].b != b)
    j = (j + 1) & g->mask;
  return j;
}

int
cas_bag_add (struct cas_bag *g, const struct cas_block *b)
{
  /* Keep the table at most half full. */
  if ((g->n + 1) * 2 > g->mask + 1) {
    struct cas_bag big = { .mask = g->mask ? 2 * g->mask + 1 : 1023 };
    big.v = calloc (big.mask + 1, sizeof *big.v);
    if (big.v == NULL) {
      errno = ENOMEM;
      return -1;
    }
    for (size_t i = 0; g->v && i <= g->mask; i++)
      if (g->v[i].b)
        big.v[slot (&big, g->v[i].b)] = g->v[i];
    big.n = g->n;
    free (g->v);
    *g = big;
  }
  const size_t j = slot (g, b);
  if (g->v[j].b == NULL) {
    g->v[j].b = b;
    g->n++;
  }
  g->v[j].n++;
  return 0;
}

uint32_t
cas_bag_count (const struct cas_bag *g, const struct cas_block *b)
{
  if (g->v == NULL)
    return 0;
  const size_t j = slot (g, b);
  return g->v[j].b ? g->v[j].n : 0;
}

void
cas_bag_free (struct cas_bag *g)
{
  free (g->v);
  *g = (struct cas_bag) { 0 };
}
