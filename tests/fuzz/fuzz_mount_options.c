// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz `mount -o` parsing (argv is untrusted): success leaves a read-only mount, a sane
 * timeout and an absolute cache path; failure always explains itself in one line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "mount/mount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mount_opts m;
	struct oci_options o;
	struct util_error err = UTIL_ERROR_INIT;
	char *s;
	int r;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	mount_opts_init(&m);
	oci_options_init(&o);
	/* The first byte picks the helper/sloppy flavours. */
	m.helper = size > 0 && (data[0] & 1);
	m.sloppy = size > 0 && (data[0] & 2);
	r = mount_opts_parse(s, &m, &o, &err);
	if (r == 0) {
		if (!(m.attr & MOUNT_ATTR_RDONLY))
			abort();
		if (m.timeout_ms == 0 || m.timeout_ms > 86400ULL * 1000)
			abort();
		if (m.cache_dir && m.cache_dir[0] != '/')
			abort();
	} else if (!err.message[0] || strchr(err.message, '\n')) {
		abort();
	}
	mount_opts_free(&m);
	oci_options_free(&o);
	free(s);
	return 0;
}
