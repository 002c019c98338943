// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * delay-proxy: a TCP proxy that adds a fixed one-way delay in each direction, for the link
 * benchmark (bench/link-bench): "RTT x" is this proxy with DELAY_MS = x / 2.
 *
 *   delay-proxy LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS
 *
 * Listens on 127.0.0.1:LISTEN_PORT (0: the kernel picks a port); prints the port on the first
 * line of stdout once it listens. Every accepted connection gets its own upstream connection
 * at once (set-up is not delayed). Each chunk of bytes read from one side is held DELAY_MS
 * from the moment it was read, then written to the other side, in order; a FIN is delayed
 * like data. The delay is pipelined: chunks queue behind each other with their own
 * timestamps, so throughput is the link's, not one chunk per delay. A side that does not take
 * its bytes stops the reading of the other side once QUEUE_CAP bytes wait (backpressure).
 *
 * One thread, epoll, nonblocking sockets. The bytes never enter this process: each direction
 * has a pipe, splice(2) moves them from the socket into it and, once due, from it to the other
 * socket (page references, no copies; a user-space copy capped a 2-CPU machine at half of
 * curl's loopback speed). Beside the pipes, a queue of records says how many bytes each read
 * brought, into which pipe, and when they are due. Since every record waits the same delay,
 * records are due in the order they were read, across all connections: one global FIFO of
 * records is the timer queue, its head the next deadline.
 *
 * A pipe holds at most 1 MiB without CAP_SYS_RESOURCE (fs.pipe-max-size), and a 25 ms delay
 * at 1 GB/s keeps 25 MB in flight: a direction fills a chain of pipes, FIFO, up to QUEUE_CAP.
 * Its first pipe starts small (PIPE_START), so a thousand idle connections cost little.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_MAX (1u << 20)
#define PIPE_START (256u << 10)
#define PIPE_MAX (1u << 20)
#define QUEUE_CAP (64u << 20)
#define MAX_PIPES 128 /* per direction: QUEUE_CAP in pipes that hold less than they could */

struct conn;

/* What one splice into a pipe brought (the bytes themselves are in the pipe). */
struct chunk {
	struct chunk *next;  /* in its direction's queue */
	struct chunk *gnext; /* in the global timer FIFO, until released */
	struct dir *dir;     /* NULL once its connection is gone */
	uint64_t due_ns;
	bool released;  /* due time passed: may be written */
	bool in_global; /* still referenced by the timer FIFO */
	size_t len, off; /* len 0: a FIN */
	unsigned pipe_seq; /* the pipe of its direction that holds its bytes */
};

/* One direction: bytes read from side `from`, written to side `to`. */
struct dir {
	struct conn *conn;
	int from, to;
	struct chunk *head, *tail;
	size_t queued;
	/* The bytes in flight, in order: pipes[seq % MAX_PIPES] for head_seq <= seq <= tail_seq. */
	int pipes[MAX_PIPES][2];
	unsigned head_seq, tail_seq;
	size_t tail_size; /* the capacity of the pipe being filled */
	bool pipe_full;   /* the pipes took no more: wait until some bytes leave */
	bool read_eof;  /* FIN (or error) read from `from`: no more reads */
	bool fin_sent;  /* the FIN went out to `to` */
	bool blocked;   /* the last write to `to` hit EAGAIN */
};

struct side {
	struct conn *conn;
	int idx;
	int fd;
	uint32_t events; /* registered with epoll */
	bool gone;       /* hung up after its EOF: out of epoll, which would report it forever */
};

struct conn {
	struct side side[2]; /* 0: client, 1: upstream */
	struct dir dir[2];   /* 0: client -> upstream, 1: upstream -> client */
	bool connecting;
	bool dead;
	struct conn *next_dead;
};

static int epfd;
static uint64_t delay_ns;
static struct chunk *ghead, *gtail;
static struct conn *dead_list;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "delay-proxy: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void conn_kill(struct conn *c);

/* Each connection holds six descriptors: a thousand of them need more than 1024. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Open pipe `seq` of d (the next one to fill); false if no pipe could be made. */
static bool pipe_open(struct dir *d, unsigned seq)
{
	int *pp = d->pipes[seq % MAX_PIPES];
	int sz;

	if (pipe2(pp, O_NONBLOCK | O_CLOEXEC) < 0)
		return false;
	sz = fcntl(pp[1], F_SETPIPE_SZ, (int)(seq == 0 ? PIPE_START : PIPE_MAX));
	if (sz < 0)
		sz = fcntl(pp[1], F_GETPIPE_SZ);
	d->tail_size = sz > 0 ? (size_t)sz : 65536;
	d->tail_seq = seq;
	return true;
}

static void side_update(struct side *s)
{
	struct conn *c = s->conn;
	struct dir *rd = &c->dir[s->idx];     /* we read from this side into rd */
	struct dir *wr = &c->dir[1 - s->idx]; /* we write to this side from wr */
	uint32_t ev = 0;
	struct epoll_event e;

	if (c->dead || s->fd < 0 || s->gone)
		return;
	if (s->idx == 1 && c->connecting) {
		ev = EPOLLOUT;
	} else {
		if (!rd->read_eof && !rd->pipe_full && rd->queued < QUEUE_CAP)
			ev |= EPOLLIN;
		if (wr->blocked)
			ev |= EPOLLOUT;
	}
	if (ev == s->events)
		return;
	e.events = ev;
	e.data.ptr = s;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &e) < 0)
		die("epoll_ctl");
	s->events = ev;
}

/* Write what is released in d to its destination; false if the connection died. */
static bool dir_flush(struct dir *d)
{
	struct conn *c = d->conn;
	int fd = c->side[d->to].fd;

	if (c->dead || (d->to == 1 && c->connecting))
		return true;
	d->blocked = false;
	while (d->head && d->head->released) {
		struct chunk *k = d->head;

		if (k->len == 0) {
			shutdown(fd, SHUT_WR);
			d->fin_sent = true;
		} else {
			while (k->off < k->len) {
				ssize_t n = splice(d->pipes[k->pipe_seq % MAX_PIPES][0], NULL, fd,
						   NULL, k->len - k->off,
						   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);

				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
					d->blocked = true;
					side_update(&c->side[d->to]);
					return true;
				}
				if (n < 0) {
					conn_kill(c);
					return false;
				}
				k->off += (size_t)n;
			}
		}
		d->head = k->next;
		if (!d->head)
			d->tail = NULL;
		d->queued -= k->len;
		d->pipe_full = false;
		free(k);
		/* Pipes before the next record's (or before the last one) are empty now. */
		while (d->head_seq < (d->head ? d->head->pipe_seq : d->tail_seq)) {
			int *pp = d->pipes[d->head_seq % MAX_PIPES];

			close(pp[0]);
			close(pp[1]);
			d->head_seq++;
		}
	}
	side_update(&c->side[d->to]);
	side_update(&c->side[d->from]);
	if (c->dir[0].fin_sent && c->dir[1].fin_sent)
		conn_kill(c);
	return !c->dead;
}

static void enqueue(struct dir *d, size_t len)
{
	struct chunk *k = malloc(sizeof(*k));

	if (!k)
		die("malloc");
	memset(k, 0, sizeof(*k));
	k->dir = d;
	k->len = len;
	k->due_ns = now_ns() + delay_ns;
	k->in_global = true;
	k->pipe_seq = d->tail_seq;
	if (d->tail)
		d->tail->next = k;
	else
		d->head = k;
	d->tail = k;
	d->queued += len;
	if (gtail)
		gtail->gnext = k;
	else
		ghead = k;
	gtail = k;
}

static void side_readable(struct side *s)
{
	struct conn *c = s->conn;
	struct dir *d = &c->dir[s->idx];

	for (int i = 0; i < 4 && !d->read_eof && !d->pipe_full && d->queued < QUEUE_CAP; i++) {
		ssize_t n = splice(s->fd, NULL, d->pipes[d->tail_seq % MAX_PIPES][1], NULL, READ_MAX,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		char peek;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The socket is empty, or the pipe is full (it counts pages, not bytes). */
			if (recv(s->fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) != 1)
				break;
			if (d->tail_size < PIPE_MAX &&
			    fcntl(d->pipes[d->tail_seq % MAX_PIPES][1], F_SETPIPE_SZ, (int)PIPE_MAX) >= 0) {
				d->tail_size = PIPE_MAX;
				continue;
			}
			if (d->tail_seq - d->head_seq + 1 < MAX_PIPES && pipe_open(d, d->tail_seq + 1))
				continue;
			d->pipe_full = true;
			break;
		}
		if (n < 0) {
			/* A reset: the other side learns it as soon as the queue is out (a FIN). */
			d->read_eof = true;
			enqueue(d, 0);
			break;
		}
		if (n == 0) {
			d->read_eof = true;
			enqueue(d, 0);
			break;
		}
		enqueue(d, (size_t)n);
	}
	side_update(s);
}

static void conn_kill(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	for (int i = 0; i < 2; i++) {
		struct chunk *k = c->dir[i].head;

		while (k) {
			struct chunk *next = k->next;

			k->dir = NULL;
			if (!k->in_global)
				free(k);
			k = next;
		}
		c->dir[i].head = c->dir[i].tail = NULL;
		for (unsigned q = c->dir[i].head_seq; q <= c->dir[i].tail_seq; q++) {
			close(c->dir[i].pipes[q % MAX_PIPES][0]);
			close(c->dir[i].pipes[q % MAX_PIPES][1]);
		}
		if (c->side[i].fd >= 0) {
			if (!c->side[i].gone)
				epoll_ctl(epfd, EPOLL_CTL_DEL, c->side[i].fd, NULL);
			close(c->side[i].fd);
			c->side[i].fd = -1;
		}
	}
	/* Freed after this round of events: an event of this round may still point here. */
	c->next_dead = dead_list;
	dead_list = c;
}

static struct sockaddr_storage up_addr;
static socklen_t up_len;

static void add_fd(struct side *s, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = s };

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &e) < 0)
		die("epoll_ctl add");
	s->events = ev;
}

static void accept_one(int lfd)
{
	int one = 1;
	int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct conn *c;
	int ufd;

	if (cfd < 0)
		return;
	ufd = socket(up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ufd < 0) {
		close(cfd);
		return;
	}
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c)
		die("calloc");
	for (int i = 0; i < 2; i++) {
		c->side[i].conn = c;
		c->side[i].idx = i;
		c->dir[i].conn = c;
		c->dir[i].from = i;
		c->dir[i].to = 1 - i;
		if (!pipe_open(&c->dir[i], 0))
			die("pipe2");
	}
	c->side[0].fd = cfd;
	c->side[1].fd = ufd;
	if (connect(ufd, (struct sockaddr *)&up_addr, up_len) < 0 && errno != EINPROGRESS) {
		close(cfd);
		close(ufd);
		for (int i = 0; i < 2; i++) {
			close(c->dir[i].pipes[0][0]);
			close(c->dir[i].pipes[0][1]);
		}
		free(c);
		return;
	}
	c->connecting = true;
	add_fd(&c->side[0], EPOLLIN);
	add_fd(&c->side[1], EPOLLOUT);
}

static void connected(struct conn *c)
{
	int err = 0;
	socklen_t l = sizeof(err);

	if (getsockopt(c->side[1].fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
		conn_kill(c);
		return;
	}
	c->connecting = false;
	side_update(&c->side[1]);
	dir_flush(&c->dir[0]);
}

/* Release every chunk whose time has come; the next deadline (ms to wait, -1: none). */
static int release_due(void)
{
	uint64_t now = now_ns();

	while (ghead && ghead->due_ns <= now) {
		struct chunk *k = ghead;

		ghead = k->gnext;
		if (!ghead)
			gtail = NULL;
		k->in_global = false;
		if (!k->dir) {
			free(k); /* its connection is gone */
			continue;
		}
		k->released = true;
		dir_flush(k->dir);
	}
	if (!ghead)
		return -1;
	/* Round up: waking before the deadline would only spin. */
	return (int)((ghead->due_ns - now + 999999) / 1000000);
}

int main(int argc, char **argv)
{
	struct sockaddr_in la = { .sin_family = AF_INET };
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	struct epoll_event lev, evs[256];
	socklen_t sl = sizeof(la);
	char host[256];
	const char *colon;
	int lfd, one = 1;
	long port;

	if (argc != 4 || !(colon = strrchr(argv[2], ':')) || (size_t)(colon - argv[2]) >= sizeof(host)) {
		fprintf(stderr, "usage: delay-proxy LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS\n");
		return 1;
	}
	port = strtol(argv[1], NULL, 10);
	delay_ns = (uint64_t)strtoull(argv[3], NULL, 10) * 1000000u;
	memcpy(host, argv[2], (size_t)(colon - argv[2]));
	host[colon - argv[2]] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
		fprintf(stderr, "delay-proxy: cannot resolve %s\n", argv[2]);
		return 1;
	}
	memcpy(&up_addr, ai->ai_addr, ai->ai_addrlen);
	up_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	la.sin_port = htons((uint16_t)port);
	la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&la, sizeof(la)) < 0)
		die("bind");
	if (listen(lfd, 4096) < 0)
		die("listen");
	if (getsockname(lfd, (struct sockaddr *)&la, &sl) < 0)
		die("getsockname");
	printf("%u\n", ntohs(la.sin_port));
	fflush(stdout);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	lev.events = EPOLLIN;
	lev.data.ptr = NULL;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
		die("epoll_ctl");
	for (;;) {
		int timeout = release_due();
		int n = epoll_wait(epfd, evs, 256, timeout);

		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct side *s = evs[i].data.ptr;
			struct conn *c;

			if (!s) {
				for (int j = 0; j < 64; j++)
					accept_one(lfd);
				continue;
			}
			c = s->conn;
			if (c->dead)
				continue;
			if (s->idx == 1 && c->connecting) {
				connected(c);
				continue;
			}
			if ((evs[i].events & (EPOLLHUP | EPOLLERR)) && c->dir[s->idx].read_eof) {
				/* Nothing more to read; a write to it fails and ends the connection. */
				epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
				s->gone = true;
				if (!dir_flush(&c->dir[1 - s->idx]))
					continue;
				continue;
			}
			if (evs[i].events & EPOLLOUT)
				if (!dir_flush(&c->dir[1 - s->idx]))
					continue;
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				side_readable(s);
		}
		while (dead_list) {
			struct conn *c = dead_list;

			dead_list = c->next_dead;
			free(c);
		}
	}
}
