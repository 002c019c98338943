/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Subcommand entry points and the exit codes of the command-line contract. */
#ifndef LAZYEROFS_CLI_CLI_H
#define LAZYEROFS_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
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
int cli_fetch(int argc, char **argv);
int cli_gc(int argc, char **argv);

/* After getopt returned '?' (with opterr = 0): log one line naming the bad or incomplete
 * option and return CLI_EXIT_USAGE. */
int cli_option_error(const char *cmd, const char *optstring, char **argv);

/* Set the keys of a comma-separated -o list that the registry client owns (oci_options_set)
 * for a command that publishes; an unknown key, a bad value or a mirror (mirrors serve
 * pulls) is logged as one line naming cmd ("push", "profile push") and is -EINVAL (a usage
 * error). */
int cli_oci_options_parse(const char *cmd, struct oci_options *o, const char *s);

/* The command line of a subcommand that talks to a registry: [-o OPTS] [-v] [-h|--help], then
 * nargs arguments (what names them for the message); opts->run_dir is the environment's run
 * directory (its tokens are shared). -1: go on with the arguments at
 * argv[optind]; else the exit code to return (help printed, or one usage line logged). */
/* What a push reads besides its -o options: the configuration file's proxy and hosts.toml's
 * server, as for a pull (mount_push_options), into *opts; one line and -errno on failure. */
int cli_push_options(const char *cmd, const struct oci_ref *ref, struct oci_options *opts);
int cli_registry_args(const char *cmd, int argc, char **argv, int nargs, const char *what,
		      struct oci_options *opts, void (*usage)(FILE *f));

/* The command line of mount and fetch: [-o OPTS]... [-v] [-h|--help], then nargs arguments
 * (what names them for the message). Each -o is collected in optv (at most CLI_MAX_OPT_ARGS:
 * several add up, as with mount(8)). -1: go on with the arguments at argv[optind]; else the
 * exit code to return (help printed, or one usage line logged). */
#define CLI_MAX_OPT_ARGS 64
int cli_opt_args(const char *cmd, int argc, char **argv, int nargs, const char *what,
		 const char **optv, size_t *optn, void (*usage)(FILE *f));
/* Parse each -o argument of optv into mo and oo (mount_opts_parse, after mount_opts_init and
 * oci_options_init); a bad one is logged as one line naming cmd: -EINVAL. */
struct mount_opts;
int cli_mount_opts(const char *cmd, const char *const *optv, size_t optn, struct mount_opts *mo,
		   struct oci_options *oo);
/* Add one -o argument to optv: -E2BIG (logged, naming cmd) when there are too many. */
int cli_add_opt_arg(const char *cmd, const char **optv, size_t *optn, const char *arg);

/* Progress on stderr: on a terminal a bar redrawn in place; otherwise, with `lines`, a plain
 * line at every tenth of the way (and every CLI_PROGRESS_LINE_MS while it moves), else
 * nothing. */
#define CLI_PROGRESS_LINE_MS 10000
struct cli_progress {
	const char *verb; /* "pushing", "fetching" */
	const char *name; /* what, as the lines name it */
	bool tty, lines;
	bool open; /* a bar is drawn on the current line: end it before printing */
	int last_pct;
	uint64_t last_line_ms;
};
void cli_progress_init(struct cli_progress *p, const char *verb, const char *name, bool lines);
void cli_progress_update(struct cli_progress *p, uint64_t done, uint64_t total);
/* Finish the bar's line (before anything else is printed). */
void cli_progress_end(struct cli_progress *p);

/* The record of an unfinished layer upload of `push` (push_record.c), in
 * <cache-dir>/uploads: what lets a later push of the same blob to the same repository
 * continue the registry's session. */
struct cli_upload_record {
	int dirfd;  /* the records' directory; -1: no records this time */
	int lockfd; /* this record's lock, held */
	char name[UTIL_SHA256_HEX_LEN + 8];
	struct oci_upload_record rec; /* as found, then as last saved */
	bool have;  /* a record of this upload was found */
};
void cli_upload_record_init(struct cli_upload_record *u);
/* Find (and lock) the record of this upload. Problems with the directory or the record are
 * logged and leave records off or ignored (a push works without them); -errno only for bad
 * arguments. */
int cli_upload_record_open(struct cli_upload_record *u, const char *registry,
			   const char *repository, const char *digest, uint64_t size);
/* The session URL found, or NULL. */
const char *cli_upload_record_url(const struct cli_upload_record *u);
/* An oci_session_fn (ctx: the record): the session moved; write it down. */
void cli_upload_record_save(void *ctx, const char *url, uint64_t offset);
/* The blob is stored: the record goes. */
void cli_upload_record_done(struct cli_upload_record *u);
void cli_upload_record_close(struct cli_upload_record *u);
/* Records of uploads last moved more than CLI_UPLOAD_RECORD_MAX_AGE_S ago (a registry
 * forgets such sessions: the distribution registry purges them after 7 days), and lock
 * files without a record, that no push holds: removed (listed only, when dry_run). How many
 * records in *ret_n. -errno only when the cache directory cannot be opened; no uploads
 * directory is 0. */
#define CLI_UPLOAD_RECORD_MAX_AGE_S (7 * 24 * 3600)
int cli_upload_records_sweep(const char *cache_dir, bool dry_run, size_t *ret_n);

/* The metadata map of a local EROFS image read through io (oci.h: what push puts on its
 * layer's descriptor and `inspect --metadata-map` prints), the text in *ret (caller frees):
 * its metadata blocks exactly, no gap bridged (a mount bridges what is worth it for its
 * link). -errno with err. */
struct erofs_io;
int cli_metadata_map(struct erofs_io *io, char **ret, struct util_error *err);

/* Count leading -v / --verbose flags handled globally; returns the new verbosity. */
void cli_verbose_inc(void);

#endif
