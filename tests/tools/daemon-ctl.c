// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * daemon-ctl: drive the fetch daemon without mounting, for the integration tests and the
 * benchmark. Resolves SOURCE, starts or joins the entry's daemon (fetch_daemon_ensure: the
 * process holds it while it runs), then runs the commands in order, printing one JSON line
 * each:
 *
 *   daemon-ctl [-o OPTS] --cache DIR --run DIR [--timeout SEC] [--prefetch-all]
 *              [--chunk BYTES] [--threads N] [--blob sha256:HEX:SIZE] SOURCE COMMAND...
 *
 * --blob skips resolving SOURCE (the registry may be down: the daemon may already run).
 *   daemon-ctl --socket PATH COMMAND...   talks to a running daemon (fetch_connect: no hold,
 *                                          no SOURCE)
 *
 *   read OFF LEN     pread through a fresh fd (opened after the mark: raises events)
 *                    -> {"cmd":"read","ok":true,"sha256":"..","bytes":N,"ms":T}
 *                       or {"ok":false,"errno":E,"ms":T}
 *   readall [BUF]    read the whole data file sequentially (BUF bytes per pread, default
 *                    1 MiB) -> sha256, bytes, ms, mb_per_s
 *   ensure OFF:LEN[,OFF:LEN...]   fetch_ensure_ranges
 *   status           fetch_status as JSON
 *   sleep MS         wait
 *   wait-stdin       wait until stdin reaches EOF (keeps the daemon held)
 *   info             pid, data_path, socket_path
 *   attach MNT       fetch_attach (mnt_id from statx STATX_MNT_ID_UNIQUE)
 *   detach MNT_ID    fetch_detach
 *
 * Exit 0 when every command ran (a failed read is a result, not an error); 2 on setup errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch/fetch.h"
#include "oci/oci.h"
#include "util/cleanup.h"
#include "util/extents.h"
#include "util/json.h"
#include "util/macro.h"
#include "util/sha256.h"
#include "util/strutil.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int die(const char *fmt, ...) _printf_(1, 2);
static int die(const char *fmt, ...)
{
	va_list ap;

	fputs("daemon-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < UTIL_SHA256_LEN; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void cmd_read(const char *path, uint64_t off, uint64_t len, size_t bufsz, bool all)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct util_sha256 *s = NULL;
	uint8_t d[UTIL_SHA256_LEN];
	char h[2 * UTIL_SHA256_LEN + 1];
	double t0 = now_ms(), ms;
	uint64_t done = 0;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	buf = malloc(bufsz);
	if (fd < 0 || !buf || util_sha256_new(&s) < 0) {
		printf("{\"cmd\":\"read\",\"ok\":false,\"errno\":%d}\n", errno);
		goto out;
	}
	if (all) {
		off = 0;
		len = (uint64_t)lseek(fd, 0, SEEK_END);
	}
	while (done < len) {
		ssize_t n = pread(fd, buf, MIN(bufsz, len - done), (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		if (n == 0)
			break;
		util_sha256_update(s, buf, (size_t)n);
		done += (uint64_t)n;
	}
	ms = now_ms() - t0;
	if (err) {
		printf("{\"cmd\":\"%s\",\"ok\":false,\"errno\":%d,\"bytes\":%" PRIu64
		       ",\"ms\":%.1f}\n",
		       all ? "readall" : "read", err, done, ms);
		goto out;
	}
	util_sha256_final(s, d);
	hex(d, h);
	printf("{\"cmd\":\"%s\",\"ok\":true,\"sha256\":\"%s\",\"bytes\":%" PRIu64
	       ",\"ms\":%.1f,\"mb_per_s\":%.1f}\n",
	       all ? "readall" : "read", h, done, ms, ms > 0 ? (double)done / 1e3 / ms : 0.0);
out:
	fflush(stdout);
	if (fd >= 0)
		close(fd);
	util_sha256_free(s);
}

static int cmd_ensure(struct fetch_handle *h, const char *spec)
{
	_cleanup_free_ char *copy = strdup(spec);
	struct util_extents e;
	struct util_error err = UTIL_ERROR_INIT;
	char *save = NULL;
	double t0 = now_ms();
	int r;

	util_extents_init(&e);
	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(p, ':');
		uint64_t o, l;

		if (!colon)
			return die("ensure: expected OFF:LEN, got '%s'", p);
		*colon = 0;
		if (util_parse_u64(p, &o) < 0 || util_parse_u64(colon + 1, &l) < 0)
			return die("ensure: bad numbers in '%s'", spec);
		util_extents_add(&e, o, l);
	}
	r = fetch_ensure_ranges(h, e.v, e.n, &err);
	util_extents_free(&e);
	if (r < 0) {
		_cleanup_json_ json_t *o =
		    json_pack("{s:s,s:b,s:i,s:s,s:f}", "cmd", "ensure", "ok", 0, "errno", -r,
			      "error", err.message, "ms", now_ms() - t0);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		printf("{\"cmd\":\"ensure\",\"ok\":true,\"ms\":%.1f}\n", now_ms() - t0);
	}
	fflush(stdout);
	return 0;
}

static void cmd_status(struct fetch_handle *h)
{
	struct fetch_status st;
	int r = fetch_status(h, &st);

	if (r < 0) {
		printf("{\"cmd\":\"status\",\"ok\":false,\"errno\":%d}\n", -r);
	} else {
		printf("{\"cmd\":\"status\",\"ok\":true,\"digest\":\"%s\",\"size\":%" PRIu64
		       ",\"present_bytes\":%" PRIu64 ",\"fetched_bytes\":%" PRIu64
		       ",\"requests\":%" PRIu64 ",\"events\":%" PRIu64 ",\"answers\":%" PRIu64
		       ",\"fast_answers\":%" PRIu64 ",\"denied\":%" PRIu64 ",\"errors\":%" PRIu64
		       ",\"pending\":%" PRIu64 ",\"pid\":%d,\"worker_pid\":%d,\"restarts\":%u"
		       ",\"mounts\":%u,\"state\":\"%s\",\"marked\":%s,\"chunk_size\":%" PRIu64
		       "}\n",
		       st.digest, st.size, st.present_bytes, st.fetched_bytes, st.requests,
		       st.events, st.answers, st.fast_answers, st.denied, st.errors, st.pending,
		       (int)st.pid, (int)st.worker_pid, st.restarts, st.mounts, st.state,
		       st.marked ? "true" : "false", st.chunk_size);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"cache", required_argument, NULL, 'c'},
	    {"run", required_argument, NULL, 'r'},
	    {"timeout", required_argument, NULL, 't'},
	    {"prefetch-all", no_argument, NULL, 'p'},
	    {"chunk", required_argument, NULL, 'k'},
	    {"threads", required_argument, NULL, 'n'},
	    {"blob", required_argument, NULL, 'b'},
	    {"socket", required_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	struct oci_options opts;
	struct oci_ref *ref = NULL;
	struct oci_client *client = NULL;
	struct fetch_config cfg = {0};
	struct fetch_handle *h = NULL;
	struct util_error oerr = {0};
	const char *cache = NULL, *run = NULL, *blob = NULL, *sock = NULL;
	int first_cmd;
	struct util_error err = UTIL_ERROR_INIT;
	uint64_t timeout_s = 0;
	int c, r;

	oci_options_init(&opts);
	while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': {
			_cleanup_free_ char *copy = strdup(optarg);
			char *save = NULL;

			for (char *kv = strtok_r(copy, ",", &save); kv;
			     kv = strtok_r(NULL, ",", &save)) {
				char *eq = strchr(kv, '=');

				if (eq)
					*eq = 0;
				if (oci_options_set(&opts, kv, eq ? eq + 1 : NULL, &oerr) < 0)
					return die("option '%s': %s", kv, oerr.message);
			}
			break;
		}
		case 'c':
			cache = optarg;
			break;
		case 'r':
			run = optarg;
			break;
		case 't':
			if (util_parse_u64(optarg, &timeout_s) < 0)
				return die("bad --timeout");
			break;
		case 'p':
			cfg.prefetch_all = true;
			break;
		case 'k':
			if (util_parse_u64(optarg, &cfg.chunk_size) < 0)
				return die("bad --chunk");
			break;
		case 'b':
			blob = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'n': {
			uint64_t n;

			if (util_parse_u64(optarg, &n) < 0)
				return die("bad --threads");
			cfg.max_requests = (unsigned)n;
			break;
		}
		default:
			return 1;
		}
	}
	if (sock) {
		r = fetch_connect(sock, &h);
		if (r < 0)
			return die("connecting to '%s': %s", sock, strerror(-r));
		first_cmd = optind;
		goto commands;
	}
	if (optind >= argc || !cache || !run)
		return die("usage: daemon-ctl [-o OPTS] --cache DIR --run DIR SOURCE COMMAND...");
	r = oci_global_init();
	if (r >= 0)
		r = oci_ref_parse(argv[optind], &ref, &oerr);
	if (r < 0)
		return die("reference: %s", oerr.message[0] ? oerr.message : strerror(-r));
	r = oci_client_new(ref, &opts, &client);
	if (r < 0)
		return die("client: %s", strerror(-r));
	if (blob) {
		const char *colon = strrchr(blob, ':');

		if (!colon || colon - blob != UTIL_DIGEST_STR_LEN - 1 ||
		    util_parse_u64(colon + 1, &cfg.blob.size) < 0)
			return die("--blob wants sha256:HEX:SIZE");
		memcpy(cfg.blob.digest, blob, UTIL_DIGEST_STR_LEN - 1);
		memcpy(cfg.blob.cache_key, blob + 7, UTIL_SHA256_HEX_LEN);
		if (!util_digest_valid(cfg.blob.digest))
			return die("--blob: bad digest");
		r = oci_client_set_blob(client, &cfg.blob);
	} else {
		r = oci_resolve(client, &cfg.blob, &oerr);
	}
	if (r < 0)
		return die("resolve: %s", oerr.message[0] ? oerr.message : strerror(-r));
	cfg.cache_dir = cache;
	cfg.run_dir = run;
	cfg.ref = ref;
	cfg.opts = &opts;
	cfg.timeout_ms = timeout_s * 1000;
	r = fetch_daemon_ensure(&cfg, &h, &err);
	if (r < 0)
		return die("%s", util_err_msg(&err, r));
	first_cmd = optind + 1;
commands:
	for (int i = first_cmd; i < argc; i++) {
		const char *cmd = argv[i];

		if (!strcmp(cmd, "read") && i + 2 < argc) {
			uint64_t off, len;

			if (util_parse_u64(argv[i + 1], &off) < 0 ||
			    util_parse_u64(argv[i + 2], &len) < 0)
				return die("read: bad numbers");
			cmd_read(h->data_path, off, len, MAX(len, (uint64_t)1), false);
			i += 2;
		} else if (!strcmp(cmd, "readall")) {
			uint64_t bs = 1 << 20;

			if (i + 1 < argc && util_parse_u64(argv[i + 1], &bs) == 0)
				i++;
			cmd_read(h->data_path, 0, 0, (size_t)MAX(bs, (uint64_t)4096), true);
		} else if (!strcmp(cmd, "ensure") && i + 1 < argc) {
			if (cmd_ensure(h, argv[++i]))
				return 2;
		} else if (!strcmp(cmd, "status")) {
			cmd_status(h);
		} else if (!strcmp(cmd, "sleep") && i + 1 < argc) {
			uint64_t ms;

			if (util_parse_u64(argv[++i], &ms) < 0)
				return die("sleep: bad number");
			usleep((useconds_t)(ms * 1000));
		} else if (!strcmp(cmd, "wait-stdin")) {
			char b[256];

			while (read(0, b, sizeof(b)) > 0)
				;
		} else if (!strcmp(cmd, "attach") && i + 1 < argc) {
			struct statx stx;
			uint64_t id = 0;
			int root = open(argv[i + 1], O_PATH | O_DIRECTORY | O_CLOEXEC);

			if (statx(AT_FDCWD, argv[i + 1], 0, 0x4000 /* STATX_MNT_ID_UNIQUE */,
				  &stx) == 0)
				id = stx.stx_mnt_id;
			r = root < 0
				? -errno
				: fetch_attach(h, id, root, argv[i + 1], "daemon-ctl", NULL, NULL);
			if (root >= 0)
				close(root);
			printf("{\"cmd\":\"attach\",\"ok\":%s,\"errno\":%d,\"mnt_id\":%" PRIu64
			       "}\n",
			       r < 0 ? "false" : "true", r < 0 ? -r : 0, id);
			fflush(stdout);
			i++;
		} else if (!strcmp(cmd, "detach") && i + 1 < argc) {
			uint64_t id;

			if (util_parse_u64(argv[++i], &id) < 0)
				return die("detach: bad id");
			r = fetch_detach(h, id);
			printf("{\"cmd\":\"detach\",\"ok\":%s}\n", r < 0 ? "false" : "true");
			fflush(stdout);
		} else if (!strcmp(cmd, "info")) {
			printf("{\"cmd\":\"info\",\"pid\":%d,\"data_path\":\"%s\",\"socket\":\"%"
			       "s\"}\n",
			       (int)h->pid, h->data_path, h->socket_path);
			fflush(stdout);
		} else {
			return die("unknown command '%s'", cmd);
		}
	}
	fetch_handle_free(h);
	oci_client_free(client);
	oci_ref_free(ref);
	oci_options_free(&opts);
	return 0;
}
