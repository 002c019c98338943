/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Public interface of the registry and URL client: references, options,
 * resolving a reference to one blob, and reading byte ranges of that blob.
 * The only module that sees libcurl.
 *
 * Threads: call oci_global_init() once before any thread. A struct oci_client
 * (auth state, resolved blob location) may be shared by threads; each thread
 * reading ranges owns its own struct oci_reader (its own connections).
 */
#ifndef LAZYEROFS_OCI_OCI_H
#define LAZYEROFS_OCI_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extents.h"
#include "util/sha256.h"

struct oci_ref {
	bool is_url;         /* http(s):// source */
	char *url;           /* when is_url */
	char *registry;      /* e.g. "registry-1.docker.io" or "127.0.0.1:5000" */
	char *repository;    /* e.g. "library/debian" */
	char *tag;           /* may be NULL when digest is set */
	char *digest;        /* "sha256:<hex>" or NULL */
};

int oci_ref_parse(const char *s, struct oci_ref **ret, struct util_error *err);
void oci_ref_free(struct oci_ref *r);
/* Canonical text form "registry/repository[:tag][@digest]" or the URL; caller frees. */
char *oci_ref_format(const struct oci_ref *r);

/* What a registry host may be asked for (containerd's hosts.toml capabilities): resolve =
 * manifests by tag, pull = blobs and manifests by digest. */
#define OCI_CAP_PULL 1u
#define OCI_CAP_RESOLVE 2u

/* A client certificate: PEM text, its chain with it, and its private key (PEM text; a
 * secret, wiped when freed). */
struct oci_client_cert {
	char *cert;
	size_t cert_len;
	char *key;
	size_t key_len;
};
#define OCI_CLIENT_CERTS_MAX 16 /* per host */

/* A host a pull tries before the registry itself: `-o mirror=`, the configuration file's
 * mirrors, a hosts.toml [host."..."] table (which also describes the registry's own server,
 * see oci_options.server). Everything but url is optional. */
struct oci_mirror {
	char *url;              /* "http(s)://HOST[:PORT][/PATH]", no trailing '/' */
	unsigned caps;          /* OCI_CAP_* */
	/* A hosts.toml host: with pull and resolve, asked for a tag before the registry, in
	 * order, as containerd does (the others resolve a tag only when the registry cannot) */
	bool resolve_first;
	bool override_path;     /* url is the API root itself: no "/v2" is added */
	bool skip_verify;       /* TLS without certificate verification: bytes count as insecure */
	char *ca_pem;           /* CA certificates (PEM text) trusted for this host, or NULL */
	size_t ca_pem_len;
	/* The client certificates this host's TLS handshakes may present, in the configured
	 * order: a handshake presents the first one the server accepts (tlsfiles.c). */
	struct oci_client_cert *clients;
	size_t nclients;
	char **headers;         /* "Name: value" lines for this host, NULL-terminated, or NULL */
	char *proxy;            /* this host's proxy URL; NULL: the global one */
	uint64_t dial_timeout_ms; /* connect timeout; 0: the default */
	/* Skipped until then (util_now_ms): another process of the same mount found it not
	 * answering (oci_client_export_rests) */
	uint64_t rest_until_ms;
	char *from;             /* where it was configured, for messages ("-o mirror", a path) */
};

void oci_mirror_free(struct oci_mirror *m);
int oci_mirror_copy(struct oci_mirror *dst, const struct oci_mirror *src);
/* Parse "[http(s)://]HOST[:PORT][/PATH]" (no scheme: https) into m->url (normalized: scheme
 * lowercased, no trailing '/'). -EINVAL with a reason in err (without the option's name). */
int oci_mirror_url_parse(const char *text, char **ret_url, struct util_error *err);
/* Whether the host's bytes travel without verified TLS (http://, skip_verify). */
bool oci_mirror_weak(const struct oci_mirror *m);

/* The password in password-file path (one trailing newline dropped): *ret (a secret), or
 * -errno with err set. */
int oci_password_file_read(const char *path, char **ret, struct util_error *err);

struct oci_options {
	bool insecure;        /* plain-HTTP registry allowed */
	char *ca_file;        /* ca=PATH */
	char *blob;           /* blob=sha256:... */
	long layer;           /* layer=N, -1 when unset */
	char *platform;       /* platform=OS/ARCH[/VARIANT] */
	char *username;
	char *password;       /* from password-file= (or oci.password=); never logged */
	char *password_file;  /* password-file=, absolute: read again when refused (rotated) */
	char *digest;         /* digest=sha256:... pin for URL sources */
	uint64_t timeout_ms;  /* overall deadline for one request including retries; 0 = default */
	/* Pulls: these hosts first, in order, then the registry (per request: a host that fails
	 * or lacks what is asked passes the request on to the next). */
	struct oci_mirror *mirrors;
	size_t n_mirrors;
	/* The registry's own server as hosts.toml describes it (its url may be NULL: the
	 * reference's registry), or NULL. */
	struct oci_mirror *server;
	char *proxy;          /* proxy URL for every host without its own; NULL: libcurl's
			       * http_proxy/https_proxy/no_proxy environment */
	char *no_proxy;       /* hosts reached without the proxy (libcurl's NOPROXY list) */
	/* The run directory (root-owned, 0700): bearer tokens are cached for other processes in
	 * its tokens/ when set (and we are root); NULL: tokens live in this client only. */
	char *run_dir;
};

void oci_options_init(struct oci_options *o);
void oci_options_free(struct oci_options *o);
/* A deep copy; -ENOMEM. */
int oci_options_copy(struct oci_options *dst, const struct oci_options *src);
/* Append a copy of m to o->mirrors, unless a mirror of the same url is there already (the
 * first one configured wins). 1 added, 0 already there, -ENOMEM. */
int oci_options_add_mirror(struct oci_options *o, const struct oci_mirror *m);
/* Add what lazyerofs's configuration file says about pulls of ref (util/config.h): its
 * proxy and no-proxy unless o has them, and its mirrors of ref's registry after o's own (all
 * of the file's mirrors are checked). -EINVAL with "PATH: line N: ..." for a bad mirror. */
struct util_config;
int oci_options_apply_config(struct oci_options *o, const struct oci_ref *ref,
			     const struct util_config *cfg, struct util_error *err);
/* containerd's host configuration directory: $LAZYEROFS_CERTS_D, else
 * /etc/containerd/certs.d. */
const char *oci_certs_d_path(void);
/* Add what certs_d/NAMESPACE/ says about ref's registry (NAMESPACE: host_port_, host:port,
 * then _default, the first directory there is; Docker Hub's is docker.io), as containerd
 * reads it: its hosts.toml -- its server (unless o has one) and its hosts with pull or
 * resolve, after o's mirrors --, or without one (or an empty one) Docker's layout of
 * certificate files for the registry's server: NAME.crt CAs, NAME.cert client certificates
 * with their NAME.key. No directory adds nothing; a bad file is -EINVAL (or the read's
 * -errno) with "PATH: [line N: ]..." in err. */
int oci_options_apply_hosts(struct oci_options *o, const struct oci_ref *ref, const char *certs_d,
			    struct util_error *err);
/* The same for the text of one hosts.toml at path (relative ca and client paths start in its
 * directory). */
int oci_options_apply_hosts_toml(struct oci_options *o, const char *buf, size_t len,
				 const char *path, struct util_error *err);
/* Whether a pull with these options may take bytes of the reference's registry over a
 * connection without verified TLS: `insecure`, a plain-HTTP or skip_verify mirror or server. */
bool oci_options_weak(const struct oci_options *o);
/* Set one -o key the oci module owns: insecure, ca, blob, layer, platform, username,
 * password-file, digest, timeout (seconds, may have a fraction), mirror (repeatable: each
 * adds one, with pull and resolve; `ca=` applies to it too) and the aliases oci.blob,
 * oci.layer, oci.platform, oci.username, oci.insecure, oci.password. value is NULL for a bare
 * flag. Returns 0; 1 when accepted with a warning in err->message (oci.password: visible to
 * other users) for the caller to print; -ENOENT for a key oci does not own (so a mount option
 * parser can route it on), -EINVAL with err->message for a bad value. A key given twice: the
 * last one wins. */
int oci_options_set(struct oci_options *o, const char *key, const char *value,
		    struct util_error *err);
/* What decides how the registry is reached and trusted (insecure, CA, user name, proxy,
 * no-proxy, hosts.toml's server with its CA, client certificates, headers and proxy): 16 hex
 * digits of a hash of them, the same for the same settings. Not the mirrors, the password or
 * the timeout. */
#define OCI_OPTIONS_NET_ID_LEN 16
int oci_options_net_id(const struct oci_options *o, char out[OCI_OPTIONS_NET_ID_LEN + 1]);
/* Options that do not go together, or not with this kind of source (is_url: an http(s)://
 * image file): -EINVAL with one line in err. */
int oci_options_check_source(const struct oci_options *o, bool is_url, struct util_error *err);
/* oci_options_set for each KEY or KEY=VALUE of a comma-separated -o list, in order. 0, or 1
 * when some key was accepted with a warning (warn, may be NULL, gets each one's text);
 * -ENOENT with "unknown option 'KEY'" in err for the first key oci does not own; a bad
 * value's error as oci_options_set gives it. */
int oci_options_set_list(struct oci_options *o, const char *list,
			 void (*warn)(void *ctx, const char *message), void *ctx,
			 struct util_error *err);

/* What a reference resolves to: one blob and how to identify its cache entry. */
struct oci_blob {
	char digest[UTIL_DIGEST_STR_LEN]; /* "sha256:<hex>"; empty for an unpinned URL source */
	uint64_t size;
	char media_type[128];
	/* Cache key: the digest hex for registry blobs; for URL sources a sha256 of URL and
	 * validator, as 64 hex chars. */
	char cache_key[UTIL_SHA256_HEX_LEN + 1];
	char validator[256];  /* ETag or Last-Modified of a URL source; empty otherwise */
	char manifest_digest[UTIL_DIGEST_STR_LEN]; /* the image manifest resolved; empty for URLs */
	uint64_t manifest_size;			   /* its size in bytes, 0 for URLs */
	char manifest_media_type[128];		   /* its media type, "" for URLs */
	/* The tag was resolved by a mirror alone (the registry could not be reached to
	 * confirm its digest): the image is only as trustworthy as that mirror. */
	bool resolved_by_mirror;
};

int oci_global_init(void);

struct oci_client;

int oci_client_new(const struct oci_ref *ref, const struct oci_options *opts,
		   struct oci_client **ret);
void oci_client_free(struct oci_client *c);

/* Resolve the reference (manifest / index / platform / layer selection, or HEAD of a URL) to
 * one blob. Refuses layers that cannot be range-read with -EMEDIUMTYPE and a clear message. */
int oci_resolve(struct oci_client *c, struct oci_blob *ret, struct util_error *err);

/* Tell a client about a blob already known (e.g. a daemon that inherited the resolution), so
 * ranges can be read without resolving again. */
int oci_client_set_blob(struct oci_client *c, const struct oci_blob *b);
/* Another deadline for the reads started from now on (any thread: a daemon's mount asked for
 * another timeout=). */
void oci_client_set_timeout(struct oci_client *c, uint64_t timeout_ms);

/* Receives the bytes of the requested ranges as they arrive, in order within each range;
 * return 0 to continue or -errno to abort the transfer. */
typedef int (*oci_sink_fn)(void *ctx, uint64_t offset, const void *data, size_t len);

/* What a read cost: the HTTP requests it took, and how many of them were sent again after a
 * failed one (a reset, a timeout, 429/5xx, a short reply). */
struct oci_read_stats {
	uint64_t requests;
	uint64_t retries;
};

/* A read is over: result 0 (every byte of every range reached the sink exactly once) or
 * -errno with err filled. */
typedef void (*oci_done_fn)(void *ctx, int result, const struct util_error *err,
			    const struct oci_read_stats *stats);

struct oci_reader;

/* A reader is an event-driven transfer engine over one libcurl multi handle: any number of
 * reads submitted, up to `parallel` HTTP requests in flight over all of them, connections kept
 * alive between them. One thread drives it (oci_reader_perform); submit from that thread or
 * with the driving thread's own serialization. */
int oci_reader_new(struct oci_client *c, struct oci_reader **ret);
void oci_reader_free(struct oci_reader *r); /* reads not done are dropped, no callbacks */

#define OCI_READ_BATCH 1u /* group the ranges into as few requests as the Range header allows,
			   * however many bytes they carry, instead of at most 64 ranges a
			   * request spread over the requests in flight by size: for scattered
			   * small ranges (metadata), where a registry's cost is per range */
#define OCI_READ_ONCE 2u  /* one attempt: a failure ends the read at once, without retries
			   * (a probe of whether the registry answers again) */

/* Read the given ranges of the resolved blob (sorted, non-overlapping): several ranges a
 * request (multipart/byteranges), several requests in flight, bounded retries with backoff,
 * a deadline of the client's timeout. Returns 0 when queued; done() is called exactly once,
 * from oci_reader_perform(). ctx goes to both sink and done. A server that refuses or ignores multi-range requests gets
 * single-range or whole-span requests. Errors: -EACCES (401/403), -ENOENT (404), -EAGAIN
 * (retries exhausted on 429/5xx/timeouts/resets), -EBADMSG (malformed reply), -ESTALE (URL
 * object changed), -EINVAL (bad ranges; then done is not called). */
int oci_reader_submit(struct oci_reader *r, const struct util_extent *v, size_t n, unsigned flags,
		      oci_sink_fn sink, oci_done_fn done, void *ctx, struct util_error *err);
/* Send what may be sent, receive what arrived (sinks and done callbacks run here), then wait
 * up to timeout_ms for network activity or oci_reader_wakeup() -- unless a read ended: then
 * it returns at once, so that the caller can submit what that read's end allows. */
void oci_reader_perform(struct oci_reader *r, int timeout_ms);
/* Make a waiting oci_reader_perform() return now; any thread. */
void oci_reader_wakeup(struct oci_reader *r);
/* Reads submitted and not done. */
unsigned oci_reader_reads(const struct oci_reader *r);

/* One read, start to end (submit, then perform until it is done). */
int oci_read_ranges(struct oci_reader *r, const struct util_extent *v, size_t n, oci_sink_fn sink,
		    void *ctx, struct util_error *err);

/* Counters since the reader was made: HTTP requests sent and payload bytes received. */
void oci_reader_stats(const struct oci_reader *r, uint64_t *requests, uint64_t *bytes);

#define OCI_READER_MAX_PARALLEL 256
/* Requests in flight over all reads (default 4, at most OCI_READER_MAX_PARALLEL), and
 * connections to one host (0: as many as requests; more requests than connections wait
 * inside libcurl for a connection to come free). */
void oci_reader_set_parallel(struct oci_reader *r, unsigned n);
void oci_reader_set_host_connections(struct oci_reader *r, unsigned n);
/* fn(ctx) runs in oci_reader_perform() once the transfers have taken in what arrived, before
 * the reads that ended are ended and before it waits: a sink that keeps bytes back (to write
 * them in larger pieces) writes them out then. */
void oci_reader_set_round_cb(struct oci_reader *r, void (*fn)(void *ctx), void *ctx);

/* The largest Range header value ("bytes=a-b,c-d,...") one request carries: nginx, for one,
 * refuses header lines over 8 KiB by default. Ranges beyond it go out in further requests. */
#define OCI_RANGE_HEADER_MAX 7000
/* Characters the range [off, off + len) adds to a Range header value, with its comma. */
size_t oci_range_spec_len(uint64_t off, uint64_t len);

/* HTTP requests the client itself made (resolve, tokens, push), since it was made. */
void oci_client_stats(const struct oci_client *c, uint64_t *requests);

/* ---- publishing (lazyerofs push) ---- */

/* Upload progress: bytes sent so far of total. */
typedef void (*oci_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* The metadata map of an EROFS layer (metamap.c): the blob's byte ranges that hold its
 * metadata, as the annotation OCI_ANNOTATION_METADATA of the layer's descriptor, so that a
 * cold mount fetches them at once instead of level by level. Only ever a hint (the mount's
 * walk still checks everything): ranges are aligned to OCI_METAMAP_UNIT, the text is at most
 * OCI_METAMAP_MAX_TEXT bytes (an image whose exact map is longer gets a coarser one, gaps
 * bridged; none when even that is too long). */
#define OCI_ANNOTATION_METADATA "dev.lazyerofs.metadata"
#define OCI_METAMAP_UNIT 4096u
#define OCI_METAMAP_MAX_TEXT (512u << 10)
/* v[0, n) sorted and disjoint, within a blob of `size` bytes (caller frees *ret). -EINVAL when
 * not sorted, -E2BIG when no map fits, -ENOMEM. */
int oci_metamap_encode(const struct util_extent *v, size_t n, uint64_t size, char **ret);
/* Untrusted text -> ranges added to ret (sorted, disjoint, within the blob). -EPROTONOSUPPORT
 * (another version), -EBADMSG (malformed, or reaching past the blob), -EFBIG, -ENOMEM. */
int oci_metamap_decode(const char *text, uint64_t size, struct util_extents *ret);
/* The metadata map of the layer oci_resolve picked (NULL when its descriptor has none). */
const char *oci_client_metamap(const struct oci_client *c);
/* Copy which of the client's mirrors rest now (found not answering: skipped for a while) into
 * o, the options it was made from, for the clients made from them next (a mount's daemon,
 * which would otherwise give a stalled mirror half of its first read's time again). */
void oci_client_export_rests(const struct oci_client *c, struct oci_options *o);
/* The quickest reply the client's resolve (or other control requests) got: from a request
 * sent to its reply's first byte, in us (a round trip and the server's time to answer); 0
 * when none came. */
uint64_t oci_client_reply_us(struct oci_client *c);
/* Bearer tokens renewed ahead by the caller (a daemon): with on, a read whose token is past
 * its renewal time (a quarter of its life before it expires, at most 30 s) takes it while it
 * is still good at the server and leaves the renewal to oci_client_refresh_tokens, which the
 * caller runs on a thread of its own twice a second: a token request may take seconds,
 * and transfers never wait on it (one under way, a read takes the last token still good).
 * Returns 0, or the last failure's -errno (the reads then ask themselves once the old
 * token is no longer good). */
void oci_client_set_refresh_ahead(struct oci_client *c, bool on);
int oci_client_refresh_tokens(struct oci_client *c);

/* The config and manifest (compact JSON, deterministic) of a one-layer OCI image whose layer
 * is an EROFS blob (application/vnd.erofs.layer.v1), its descriptor annotated with the
 * metadata map `metamap` unless NULL; platform "OS/ARCH[/VARIANT]" or NULL for the host's.
 * Caller frees both. */
int oci_image_build(const char *layer_digest, uint64_t layer_size, const char *platform,
		    const char *metamap,
		    char **ret_config, char **ret_manifest);
/* 1 when the client's repository has the blob, 0 when not, -errno on failure. With size
 * (not 0): a blob the registry says it holds with another size is a failure (-EBADMSG, the
 * reason in err): a registry that lost part of an upload and did not check its digest, whose
 * blob a retried push must not take as there. */
int oci_blob_exists(struct oci_client *c, const char *digest, uint64_t size,
		    struct util_error *err);
/* An upload session as the registry last described it: the URL to continue at (its latest
 * Location) and the bytes it holds. */
typedef void (*oci_session_fn)(void *ctx, const char *url, uint64_t offset);
struct oci_upload_opts {
	oci_progress_fn progress; /* may be NULL */
	void *progress_ctx;
	/* The URL of a session an earlier process left (oci_upload_record), or NULL. It is
	 * continued when it lies under the registry's API for the client's repository and the
	 * registry still knows it (a GET says how many bytes it holds); else a new one starts. */
	const char *resume_url;
	/* Told where the session stands each time that changes (opened, a chunk committed), so
	 * that a later process can continue it; may be NULL. Chunked uploads only. */
	oci_session_fn session;
	void *session_ctx;
	/* Out: the recorded session was continued, from this byte on. */
	bool resumed;
	uint64_t resumed_at;
};
/* Upload size bytes of fd (from offset 0) or of a buffer as blob `digest`: one PUT for small
 * blobs, PATCH chunks for big ones. A chunk that fails (reset, timeout, 5xx, 416) is
 * followed by a GET of the session, which tells the bytes the registry committed: the
 * upload goes on from there, or starts over when the registry no longer knows the session.
 * o may be NULL. */
int oci_blob_upload_fd(struct oci_client *c, int fd, uint64_t size, const char *digest,
		       struct oci_upload_opts *o, struct util_error *err);
int oci_blob_upload_buf(struct oci_client *c, const void *data, size_t len, const char *digest,
			struct util_error *err);
/* Upload data as a blob unless the repository has it already (HEAD first); digest gets its
 * digest. */
int oci_blob_ensure(struct oci_client *c, const void *data, size_t len,
		    char digest[UTIL_DIGEST_STR_LEN], struct util_error *err);

/* The record of an unfinished upload, kept by `lazyerofs push` between processes. No
 * credentials: the URL is the registry's own Location. */
#define OCI_UPLOAD_RECORD_MAX 16384
struct oci_upload_record {
	char registry[256];
	char repository[256];
	char digest[UTIL_DIGEST_STR_LEN];
	uint64_t size;
	uint64_t offset; /* bytes the registry held when the record was written */
	char url[4096];
};
/* Compact JSON; caller frees. */
int oci_upload_record_format(const struct oci_upload_record *rec, char **ret);
/* Parse a record (untrusted: at most OCI_UPLOAD_RECORD_MAX bytes, every field checked, the URL
 * http(s)); -EBADMSG when it is not one, -EFBIG when too large. */
int oci_upload_record_parse(const void *buf, size_t len, struct oci_upload_record *ret);

/* PUT a manifest under reference (a tag; NULL: its own digest) whose blobs the caller has just
 * uploaded or found. ret_digest gets its digest; -EILSEQ when the registry reports another.
 * The distribution registry may refuse it (HTTP 400: DIGEST_INVALID, MANIFEST_BLOB_UNKNOWN)
 * while another client uploads one of those blobs at the same moment (pushes of one image at
 * once).
 * Then ensure(ctx) uploads again what is missing, and the PUT goes again, up to
 * OCI_MANIFEST_PUT_ATTEMPTS times in all. ret_resp (may be NULL): the last reply's headers. */
#define OCI_MANIFEST_PUT_ATTEMPTS 4
struct oci_resp;
int oci_manifest_put_ensured(struct oci_client *c, const char *reference, const char *media_type,
			     const void *data, size_t len,
			     int (*ensure)(void *ctx, struct util_error *err), void *ctx,
			     char ret_digest[UTIL_DIGEST_STR_LEN], struct oci_resp *ret_resp,
			     struct util_error *err);

/* ---- referrers (OCI 1.1: artifacts attached to an image manifest) ---- */

/* The one layer of an artifact we push, as its manifest's annotations name it
 * (OCI_ANNOTATION_LAYER_*: a registry's referrers API copies a manifest's annotations into
 * its list, and so does our fallback index): a lookup fetches the layer at once instead of
 * the manifest first. digest "" when the annotations are absent or unreadable. */
struct oci_layer_hint {
	char media_type[128];
	char digest[UTIL_DIGEST_STR_LEN];
	uint64_t size;
};

/* One referrer of an image manifest, as the referrers API or the fallback tag lists it. */
struct oci_referrer {
	char digest[UTIL_DIGEST_STR_LEN]; /* the artifact's manifest */
	uint64_t size;
	char artifact_type[128];
	char created[64]; /* annotation org.opencontainers.image.created (RFC 3339), or "" */
	struct oci_layer_hint layer;
	char subject_blob[UTIL_DIGEST_STR_LEN]; /* the image blob it is about, or "" (not said) */
};

/* Attach len bytes of data to the image manifest the client resolved (oci_resolve first) as
 * an OCI artifact: the data as one blob of layer_media_type, the empty config
 * (application/vnd.oci.empty.v1+json), a manifest with artifactType artifact_type, subject
 * the image manifest, annotation org.opencontainers.image.created (now). Through the
 * referrers API when the registry supports it (it answers the manifest PUT with an
 * OCI-Subject header), else by the referrers tag schema: the index under the tag
 * "sha256-<hex of the subject>" gains the artifact's descriptor (read, add, write back; an
 * index there that is not one is refused, never overwritten). Each push adds an artifact.
 * ret_digest: the artifact manifest's digest; *ret_via_tag: the fallback tag was written. */
int oci_referrer_push(struct oci_client *c, const char *artifact_type,
		      const char *layer_media_type, const void *data, size_t len,
		      char ret_digest[UTIL_DIGEST_STR_LEN], bool *ret_via_tag,
		      struct util_error *err);
/* The newest referrer of artifact_type of the resolved image manifest: the referrers API
 * (filtered by artifactType), else the fallback tag when the registry has no API. Newest:
 * the latest `created`, then the last listed. Everything within timeout_ms (0: the
 * client's timeout), without retries past it. 0 found; -ENOENT when there is none (no API
 * and no fallback tag, or nothing of that type); -errno with err otherwise. */
int oci_referrer_newest(struct oci_client *c, const char *artifact_type, uint64_t timeout_ms,
			struct oci_referrer *ret, struct util_error *err);
/* The same, asking only where `how` says: the referrers API (returns 1 when the registry has
 * none and OCI_REFERRERS_TAG is not set), the fallback tag, or both in that order. Two
 * clients may ask both ways at once, to save the round trip the fallback costs. */
#define OCI_REFERRERS_API 1u
#define OCI_REFERRERS_TAG 2u
int oci_referrer_find(struct oci_client *c, const char *artifact_type, unsigned how,
		      uint64_t timeout_ms, struct oci_referrer *ret, struct util_error *err);
/* The bytes of the first layer of media type media_type of the artifact ref names (of the
 * client's repository): at once when the list named that layer (ref->layer), else through
 * the artifact's manifest; manifest and blob digest-checked, at most max bytes (-EFBIG
 * beyond), within timeout_ms (0: the client's). Caller frees *ret. -ENOENT when the manifest
 * has no such layer. */
int oci_artifact_fetch(struct oci_client *c, const struct oci_referrer *ref,
		       const char *media_type, size_t max, uint64_t timeout_ms, void **ret,
		       size_t *ret_len, struct util_error *err);

#endif
