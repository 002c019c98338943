// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* `lazyerofs umount [-l] MOUNTPOINT`: argument parsing; the work is mount_umount(). */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "mount/mount.h"
#include "util/log.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: lazyerofs umount [-v] [-l|--lazy] MOUNTPOINT\n"
		   "\n"
		   "Unmount a lazyerofs mount and tell its fetch daemon, which exits once no mount\n"
		   "and no open file uses the image any more.\n"
		   "\n"
		   "  -l, --lazy   detach now even when files are open (they keep working until\n"
		   "               closed)\n"
		   "\n"
		   "Environment: LAZYEROFS_RUN_DIR (default " MOUNT_DEFAULT_RUN_DIR ").\n");
}

int cli_umount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "lazy", no_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct util_error err = UTIL_ERROR_INIT;
	bool lazy = false;
	int c, r;

	opterr = 0;
	optind = 0; /* (glibc starts over, permuting: options after the operands too) */
	while ((c = getopt_long(argc, argv, "hlv", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'l':
			lazy = true;
			break;
		case 'v':
			cli_verbose_inc();
			break;
		default:
			return cli_option_error("umount", "hlv", argv);
		}
	}
	if (argc - optind != 1) {
		log_error("umount: expected one MOUNTPOINT; see 'lazyerofs umount --help'");
		return CLI_EXIT_USAGE;
	}
	r = mount_umount(mount_env_run_dir(), argv[optind], lazy, &err);
	if (r < 0) {
		log_error("umount: %s", err.message);
		return CLI_EXIT_MOUNT;
	}
	return CLI_EXIT_OK;
}
