// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Table-driven crc32c (Castagnoli, reflected polynomial 0x82F63B78), computed the way the
 * kernel's crc32c() does: the caller passes the seed and no final inversion is applied. */
#include <pthread.h>

#include "erofs/internal.h"

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
}

uint32_t erofs_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&table_once, table_init);
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}
