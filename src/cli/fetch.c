// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs fetch [-o OPTS] SOURCE`: fill and verify a cache entry ahead of time, so that a
 * later mount of SOURCE by digest is local and works offline. Argument parsing, progress on
 * stderr, signals and the one-line report; the work is mount_fill() in src/mount/.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "mount/mount.h"
#include "util/log.h"
#include "util/strutil.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: lazyerofs fetch [-v] [-o OPTS] SOURCE\n"
		"\n"
		"Fetch a whole image into the cache ahead of time and verify it against its\n"
		"digest, so that a later 'lazyerofs mount' of SOURCE is served from local disk;\n"
		"a mount that names the image by digest (REPOSITORY@sha256:...) then needs no\n"
		"registry at all. Joins the daemon of a mount that uses the same image. Progress\n"
		"goes to stderr: a bar on a terminal, a line every 10%% otherwise. Interrupted,\n"
		"it keeps what arrived; run it again to go on. A blob that is not an EROFS\n"
		"image is refused after its first block.\n"
		"\n"
		"SOURCE: [oci://]REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], or an http(s):// URL.\n"
		"\n"
		"Options (-o, comma-separated, may be repeated):\n"
		"  insecure              plain-HTTP registry\n"
		"  ca=PATH               trust this CA for the registry's TLS certificate\n"
		"  mirror=[http(s)://]HOST[:PORT][/PATH]   pull through this mirror first\n"
		"                        (repeatable, tried in order, then the registry)\n"
		"  username=NAME,password-file=PATH   registry credentials\n"
		"  blob=sha256:...       this layer blob; layer=N  the N-th layer (0-based)\n"
		"  platform=OS/ARCH[/VARIANT]   pick from a multi-platform index; a single\n"
		"                        manifest's config must record it\n"
		"  digest=sha256:...     pin the content of a URL source\n"
		"  timeout=SECONDS       give up when nothing arrives for this long (60)\n"
		"  cache=DIR             cache directory (default $LAZYEROFS_CACHE_DIR or\n"
		"                        " MOUNT_DEFAULT_CACHE_DIR ")\n"
		"\n"
		"Exit status: 0 when the entry is complete and verified (also when it already\n"
		"was; a URL source without digest= has no digest: complete), 1 for a usage\n"
		"error, 2 for any other failure or an interruption.\n");
}

static volatile sig_atomic_t interrupted, daemon_started;

/* Before the daemon starts there is nothing to undo: say so and leave, as any failure does.
 * After, stop and release the daemon (it must not be left waiting for us). */
static void on_signal(int sig)
{
	static const char msg[] = "lazyerofs: fetch: interrupted before anything was fetched\n";

	if (!daemon_started) {
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(CLI_EXIT_FAILURE);
	}
	interrupted = sig;
}

static void catch_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {.sa_handler = on_signal};

	/* No SA_RESTART: a signal ends the wait between two looks at the daemon. */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

struct fill_view {
	struct cli_progress bar;
	char name[32]; /* "sha256:" and 12 hex digits */
	bool verifying;
};

static void on_progress(void *ctx, const struct fetch_status *st)
{
	struct fill_view *v = ctx;

	if (!v->bar.name) {
		snprintf(v->name, sizeof(v->name), "%.19s", st->digest[0] ? st->digest : "image");
		cli_progress_init(&v->bar, "fetching", v->name, true);
	}
	cli_progress_update(&v->bar, st->present_bytes, st->size);
	if (!v->verifying && strcmp(st->state, "complete") == 0 && st->digest[0]) {
		v->verifying = true;
		cli_progress_end(&v->bar);
		if (v->bar.tty || v->bar.lines)
			fprintf(stderr, "verifying %s against its digest\n", v->name);
	}
}

static int fill(const char *source, const char *const *optv, size_t optn)
{
	struct mount_opts mo;
	struct oci_options oo;
	struct mount_fill_result res;
	struct fill_view view = {0};
	struct mount_fill_request req = {.source = source,
					 .progress = on_progress,
					 .ctx = &view,
					 .cancel = &interrupted,
					 .daemon_started = &daemon_started};
	struct util_error err = UTIL_ERROR_INIT;
	char a[32], b[32];
	int class, r, code = CLI_EXIT_OK;

	mount_opts_init(&mo);
	oci_options_init(&oo);
	mo.fill_only = true;
	if (cli_mount_opts("fetch", optv, optn, &mo, &oo) < 0) {
		code = CLI_EXIT_USAGE;
		goto out;
	}
	req.opts = &mo;
	req.oci = &oo;
	catch_signals();
	r = mount_fill(&req, &res, &class, &err);
	if (view.bar.name)
		cli_progress_end(&view.bar);
	util_format_bytes(res.present_bytes, a, sizeof(a));
	util_format_bytes(res.size, b, sizeof(b));
	if (r == -EINTR) {
		log_error("fetch: interrupted; %s of %s are in the cache (fetch again to go on)", a,
			  b);
		code = CLI_EXIT_FAILURE;
	} else if (r < 0) {
		mount_sanitize_line(err.message);
		if (res.size && r != -EILSEQ)
			log_error("fetch: %s (%s of %s are in the cache)", err.message, a, b);
		else
			log_error("fetch: %s", err.message);
		code = class == MOUNT_FAIL_USAGE ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
	} else if (res.already) {
		printf("%s is already in the cache, complete%s (%s)\n",
		       res.digest[0] ? res.digest : source,
		       res.verified ? " and verified" : "; no digest to verify it against", b);
	} else {
		printf("%s fetched (%s, %s of it from the registry) and %s in %.1f s\n",
		       res.digest[0] ? res.digest : source, b,
		       util_format_bytes(res.fetched_bytes, a, sizeof(a)),
		       res.verified ? "verified" : "complete (no digest to verify it against)",
		       (double)res.ms / 1000);
	}
	if (code == CLI_EXIT_OK && fflush(stdout) != 0) {
		log_error("fetch: writing the result: %m");
		code = CLI_EXIT_FAILURE;
	}
out:
	mount_opts_free(&mo);
	oci_options_free(&oo);
	return code;
}

int cli_fetch(int argc, char **argv)
{
	const char *optv[CLI_MAX_OPT_ARGS];
	size_t optn = 0;
	int r = cli_opt_args("fetch", argc, argv, 1, "SOURCE", optv, &optn, usage);

	if (r >= 0)
		return r;
	return fill(argv[optind], optv, optn);
}
