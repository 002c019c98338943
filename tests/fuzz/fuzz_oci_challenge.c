// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz WWW-Authenticate parsing: fields always terminated, no control characters kept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *f, size_t n)
{
	size_t len = strnlen(f, n);

	if (len == n)
		abort();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)f[i] < 0x20)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_challenge c;

	if (oci_challenge_parse((const char *)data, size, &c) == 0) {
		if (c.scheme != OCI_AUTH_BASIC && c.scheme != OCI_AUTH_BEARER)
			abort();
		if (c.scheme == OCI_AUTH_BEARER && !c.realm[0])
			abort();
		check_field(c.realm, sizeof(c.realm));
		check_field(c.service, sizeof(c.service));
		check_field(c.scope, sizeof(c.scope));
		check_field(c.error, sizeof(c.error));
	}
	return 0;
}
