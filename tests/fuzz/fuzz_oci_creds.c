// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz credential files (auth.json / config.json) and credential helper replies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const regs[][2] = { { "reg.io", "team/app" },
					       { "registry-1.docker.io", "library/debian" },
					       { "127.0.0.1:5000", "a" } };
	struct oci_creds c;
	uint8_t *dec;
	size_t dl;

	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		if (oci_creds_lookup(data, size, regs[i][0], regs[i][1], &c) == 0) {
			if (!c.helper && !c.identity_token && !(c.username && c.password))
				abort();
			if (c.helper && strspn(c.helper, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(c.helper))
				abort();
			oci_creds_free(&c);
		}
	}
	if (oci_creds_helper_reply_parse(data, size, &c) == 0)
		oci_creds_free(&c);
	if (oci_base64_decode((const char *)data, size, &dec, &dl) == 0) {
		char *e = oci_base64_encode(dec, dl);

		if (!e)
			abort();
		free(e);
		free(dec);
	}
	return 0;
}
