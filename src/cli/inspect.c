// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* `lazyerofs inspect [--extents] [--gap=BYTES] IMAGE`: summary of a local EROFS image, or
 * exactly the metadata walk's ranges, "OFFSET LENGTH" per line. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "erofs/erofs.h"
#include "mount/mount.h"
#include "util/fs.h"
#include "oci/oci.h"
#include "util/cleanup.h"
#include "util/extents.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: lazyerofs inspect [--extents | --metadata-map] [--gap=BYTES] IMAGE.erofs\n\n"
		"Walk the metadata of a local EROFS image and summarise it: block size, features,\n"
		"inodes, metadata bytes (what must be present before a lazy mount) and walk time.\n\n"
		"  --extents     print only the metadata ranges, \"OFFSET LENGTH\" in decimal bytes,\n"
		"                one per line, sorted and merged\n"
		"  --metadata-map  print only the image's metadata map, the value of the layer\n"
		"                annotation " OCI_ANNOTATION_METADATA " that lazyerofs push sets\n"
		"                (for images published by other tools: a mount then fetches the\n"
		"                metadata at once instead of level by level)\n"
		"  --gap=BYTES   merge ranges separated by at most BYTES (default %u)\n"
		"  -h, --help    show this help\n",
		EROFS_DEFAULT_MERGE_GAP);
}

static const char *errname(int r)
{
	switch (r) {
	case -EUCLEAN:
		return "corrupt image";
	case -EOPNOTSUPP:
		return "unsupported image";
	case -EFBIG:
		return "image too large to walk";
	default:
		return NULL;
	}
}

static int fail(const char *path, int r, const char *detail)
{
	const char *what = errname(r);
	char line[1024];

	if (what && detail && *detail)
		snprintf(line, sizeof(line), "'%s': %s: %s", path, what, detail);
	else if (detail && *detail)
		snprintf(line, sizeof(line), "'%s': %s: %s", path, detail, strerror(-r));
	else
		snprintf(line, sizeof(line), "'%s': %s", path, strerror(-r));
	mount_sanitize_line(line); /* the path as typed: one printable line */
	log_error("inspect: %s", line);
	return CLI_EXIT_FAILURE;
}

int cli_inspect(int argc, char **argv)
{
	struct erofs_walk_opts opts = { .merge_gap = EROFS_DEFAULT_MERGE_GAP };
	_cleanup_close_ int fd = -1;
	struct erofs_walk_stats st;
	struct util_extents ext;
	struct erofs_info info;
	struct erofs_io io;
	uint64_t t0, t1;
	const char *path = NULL;
	bool extents = false, map = false;
	struct util_error err = UTIL_ERROR_INIT;
	char hb[32], mb[32];
	double ms;
	int r;

	static const struct option longopts[] = {
	    {"extents", no_argument, NULL, 'e'},   {"metadata-map", no_argument, NULL, 'm'},
	    {"gap", required_argument, NULL, 'g'}, {"help", no_argument, NULL, 'h'},
	    {"verbose", no_argument, NULL, 'v'},   {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	optind = 0; /* (glibc starts over, permuting: options after the operands too) */
	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'e':
			extents = true;
			break;
		case 'm':
			map = true;
			break;
		case 'v':
			cli_verbose_inc(); /* as every other subcommand takes it */
			break;
		case 'g':
			if (util_parse_u64(optarg, &opts.merge_gap) < 0) {
				log_error(
				    "inspect: invalid --gap value '%s'; give a number of bytes",
				    optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		default:
			return cli_option_error("inspect", "hv", argv);
		}
	}
	if (argc - optind > 1) {
		log_error("inspect: one image at a time ('%s' and '%s' given)", argv[optind],
			  argv[optind + 1]);
		return CLI_EXIT_USAGE;
	}
	path = optind < argc ? argv[optind] : NULL;
	if (!path) {
		log_error("inspect: no image given; run 'lazyerofs inspect --help'");
		return CLI_EXIT_USAGE;
	}
	if (map && extents) {
		log_error("inspect: --extents and --metadata-map print different things; give one");
		return CLI_EXIT_USAGE;
	}

	fd = util_open_read(AT_FDCWD, path, 0);
	if (fd < 0)
		return fail(path, fd, "cannot open");
	r = erofs_io_from_fd(&io, fd);
	if (r < 0)
		return fail(path, r, r == -EISDIR ? NULL : "not a regular file");
	r = erofs_probe(&io, &info, &err);
	if (r < 0)
		return fail(path, r, err.message);
	if (map) {
		_cleanup_free_ char *text = NULL;

		r = cli_metadata_map(&io, &text, &err);
		if (r < 0)
			return fail(path, r, err.message);
		printf("%s\n", text);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			log_error("inspect: cannot write the output: %m");
			return CLI_EXIT_FAILURE;
		}
		return CLI_EXIT_OK;
	}
	util_extents_init(&ext);
	t0 = util_now_us();
	r = erofs_walk(&io, &opts, &ext, &st, &err);
	t1 = util_now_us();
	if (r < 0) {
		util_extents_free(&ext);
		return fail(path, r, err.message);
	}
	ms = (double)(t1 - t0) / 1e3;

	if (extents) {
		for (size_t i = 0; i < ext.n; i++)
			printf("%llu %llu\n", (unsigned long long)ext.v[i].offset,
			       (unsigned long long)ext.v[i].length);
	} else {
		printf("image:        %s\n", path);
		printf("size:         %llu bytes (%s)\n", (unsigned long long)io.size,
		       util_format_bytes(io.size, hb, sizeof(hb)));
		printf("block size:   %u bytes\n", info.block_size);
		printf("features:     %s\n", info.features[0] ? info.features : "(none)");
		if (info.volume_name[0])
			printf("volume name:  %s\n", info.volume_name);
		if (info.extra_devices)
			printf("devices:      %u extra (mount needs -o device=)\n",
			       info.extra_devices);
		printf("inodes:       %llu in the superblock, %llu reached by the walk\n",
		       (unsigned long long)info.inodes, (unsigned long long)st.inodes);
		printf("tree:         %llu directories, %llu files, %llu symlinks, %llu special, "
		       "%llu entries, %u levels\n",
		       (unsigned long long)st.dirs, (unsigned long long)st.regular,
		       (unsigned long long)st.symlinks, (unsigned long long)st.special,
		       (unsigned long long)st.dirents, st.levels);
		printf("metadata:     %llu bytes (%s) of %llu, %.1f%%, in %zu extents (gap %llu)\n",
		       (unsigned long long)st.meta_bytes,
		       util_format_bytes(st.meta_bytes, mb, sizeof(mb)),
		       (unsigned long long)io.size,
		       io.size ? 100.0 * (double)st.meta_bytes / (double)io.size : 0.0, ext.n,
		       (unsigned long long)opts.merge_gap);
		printf("walk time:    %.1f ms (%llu reads)\n", ms, (unsigned long long)st.reads);
	}
	util_extents_free(&ext);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		log_error("inspect: cannot write the output: %m");
		return CLI_EXIT_FAILURE;
	}
	return CLI_EXIT_OK;
}
