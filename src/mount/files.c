// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The mount's side of the file index: collect the walk's per-file ranges into the fetch
 * module's builder (which bounds its memory), encode them after the walk and hand them to the
 * daemon. Nothing here can fail a mount: the daemon without an index fetches as before.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/files.h"
#include "mount/files.h"
#include "util/log.h"

struct mount_files {
	struct fetch_files_builder *b;
	int err; /* the first failure to add a file: nothing is sent then */
};

struct mount_files *mount_files_new(uint64_t blob_size)
{
	struct mount_files *mf = calloc(1, sizeof(*mf));

	if (!mf || fetch_files_builder_new(blob_size, 0, &mf->b) < 0) {
		log_debug("no file index for the daemon: out of memory");
		free(mf);
		return NULL;
	}
	return mf;
}

void mount_files_free(struct mount_files *mf)
{
	if (!mf)
		return;
	fetch_files_builder_free(mf->b);
	free(mf);
}

static int on_file(void *ctx, uint64_t nid, uint64_t size, const struct util_extent *v, size_t n)
{
	struct mount_files *mf = ctx;

	if (!mf->err)
		mf->err = fetch_files_builder_add(mf->b, v, n);
	return 0; /* never stops the walk */
}

void mount_files_hook(struct mount_files *mf, struct erofs_walk_opts *opts)
{
	if (!mf)
		return;
	opts->on_file = on_file;
	opts->file_ctx = mf;
}

void mount_files_send(struct mount_files *mf, struct fetch_handle *h)
{
	struct fetch_files_build_stats st;
	uint8_t *buf = NULL;
	size_t len = 0;
	struct util_error err = UTIL_ERROR_INIT;
	int r;

	if (!mf)
		return;
	r = mf->err;
	if (r >= 0)
		r = fetch_files_builder_finish(mf->b, &buf, &len, &st);
	if (r < 0) {
		log_debug("no file index for the daemon: %s", strerror(-r));
		return;
	}
	r = fetch_send_files(h, buf, len, &err);
	free(buf);
	if (r == -EINVAL)
		log_debug("the daemon took no file index: %s", util_err_msg(&err, r));
	else if (r < 0)
		log_warning("handing the file index to the daemon failed: %s",
			    util_err_msg(&err, r));
	else
		log_debug("file index: %llu files, %llu ranges, %zu bytes (%llu files without "
			  "ranges of their own, %llu left out for the size cap)",
			  (unsigned long long)st.files, (unsigned long long)st.ranges, len,
			  (unsigned long long)st.empty_files, (unsigned long long)st.dropped_files);
}
