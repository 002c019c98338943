// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz token server replies: a token accepted is non-empty visible ASCII (it goes into an
 * Authorization header). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *tok = NULL, *rt = NULL;
	uint64_t life;

	if (oci_token_reply_parse(data, size, 1700000000, &tok, &life, &rt) == 0) {
		if (!tok[0] || strlen(tok) > OCI_TOKEN_MAX)
			abort();
		for (const char *p = tok; *p; p++)
			if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
				abort();
		if (life > 366ULL * 86400)
			abort();
		free(tok);
		free(rt);
	}
	return 0;
}
