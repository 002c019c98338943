// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Entry point: global options, subcommand dispatch, mount(8) helper detection. */
#include <string.h>
#include <stdio.h>
#include <libgen.h>

#include "cli/cli.h"
#include "fetch/fetch.h"
#include "util/log.h"
#include "util/proctitle.h"

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct cli_command commands[] = {
	{ "mount", cli_mount, "mount an EROFS image from a registry or URL, fetched on demand" },
	{ "umount", cli_umount, "unmount a lazyerofs mount and stop its daemon when unused" },
	{ "status", cli_status, "show mounts, cache fill and fetch counters" },
	{ "push", cli_push, "publish an EROFS image as a one-layer OCI image" },
	{ "inspect", cli_inspect, "summarise a local EROFS image; --extents lists its metadata" },
	{ "profile", cli_profile, "save a mount's startup profile, or attach one to its image" },
	{ "fetch", cli_fetch, "fetch and verify a whole image into the cache ahead of time" },
	{ "gc", cli_gc, "evict cache entries no mount uses, least recently used first" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: lazyerofs [-v] COMMAND [ARGS...]\n"
		   "       lazyerofs --help | --version\n\n"
		   "Mount EROFS images straight from an OCI registry; bytes load when read.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'lazyerofs COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	const char *prog = argc > 0 ? argv[0] : "lazyerofs";
	const char *base = strrchr(prog, '/');
	int i = 1;

	util_proctitle_init(argc, argv);
	base = base ? base + 1 : prog;
	util_log_set_prefix("lazyerofs");
	if (strcmp(base, "mount.erofs.lazy") == 0)
		return cli_mount_helper(argc, argv);

	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return CLI_EXIT_OK;
		} else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
			/* (the daemons' protocol: a mount refuses to join one of another) */
			printf("lazyerofs %s (daemon control protocol %d)\n", LAZYEROFS_VERSION,
			       fetch_proto_version());
			return CLI_EXIT_OK;
		} else if (strcmp(a, "--verbose") == 0) {
			cli_verbose_inc();
		} else if (a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) {
			for (size_t k = 1; a[k]; k++)
				cli_verbose_inc();
		} else {
			log_error("unknown option '%s'; run 'lazyerofs --help' for usage", a);
			return CLI_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		log_error("no command given; run 'lazyerofs --help' for the list of commands");
		return CLI_EXIT_USAGE;
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(argv[i], commands[k].name) == 0)
			return commands[k].run(argc - i, argv + i);
	log_error("unknown command '%s'; run 'lazyerofs --help' for the list of commands", argv[i]);
	return CLI_EXIT_USAGE;
}
