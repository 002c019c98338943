/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* The range reader's state, shared by reader.c (requests, retries, scheduling) and
 * reader_body.c (turning reply bodies into sink calls). Not a public interface. */
#ifndef LAZYEROFS_OCI_READER_H
#define LAZYEROFS_OCI_READER_H

#include "oci/internal.h"

#define READER_DEFAULT_PARALLEL 4
#define READER_MAX_PARALLEL OCI_READER_MAX_PARALLEL
#define RANGES_PER_REQUEST 64 /* without batch mode */
#define GROUP_MIN_BYTES (1ULL << 20)
#define GROUP_MAX_BYTES (16ULL << 20)
#define READER_BIG_BUFFERS 8 /* slots with an OCI_RECV_BUFFER receive buffer ... */
#define READER_SMALL_BUFFER (64 * 1024) /* ... the others this */
#define LOCATION_TTL_MS (5ULL * 60 * 1000)
#define MAX_FAILURES 30 /* per request, progress or not */

struct rrange {
	uint64_t off, len, done;
};

enum body_mode {
	BODY_UNKNOWN,
	BODY_SINGLE,  /* 206 with one Content-Range */
	BODY_MULTI,   /* 206 multipart/byteranges */
	BODY_WHOLE,   /* 200: the whole blob from offset 0 */
	BODY_DISCARD, /* a redirect or 401: the body does not matter */
	BODY_ERROR,   /* an error reply: keep its start for the message */
};

/* One submitted read (oci_reader_submit): its ranges, its sink and its outcome. */
struct oci_read {
	struct oci_reader *r;
	struct oci_read *next; /* the reader's reads not done yet */
	struct rrange *rg;
	size_t m;
	oci_sink_fn sink;
	oci_done_fn done;
	void *ctx;
	uint64_t deadline;
	bool batch;	     /* OCI_READ_BATCH */
	bool single_attempt; /* OCI_READ_ONCE */
	unsigned active;     /* its requests in flight */
	unsigned waiting;    /* its requests waiting to be sent (retries, queued) */
	/* HTTP requests sent for it, and the retries among them */
	struct oci_read_stats stats;
	struct util_error err;
	char what[400];
	char last_error[300];
};

struct rreq {
	struct oci_reader *r;
	struct oci_read *k; /* the read it serves */
	struct rreq *next;
	struct rrange *rg; /* a slice of the read's ranges */
	size_t n;
	uint64_t not_before;
	int no_progress; /* failures in a row without progress */
	int failures;
	int auth_rounds;
	int hops;
	size_t host;     /* index of the client's host asked (mirrors first, the registry last) */
	/* A mirror passed over for being slow, not failing (its time share ran out while bytes
	 * came), plus one: a next host that fails sends the request back to it (0: none). */
	size_t back;
	char *url;       /* NULL: the host's blob URL (or the remembered location) */
	bool storage;    /* url is not the registry: no registry Authorization */
	bool from_cache; /* url is the remembered location */
	bool asked_multi;
	uint64_t gen;

	/* one transfer */
	int slot;
	struct curl_slist *hdrs;
	struct oci_resp resp;
	enum body_mode mode;
	uint64_t pos, end, need_end;
	bool whole_done;
	struct oci_multipart mp;
	struct util_buf errbody;
	int fail; /* set by callbacks: -errno */
	bool fail_retryable;
	bool sink_failed; /* the fail is the receiver's, not the server's */
	char fail_msg[300];
	bool progressed;
	char errbuf[CURL_ERROR_SIZE];
};

/* Used by one thread at a time (oci_reader_wakeup aside). */
struct oci_reader {
	struct oci_client *c;
	CURLM *multi;
	CURL *easy[READER_MAX_PARALLEL];
	struct rreq *busy[READER_MAX_PARALLEL];
	unsigned parallel; /* requests in flight, over all reads */
	unsigned active;
	struct rreq *pending, **pending_tail; /* requests waiting to be sent, in order */
	struct oci_read *reads;		      /* submitted and not done */
	unsigned nreads;
	uint64_t requests, bytes;
	uint64_t ended; /* reads whose done callback ran */
	void (*round_cb)(void *ctx); /* oci_reader_set_round_cb */
	void *round_ctx;
	char *loc_url; /* where a host last redirected the blob to */
	size_t loc_host; /* ... that host */
	uint64_t loc_expires;
};

size_t oci_rreq_remaining(const struct rreq *q);
/* CURLOPT_WRITEFUNCTION of a range request (userdata: the struct rreq). */
size_t oci_rreq_body_cb(char *p, size_t size, size_t nm, void *ud);

#endif
