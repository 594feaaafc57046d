/* CRC-32C (Castagnoli), the checksum of every metadata structure and of
 * every stored block.  Uses the SSE4.2 instruction when the CPU has it.
 */
#ifndef CAS_CRC32C_H
#define CAS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. */
uint32_t cas_crc32c (uint32_t crc, const void *buf, size_t len);

#endif
