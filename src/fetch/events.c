// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Parsing fanotify event buffers: metadata records, each followed by optional info records
 * (the pre-content range). The bytes come from the kernel but are treated as untrusted:
 * every length is checked before use.
 */
#include "fetch/fanotify.h"

#include <string.h>

size_t fetch_events_parse(const void *buf, size_t len, struct fetch_event *out, size_t max,
			  bool *ret_bad)
{
	const uint8_t *p = buf;
	size_t n = 0, pos = 0;

	*ret_bad = false;
	while (n < max && len - pos >= sizeof(struct fanotify_event_metadata)) {
		struct fanotify_event_metadata m;
		struct fetch_event *ev = &out[n];
		size_t ipos;

		memcpy(&m, p + pos, sizeof(m));
		if (m.event_len < sizeof(m) || m.event_len > len - pos ||
		    m.metadata_len < sizeof(m) || m.metadata_len > m.event_len) {
			*ret_bad = true;
			/* The fd still needs an answer if the record is at least whole. */
			if (m.event_len >= sizeof(m) && m.fd >= 0 && m.event_len <= len - pos) {
				*ev =
				    (struct fetch_event){.mask = m.mask, .fd = m.fd, .pid = m.pid};
				n++;
			}
			break;
		}
		*ev = (struct fetch_event){.mask = m.mask, .fd = m.fd, .pid = m.pid};
		if (m.vers != FANOTIFY_METADATA_VERSION)
			*ret_bad = true;
		ipos = pos + m.metadata_len;
		while (m.event_len - (ipos - pos) >= sizeof(struct fanotify_event_info_header)) {
			struct fanotify_event_info_header h;
			size_t left = m.event_len - (ipos - pos);

			memcpy(&h, p + ipos, sizeof(h));
			if (h.len < sizeof(h) || h.len > left) {
				*ret_bad = true;
				break;
			}
			if (h.info_type == FAN_EVENT_INFO_TYPE_RANGE) {
				struct fetch_fan_range r;

				if (h.len < sizeof(r)) {
					*ret_bad = true;
					break;
				}
				memcpy(&r, p + ipos, sizeof(r));
				ev->has_range = true;
				ev->offset = r.offset;
				ev->count = r.count;
			}
			ipos += h.len;
		}
		n++;
		pos += m.event_len;
	}
	return n;
}
