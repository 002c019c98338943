// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Delivering the file index (files.h) to the daemon: the client puts the encoded index in a
 * sealed memfd and passes it with a "files" request; the worker checks the seals and the size,
 * parses the bytes as untrusted input and keeps the result in d->files (replacing an older
 * index; the same content again is not parsed again).
 *
 * The parsed index lives in the worker's memory; its encoding is also kept (kept.c), and a
 * worker that replaces a crashed one parses that copy again: it goes on fetching files whole
 * and following them instead of falling back to blind chunks until the next mount of the
 * blob. Nothing depends on having an index: it only shapes what is fetched, never whether a
 * read is answered.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch/files.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/sha256.h"

static int reply(int cfd, int err, uint32_t files, uint32_t ranges, bool unchanged, const char *msg)
{
	_cleanup_json_ json_t *o = NULL;

	if (err)
		o = json_pack("{s:b,s:i,s:s}", "ok", 0, "errno", err, "error", msg);
	else
		o = json_pack("{s:b,s:I,s:I,s:b}", "ok", 1, "files", (json_int_t)files,
			      "file_ranges", (json_int_t)ranges, "unchanged", unchanged);
	return o ? fetch_proto_send(cfd, o, -1) : -ENOMEM;
}

void fetch_files_restore(struct fetch_daemon *d)
{
	struct fetch_kept *k = d->files_kept;
	struct util_error err = UTIL_ERROR_INIT;
	struct fetch_files *f = NULL;
	size_t len = fetch_kept_len(k);
	int r;

	/* A worker forked through a holder that a worker forked inherits that worker's parsed
	 * index; the shared copy is the one to trust (the latest). */
	fetch_files_drop(d);
	if (len == 0)
		return;
	r = fetch_files_parse(k->buf, len, d->cfg.blob.size, &f, &err);
	if (r < 0) {
		log_warning("the file index kept from the previous worker is unusable: %s",
			    util_err_msg(&err, r));
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->files = f;
	d->sched.files = f;
	memcpy(d->files_digest, k->digest, sizeof(d->files_digest));
	pthread_mutex_unlock(&d->lock);
	log_info("file index kept from the previous worker: %u files, %u ranges",
		 fetch_files_count(f), fetch_files_nranges(f));
}

int fetch_files_request(struct fetch_daemon *d, int cfd, int fd)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct fetch_files *f = NULL, *old;
	uint8_t digest[UTIL_SHA256_LEN];
	struct util_error err = UTIL_ERROR_INIT;
	uint32_t nf, nr;
	size_t len = 0;
	bool same;
	int r;

	if (fd < 0)
		return reply(cfd, EINVAL, 0, 0, false, "files: no index fd was passed");
	r = fetch_sealed_read(fd, FETCH_FILES_MAX_BYTES, "files", &buf, &len, &err);
	if (r >= 0)
		r = util_sha256_buf(buf, len, digest);
	if (r < 0)
		return reply(cfd, -r, 0, 0, false,
			     util_err_has_msg(&err) ? err.message : "files: hashing failed");
	pthread_mutex_lock(&d->lock);
	same = d->files && !memcmp(d->files_digest, digest, sizeof(digest));
	nf = fetch_files_count(d->files);
	nr = fetch_files_nranges(d->files);
	pthread_mutex_unlock(&d->lock);
	if (same)
		return reply(cfd, 0, nf, nr, true, NULL);
	r = fetch_files_parse(buf, len, d->cfg.blob.size, &f, &err);
	if (r < 0) {
		log_warning("refused a file index of %zu bytes: %s", len, util_err_msg(&err, r));
		if (!util_err_has_msg(&err))
			util_err_set(&err, r, "%s", strerror(-r));
		util_err_prefix(&err, "files");
		return reply(cfd, -r, 0, 0, false, err.message);
	}
	nf = fetch_files_count(f);
	nr = fetch_files_nranges(f);
	pthread_mutex_lock(&d->lock);
	old = d->files;
	d->files = f;
	d->sched.files = f;
	memcpy(d->files_digest, digest, sizeof(digest));
	pthread_mutex_unlock(&d->lock);
	fetch_kept_put(d->files_kept, buf, len, digest);
	fetch_files_free(old);
	log_info("file index: %u files, %u ranges (%zu bytes)%s", nf, nr, len,
		 old ? ", replacing the previous one" : "");
	return reply(cfd, 0, nf, nr, false, NULL);
}

void fetch_files_drop(struct fetch_daemon *d)
{
	struct fetch_files *f;

	pthread_mutex_lock(&d->lock);
	f = d->files;
	d->files = NULL;
	d->sched.files = NULL;
	pthread_mutex_unlock(&d->lock);
	fetch_files_free(f);
}

int fetch_send_files(struct fetch_handle *h, const void *buf, size_t len, struct util_error *err)
{
	_cleanup_json_ json_t *rep = NULL;

	return fetch_proto_call_sealed(h->ctl_fd, "files", buf, len, &rep, err);
}
