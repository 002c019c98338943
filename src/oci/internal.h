/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Declarations shared by the oci module's files; not part of its public interface: the
 * client's state (with the lock guarding each field), the HTTP exchange helpers built on
 * libcurl, auth, and credential lookup.
 */
#ifndef LAZYEROFS_OCI_INTERNAL_H
#define LAZYEROFS_OCI_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "oci/oci.h"
#include "oci/parse.h"
#include "util/buf.h"

#define OCI_DEFAULT_TIMEOUT_MS 60000ULL
#define OCI_CONNECT_TIMEOUT_MS 10000L
/* A transfer moving less than OCI_LOW_SPEED_LIMIT bytes/s for a third of its request's time,
 * within these bounds, is given up and tried again (http.c). */
#define OCI_LOW_SPEED_TIME_MIN_S 5L
#define OCI_LOW_SPEED_TIME_S 15L
#define OCI_LOW_SPEED_LIMIT 1024L
#define OCI_HEADERS_MAX (64 * 1024)    /* all header lines of one response */
#define OCI_ERROR_BODY_MAX (64 * 1024) /* kept of an error reply, for its message */
#define OCI_MAX_REDIRECTS 5
#define OCI_MAX_ATTEMPTS 6             /* tries without progress before giving up */
#define OCI_BACKOFF_MIN_MS 100
#define OCI_BACKOFF_MAX_MS 4000
#define OCI_WHOLE_BODY_MAX (64ULL << 20) /* a 200 reply is streamed for ranges up to here */
/* libcurl's receive buffer of a transfer, allocated when it starts and freed when it ends. Our
 * own size, not CURL_MAX_READ_SIZE: that is libcurl's upper bound, 10 MiB since 7.88 (512 KiB
 * before), and a recv() on a fast link fills megabytes of it (the daemon's 8 large buffers
 * were ~15 MiB resident after 2 GiB of random reads; a cold sequential read was no faster). */
#define OCI_RECV_BUFFER (512 * 1024)

uint64_t oci_backoff_ms(int attempt);
/* Some part of ms, from 0 to just under it, that differs from one client to the next (the
 * clock's microseconds): so that parallel clients do not retry in lockstep. */
uint64_t oci_jitter_ms(uint64_t ms);

/* Headers of one HTTP response, kept as they stream in (header callback). */
struct oci_resp {
	long status;
	char content_type[256];
	char content_range[128];
	char location[4096];
	char www_auth[2048];
	char retry_after[64];
	char etag[256];
	char last_modified[64];
	char docker_digest[128];
	char range[64];
	char accept_ranges[32];
	char content_encoding[64];
	char link[2048];       /* Link (pagination), several joined by ", " */
	char oci_subject[128]; /* OCI-Subject: the registry processed a manifest's subject */
	uint64_t content_length;
	bool has_content_length;
	size_t header_bytes;
	bool overflow; /* a header too long or too many: the transfer was aborted */
};

void oci_resp_reset(struct oci_resp *r);
/* CURLOPT_HEADERFUNCTION with a struct oci_resp as CURLOPT_HEADERDATA. */
size_t oci_resp_header_cb(char *buf, size_t size, size_t n, void *userdata);

/* Token for one scope, e.g. "repository:foo:pull". */
struct oci_token {
	char *scope;
	char *header;        /* "Authorization: Bearer ..." (secret) */
	uint64_t expires_ms; /* monotonic: renewed from then on */
	uint64_t good_ms;    /* ... and good at the server until then (3-10 s before it) */
	uint64_t fetched_ms;
	bool from_file;      /* read from the token cache: a refusal may mean it was revoked */
};

#define OCI_TOKEN_SLOTS 4

/* Authentication with one host: the scheme its first 401 asked for, its credentials, its
 * tokens. Guarded by the client's auth_lock. */
struct oci_auth {
	enum oci_auth_scheme scheme;
	struct oci_challenge challenge;
	bool creds_loaded;
	uint64_t creds_reloaded_ms;    /* when a refusal last made them be looked up again */
	uint64_t creds_reload_wait_ms; /* ... and how long until the next may (auth.c) */
	int creds_error;            /* a lookup that failed, reported on the next challenge */
	char creds_error_msg[256];
	struct oci_creds creds;
	char *creds_source;         /* where they came from, for messages */
	/* sha256 hex of the kind of credentials and their values (none: anonymous): a token
	 * cached by other credentials is never taken for these (tokencache.c). */
	char identity[UTIL_SHA256_HEX_LEN + 1];
	char *basic_header;         /* "Authorization: Basic ..." (secret) */
	struct oci_token tokens[OCI_TOKEN_SLOTS];
	atomic_ullong gen;	    /* bumped whenever the header to send changes (atomic: a
				     * spare is taken without auth_lock) */
	CURL *easy;                 /* token requests */
	/* The token server answered the OAuth2 grant (POST) with 404/405: an identity token goes
	 * as a GET's password from then on. */
	bool oauth_missing;
	/* A token of the reads' scope used past its renewal (with refresh_ahead): the next
	 * oci_client_refresh_tokens renews it. */
	bool renew_wanted;
	uint64_t renew_next_ms; /* after a renewal that failed: not before then */
	/* The reads' last bearer header, good until spare_good_ms while gen is still
	 * spare_gen, for a thread that finds auth_lock held (a token request under way):
	 * guarded by the client's spare_lock, not auth_lock. */
	char *spare;
	uint64_t spare_good_ms, spare_gen;
};

#define OCI_MIRROR_DOWN_MS 30000ULL        /* a mirror that failed to connect is skipped */
#define OCI_MIRROR_CONNECT_TIMEOUT_MS 3000L /* a mirror's default; the registry's is above */

/* One host a request can go to: a mirror, or the registry itself (the last of a client's
 * hosts, also for URL sources, where only the flags below are used). */
struct oci_host {
	/* Set at creation, read-only afterwards. */
	char *api;      /* API root, e.g. "https://m1:5000/path/v2"; NULL for URL sources */
	char *origin;   /* "scheme://host[:port]": credentials and headers go only there */
	char query[300]; /* "?ns=REGISTRY" appended to a mirror's URLs (containerd's), or "" */
	char name[256]; /* "host[:port]": whose credentials */
	char shown[300]; /* for messages */
	unsigned caps;  /* OCI_CAP_* */
	bool mirror;
	bool resolve_first; /* oci_mirror.resolve_first */
	size_t mirror_index; /* its oci_options.mirrors[] entry (mirrors only) */
	bool skip_verify;
	const char *ca_file;       /* -o ca=, for a host without a CA of its own */
	struct curl_blob ca_blob;  /* its own CA (hosts.toml ca), data NULL when none */
	struct curl_blob cert_blob; /* its (first) client certificate and key (hosts.toml */
	struct curl_blob key_blob;  /* client), data NULL when none */
	struct oci_tls_choice *choice; /* several client certificates, parsed; else NULL */
	struct curl_slist *headers; /* hosts.toml [header] */
	const char *proxy;         /* NULL: the client's, else libcurl's environment */
	bool own_proxy; /* ... hosts.toml's for this host: no no-proxy list passes it by */
	long connect_timeout_ms;
	/* The resolved blob's URL here (the URL itself for URL sources): written by
	 * oci_client_set_blob before readers are made. */
	char *blob_url;

	struct oci_auth auth; /* guarded by the client's auth_lock */

	/* Learned while reading; atomics, any thread. */
	atomic_ullong down_until; /* a mirror that failed to connect: skipped until then */
	atomic_bool stalled; /* ... because it took all the time it was given (host_deadline) */
	atomic_bool no_multirange;
	atomic_bool ranges_ignored;
};

struct oci_client {
	/* Set at creation, read-only afterwards. */
	struct oci_ref *ref;
	struct oci_options opts;
	struct oci_host *hosts; /* the mirrors that apply, in order, then the registry */
	size_t nhosts;
	struct oci_host *up;    /* the registry: hosts[nhosts - 1] */
	char shown[512]; /* registry host or redacted URL, for messages */
	uint64_t timeout_ms;
	bool data_http2; /* blob ranges over HTTP/2 too ($LAZYEROFS_HTTP2=1) */
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	/* Resolution result. Written by oci_resolve / oci_client_set_blob before readers are
	 * made, read-only while readers exist. */
	bool have_blob;
	struct oci_blob blob;
	char *metamap; /* the layer's metadata map (oci_client_metamap), or NULL */
	/* URL sources: conditional headers sent with every range ("If-Match: ..."), NULL when
	 * the server gave no usable validator. */
	char *cond_match;
	char *cond_range;

	/* The control handle (resolve, push) and its request counter. */
	pthread_mutex_t ctl_lock;
	CURL *ctl;          /* guarded by ctl_lock */
	atomic_ullong ctl_requests;
	/* The quickest reply to a control request: from its request sent to the first byte of
	 * the reply (connection set-up aside), in us; 0 while none has come. */
	atomic_ullong ctl_reply_us;

	/* Authentication: each host's struct oci_auth is guarded by auth_lock. */
	pthread_mutex_t auth_lock;
	pthread_mutex_t spare_lock; /* the hosts' oci_auth.spare* */
	atomic_ullong auth_requests;
	/* Tokens are renewed by oci_client_refresh_tokens on a thread of the caller's (a
	 * daemon's): a request meanwhile takes the one still good at the server, so that no
	 * transfer waits on a token request (oci_client_set_refresh_ahead). */
	atomic_bool refresh_ahead;
};

/* ---- hosts (hosts.c) ---- */

/* The client's hosts from its options (mirrors with some capability, then the registry). */
int oci_hosts_init(struct oci_client *c);
void oci_hosts_free(struct oci_client *c);
/* The first host from index i on that has all of caps and is not resting after a failed
 * connection (the registry, last, always qualifies); its index. */
size_t oci_host_next(struct oci_client *c, size_t i, unsigned caps);
/* The deadline of a request to host h within one until deadline: a mirror's share (half of
 * what is left; all of the last 2 s), the registry's all of it. Its token requests too. */
uint64_t oci_host_deadline(const struct oci_host *h, uint64_t deadline);
/* A request to host h failed with r: whether to pass it on to the next host (h is a mirror)
 * -- a mirror that could not be reached (-EAGAIN, -EPROTO) then rests OCI_MIRROR_DOWN_MS. */
bool oci_host_failed(struct oci_client *c, struct oci_host *h, int r, const char *why);
/* "API/REPOSITORY/KIND/REFERENCE" plus the host's query, e.g. the URL of a blob. */
char *oci_host_url(const struct oci_client *c, const struct oci_host *h, const char *kind,
		   const char *reference);

/* ---- TLS files of a host's configuration (tlsfiles.c) ---- */

/* Append the PEM text of the CA file at path to pem; -errno with "ca 'PATH': why" in err. */
int oci_ca_file_append(const char *path, struct util_buf *pem, struct util_error *err);
/* The same checks alone (a readable file of at most 1 MiB holding a PEM certificate). */
int oci_ca_file_check(const char *path, struct util_error *err);
/* Check a client certificate (PEM, its chain may follow) and its private key (key_path NULL:
 * in the certificate's file) belong together, and add them to m's (OCI_CLIENT_CERTS_MAX at
 * most). -errno with one line naming the file and why in err. */
int oci_client_pair_load(const char *cert_path, const char *key_path, struct oci_mirror *m,
			 struct util_error *err);
/* A host's several client certificates, parsed for its handshakes: each presents the first
 * whose chain the server's list of acceptable CAs names an issuer of (the first when the
 * list is empty), and none when it names no issuer of any (Go's rule, so containerd's).
 * oci_tls_choice_ctx is a CURLOPT_SSL_CTX_FUNCTION (OpenSSL) with the choice as its data. */
struct oci_tls_choice;
int oci_tls_choice_new(const struct oci_client_cert *v, size_t n, struct oci_tls_choice **ret);
void oci_tls_choice_free(struct oci_tls_choice *ch);
CURLcode oci_tls_choice_ctx(CURL *curl, void *ssl_ctx, void *choice);

/* Fixed options of every easy handle of this client talking to host h: TLS, CA, proxy,
 * timeouts for a deadline, protocols, share, user agent, buffer size. */
void oci_easy_setup(struct oci_client *c, const struct oci_host *h, CURL *easy,
		    uint64_t deadline_ms);
/* ref (absolute, or relative as a Location or Link may be) resolved against base; caller
 * frees. -EBADMSG when either does not parse. */
int oci_url_join(const char *base, const char *ref, char **ret);
/* Whether a and b have the same scheme, host and port. */
bool oci_same_origin(const char *a, const char *b);
/* Whether a redirect from `from` to `to` may be followed: NULL when it may, else why not.
 * Never from TLS to a plain connection when the client counts its bytes as TLS's (bytes
 * that came over a weaker connection never serve a mount that asked for TLS). */
const char *oci_redirect_refused(const struct oci_client *c, const char *from, const char *to);
/* Turn a failed curl transfer into -errno and a message ("what: why"). */
int oci_curl_error(struct oci_client *c, CURLcode rc, const char *errbuf, const char *what,
		   struct util_error *err);
bool oci_curl_retryable(CURLcode rc, const char *errbuf);
/* After a transfer failed with rc: the system's word for a refused or unreachable connection
 * ("Connection refused") into curl's error buffer, which Debian 12's libcurl leaves out. */
void oci_curl_explain(CURL *easy, CURLcode rc, char *errbuf, size_t len);
/* A non-2xx reply as -errno and a message with the status and the registry's error. */
int oci_status_error(struct oci_client *c, const struct oci_resp *resp, const struct util_buf *body,
		     const char *what, struct util_error *err);
/* Add "Name: value" to a list; false on allocation failure. */
bool oci_slist_add(struct curl_slist **l, const char *fmt, ...) _printf_(2, 3);

/* A control request (resolve, token, push): one exchange with retries for transient
 * failures and, when follow is set, redirects (Authorization only to the first origin). */
struct oci_req {
	const char *method; /* GET, HEAD, PUT, POST, PATCH */
	const char *url;
	struct oci_host *host; /* whose URL (auth, TLS, headers); NULL: the registry */
	const char *accept;
	const char *content_type;
	struct curl_slist *extra; /* more headers, not owned */
	/* body: memory, or a file range */
	const void *body;
	uint64_t body_len;
	int body_fd; /* -1 when none */
	uint64_t body_off;
	bool registry_auth; /* send the registry's credentials (first hop only) */
	const char *origin_auth; /* an Authorization header for q->url's origin only (secret) */
	bool push;          /* needs push access */
	bool follow;        /* follow redirects */
	bool no_retry;      /* one attempt: not safe to repeat, or a mirror (the next host is
			     * the retry) */
	size_t max_body;    /* cap on a 2xx reply body; 0 = discard */
	bool headers_only;  /* stop a 2xx reply at its first body byte (a probe) */
	/* progress of an upload: bytes of body sent so far */
	void (*progress)(void *ctx, uint64_t sent);
	void *progress_ctx;
};

int oci_request(struct oci_client *c, const struct oci_req *q, uint64_t deadline_ms,
		struct oci_resp *resp, struct util_buf *body, struct util_error *err);
/* The same on a given handle, without the control lock; counter (may be NULL) counts
 * requests sent. */
int oci_request_easy(struct oci_client *c, CURL *easy, const struct oci_req *q,
		     uint64_t deadline_ms, struct oci_resp *resp, struct util_buf *body,
		     struct util_error *err, atomic_ullong *counter);
int oci_share_init(struct oci_client *c);
void oci_share_free(struct oci_client *c);

/* Auth (auth.c) with host h. The header to send now, or NULL; *ret_gen identifies it for
 * oci_auth_challenged(). */
int oci_auth_header(struct oci_client *c, struct oci_host *h, bool push, uint64_t deadline_ms,
		    char **ret_header, uint64_t *ret_gen, struct util_error *err);
/* A request to h answered 401 with this WWW-Authenticate value while gen was current:
 * learn the scheme, get new credentials or a new token. 0 = retry the request. round counts
 * the 401s this request has had (1 for the first): from the second on, credentials that
 * were just obtained were refused, so it fails with -EACCES instead of asking again. */
int oci_auth_challenged(struct oci_client *c, struct oci_host *h, const char *www_auth, bool push,
			uint64_t gen, int round, uint64_t deadline_ms, struct util_error *err);
void oci_auth_free(struct oci_auth *a);

/* The token cache shared between processes (tokencache.c), under the run directory given in
 * the client's options. What a token is for: */
struct oci_token_key {
	const char *host;     /* "host[:port]" */
	const char *realm;    /* the token server */
	const char *service;
	const char *scope;
	const char *identity; /* struct oci_auth's */
};
/* The token cached for k, if it is still valid at now (Unix time): the seconds it has left
 * and the whole lifetime it was issued with. -errno when there is none (no usable directory,
 * no file, a file that is not root's alone, malformed or expired): a miss. */
int oci_token_cache_load(const char *run_dir, const struct oci_token_key *k, time_t now,
			 char **ret_token, uint64_t *ret_remaining_s, uint64_t *ret_lifetime_s);
/* Cache a token obtained at now, valid lifetime_s (atomically; sweeps out expired files). */
int oci_token_cache_store(const char *run_dir, const struct oci_token_key *k, const char *token,
			  time_t now, uint64_t lifetime_s);
/* Forget k's token (the registry refused it). */
void oci_token_cache_drop(const char *run_dir, const struct oci_token_key *k);

/* Credentials for host h (creds.c): for the registry itself the options first; then
 * auth.json, config.json, credential helpers under h's name (a helper has until deadline_ms,
 * the request's that needs them: -ETIMEDOUT). -ENOENT when none. */
int oci_creds_find(const struct oci_client *c, const struct oci_host *h, uint64_t deadline_ms,
		   struct oci_creds *ret, char **ret_source, char *errbuf, size_t errlen);
char *oci_base64_encode(const void *data, size_t len);
int oci_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);

/* One manifest PUT, handing back the reply's headers too (OCI-Subject) (push.c); with
 * if_match (an entity tag, quoted) the write is conditional on it: a registry that honours
 * it answers 412 when the stored manifest differs (-ESTALE). */
int oci_manifest_put_resp(struct oci_client *c, const char *reference, const char *media_type,
			  const void *data, size_t len, const char *if_match,
			  char ret_digest[UTIL_DIGEST_STR_LEN], struct oci_resp *ret_resp,
			  struct util_error *err);
/* GET a manifest or index by tag or digest (MANIFEST_ACCEPT: OCI and Docker manifests and
 * indexes) into body, with its Content-Type and sha256; checked against expect_digest when
 * given (-EILSEQ). A non-200 is -errno with the status and the registry's error (client.c).
 * With expect_digest, the hosts that may pull are tried in order (a mirror that fails or
 * sends other bytes passes it on); a tag goes to the registry only. */
int oci_manifest_get(struct oci_client *c, const char *reference, const char *expect_digest,
		     uint64_t deadline, struct util_buf *body, char *ctype, size_t ctlen,
		     char digest_out[UTIL_DIGEST_STR_LEN], struct util_error *err);
/* GET a blob of known size and digest whole into *ret (NUL-terminated; caller frees),
 * checked against both (-EILSEQ), from the first host that may pull and has it (client.c).
 * For small blobs only: the caller bounds d->size. */
int oci_blob_get(struct oci_client *c, const struct oci_descriptor *d, uint64_t deadline,
		 void **ret, size_t *ret_len, struct util_error *err);

/* URL sources (url.c). */
int oci_url_resolve(struct oci_client *c, struct oci_blob *ret, struct util_error *err);
int oci_url_conditions(struct oci_client *c, const struct oci_blob *b);

#endif
