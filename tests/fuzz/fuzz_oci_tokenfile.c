// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz token cache files: one accepted names the key asked for, holds a token fit for an
 * Authorization header and a lifetime within the cap, and formats back to an equal file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *host = "reg.example.com:5000", *scope = "repository:a/b:pull";
	char *tok = NULL, *tok2 = NULL, *text = NULL;
	int64_t exp, exp2;
	uint64_t life, life2;

	if (oci_token_file_parse(data, size, host, scope, &tok, &exp, &life) != 0)
		return 0;
	if (!tok[0] || strlen(tok) > OCI_TOKEN_MAX || !oci_token_chars_ok(tok) || exp <= 0 ||
	    life == 0 || life > OCI_TOKEN_LIFETIME_MAX)
		abort();
	if (oci_token_file_format(host, scope, tok, exp, life, &text) == 0) {
		if (oci_token_file_parse(text, strlen(text), host, scope, &tok2, &exp2, &life2) != 0 ||
		    strcmp(tok, tok2) != 0 || exp != exp2 || life != life2)
			abort();
		free(tok2);
		free(text);
	}
	free(tok);
	return 0;
}
