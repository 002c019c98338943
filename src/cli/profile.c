// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* `lazyerofs profile save MOUNTPOINT FILE` (what a mount's readers needed, as a startup profile
 * file: mount_profile_save) and `lazyerofs profile push [-o OPTS] FILE REFERENCE` (attach a
 * profile to its image as an OCI 1.1 referrer, once it is known to be a profile of the very
 * layer REFERENCE resolves to). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fetch/profile.h"
#include "mount/mount.h"
#include "oci/oci.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: lazyerofs profile save MOUNTPOINT FILE\n"
		   "       lazyerofs profile push [-o OPTS] FILE REFERENCE\n\n"
		   "Startup profiles: the byte ranges of an image that a workload needed, in the\n"
		   "order it first needed them. A mount replays the profile attached to its image\n"
		   "(-o profile=auto, the default) so that a cold start finds its bytes present.\n\n"
		   "Commands:\n"
		   "  save   write what a lazyerofs mount's readers have needed so far to FILE\n"
		   "  push   attach the profile FILE to the image REFERENCE in its registry\n\n"
		   "Run 'lazyerofs profile COMMAND --help' for a command's options.\n");
}

static void usage_save(FILE *f)
{
	fprintf(f, "Usage: lazyerofs profile save MOUNTPOINT FILE\n\n"
		   "Write what the readers of the lazyerofs mount at MOUNTPOINT have needed so far\n"
		   "(every image byte range, in first-access order) to FILE, as a startup profile.\n"
		   "FILE is replaced atomically. Run the workload on a fresh mount first (for\n"
		   "instance with -o profile=none), then save.\n\n"
		   "  -h, --help            show this help\n\n"
		   "Environment: LAZYEROFS_RUN_DIR (default " MOUNT_DEFAULT_RUN_DIR ").\n");
}

static void usage_push(FILE *f)
{
	fprintf(f,
		"Usage: lazyerofs profile push [-o OPTS] FILE REFERENCE\n\n"
		"Attach the startup profile FILE to the image REFERENCE as an OCI artifact (type\n"
		"" PROFILE_ARTIFACT_TYPE ") whose subject is the image manifest,\n"
		"so that mounts of the image find it. FILE must be a profile of the layer\n"
		"REFERENCE resolves to (same digest and size). Through the registry's referrers\n"
		"API when it has one, else the referrers tag sha256-<hex of the image manifest>,\n"
		"an index to which every push adds an entry (a tag that holds something else is\n"
		"left as it is). A mount replays the newest profile. Prints:\n"
		"  profile sha256:...          the artifact manifest's digest\n"
		"  subject sha256:...          the image manifest's digest\n"
		"  referrers api | referrers tag sha256-<hex>\n\n"
		"REFERENCE: [oci://]REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]\n\n"
		"Options (-o, comma-separated):\n"
		"  insecure              plain-HTTP registry\n"
		"  ca=PATH               CA certificate(s) for the registry's TLS\n"
		"  username=NAME         with password-file=PATH: registry credentials (else\n"
		"                        containers' auth.json or Docker's config.json are used)\n"
		"  platform=OS/ARCH[/V]  image of an index to use (default: this host's)\n"
		"  layer=N, blob=DIGEST  layer of the image the profile is for, as for mount\n"
		"  timeout=SECONDS       deadline for each request, retries included (default 60)\n"
		"  -h, --help            show this help\n");
}

static int profile_save(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct util_error err = UTIL_ERROR_INIT;
	int opt, r;

	optind = 0; /* (glibc starts over, permuting: options after the operands too) */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage_save(stdout);
			return CLI_EXIT_OK;
		case 'v':
			cli_verbose_inc();
			break;
		default:
			return cli_option_error("profile save", "hv", argv);
		}
	}
	if (argc - optind != 2) {
		log_error("profile save: expected MOUNTPOINT and FILE; run 'lazyerofs profile save "
			  "--help'");
		return CLI_EXIT_USAGE;
	}
	r = mount_profile_save(mount_env_run_dir(), argv[optind], argv[optind + 1], &err);
	if (r < 0) {
		log_error("profile save: %s", util_err_msg(&err, r));
		return CLI_EXIT_FAILURE;
	}
	return CLI_EXIT_OK;
}

/* The profile file, checked, and the very bytes that were checked (the file is read once
 * more for them: a file that changed in between is refused). */
static int read_profile(const char *path, struct profile *p, char **ret, size_t *ret_len)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct profile again = { 0 };
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = profile_read_file(path, p, &err);
	if (r < 0) {
		log_error("profile push: %s", util_err_msg(&err, r));
		return r;
	}
	r = util_read_file(AT_FDCWD, path, PROFILE_MAX_BYTES, 0, &buf, &len);
	if (r < 0) {
		log_error("profile push: reading '%s': %s", path, strerror(-r));
		profile_free(p);
		return r;
	}
	r = profile_parse(buf, len, &again, &err);
	if (r == 0 && (strcmp(again.digest, p->digest) || again.size != p->size ||
		       again.n != p->n))
		r = -ESTALE;
	profile_free(&again);
	if (r < 0) {
		log_error("profile push: '%s' changed while it was read; try again", path);
		profile_free(p);
		return r;
	}
	*ret = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

static int profile_push(int argc, char **argv)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct oci_options opts;
	struct oci_ref *ref = NULL;
	struct oci_client *c = NULL;
	struct profile p = { 0 };
	struct oci_blob blob;
	_cleanup_free_ char *buf = NULL;
	char digest[UTIL_DIGEST_STR_LEN];
	const char *path, *reference;
	bool via_tag = false;
	size_t len = 0;
	int r, ret = CLI_EXIT_FAILURE;

	oci_options_init(&opts);
	r = cli_registry_args("profile push", argc, argv, 2, "FILE and REFERENCE", &opts,
			      usage_push);
	if (r >= 0) {
		ret = r;
		goto out;
	}
	path = argv[optind];
	reference = argv[optind + 1];
	r = oci_ref_parse(reference, &ref, &err);
	if (r < 0) {
		log_error("profile push: %s", err.message);
		ret = CLI_EXIT_USAGE;
		goto out;
	}
	if (ref->is_url) {
		log_error("profile push: '%s': give REGISTRY/REPOSITORY[:TAG][@DIGEST] (a URL source "
			  "has no registry to attach a profile to)",
			  reference);
		ret = CLI_EXIT_USAGE;
		goto out;
	}
	if (read_profile(path, &p, &buf, &len) < 0)
		goto out;

	if (cli_push_options("profile push", ref, &opts) < 0)
		goto out;
	r = oci_client_new(ref, &opts, &c);
	if (r < 0) {
		log_error("profile push: %s", strerror(-r));
		goto out;
	}
	r = oci_resolve(c, &blob, &err);
	if (r < 0) {
		log_error("profile push: %s", util_err_msg(&err, r));
		goto out;
	}
	if (strcmp(p.digest, blob.digest) != 0 || p.size != blob.size) {
		log_error("profile push: '%s' is a profile of blob %s (%llu bytes), but %s resolves "
			  "to layer %s (%llu bytes); push it to the image it was recorded from, or "
			  "pick its layer with -o blob=%s",
			  path, p.digest, (unsigned long long)p.size, reference, blob.digest,
			  (unsigned long long)blob.size, p.digest);
		goto out;
	}
	r = oci_referrer_push(c, PROFILE_ARTIFACT_TYPE, PROFILE_MEDIA_TYPE, buf, len, digest,
			      &via_tag, &err);
	if (r < 0) {
		log_error("profile push: %s", util_err_msg(&err, r));
		goto out;
	}
	printf("profile %s\nsubject %s\n", digest, blob.manifest_digest);
	if (via_tag)
		printf("referrers tag sha256-%s\n", blob.manifest_digest + strlen("sha256:"));
	else
		printf("referrers api\n");
	if (fflush(stdout) != 0) {
		log_error("profile push: writing the result: %m");
		goto out;
	}
	ret = CLI_EXIT_OK;
out:
	profile_free(&p);
	oci_client_free(c);
	oci_ref_free(ref);
	oci_options_free(&opts);
	return ret;
}

int cli_profile(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sub;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+hv", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'v':
			cli_verbose_inc();
			break;
		default:
			return cli_option_error("profile", "+hv", argv);
		}
	}
	if (optind >= argc) {
		log_error("profile: expected a command, save or push; run 'lazyerofs profile --help'");
		return CLI_EXIT_USAGE;
	}
	sub = argv[optind];
	if (!strcmp(sub, "save"))
		return profile_save(argc - optind, argv + optind);
	if (!strcmp(sub, "push"))
		return profile_push(argc - optind, argv + optind);
	log_error("profile: unknown command '%s'; run 'lazyerofs profile --help'", sub);
	return CLI_EXIT_USAGE;
}
