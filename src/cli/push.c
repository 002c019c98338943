// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* `lazyerofs push [-o OPTS] IMAGE.erofs REFERENCE`: publish a local EROFS image as a one-layer
 * OCI image (layer application/vnd.erofs.layer.v1, an OCI image config, an OCI manifest),
 * skipping blobs the registry already has; prints the manifest and layer digests. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "erofs/erofs.h"
#include "util/fs.h"
#include "oci/oci.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/strutil.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: lazyerofs push [-o OPTS] IMAGE.erofs REFERENCE\n\n"
		"Publish an EROFS image as a one-layer OCI image: the layer (media type\n"
		"application/vnd.erofs.layer.v1), an OCI image config and an OCI manifest, stored\n"
		"under REFERENCE's tag (or under its own digest when REFERENCE has no tag). Blobs\n"
		"the registry already has are not uploaded again. A failed chunk is sent again\n"
		"from where the registry has the upload; run as root, an interrupted push is\n"
		"continued by the next push of the same file to the same repository (a record\n"
		"in $LAZYEROFS_CACHE_DIR/uploads). Prints the digests:\n"
		"  manifest sha256:...\n  config sha256:...\n  layer sha256:...\n\n"
		"REFERENCE: [oci://]REGISTRY/REPOSITORY[:TAG]\n\n"
		"Options (-o, comma-separated):\n"
		"  insecure              plain-HTTP registry\n"
		"  ca=PATH               CA certificate(s) for the registry's TLS\n"
		"  username=NAME         with password-file=PATH: registry credentials (else\n"
		"                        containers' auth.json or Docker's config.json are used)\n"
		"  platform=OS/ARCH[/V]  platform recorded in the config (default: this host's)\n"
		"  timeout=SECONDS       deadline for each request, retries included (default 60)\n"
		"  -h, --help            show this help\n");
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	cli_progress_update(ctx, done, total);
}

/* The image must at least be an EROFS filesystem. */
static int check_image(const char *path, int fd, uint64_t *ret_size)
{
	struct erofs_info info;
	struct erofs_io io;
	struct stat st;
	struct util_error why = UTIL_ERROR_INIT;
	int r;

	if (fstat(fd, &st) < 0) {
		log_error("push: cannot stat '%s': %m", path);
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("push: '%s' is not a regular file", path);
		return -EINVAL;
	}
	r = erofs_io_from_fd(&io, fd);
	if (r == 0)
		r = erofs_probe(&io, &info, &why);
	if (r == -EOPNOTSUPP) {
		log_warning("push: '%s': %s; pushing it anyway", path,
			    util_err_has_msg(&why) ? why.message : "unsupported feature");
	} else if (r < 0) {
		log_error("push: '%s' is not an EROFS image: %s", path, util_err_msg(&why, r));
		return -EINVAL;
	} else if (info.extra_devices) {
		log_warning("push: '%s' has %u extra devices, which lazy mounts do not support yet",
			    path, info.extra_devices);
	}
	*ret_size = (uint64_t)st.st_size;
	return 0;
}

/* The image's metadata map for its manifest (oci.h), or NULL: a push never fails for want of
 * one (an image this reader cannot walk simply has none, and mounts walk it level by level). */
static char *metadata_map(const char *path, int fd)
{
	struct util_error why = UTIL_ERROR_INIT;
	struct erofs_io io;
	char *text = NULL;
	int r = erofs_io_from_fd(&io, fd);

	if (r >= 0)
		r = cli_metadata_map(&io, &text, &why);

	if (r < 0)
		log_warning("push: '%s': no metadata map in the manifest (%s); mounts will find "
			    "its metadata level by level",
			    path, util_err_msg(&why, r));
	return text;
}

/* The image's two blobs, made sure of again when the registry refuses its manifest for
 * want of one (oci_manifest_put_ensured): uploaded again if missing. */
struct image_blobs {
	struct oci_client *c;
	int fd;
	uint64_t size;
	const char *layer_digest, *config;
	char *config_digest;
};

static int image_blobs_ensure(void *ctx, struct util_error *err)
{
	struct image_blobs *b = ctx;
	struct oci_upload_opts up = { 0 };
	int r = oci_blob_exists(b->c, b->layer_digest, b->size, err);

	if (r == 0)
		r = oci_blob_upload_fd(b->c, b->fd, b->size, b->layer_digest, &up, err);
	if (r >= 0)
		r = oci_blob_ensure(b->c, b->config, strlen(b->config), b->config_digest, err);
	return r < 0 ? r : 0;
}

int cli_push(int argc, char **argv)
{
	struct oci_options opts;
	struct oci_ref *ref = NULL;
	struct oci_client *c = NULL;
	struct util_error err;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *config = NULL, *manifest = NULL, *metamap = NULL;
	char layer_digest[UTIL_DIGEST_STR_LEN], config_digest[UTIL_DIGEST_STR_LEN];
	char manifest_digest[UTIL_DIGEST_STR_LEN];
	uint8_t d[UTIL_SHA256_LEN];
	struct cli_progress prog;
	struct cli_upload_record record;
	const char *image, *name;
	uint64_t size = 0;
	int r, ret = CLI_EXIT_FAILURE;

	oci_options_init(&opts);
	cli_upload_record_init(&record);
	cli_progress_init(&prog, "pushing", "", false);
	r = cli_registry_args("push", argc, argv, 2, "IMAGE.erofs and REFERENCE", &opts, usage);
	if (r >= 0) {
		oci_options_free(&opts);
		return r;
	}
	if (opts.blob || opts.digest || opts.layer >= 0) {
		log_error("push: option '%s' picks what a mount or fetch reads; push takes none",
			  opts.blob	? "blob"
			  : opts.digest ? "digest"
					: "layer");
		oci_options_free(&opts);
		return CLI_EXIT_USAGE;
	}
	image = argv[optind];
	r = oci_ref_parse(argv[optind + 1], &ref, &err);
	if (r < 0) {
		log_error("push: %s", err.message);
		oci_options_free(&opts);
		return CLI_EXIT_USAGE;
	}
	if (ref->is_url || ref->digest) {
		log_error("push: '%s': give REGISTRY/REPOSITORY[:TAG] (not a URL, not a digest)",
			  argv[optind + 1]);
		ret = CLI_EXIT_USAGE;
		goto out;
	}

	fd = util_open_read(AT_FDCWD, image, 0);
	if (fd < 0) {
		log_error("push: cannot open '%s': %s", image, strerror(-fd));
		goto out;
	}
	if (check_image(image, fd, &size) < 0)
		goto out;
	name = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
	prog.name = name;
	r = util_sha256_fd(fd, size, d);
	if (r < 0) {
		log_error("push: reading '%s': %s", image, strerror(-r));
		goto out;
	}
	util_digest_format(d, layer_digest);
	metamap = metadata_map(image, fd);
	r = oci_image_build(layer_digest, size, opts.platform, metamap, &config, &manifest);
	if (r < 0) {
		log_error("push: building the image manifest: %s", strerror(-r));
		goto out;
	}
	util_sha256_buf(config, strlen(config), d);
	util_digest_format(d, config_digest);

	if (cli_push_options("push", ref, &opts) < 0)
		goto out;
	r = oci_client_new(ref, &opts, &c);
	if (r < 0) {
		log_error("push: %s", strerror(-r));
		goto out;
	}
	r = cli_upload_record_open(&record, ref->registry, ref->repository, layer_digest, size);
	if (r < 0) {
		log_error("push: %s", strerror(-r));
		goto out;
	}
	r = oci_blob_exists(c, layer_digest, size, &err);
	if (r < 0)
		goto fail;
	if (r > 0) {
		log_info("push: layer %s is already in %s, not uploading it", layer_digest,
			 ref->repository);
	} else {
		struct oci_upload_opts up = { .progress = on_progress, .progress_ctx = &prog,
					      .resume_url = cli_upload_record_url(&record),
					      .session = cli_upload_record_save,
					      .session_ctx = &record };

		r = oci_blob_upload_fd(c, fd, size, layer_digest, &up, &err);
		if (r < 0)
			goto fail;
		if (up.resumed)
			log_info("push: continued the interrupted upload of %s from byte %llu of %llu",
				 layer_digest, (unsigned long long)up.resumed_at,
				 (unsigned long long)size);
		else if (up.resume_url)
			log_info("push: the interrupted upload of %s could not be continued (the "
				 "registry no longer has it); uploaded it again",
				 layer_digest);
	}
	cli_upload_record_done(&record);
	r = oci_blob_ensure(c, config, strlen(config), config_digest, &err);
	if (r < 0)
		goto fail;
	{
		struct image_blobs blobs = { .c = c, .fd = fd, .size = size,
					     .layer_digest = layer_digest, .config = config,
					     .config_digest = config_digest };

		r = oci_manifest_put_ensured(c, ref->tag,
					     "application/vnd.oci.image.manifest.v1+json",
					     manifest, strlen(manifest), image_blobs_ensure, &blobs,
					     manifest_digest, NULL, &err);
	}
	if (r < 0)
		goto fail;
	printf("manifest %s\nconfig %s\nlayer %s\n", manifest_digest, config_digest, layer_digest);
	if (fflush(stdout) != 0) {
		log_error("push: writing the result: %m");
		goto out;
	}
	ret = CLI_EXIT_OK;
	goto out;
fail:
	cli_progress_end(&prog);
	log_error("push: %s", err.message[0] ? err.message : strerror(-r));
out:
	cli_upload_record_close(&record);
	oci_client_free(c);
	oci_ref_free(ref);
	oci_options_free(&opts);
	return ret;
}
