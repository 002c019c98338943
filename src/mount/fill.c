// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs fetch`: fill a cache entry ahead of time. The source is resolved as a mount
 * resolves it (resolve.c: the blob is remembered, so a later mount by digest goes offline),
 * then the entry's daemon is started or joined and asked for its background fill: one path
 * whether or not a mount uses the entry, under the entry lock the daemon holds, with the
 * daemon's durability rules and its verification against the digest.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache/cache.h"
#include "mount/mount.h"
#include "mount/resolve.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

/* How long to wait for a daemon we leave unused to go (gc and scripts run next). */
#define FILL_RELEASE_WAIT_MS 10000

DEFINE_CLEANUP_FUNC(struct oci_ref, oci_ref_free);

/* The entry is complete and verified (or complete, with no digest to check) already. */
static bool entry_done(const char *cache_dir, const struct oci_blob *b, bool *ret_verified)
{
	_cleanup_close_ int dfd = -1;
	struct cache_header h;

	if (cache_dir_open(cache_dir, &dfd) < 0 || cache_entry_peek(dfd, b->cache_key, &h) < 0)
		return false;
	if ((h.flags & CACHE_FLAG_BAD) || h.size != b->size || strcmp(h.digest, b->digest) != 0)
		return false;
	*ret_verified = (h.flags & CACHE_FLAG_VERIFIED) != 0;
	if (b->digest[0])
		return *ret_verified;
	return (h.flags & CACHE_FLAG_COMPLETE) != 0;
}

/* Before the whole blob: is it an EROFS image at all? Its superblock's block, fetched alone
 * and read through the daemon's pre-mark fd (no event). A blob that is not one is refused
 * before it takes the cache's space, as a mount would refuse it. */
static int check_superblock(struct fetch_handle *h, uint64_t size, struct util_error *err)
{
	struct util_extent sb = {0, MIN(size, (uint64_t)4096)};
	struct util_error ferr = UTIL_ERROR_INIT;
	_cleanup_close_ int fd = -1;
	struct erofs_info info;
	struct erofs_io io;
	int r;

	r = fetch_ensure_ranges(h, &sb, 1, &ferr);
	if (r >= 0)
		r = fetch_data_fd(h, &fd, &ferr);
	if (r >= 0)
		r = erofs_io_from_fd(&io, fd);
	if (r < 0)
		return util_err_set(err, r, "reading the image's superblock: %s",
				    util_err_msg(&ferr, r));
	return mount_probe_image(&io, NULL, &info, err);
}

int mount_fill(const struct mount_fill_request *req, struct mount_fill_result *res, int *ret_class,
	       struct util_error *err)
{
	_cleanup_(oci_options_free) struct oci_options oo = {.layer = -1};
	_cleanup_(oci_ref_freep) struct oci_ref *ref = NULL;
	_cleanup_(mount_resolved_done) struct mount_resolved rs = {0};
	_cleanup_free_ char *pub_source = NULL, *metrics_dir = NULL;
	_cleanup_close_ int run_fd = -1;
	struct fetch_handle *h = NULL;
	struct fetch_config cfg = {0};
	struct fetch_fill_watch watch = {0};
	struct fetch_status before = {0}, st = {0};
	struct util_error ferr = UTIL_ERROR_INIT;
	const char *cache_dir, *run_dir;
	uint64_t t0 = util_now_ms();
	int r;

	memset(res, 0, sizeof(*res));
	*ret_class = MOUNT_FAIL_OTHER;
	cache_dir = mount_cache_dir_of(req->cache_dir, req->opts);
	run_dir = req->run_dir ? req->run_dir : mount_env_run_dir();
	r = mount_check_dir_paths(cache_dir, run_dir, err);
	if (r < 0)
		return r;
	r = mount_parse_source(req->source, req->oci, &ref, &pub_source, ret_class, err);
	if (r < 0)
		return r;
	r = mount_pull_options(req->oci, ref, run_dir, &oo, &metrics_dir, err);
	if (r < 0)
		return r;
	r = mount_check_cache_fs(cache_dir, err);
	if (r < 0)
		return r;
	r = mount_open_run_dir(run_dir, &run_fd, err);
	if (r < 0)
		return r;
	r = mount_resolve(ref, &oo, cache_dir, pub_source, &rs, err);
	if (r < 0)
		return r;
	snprintf(res->digest, sizeof(res->digest), "%s", rs.blob.digest);
	snprintf(res->cache_key, sizeof(res->cache_key), "%s", rs.blob.cache_key);
	res->size = rs.blob.size;
	res->offline = rs.offline;
	if (entry_done(cache_dir, &rs.blob, &res->verified)) {
		res->already = true;
		res->present_bytes = res->size;
		res->ms = util_now_ms() - t0;
		return 0;
	}

	cfg.sparse = !mount_cache_max_apply(cache_dir, run_dir, rs.blob.cache_key, rs.blob.size);
	if (req->daemon_started)
		*req->daemon_started = 1;
	if (req->cancel && *req->cancel)
		return util_err_set(err, -EINTR, "interrupted");
	cfg.cache_dir = cache_dir;
	cfg.run_dir = run_dir;
	cfg.ref = ref;
	cfg.opts = &oo;
	cfg.blob = rs.blob;
	cfg.timeout_ms = req->opts->timeout_ms;
	cfg.transport = mount_transport(&rs);
	cfg.metrics_dir = metrics_dir;
	r = fetch_daemon_ensure(&cfg, &h, &ferr);
	if (r < 0) {
		/* What the entry holds, as its files say (a daemon of another version has it:
		 * "0 B of it in the cache" was wrong). */
		_cleanup_close_ int dfd = -1;
		struct cache_header hdr;

		if (cache_dir_open(cache_dir, &dfd) < 0 ||
		    cache_entry_peek_present(dfd, rs.blob.cache_key, &hdr, &res->present_bytes) < 0)
			res->present_bytes = 0;
		return util_err_set(err, r, "starting the fetch daemon: %s",
				    util_err_msg(&ferr, r));
	}
	r = check_superblock(h, rs.blob.size, err);
	if (r < 0) {
		mount_err_name_image(err, pub_source, rs.blob.digest);
		fetch_handle_release(h, FILL_RELEASE_WAIT_MS);
		return r;
	}
	(void)fetch_status(h, &before);
	watch.stall_ms = req->opts->timeout_ms;
	watch.progress = req->progress;
	watch.ctx = req->ctx;
	watch.cancel = req->cancel;
	r = fetch_fill_wait(h, &watch, &st, &ferr);
	if (r < 0)
		util_err_set(err, r, "%s", util_err_msg(&ferr, r));
	res->present_bytes = st.present_bytes;
	res->fetched_bytes =
	    st.fetched_bytes >= before.fetched_bytes ? st.fetched_bytes - before.fetched_bytes : 0;
	res->verified = r >= 0 && strcmp(st.state, "verified") == 0;
	/* Whatever happened, the daemon goes once nothing uses it: it persists what is durable
	 * on its way out, so the entry is consistent and a new fetch resumes from there. */
	fetch_handle_release(h, FILL_RELEASE_WAIT_MS);
	res->ms = util_now_ms() - t0;
	return r;
}
