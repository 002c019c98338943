// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the state-file parser: a parsed state has every required field, and writing it
 * back and parsing again gives the same state. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mount/mount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mount_state a = { 0 }, b = { 0 };
	char *text = NULL;

	if (mount_state_from_json((const char *)data, size, &a) < 0)
		return 0;
	if (!a.mountpoint || !a.source || !a.socket)
		abort();
	if (mount_state_to_json(&a, &text) < 0)
		abort();
	if (mount_state_from_json(text, strlen(text), &b) < 0)
		abort();
	if (a.mnt_id != b.mnt_id || a.pid != b.pid || a.size != b.size ||
	    !same(a.mountpoint, b.mountpoint) || !same(a.source, b.source) ||
	    !same(a.digest, b.digest) || !same(a.cache, b.cache) || !same(a.socket, b.socket) ||
	    !same(a.options, b.options))
		abort();
	free(text);
	mount_state_done(&a);
	mount_state_done(&b);
	return 0;
}
