// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the fanotify event-buffer parser: never reads past the buffer (ASan), never returns
 * more events than asked, and every event it returns came from a whole metadata record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/fanotify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_event ev[8];
	uint8_t *copy;
	bool bad;
	size_t n;

	/* An exact-size heap copy so ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	n = fetch_events_parse(copy, size, ev, 8, &bad);
	if (n > 8 || n * sizeof(struct fanotify_event_metadata) > size)
		abort();
	free(copy);
	return 0;
}
