// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * What a worker accepted over a control request and must outlive it (the file index's
 * encoding, the startup profile being replayed), kept in memory shared with the holder:
 * mapped before the holder forks anything, so every process of the daemon has it, and a
 * worker that replaces a crashed one takes it up again. Address space only: pages are backed
 * as far as a copy is written. A copy is marked empty while it is rewritten, so a worker
 * that dies meanwhile leaves none rather than half of one; whoever takes it up parses it as
 * untrusted input like any other.
 */
#include <string.h>

#include "fetch/internal.h"
#include "util/shared.h"

struct fetch_kept *fetch_kept_new(size_t max)
{
	struct fetch_kept *k = util_shared_alloc(sizeof(*k) + max);

	if (k)
		k->max = max;
	return k;
}

/* One writer at a time (the control requests' thread). */
void fetch_kept_put(struct fetch_kept *k, const void *buf, size_t len, const uint8_t *digest)
{
	if (!k || len > k->max)
		return;
	/* Emptied before any byte changes: the exchange's acquire keeps the copy below it (a
	 * fence would do, but ThreadSanitizer does not take fences). */
	(void)__atomic_exchange_n(&k->len, 0, __ATOMIC_ACQ_REL);
	memcpy(k->buf, buf, len);
	if (digest)
		memcpy(k->digest, digest, sizeof(k->digest));
	else
		memset(k->digest, 0, sizeof(k->digest));
	__atomic_store_n(&k->len, len, __ATOMIC_RELEASE);
}

size_t fetch_kept_len(const struct fetch_kept *k)
{
	return k ? __atomic_load_n(&k->len, __ATOMIC_ACQUIRE) : 0;
}
