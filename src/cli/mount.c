// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs mount [-o OPTS] SOURCE MOUNTPOINT` and the mount(8) helper entry
 * (`/sbin/mount.erofs.lazy SOURCE DIR [-sfnv] [-o OPTS]`): argument parsing and the one-line
 * report; the work is mount_do() in src/mount/.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/config.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/strutil.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: lazyerofs mount [-v] [-o OPTS] SOURCE MOUNTPOINT\n"
		"\n"
		"Mount an EROFS image from an OCI registry or an http(s) URL; its bytes are\n"
		"fetched when first read. SOURCE is [oci://]REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]\n"
		"or an http(s):// URL of an image file served with byte ranges.\n"
		"\n"
		"Options (-o, comma-separated, may be repeated):\n"
		"  insecure              plain-HTTP registry\n"
		"  ca=PATH               trust this CA for the registry's TLS certificate\n"
		"  mirror=[http(s)://]HOST[:PORT][/PATH]   pull through this mirror first\n"
		"                        (repeatable, tried in order, then the registry; PATH\n"
		"                        goes before /v2; http:// is plain HTTP for that mirror)\n"
		"  username=NAME,password-file=PATH   registry credentials\n"
		"  blob=sha256:...       mount this layer blob; layer=N  the N-th layer (0-based)\n"
		"  platform=OS/ARCH[/VARIANT]   pick from a multi-platform index; a single\n"
		"                        manifest's config must record it\n"
		"  digest=sha256:...     pin the content of a URL source\n"
		"  prefetch=none|all     all: fetch the whole image in the background and verify it\n"
		"  profile=auto|none|PATH   replay a startup profile: auto (default) the newest one\n"
		"                        attached to the image in the registry, or the file PATH\n"
		"                        (see 'lazyerofs profile --help')\n"
		"  timeout=SECONDS       a read that cannot be fetched in time fails with EIO (60;\n"
		"                        against a stalled registry, up to 2 s later)\n"
		"  cache=DIR             cache directory (default $LAZYEROFS_CACHE_DIR or\n"
		"                        " MOUNT_DEFAULT_CACHE_DIR "); must not be tmpfs or overlayfs\n"
		"  ro nosuid nodev noexec noatime relatime strictatime nodiratime defaults\n"
		"                        mount flags (the mount is always read-only)\n"
		"  oci.blob= oci.layer= oci.platform= oci.username= oci.insecure   erofs-utils aliases\n"
		"\n"
		"Environment: LAZYEROFS_CACHE_DIR, LAZYEROFS_RUN_DIR (default " MOUNT_DEFAULT_RUN_DIR ").\n"
		"Configuration: " UTIL_CONFIG_PATH " ($LAZYEROFS_CONFIG): proxy, mirrors per\n"
		"registry; containerd's /etc/containerd/certs.d/HOST/hosts.toml\n"
		"($LAZYEROFS_CERTS_D): server, host mirrors, capabilities, ca, client, skip_verify,\n"
		"header, override_path, proxy, dial_timeout; without hosts.toml, its *.crt CAs and\n"
		"*.cert/*.key client certificates. Mirrors from -o come first, then the file's,\n"
		"then hosts.toml's, then the registry.\n"
		"Also installed as /sbin/mount.erofs.lazy: mount -t erofs.lazy -o OPTS SOURCE DIR.\n"
		"Unmount with 'lazyerofs umount MOUNTPOINT' (or umount(8)).\n");
}

static void report(const char *source, const char *mountpoint, const struct mount_result *r)
{
	char b1[32], b2[32];

	log_info("mounted '%s' (%s, %s) on '%s': mnt_id %llu, daemon pid %d, %llu ms%s",
		 source, r->digest, util_format_bytes(r->size, b1, sizeof(b1)), mountpoint,
		 (unsigned long long)r->mnt_id, (int)r->daemon_pid,
		 (unsigned long long)r->total_ms, r->offline ? " (offline, from the cache)" : "");
	log_info("timing: resolve %llu ms, daemon %llu ms, metadata %llu ms, kernel mount %llu ms",
		 (unsigned long long)r->resolve_ms, (unsigned long long)r->daemon_ms,
		 (unsigned long long)r->walk_ms, (unsigned long long)r->kmount_ms);
	log_info("metadata walk: %llu inodes, %u levels, %llu ranges (%s), %llu prefetch batches, "
		 "%llu HTTP requests, %s fetched",
		 (unsigned long long)r->walk.inodes, r->walk.levels,
		 (unsigned long long)r->walk_ranges, util_format_bytes(r->walk.meta_bytes, b1, sizeof(b1)),
		 (unsigned long long)r->walk.prefetches, (unsigned long long)r->walk_requests,
		 util_format_bytes(r->walk_fetched, b2, sizeof(b2)));
	log_info("metadata reads: %llu (%llu from %s loaded in %llu reads, %llu direct), raising "
		 "%llu events (%llu answered from the bitmap)",
		 (unsigned long long)r->walk.reads, (unsigned long long)r->io.cached_reads,
		 util_format_bytes(r->io.loaded_bytes, b1, sizeof(b1)),
		 (unsigned long long)r->io.preads, (unsigned long long)r->io.direct_reads,
		 (unsigned long long)r->walk_events, (unsigned long long)r->walk_fast);
	log_info("metadata batches: %llu, asking for %llu ranges, %s in total (the last one "
		 "bridging gaps up to %s)",
		 (unsigned long long)r->io.batches, (unsigned long long)r->io.ranges,
		 util_format_bytes(r->io.ensured_bytes, b1, sizeof(b1)),
		 util_format_bytes(MAX(r->io.bridge_gap, 16384), b2, sizeof(b2)));
	if (r->profile_from[0])
		log_info("startup profile %s: %llu ranges, %s, replaying (lookup %llu ms)",
			 r->profile_from, (unsigned long long)r->profile_ranges,
			 util_format_bytes(r->profile_bytes, b1, sizeof(b1)),
			 (unsigned long long)r->profile_lookup_ms);
	if (r->map_ranges)
		log_info("metadata map: %llu ranges, %s, asked for before the walk, %s (the "
			 "registry's quickest reply: %.1f ms)",
			 (unsigned long long)r->map_ranges,
			 util_format_bytes(r->map_bytes, b1, sizeof(b1)),
			 r->map_blind ? "as listed, before the first round"
				      : "after the first round, with gaps bridged at its rate",
			 r->reply_us / 1000.0);
	if (r->zone_bytes)
		log_info("metadata zone: %s fetched whole before the walk",
			 util_format_bytes(r->zone_bytes, b1, sizeof(b1)));
	log_info("metadata time: %llu ms waiting for the daemon's batches, %llu ms loading, "
		 "%llu ms walking",
		 (unsigned long long)r->io.ensure_us / 1000, (unsigned long long)r->io.load_us / 1000,
		 (unsigned long long)(r->walk_ms - MIN(r->walk_ms, (r->io.ensure_us + r->io.load_us) / 1000)));
}

/* The common part of both entries: options collected, two positional arguments. */
static int do_mount(const char *source, const char *mountpoint, const char *const *optv,
		    size_t optn, bool sloppy, bool helper)
{
	struct mount_opts mo;
	struct oci_options oo;
	struct mount_result res;
	struct mount_request req = { .source = source, .mountpoint = mountpoint };
	struct util_error err = UTIL_ERROR_INIT;
	int class, r, code = CLI_EXIT_OK;

	mount_opts_init(&mo);
	oci_options_init(&oo);
	mo.sloppy = sloppy;
	mo.helper = helper;
	if (cli_mount_opts("mount", optv, optn, &mo, &oo) < 0) {
		code = CLI_EXIT_USAGE;
		goto out;
	}
	req.opts = &mo;
	req.oci = &oo;
	r = mount_do(&req, &res, &class, &err);
	if (r < 0) {
		log_error("mount: %s", err.message);
		code = class == MOUNT_FAIL_USAGE ? CLI_EXIT_USAGE : CLI_EXIT_MOUNT;
		goto out;
	}
	if (res.already) {
		log_debug("mount: '%s' is mounted on '%s' already", source, mountpoint);
		goto out;
	}
	if (res.profile_warning[0]) {
		mount_sanitize_line(res.profile_warning);
		log_warning("mount: %s", res.profile_warning);
	}
	report(source, mountpoint, &res);
out:
	mount_opts_free(&mo);
	oci_options_free(&oo);
	return code;
}

int cli_mount(int argc, char **argv)
{
	const char *optv[CLI_MAX_OPT_ARGS];
	size_t optn = 0;
	int r = cli_opt_args("mount", argc, argv, 2, "SOURCE and MOUNTPOINT", optv, &optn, usage);

	if (r >= 0)
		return r;
	return do_mount(argv[optind], argv[optind + 1], optv, optn, false, false);
}

/* mount(8) runs `/sbin/mount.erofs.lazy SOURCE DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`. */
int cli_mount_helper(int argc, char **argv)
{
	static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	const char *optv[CLI_MAX_OPT_ARGS];
	const char *pos[2];
	size_t optn = 0, npos = 0;
	bool sloppy = false, fake = false;
	int c;

	opterr = 0;
	optind = 1;
	/* Leading '-': positionals come back as option 1, in order, wherever they are. */
	while ((c = getopt_long(argc, argv, "-sfnvho:t:N:", longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			if (npos == 2) {
				log_error("mount: unexpected argument '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			pos[npos++] = optarg;
			break;
		case 's':
			sloppy = true;
			break;
		case 'f':
			fake = true;
			break;
		case 'n':
			break; /* no mtab to write: the kernel's mount table is the truth */
		case 'v':
			cli_verbose_inc();
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'o':
			if (cli_add_opt_arg("mount", optv, &optn, optarg) < 0)
				return CLI_EXIT_USAGE;
			break;
		case 't':
			if (strcmp(optarg, "erofs.lazy") != 0 && strcmp(optarg, "erofs") != 0 &&
			    strcmp(optarg, "lazy") != 0) {
				log_error("mount: filesystem type '%s' is not handled by this helper "
					  "(erofs.lazy)", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'N':
			log_error("mount: -N (mount namespaces) is not supported by mount.erofs.lazy");
			return CLI_EXIT_USAGE;
		default:
			return cli_option_error("mount", "-sfnvho:t:N:", argv);
		}
	}
	if (npos != 2) {
		log_error("mount: expected SOURCE and DIR (mount -t erofs.lazy SOURCE DIR)");
		return CLI_EXIT_USAGE;
	}
	if (fake)
		return CLI_EXIT_OK;
	return do_mount(pos[0], pos[1], optv, optn, sloppy, true);
}
