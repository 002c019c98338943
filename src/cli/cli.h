/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Subcommand entry points and the exit codes of the command-line contract. */
#ifndef LAZYEROFS_CLI_CLI_H
#define LAZYEROFS_CLI_CLI_H

#include <stdio.h>

#include "oci/oci.h"

enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_USAGE = 1,   /* bad syntax, unknown option, invalid reference */
	CLI_EXIT_FAILURE = 2, /* any other failure of push/inspect/status */
	CLI_EXIT_MOUNT = 32,  /* any other failure of mount/umount, as mount(8) helpers do */
};

/* Each subcommand parses its own options (argv[0] is the subcommand name) and returns an
 * exit code. */
int cli_mount(int argc, char **argv);
int cli_mount_helper(int argc, char **argv); /* invoked as mount.erofs.lazy */
int cli_umount(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_push(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_profile(int argc, char **argv); /* profile save | profile push */

/* After getopt returned '?' (with opterr = 0): log one line naming the bad or incomplete
 * option and return CLI_EXIT_USAGE. */
int cli_option_error(const char *cmd, const char *optstring, char **argv);

/* Set the keys of a comma-separated -o list that the registry client owns (oci_options_set)
 * for a command that publishes; an unknown key, a bad value or a mirror (mirrors serve
 * pulls) is logged as one line naming cmd ("push", "profile push") and is -EINVAL (a usage
 * error). */
int cli_oci_options_parse(const char *cmd, struct oci_options *o, const char *s);

/* The command line of a subcommand that talks to a registry: [-o OPTS] [-v] [-h|--help], then
 * nargs arguments (what names them for the message). -1: go on with the arguments at
 * argv[optind]; else the exit code to return (help printed, or one usage line logged). */
int cli_registry_args(const char *cmd, int argc, char **argv, int nargs, const char *what,
		      struct oci_options *opts, void (*usage)(FILE *f));

/* Count leading -v / --verbose flags handled globally; returns the new verbosity. */
void cli_verbose_inc(void);

#endif
