// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Subcommands whose modules are not built yet: each says so and fails. Each moves to its own
 * file as its module lands. */
#include <stdio.h>

#include "cli/cli.h"
#include "util/log.h"

static int not_yet(const char *what, int code)
{
	log_error("%s: not available in this build yet", what);
	return code;
}

int cli_mount(int argc, char **argv) { return not_yet("mount", CLI_EXIT_MOUNT); }
int cli_mount_helper(int argc, char **argv) { return not_yet("mount", CLI_EXIT_MOUNT); }
int cli_umount(int argc, char **argv) { return not_yet("umount", CLI_EXIT_MOUNT); }
int cli_status(int argc, char **argv) { return not_yet("status", CLI_EXIT_FAILURE); }
