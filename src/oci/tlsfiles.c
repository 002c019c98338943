// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The TLS files a host's configuration names (hosts.toml's ca and client, Docker's *.crt,
 * *.cert and *.key): read once, when the configuration is, and checked then -- a CA file
 * holds a PEM certificate, a client certificate parses and its private key belongs to it --
 * so that a mistake is one line naming the file before anything is asked of a registry, not
 * a failed handshake later. libcurl gets the bytes (CURLOPT_*_BLOB), never the paths; a host
 * with several client certificates chooses one per handshake, as containerd does: the first
 * the server accepts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/strutil.h"

#define TLS_FILE_MAX (1u << 20)
#define CA_BUNDLE_MAX (64u << 20) /* ca=: a system's bundle, checked before libcurl reads it */

static const char *read_cause(int r)
{
	return r == -EFBIG ? "larger than 1 MiB" : strerror(-r);
}

/* A CA file's text, read (up to max bytes) and checked to hold a PEM certificate (OpenSSL's
 * TRUSTED CERTIFICATE too: RHEL's ca-bundle.trust.crt). */
static int ca_file_read(const char *path, size_t max, char **ret, size_t *ret_len,
			struct util_error *err)
{
	int r = util_read_file(AT_FDCWD, path, max, 0, ret, ret_len);

	if (r == -EFBIG)
		return util_err_set(err, r, "ca='%s': larger than %zu MiB", path, max >> 20);
	if (r < 0)
		return util_err_set(err, r, "ca='%s': %s", path, strerror(-r));
	if (!strstr(*ret, "-----BEGIN CERTIFICATE-----") &&
	    !strstr(*ret, "-----BEGIN TRUSTED CERTIFICATE-----")) {
		free(*ret);
		*ret = NULL;
		return util_err_set(err, -EINVAL, "ca='%s' is not a PEM certificate file", path);
	}
	return 0;
}

int oci_ca_file_check(const char *path, struct util_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;

	/* (libcurl reads the file itself: a system's whole bundle may be given) */
	return ca_file_read(path, CA_BUNDLE_MAX, &text, &len, err);
}

int oci_ca_file_append(const char *path, struct util_buf *pem, struct util_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = ca_file_read(path, TLS_FILE_MAX, &text, &len, err);

	if (r < 0)
		return r;
	if (util_buf_append(pem, text, len) < 0 || util_buf_append(pem, "\n", 1) < 0)
		return util_err_set(err, -EFBIG, "ca '%s': the certificates are too large", path);
	return 0;
}

/* A PEM passphrase is never asked for (OpenSSL's default would prompt on the terminal): an
 * encrypted key is refused, as containerd refuses one. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* A client certificate and its key, parsed. */
struct tls_pair {
	X509 *leaf;
	STACK_OF(X509) *chain; /* the certificates after the leaf in its file, when asked for */
	EVP_PKEY *key;
};

static void pair_free(struct tls_pair *p)
{
	X509_free(p->leaf);
	sk_X509_pop_free(p->chain, X509_free);
	EVP_PKEY_free(p->key);
	*p = (struct tls_pair){0};
}

/* Parse a pair's PEM text: the leaf certificate, with_chain the ones after it in its file,
 * and the private key; what the text does not hold stays NULL (so does what memory could not
 * hold). OpenSSL's queued errors are dropped: the caller tells them in its own words. */
static void pair_read(const char *cert_text, size_t cert_len, const char *key_text,
		      size_t key_len, bool with_chain, struct tls_pair *p)
{
	BIO *b = BIO_new_mem_buf(cert_text, (int)cert_len);
	X509 *x;

	*p = (struct tls_pair){0};
	p->leaf = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
	if (with_chain && (p->chain = sk_X509_new_null()))
		while (b && (x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)))
			if (!sk_X509_push(p->chain, x)) {
				X509_free(x);
				sk_X509_pop_free(p->chain, X509_free);
				p->chain = NULL;
				break;
			}
	BIO_free(b);
	b = BIO_new_mem_buf(key_text, (int)key_len);
	p->key = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
	BIO_free(b);
	ERR_clear_error();
}

enum pair_check { PAIR_OK, PAIR_NO_CERT, PAIR_NO_KEY, PAIR_MISMATCH };

/* Whether the PEM text holds a certificate and a private key that belongs to it. */
static enum pair_check check_pair(const char *cert_text, size_t cert_len, const char *key_text,
				  size_t key_len)
{
	struct tls_pair p;
	enum pair_check res = PAIR_OK;

	pair_read(cert_text, cert_len, key_text, key_len, false, &p);
	if (!p.leaf)
		res = PAIR_NO_CERT;
	else if (!p.key)
		res = PAIR_NO_KEY;
	else if (X509_check_private_key(p.leaf, p.key) != 1)
		res = PAIR_MISMATCH;
	pair_free(&p);
	ERR_clear_error(); /* what OpenSSL queued is told in our words */
	return res;
}

int oci_client_pair_load(const char *cert_path, const char *key_path, struct oci_mirror *m,
			 struct util_error *err)
{
	_cleanup_(util_free_secret) char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	struct oci_client_cert *v;
	int r;

	r = util_read_file(AT_FDCWD, cert_path, TLS_FILE_MAX, 0, &cert, &cert_len);
	if (r < 0)
		return util_err_set(err, r, "client certificate '%s': %s", cert_path,
				    read_cause(r));
	if (key_path) {
		r = util_read_file(AT_FDCWD, key_path, TLS_FILE_MAX, 0, &key, &key_len);
		if (r < 0)
			return util_err_set(err, r, "client key '%s': %s", key_path, read_cause(r));
	}
	/* Without a key file, the certificate's file holds the key too (containerd's). */
	switch (check_pair(cert, cert_len, key ? key : cert, key ? key_len : cert_len)) {
	case PAIR_OK:
		break;
	case PAIR_NO_CERT:
		r = util_err_set(err, -EINVAL, "client certificate '%s' holds no PEM certificate",
				 cert_path);
		break;
	case PAIR_NO_KEY:
		if (key_path)
			r = util_err_set(err, -EINVAL,
					 "client key '%s' holds no PEM private key (or one with a "
					 "passphrase)",
					 key_path);
		else
			r = util_err_set(err, -EINVAL,
					 "client certificate '%s' holds no PEM private key (or one "
					 "with a passphrase) and no key file is named with it",
					 cert_path);
		break;
	case PAIR_MISMATCH:
		r = util_err_set(err, -EINVAL,
				 "client key '%s' does not belong to the certificate '%s'",
				 key_path ? key_path : cert_path, cert_path);
		break;
	}
	if (r < 0)
		return r;
	if (m->nclients == OCI_CLIENT_CERTS_MAX)
		return util_err_set(err, -E2BIG,
				    "client certificate '%s': more than %d for one host", cert_path,
				    OCI_CLIENT_CERTS_MAX);
	if (!key) {
		key = malloc(cert_len + 1);
		if (!key)
			return -ENOMEM;
		memcpy(key, cert, cert_len + 1);
		key_len = cert_len;
	}
	v = realloc(m->clients, (m->nclients + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	m->clients = v;
	m->clients[m->nclients++] = (struct oci_client_cert){
	    .cert = TAKE_PTR(cert), .cert_len = cert_len, .key = TAKE_PTR(key), .key_len = key_len};
	return 0;
}

/* ---- choosing among several client certificates ------------------------------------------- */

struct oci_tls_choice {
	size_t n;
	struct tls_pair v[];
};

void oci_tls_choice_free(struct oci_tls_choice *ch)
{
	if (!ch)
		return;
	for (size_t i = 0; i < ch->n; i++)
		pair_free(&ch->v[i]);
	free(ch);
}

int oci_tls_choice_new(const struct oci_client_cert *v, size_t n, struct oci_tls_choice **ret)
{
	struct oci_tls_choice *ch = calloc(1, sizeof(*ch) + n * sizeof(ch->v[0]));
	int r = 0;

	if (!ch)
		return -ENOMEM;
	for (; ch->n < n && r == 0; ch->n++) {
		struct tls_pair *p = &ch->v[ch->n];

		pair_read(v[ch->n].cert, v[ch->n].cert_len, v[ch->n].key, v[ch->n].key_len, true,
			  p);
		/* (checked when the configuration was read: only memory can fail here) */
		if (!p->leaf || !p->chain || !p->key)
			r = -ENOMEM;
	}
	if (r < 0) {
		oci_tls_choice_free(ch);
		return r;
	}
	*ret = ch;
	return 0;
}

/* Whether the server's list of acceptable CAs names an issuer of the pair's chain. */
static bool pair_accepted(const struct tls_pair *p, const STACK_OF(X509_NAME) *cas)
{
	for (int i = -1; i < sk_X509_num(p->chain); i++) {
		X509 *x = i < 0 ? p->leaf : sk_X509_value(p->chain, i);

		for (int j = 0; j < sk_X509_NAME_num(cas); j++)
			if (!X509_NAME_cmp(X509_get_issuer_name(x), sk_X509_NAME_value(cas, j)))
				return true;
	}
	return false;
}

/* OpenSSL asks when the server requests a certificate. */
static int choose(SSL *ssl, void *arg)
{
	const struct oci_tls_choice *ch = arg;
	const STACK_OF(X509_NAME) *cas = SSL_get_client_CA_list(ssl);

	for (size_t i = 0; i < ch->n; i++) {
		const struct tls_pair *p = &ch->v[i];

		if (sk_X509_NAME_num(cas) > 0 && !pair_accepted(p, cas))
			continue;
		return SSL_use_cert_and_key(ssl, p->leaf, p->key, p->chain, 1) == 1;
	}
	return 1; /* none of ours: the server decides whether to go on without one */
}

CURLcode oci_tls_choice_ctx(CURL *curl, void *ssl_ctx, void *choice)
{
	(void)curl;
	SSL_CTX_set_cert_cb(ssl_ctx, choose, choice);
	return CURLE_OK;
}
