// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the registry's error bodies ({"errors":[{"code","message"}]}, shown to the user): the
 * code and message are always terminated, fit their buffers and hold no control characters.
 * The first input byte picks the buffer sizes, the rest is the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *f, size_t n)
{
	size_t len = strnlen(f, n);

	if (n && len == n)
		abort();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)f[i] < 0x20 || (unsigned char)f[i] == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t sizes[] = { 1, 7, 64, 256, 1024 };
	char *code, *msg;
	size_t cl, ml;
	uint8_t *body;

	if (size < 1 || size > (64u << 10) + 1)
		return 0;
	cl = sizes[data[0] % 5];
	ml = sizes[(data[0] / 5) % 5];
	code = malloc(cl);
	msg = malloc(ml);
	body = malloc(size - 1 ? size - 1 : 1);
	if (code && msg && body) {
		memcpy(body, data + 1, size - 1);
		if (oci_registry_error_parse(body, size - 1, code, cl, msg, ml) == 0) {
			if (!code[0] && !msg[0])
				abort();
		}
		check_field(code, cl);
		check_field(msg, ml);
	}
	free(code);
	free(msg);
	free(body);
	return 0;
}
