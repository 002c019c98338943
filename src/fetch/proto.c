// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The control protocol's wire format: one JSON object per line over a unix stream socket,
 * with an optional fd passed (SCM_RIGHTS) alongside a request. Lines are size-capped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fetch/internal.h"
#include "util/cleanup.h"

int fetch_unix_addr(const char *path, struct sockaddr_un *sa, int *ret_dirfd)
{
	const char *slash;
	_cleanup_free_ char *dir = NULL;
	int dfd, r;

	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	*ret_dirfd = -1;
	if (strlen(path) < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, strlen(path) + 1);
		return 0;
	}
	/* Too long for sun_path (a deep run directory): go through the directory's fd. */
	slash = strrchr(path, '/');
	if (!slash)
		return -ENAMETOOLONG;
	dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	dfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	r = fetch_unix_addr_at(dfd, slash + 1, sa);
	if (r < 0) {
		close(dfd);
		return r;
	}
	*ret_dirfd = dfd;
	return 0;
}

int fetch_unix_addr_at(int dirfd, const char *name, struct sockaddr_un *sa)
{
	int n;

	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd, name);
	return n < 0 || (size_t)n >= sizeof(sa->sun_path) ? -ENAMETOOLONG : 0;
}

int fetch_proto_send(int fd, json_t *msg, int pass_fd)
{
	_cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
	size_t len, off = 0;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	text[len++] = '\n'; /* replaces the NUL; the buffer is not used as a string again */
	while (off < len) {
		struct iovec iov = {.iov_base = text + off, .iov_len = len - off};
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} c;
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		if (pass_fd >= 0 && off == 0) {
			struct cmsghdr *cm;

			memset(&c, 0, sizeof(c));
			mh.msg_control = c.buf;
			mh.msg_controllen = sizeof(c.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

void fetch_linebuf_free(struct fetch_linebuf *lb)
{
	free(lb->buf);
	*lb = (struct fetch_linebuf){0};
}

int fetch_proto_recv_line(int fd, struct fetch_linebuf *lb, size_t max, char **ret_line,
			  size_t *ret_len, int *ret_fd)
{
	int got_fd = -1;

	*ret_fd = -1;
	for (;;) {
		char *nl = lb->len ? memchr(lb->buf, '\n', lb->len) : NULL;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int) * 4)];
		} c;
		struct msghdr mh = {0};
		struct iovec iov;
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - lb->buf);
			char *line = malloc(l + 1);

			if (!line) {
				if (got_fd >= 0)
					close(got_fd);
				return -ENOMEM;
			}
			memcpy(line, lb->buf, l);
			line[l] = 0;
			memmove(lb->buf, nl + 1, lb->len - l - 1);
			lb->len -= l + 1;
			*ret_line = line;
			*ret_len = l;
			*ret_fd = got_fd;
			return 0;
		}
		if (lb->len >= max) {
			if (got_fd >= 0)
				close(got_fd);
			return -EFBIG;
		}
		if (lb->alloc - lb->len < 4096) {
			size_t na = lb->alloc ? lb->alloc * 2 : 8192;
			char *p;

			if (na > max + 4096)
				na = max + 4096;
			p = realloc(lb->buf, na);
			if (!p) {
				if (got_fd >= 0)
					close(got_fd);
				return -ENOMEM;
			}
			lb->buf = p;
			lb->alloc = na;
		}
		iov = (struct iovec){.iov_base = lb->buf + lb->len, .iov_len = lb->alloc - lb->len};
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = c.buf;
		mh.msg_controllen = sizeof(c.buf);
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (got_fd >= 0)
				close(got_fd);
			return -errno;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t nfds;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfds; i++) {
				int x;

				memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				/* Keep the first fd; a peer sending more gets them closed. */
				if (got_fd < 0)
					got_fd = x;
				else
					close(x);
			}
		}
		if (n == 0) {
			if (got_fd >= 0)
				close(got_fd);
			return -ECONNRESET;
		}
		lb->len += (size_t)n;
	}
}

int fetch_proto_call(int fd, json_t *req, int pass_fd, json_t **ret_reply, int *ret_fd,
		     struct util_error *err)
{
	_cleanup_close_ int got_fd = -1;
	struct fetch_linebuf lb = {0};
	_cleanup_free_ char *line = NULL;
	json_t *reply = NULL, *ok;
	size_t len;
	int r, rfd = -1;

	if (ret_fd)
		*ret_fd = -1;
	r = fetch_proto_send(fd, req, pass_fd);
	if (r < 0)
		return r;
	r = fetch_proto_recv_line(fd, &lb, FETCH_REPLY_MAX, &line, &len, &rfd);
	fetch_linebuf_free(&lb);
	got_fd = rfd;
	if (r < 0)
		return r;
	r = util_json_parse(line, len, FETCH_REPLY_MAX, &reply);
	if (r < 0)
		return r;
	ok = json_object_get(reply, "ok");
	if (!json_is_true(ok)) {
		const char *msg = NULL;
		uint64_t e = 0;

		(void)util_json_get_string(reply, "error", &msg);
		(void)util_json_get_u64(reply, "errno", &e);
		r = util_err_set(err, e > 0 && e < 4096 ? -(int)e : -EIO, "%s",
				 msg ? msg : "the daemon refused the request");
		json_decref(reply);
		return r;
	}
	*ret_reply = reply;
	if (ret_fd)
		*ret_fd = TAKE_FD(got_fd);
	return 0;
}

int fetch_reply_error(int fd, int err, const char *fmt, ...)
{
	_cleanup_json_ json_t *o = NULL;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:b,s:i,s:s}", "ok", 0, "errno", err < 0 ? -err : err, "error", msg);
	return o ? fetch_proto_send(fd, o, -1) : -ENOMEM;
}

#define SEALS_WANTED (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)

int fetch_sealed_new(const char *name, const void *buf, size_t len, int *ret_fd)
{
	_cleanup_close_ int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	size_t off = 0;

	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, (const uint8_t *)buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		off += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, SEALS_WANTED | F_SEAL_SEAL) < 0)
		return -errno;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int fetch_sealed_read(int fd, size_t max, const char *what, uint8_t **ret_buf, size_t *ret_len,
		      struct util_error *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	size_t off = 0;

	if (seals < 0 || (seals & SEALS_WANTED) != SEALS_WANTED)
		return util_err_set(err, -EPERM, "%s: the data must come in a sealed memfd", what);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return util_err_set(err, -EINVAL, "%s: the fd passed is not a file", what);
	if ((uint64_t)st.st_size > max)
		return util_err_set(err, -EFBIG, "%s: %llu bytes (limit %zu)", what,
				    (unsigned long long)st.st_size, max);
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		return util_err_set(err, -ENOMEM, "%s: out of memory", what);
	while (off < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return util_err_set(err, -EIO, "%s: reading the memfd failed", what);
		off += (size_t)n;
	}
	*ret_buf = TAKE_PTR(buf);
	*ret_len = off;
	return 0;
}

int fetch_proto_call_sealed(int fd, const char *op, const void *buf, size_t len,
			    json_t **ret_reply, struct util_error *err)
{
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", op);
	_cleanup_close_ int mfd = -1;
	char name[64];
	int r;

	if (!req)
		return -ENOMEM;
	snprintf(name, sizeof(name), "lazyerofs-%s", op);
	r = fetch_sealed_new(name, buf, len, &mfd);
	if (r < 0)
		return util_err_set(err, r, "%s: passing the data: %s", op, strerror(-r));
	return fetch_proto_call(fd, req, mfd, ret_reply, NULL, err);
}
