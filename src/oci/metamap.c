// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The metadata map of an EROFS layer (oci.h, OCI_ANNOTATION_METADATA): the byte ranges of the
 * blob that hold its metadata, carried by the layer's descriptor in the image manifest, so
 * that a cold mount asks for all of them at once instead of walking the image level by
 * level (a round trip each).
 *
 * Text: "1:" then base64 (RFC 4648, padded) of unsigned LEB128 numbers, two per range: the
 * gap from the end of the previous range (from 0 for the first) and the length, both in
 * units of OCI_METAMAP_UNIT bytes. So ranges come sorted and disjoint by construction; the
 * last may reach past the blob's end by less than a unit (a blob whose size is not a multiple
 * of it) and is clamped. A map is only ever a hint: whatever it lists, the mount's walk still
 * reads and checks every structure, so a wrong map costs bytes, never correctness.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/macro.h"

#define VERSION_PREFIX "1:"
#define LEB_MAX 10 /* bytes of a 64-bit LEB128 number */
/* Coarser maps for images whose exact one does not fit OCI_METAMAP_MAX_TEXT: gaps up to
 * these (in units) are bridged, the smallest first that fits. */
static const uint64_t coarse_gaps[] = { 0, 16, 64, 256, 1024, 4096 };

static size_t leb_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		uint8_t b = v & 0x7f;

		v >>= 7;
		p[n++] = b | (v ? 0x80 : 0);
	} while (v);
	return n;
}

static int leb_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned shift = 0; *pos < len; shift += 7) {
		uint8_t b = p[(*pos)++];

		if (shift == 63 && (b & 0x7e))
			return -EBADMSG; /* past 64 bits */
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
		if (shift == 63)
			return -EBADMSG;
	}
	return -EBADMSG; /* cut short */
}

/* The map of v[0, n) in units, gaps up to `gap` units bridged: text, or -E2BIG when longer
 * than OCI_METAMAP_MAX_TEXT. */
static int encode_with_gap(const struct util_extent *v, size_t n, uint64_t size, uint64_t gap,
			   char **ret)
{
	_cleanup_free_ uint8_t *bin = NULL;
	_cleanup_free_ char *b64 = NULL;
	uint64_t prev_end = 0, start = 0, end = 0;
	size_t len = 0, max = OCI_METAMAP_MAX_TEXT / 4 * 3;
	bool open = false;

	bin = malloc(max + 2 * LEB_MAX);
	if (!bin)
		return -ENOMEM;
	for (size_t i = 0; i <= n; i++) {
		uint64_t s = 0, e = 0;

		if (i < n) {
			if (!v[i].length || v[i].offset >= size)
				continue;
			s = v[i].offset / OCI_METAMAP_UNIT;
			e = DIV_ROUND_UP(MIN(v[i].offset + v[i].length, size), OCI_METAMAP_UNIT);
			if (open && s <= end + gap) {
				end = MAX(end, e);
				continue;
			}
		}
		if (open) {
			if (len > max)
				return -E2BIG;
			len += leb_put(bin + len, start - prev_end);
			len += leb_put(bin + len, end - start);
			prev_end = end;
		}
		start = s;
		end = e;
		open = i < n;
	}
	if (len > max)
		return -E2BIG;
	b64 = oci_base64_encode(bin, len);
	if (!b64)
		return -ENOMEM;
	if (asprintf(ret, VERSION_PREFIX "%s", b64) < 0)
		return -ENOMEM;
	return 0;
}

int oci_metamap_encode(const struct util_extent *v, size_t n, uint64_t size, char **ret)
{
	for (size_t i = 1; i < n; i++)
		if (v[i].offset < v[i - 1].offset + v[i - 1].length)
			return -EINVAL; /* not sorted and disjoint */
	for (size_t g = 0; g < ARRAY_SIZE(coarse_gaps); g++) {
		int r = encode_with_gap(v, n, size, coarse_gaps[g], ret);

		if (r != -E2BIG)
			return r;
	}
	return -E2BIG;
}

int oci_metamap_decode(const char *text, uint64_t size, struct util_extents *ret)
{
	_cleanup_free_ uint8_t *bin = NULL;
	uint64_t units = DIV_ROUND_UP(size, OCI_METAMAP_UNIT), pos = 0;
	size_t len = 0, tlen, at = 0;
	int r;

	tlen = strnlen(text, OCI_METAMAP_MAX_TEXT + 1);
	if (tlen > OCI_METAMAP_MAX_TEXT)
		return -EFBIG;
	if (strncmp(text, VERSION_PREFIX, strlen(VERSION_PREFIX)) != 0)
		return -EPROTONOSUPPORT;
	text += strlen(VERSION_PREFIX);
	tlen -= strlen(VERSION_PREFIX);
	if (tlen % 4)
		return -EBADMSG;
	r = oci_base64_decode(text, tlen, &bin, &len);
	if (r < 0)
		return r;
	while (at < len) {
		uint64_t gap, length;

		if (leb_get(bin, len, &at, &gap) < 0 || leb_get(bin, len, &at, &length) < 0 ||
		    length == 0 || gap > units - pos || length > units - pos - gap)
			return -EBADMSG;
		pos += gap;
		r = util_extents_add(ret, pos * OCI_METAMAP_UNIT,
				     MIN((pos + length) * OCI_METAMAP_UNIT, size) -
					 pos * OCI_METAMAP_UNIT);
		if (r < 0)
			return r;
		pos += length;
	}
	return 0;
}
