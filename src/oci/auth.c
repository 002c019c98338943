// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Registry authentication shared by every thread of a client, per host (a mirror has its
 * own): the scheme learned from the host's first 401 (Basic, or Bearer with the token flow
 * of the distribution spec), credentials looked up once, bearer tokens cached per scope until
 * shortly before they expire and refreshed once per rejection. auth_lock guards all of it, so
 * concurrent readers that hit an expired token cause one token request, not one each. With a
 * run directory, tokens are also shared with other processes (tokencache.c): one obtained is
 * written there, and one needed is looked for there before the token server is asked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/strutil.h"
#include "util/time.h"

static void token_clear(struct oci_token *t)
{
	free(t->scope);
	util_free_secret(&t->header);
	memset(t, 0, sizeof(*t));
}

/* The credentials looked up, and what the lookup said, forgotten (load_creds looks again). */
static void forget_creds(struct oci_auth *a)
{
	oci_creds_free(&a->creds);
	free(a->creds_source);
	a->creds_source = NULL;
	a->creds_error = 0;
	a->creds_error_msg[0] = 0;
	a->creds_loaded = false;
}

void oci_auth_free(struct oci_auth *a)
{
	for (size_t i = 0; i < OCI_TOKEN_SLOTS; i++)
		token_clear(&a->tokens[i]);
	util_free_secret(&a->basic_header);
	util_free_secret(&a->spare);
	forget_creds(a);
	if (a->easy)
		curl_easy_cleanup(a->easy);
	a->easy = NULL;
}

static int default_scope(const struct oci_client *c, bool push, char **ret)
{
	if (asprintf(ret, "repository:%s:%s", c->ref->repository, push ? "pull,push" : "pull") < 0)
		return -ENOMEM;
	return 0;
}

static struct oci_token *token_for(struct oci_auth *a, const char *scope)
{
	for (size_t i = 0; i < OCI_TOKEN_SLOTS; i++)
		if (a->tokens[i].scope && !strcmp(a->tokens[i].scope, scope))
			return &a->tokens[i];
	return NULL;
}

static bool token_valid(const struct oci_token *t, uint64_t now)
{
	return t && t->header && now < t->expires_ms;
}

/* A renewal ahead that failed is tried again this much later. */
#define OCI_RENEW_RETRY_MS 5000

/* Past its renewal, but still good at the server. */
static bool token_good(const struct oci_token *t, uint64_t now)
{
	return t && t->header && now < t->good_ms;
}

/* Keep t's header as h's spare (the reads' token), when it changed. 0, or -ENOMEM. */
static int keep_spare(struct oci_client *c, struct oci_auth *a, const struct oci_token *t)
{
	int r = 0;

	pthread_mutex_lock(&c->spare_lock);
	if (!a->spare || a->spare_gen != a->gen || a->spare_good_ms != t->good_ms) {
		util_free_secret(&a->spare);
		a->spare = strdup(t->header);
		a->spare_good_ms = t->good_ms;
		a->spare_gen = a->gen;
		r = a->spare ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&c->spare_lock);
	return r;
}

/* h's spare header into *ret when still good: 1; 0 when there is none; -ENOMEM. */
static int take_spare(struct oci_client *c, struct oci_host *h, uint64_t now, char **ret,
		      uint64_t *ret_gen)
{
	struct oci_auth *a = &h->auth;
	int r = 0;

	pthread_mutex_lock(&c->spare_lock);
	if (a->spare && now < a->spare_good_ms && a->spare_gen == atomic_load(&a->gen)) {
		*ret = strdup(a->spare);
		*ret_gen = a->spare_gen;
		r = *ret ? 1 : -ENOMEM;
	}
	pthread_mutex_unlock(&c->spare_lock);
	return r;
}

/* Renew a little before the server's expiry: a quarter of the life, at most 30 s. */
static uint64_t token_margin_ms(uint64_t lifetime_s)
{
	return MIN(lifetime_s * 1000 / 4, 30000ULL);
}

/* Keep token for scope (its slot, else a free one, else the one that expires first), valid
 * for remaining_ms of a life of lifetime_s. */
static int token_put(struct oci_auth *a, const char *scope, const char *token,
		     uint64_t remaining_ms, uint64_t lifetime_s, bool from_file,
		     struct oci_token **ret)
{
	struct oci_token *slot = token_for(a, scope);
	uint64_t now, margin = token_margin_ms(lifetime_s);
	/* Good until a little before the end of its life (its clock, the token server's, the
	 * registry's, the time a request takes to get there), renewed before that. */
	uint64_t slack = MIN(MAX(margin / 3, 3000ULL), 10000ULL);

	if (!slot) {
		slot = &a->tokens[0];
		for (size_t i = 0; i < OCI_TOKEN_SLOTS; i++) {
			if (!a->tokens[i].scope) {
				slot = &a->tokens[i];
				break;
			}
			if (a->tokens[i].expires_ms < slot->expires_ms)
				slot = &a->tokens[i];
		}
	}
	token_clear(slot);
	slot->scope = strdup(scope);
	if (!slot->scope || asprintf(&slot->header, "Authorization: Bearer %s", token) < 0) {
		token_clear(slot);
		return -ENOMEM;
	}
	now = util_now_ms();
	slot->expires_ms = now + (remaining_ms > margin ? remaining_ms - margin : 0);
	slot->good_ms = now + (remaining_ms > slack ? remaining_ms - slack : 0);
	slot->fetched_ms = now;
	slot->from_file = from_file;
	a->gen++;
	*ret = slot;
	return 0;
}

static bool have_password(const struct oci_auth *a)
{
	return a->creds.username && a->creds.password;
}

/* Who the token server would see: the kind of credentials fetch_token sends and their values,
 * hashed. Left empty (no token cache) when the hash cannot be made. */
static void set_identity(struct oci_auth *a)
{
	const char *v[3] = { "anonymous", "", "" };
	struct util_sha256 *s = NULL;
	uint8_t d[UTIL_SHA256_LEN];
	int r;

	a->identity[0] = 0;
	if (a->creds.identity_token) {
		v[0] = "identity-token";
		v[1] = a->creds.username ? a->creds.username : "";
		v[2] = a->creds.identity_token;
	} else if (have_password(a)) {
		v[0] = "password";
		v[1] = a->creds.username;
		v[2] = a->creds.password;
	}
	r = util_sha256_new(&s);
	for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(v); i++)
		r = util_sha256_update(s, v[i], strlen(v[i]) + 1);
	if (r >= 0)
		r = util_sha256_final(s, d);
	util_sha256_free(s);
	if (r >= 0)
		util_sha256_hex(d, a->identity);
	explicit_bzero(d, sizeof(d));
}

/* Called with auth_lock held; a credential helper has until deadline_ms. One that did not
 * answer in time is asked again by the next lookup: it may only have hung once. */
static void load_creds(struct oci_client *c, struct oci_host *h, uint64_t deadline_ms)
{
	struct oci_auth *a = &h->auth;
	int r;

	if (a->creds_loaded)
		return;
	r = oci_creds_find(c, h, deadline_ms, &a->creds, &a->creds_source, a->creds_error_msg,
			   sizeof(a->creds_error_msg));
	a->creds_loaded = r != -ETIMEDOUT;
	if (r < 0 && r != -ENOENT)
		a->creds_error = r;
	set_identity(a);
}

/* Refused credentials are looked up again: a password rotated (the file, auth.json), a
 * credential helper's short-lived secret (ECR's last 12 hours, gcloud's one) renewed since
 * the daemon started. Files at every refusal (reading them costs nothing, and the same ones
 * found send no request); a helper at most this often, and a lookup that finds the same ones
 * doubles the wait, up to CREDS_RELOAD_MAX_MS: a helper that takes seconds is not run for
 * every refusal. */
#define CREDS_RELOAD_MS	    10000
#define CREDS_RELOAD_MAX_MS 300000

/* Called with auth_lock held, when the credentials were refused: look them up again (not
 * sooner than a->creds_reload_wait_ms after the last lookup ended). True when they changed:
 * worth another try. */
static bool reload_creds(struct oci_client *c, struct oci_host *h, uint64_t deadline_ms)
{
	struct oci_auth *a = &h->auth;
	char before[sizeof(a->identity)];
	uint64_t now = util_now_ms();

	if (!a->creds_reload_wait_ms)
		a->creds_reload_wait_ms = CREDS_RELOAD_MS;
	/* (files are read again at once: a password fixed late counts from then on) */
	if (a->creds.helper && a->creds_reloaded_ms &&
	    now - a->creds_reloaded_ms < a->creds_reload_wait_ms)
		return false;
	memcpy(before, a->identity, sizeof(before));
	forget_creds(a);
	load_creds(c, h, deadline_ms);
	if (!a->creds_loaded)
		return false; /* a helper that hung: the next refusal asks it again */
	a->creds_reloaded_ms = util_now_ms(); /* (a helper may have taken a while) */
	if (!strcmp(before, a->identity)) {
		a->creds_reload_wait_ms = MIN(2 * a->creds_reload_wait_ms, CREDS_RELOAD_MAX_MS);
		return false;
	}
	a->creds_reload_wait_ms = CREDS_RELOAD_MS;
	log_debug("oci: registry %s: credentials refused; other ones found (%s)", h->shown,
		  a->creds_source ? a->creds_source : "none: anonymous");
	return true;
}

static int make_basic(const char *user, const char *pass, char **ret)
{
	_cleanup_free_ char *plain = NULL;
	char *b64;
	int n;

	n = asprintf(&plain, "%s:%s", user, pass);
	if (n < 0)
		return -ENOMEM;
	b64 = oci_base64_encode(plain, (size_t)n);
	explicit_bzero(plain, (size_t)n);
	if (!b64)
		return -ENOMEM;
	n = asprintf(ret, "Authorization: Basic %s", b64);
	explicit_bzero(b64, strlen(b64));
	free(b64);
	return n < 0 ? -ENOMEM : 0;
}

/* Append "&name=urlencoded(value)" to a buffer. */
static int add_param(struct util_buf *b, CURL *easy, const char *name, const char *value)
{
	char *e = curl_easy_escape(easy, value, 0);
	int r;

	if (!e)
		return -ENOMEM;
	r = util_buf_appendf(b, "%s%s=%s", b->len ? "&" : "", name, e);
	explicit_bzero(e, strlen(e));
	curl_free(e);
	return r;
}

static bool cache_usable(const struct oci_client *c, const struct oci_auth *a)
{
	return c->opts.run_dir && a->identity[0];
}

static void token_key(const struct oci_host *h, const char *scope, struct oci_token_key *k)
{
	*k = (struct oci_token_key){ .host = h->name, .realm = h->auth.challenge.realm,
				     .service = h->auth.challenge.service, .scope = scope,
				     .identity = h->auth.identity };
}

/* Called with auth_lock held: the token for scope that a process cached (this one, or another
 * with the same credentials), while it is valid for longer than the renewal margin. */
static bool token_from_cache(struct oci_client *c, struct oci_host *h, const char *scope,
			     uint64_t deadline_ms, struct oci_token **ret)
{
	struct oci_auth *a = &h->auth;
	struct oci_token_key k;
	char *token = NULL;
	uint64_t remaining, lifetime;
	int r;

	load_creds(c, h, deadline_ms);
	if (!cache_usable(c, a))
		return false;
	token_key(h, scope, &k);
	r = oci_token_cache_load(c->opts.run_dir, &k, time(NULL), &token, &remaining, &lifetime);
	if (r < 0) {
		log_debug("oci: no cached token for %s: %s", scope, strerror(-r));
		return false;
	}
	r = -ESTALE;
	if (remaining * 1000 > token_margin_ms(lifetime))
		r = token_put(a, scope, token, remaining * 1000, lifetime, true, ret);
	explicit_bzero(token, strlen(token));
	free(token);
	if (r >= 0)
		log_debug("oci: cached token for %s, valid %llu s more", scope,
			  (unsigned long long)remaining);
	return r >= 0;
}

/* Called with auth_lock held: ask the token server for scope; store it. An identity token
 * is traded with the OAuth2 refresh-token grant (a POST) when oauth, else sent as the
 * password of a GET (what a token server without the POST endpoint takes instead). */
static int fetch_token_once(struct oci_client *c, struct oci_host *h, const char *scope, bool oauth,
			    uint64_t deadline_ms, struct oci_token **ret, struct util_error *err)
{
	struct util_buf params = UTIL_BUF_INIT(64 * 1024), body = UTIL_BUF_INIT(OCI_TOKEN_REPLY_MAX);
	_cleanup_free_ char *url = NULL, *basic = NULL, *scopes = NULL;
	_cleanup_free_ char *token = NULL, *refresh = NULL;
	struct oci_req q = { .method = "GET", .body_fd = -1, .follow = true,
			     .max_body = OCI_TOKEN_REPLY_MAX, .accept = "application/json",
			     .host = h };
	struct oci_resp resp;
	struct oci_token *slot = NULL;
	struct oci_auth *a = &h->auth;
	const char *realm = a->challenge.realm;
	char shown[300], who[300];
	uint64_t lifetime;
	time_t wall;
	int r;

	oci_url_redact(realm, shown, sizeof(shown));
	if (!util_startswith(realm, "https://") && !util_startswith(realm, "http://")) {
		return util_err_set_http(err, -EACCES, 401, NULL,
					 "registry %s: token realm '%s' is not an http(s) URL",
					 h->shown, shown);
	}
	if (!a->easy && !(a->easy = curl_easy_init()))
		return -ENOMEM;
	load_creds(c, h, deadline_ms);
	if (!a->creds_loaded) /* a credential helper that did not answer in time */
		return util_err_set(err, -ETIMEDOUT, "registry %s: %s", h->shown,
				    a->creds_error_msg);
	if ((have_password(a) || a->creds.identity_token) && util_startswith(realm, "http://") &&
	    !(h->origin && util_startswith(h->origin, "http://"))) {
		return util_err_set_http(
		    err, -EACCES, 401, NULL,
		    "registry %s: token server %s is plain HTTP; not sending credentials "
		    "there (use -o insecure to allow)",
		    h->shown, shown);
	}
	if (a->challenge.service[0] &&
	    (r = add_param(&params, a->easy, "service", a->challenge.service)) < 0)
		goto out;
	if (a->creds.identity_token && oauth) {
		/* OAuth2 refresh-token grant, as Docker does with an identity token; several
		 * scopes go in one parameter, separated by spaces. */
		if ((r = add_param(&params, a->easy, "scope", scope)) < 0 ||
		    (r = add_param(&params, a->easy, "grant_type", "refresh_token")) < 0 ||
		    (r = add_param(&params, a->easy, "client_id", "lazyerofs")) < 0 ||
		    (r = add_param(&params, a->easy, "refresh_token", a->creds.identity_token)) < 0)
			goto out;
		q.method = "POST";
		q.url = realm;
		q.body = params.data;
		q.body_len = params.len;
		q.content_type = "application/x-www-form-urlencoded";
		oci_fmt(who, sizeof(who), "with the identity token from %s", a->creds_source);
	} else {
		/* Several scopes are separated by spaces; each is its own parameter. */
		scopes = strdup(scope);
		if (!scopes) {
			r = -ENOMEM;
			goto out;
		}
		for (char *save = NULL, *s = strtok_r(scopes, " ", &save); s;
		     s = strtok_r(NULL, " ", &save))
			if ((r = add_param(&params, a->easy, "scope", s)) < 0)
				goto out;
		if (a->creds.identity_token) {
			/* (as containerd does: no user, the identity token as the password) */
			if ((r = make_basic("", a->creds.identity_token, &basic)) < 0)
				goto out;
			q.origin_auth = basic;
			oci_fmt(who, sizeof(who), "with the identity token from %s (GET)",
				a->creds_source);
		} else if (have_password(a)) {
			if ((r = add_param(&params, a->easy, "account", a->creds.username)) < 0 ||
			    (r = make_basic(a->creds.username, a->creds.password, &basic)) < 0)
				goto out;
			q.origin_auth = basic;
			oci_fmt(who, sizeof(who), "for user '%s' (from %s)", a->creds.username,
				a->creds_source);
		} else {
			oci_fmt(who, sizeof(who), "anonymously");
		}
		if (asprintf(&url, "%s%c%s", realm, strchr(realm, '?') ? '&' : '?',
			     params.data ? (char *)params.data : "") < 0) {
			r = -ENOMEM;
			goto out;
		}
		q.url = url;
	}
	r = oci_request_easy(c, a->easy, &q, deadline_ms, &resp, &body, err,
			     &c->auth_requests);
	if (r < 0) {
		util_err_prefix(err, "registry %s: token request", h->shown);
		goto out;
	}
	if (q.body && (resp.status == 404 || resp.status == 405)) {
		/* A token server without the OAuth2 endpoint (containerd's experience: GCR
		 * answers 404): the identity token goes as a GET's password instead. */
		log_debug("oci: token server %s has no OAuth2 endpoint (HTTP %ld): asking by GET",
			  shown, resp.status);
		r = -EPROTONOSUPPORT;
		goto out;
	}
	if (resp.status == 400 || resp.status == 401 || resp.status == 403) {
		char code[64] = "", msg[300] = "";
		bool grant;

		oci_registry_error_parse(body.data, body.len, code, sizeof(code), msg, sizeof(msg));
		/* An OAuth2 token server refuses a refresh token with 400 invalid_grant (RFC
		 * 6749, 5.2): expired or revoked, as a wrong password is refused with 401. Any
		 * other 400 is a request it did not take, not a refusal (below). */
		grant =
		    resp.status == 400 && a->creds.identity_token && !strcmp(code, "invalid_grant");
		if (resp.status != 400 || grant) {
			util_err_set_http(
			    err, -EACCES, grant ? 401 : (int)resp.status, code,
			    "registry %s: token server %s refused a token %s for %s: HTTP "
			    "%ld%s%s%s",
			    h->shown, shown, who, scope, resp.status, msg[0] ? " " : "", msg,
			    a->creds.identity_token && resp.status != 403
				? " (log in to the registry again for a new identity token)"
				: "");
			r = -EACCES;
			goto out;
		}
	}
	if (resp.status != 200) {
		char what[400];

		oci_fmt(what, sizeof(what), "registry %s: token server %s", h->shown, shown);
		r = oci_status_error(c, &resp, &body, what, err);
		goto out;
	}
	wall = time(NULL);
	r = oci_token_reply_parse(body.data, body.len, wall, &token, &lifetime,
				  a->creds.identity_token ? &refresh : NULL);
	if (r < 0) {
		util_err_set_http(err, r == -ENOMEM ? r : -EBADMSG, 200, NULL,
				  "registry %s: token server %s sent a malformed reply", h->shown,
				  shown);
		r = r == -ENOMEM ? r : -EBADMSG;
		goto out;
	}
	r = token_put(a, scope, token, lifetime * 1000, lifetime, false, &slot);
	if (r < 0)
		goto out;
	log_debug("oci: token for %s, valid %llu s", scope, (unsigned long long)lifetime);
	if (cache_usable(c, a)) {
		struct oci_token_key k;

		token_key(h, scope, &k);
		r = oci_token_cache_store(c->opts.run_dir, &k, token, wall, lifetime);
		if (r < 0)
			log_debug("oci: not caching the token for %s: %s", scope, strerror(-r));
	}
	*ret = slot;
	r = 0;
out:
	if (token)
		explicit_bzero(token, strlen(token));
	if (refresh)
		explicit_bzero(refresh, strlen(refresh));
	if (basic)
		explicit_bzero(basic, strlen(basic));
	if (params.data)
		explicit_bzero(params.data, params.len);
	util_buf_free(&params);
	if (body.data)
		explicit_bzero(body.data, body.len);
	util_buf_free(&body);
	return r;
}

/* Called with auth_lock held: fetch_token_once, by GET at once where the token server was
 * found to have no OAuth2 endpoint (or once it answers so). */
static int fetch_token_by(struct oci_client *c, struct oci_host *h, const char *scope,
			  uint64_t deadline_ms, struct oci_token **ret, struct util_error *err)
{
	int r = fetch_token_once(c, h, scope, !h->auth.oauth_missing, deadline_ms, ret, err);

	if (r == -EPROTONOSUPPORT) {
		h->auth.oauth_missing = true;
		r = fetch_token_once(c, h, scope, false, deadline_ms, ret, err);
	}
	return r;
}

/* Called with auth_lock held: fetch_token_by, and once more with the credentials looked up
 * again when the token server refused them (rotated since they were read). */
static int fetch_token(struct oci_client *c, struct oci_host *h, const char *scope,
		       uint64_t deadline_ms, struct oci_token **ret, struct util_error *err)
{
	int r = fetch_token_by(c, h, scope, deadline_ms, ret, err);

	if (r == -EACCES && (err->http_status == 401 || err->http_status == 403)) {
		if (reload_creds(c, h, deadline_ms)) {
			util_err_clear(err);
			r = fetch_token_by(c, h, scope, deadline_ms, ret, err);
		} else if (!h->auth.creds_loaded) {
			util_err_prefix(err, "%s; the credentials before it were refused",
					h->auth.creds_error_msg);
		}
	}
	return r;
}

/* The scope of h's requests: a mirror's own name for the repository may differ from ours
 * (override_path with a namespace: "/v2/dockerhub" serves "dockerhub/REPO"): its challenge
 * said which scope it wants, and a token for ours grants nothing there. */
static int request_scope(struct oci_client *c, struct oci_host *h, bool push, char **ret)
{
	if (!push && h->mirror && h->auth.challenge.scope[0])
		return (*ret = strdup(h->auth.challenge.scope)) ? 0 : -ENOMEM;
	return default_scope(c, push, ret);
}

int oci_auth_header(struct oci_client *c, struct oci_host *h, bool push, uint64_t deadline_ms,
		    char **ret_header, uint64_t *ret_gen, struct util_error *err)
{
	struct oci_auth *a = &h->auth;
	_cleanup_free_ char *scope = NULL, *pull_scope = NULL;
	struct oci_token *t = NULL;
	uint64_t now = util_now_ms();
	bool ahead = !push && atomic_load(&c->refresh_ahead), locked = false;
	int r = 0;

	*ret_header = NULL;
	if (ahead) {
		/* Held: perhaps for a token request under way (oci_client_refresh_tokens), which
		 * may take seconds; the reads' token still good at the server serves meanwhile. */
		locked = pthread_mutex_trylock(&c->auth_lock) == 0;
		if (!locked && (r = take_spare(c, h, now, ret_header, ret_gen)) != 0)
			return MIN(r, 0);
	}
	if (!locked) {
		pthread_mutex_lock(&c->auth_lock);
		now = util_now_ms(); /* (after a wait, perhaps for a token request) */
	}
	*ret_gen = a->gen;
	if (a->scheme == OCI_AUTH_BASIC) {
		*ret_header = strdup(a->basic_header);
		r = *ret_header ? 0 : -ENOMEM;
	} else if (a->scheme == OCI_AUTH_BEARER) {
		r = request_scope(c, h, push, &scope);
		if (r < 0)
			goto out;
		t = token_for(a, scope);
		if (!token_valid(t, now) && !push) {
			/* a pull,push token serves reads too */
			r = default_scope(c, true, &pull_scope);
			if (r < 0)
				goto out;
			if (token_valid(token_for(a, pull_scope), now))
				t = token_for(a, pull_scope);
		}
		if (!token_valid(t, now) && ahead && token_good(t, now)) {
			a->renew_wanted = true; /* oci_client_refresh_tokens renews it */
		} else if (!token_valid(t, now) &&
			   !token_from_cache(c, h, scope, deadline_ms, &t)) {
			r = fetch_token(c, h, scope, deadline_ms, &t, err);
			if (r < 0)
				goto out;
		}
		if (ahead)
			(void)keep_spare(c, a, t); /* (without one, a read waits for the lock) */
		*ret_gen = a->gen;
		*ret_header = strdup(t->header);
		r = *ret_header ? 0 : -ENOMEM;
	}
out:
	pthread_mutex_unlock(&c->auth_lock);
	return r;
}

void oci_client_set_refresh_ahead(struct oci_client *c, bool on)
{
	atomic_store(&c->refresh_ahead, on);
}

int oci_client_refresh_tokens(struct oci_client *c)
{
	int ret = 0;

	for (size_t i = 0; i < c->nhosts; i++) {
		struct oci_host *h = &c->hosts[i];
		struct oci_auth *a = &h->auth;
		struct util_error err = UTIL_ERROR_INIT;
		_cleanup_free_ char *scope = NULL;
		uint64_t deadline = util_now_ms() + c->timeout_ms;
		struct oci_token *t = NULL;
		int r = 0;

		pthread_mutex_lock(&c->auth_lock);
		if (a->scheme == OCI_AUTH_BEARER && a->renew_wanted &&
		    util_now_ms() >= a->renew_next_ms) {
			a->renew_wanted = false;
			r = request_scope(c, h, false, &scope);
			if (r >= 0) {
				t = token_for(a, scope);
				/* No longer than the old one is good: from then on the reads wait
				 * for the lock, and ask themselves within their own deadlines. */
				if (t && t->good_ms > util_now_ms())
					deadline = MIN(deadline, t->good_ms);
				if (!token_valid(t, util_now_ms()) &&
				    !token_from_cache(c, h, scope, deadline, &t))
					r = fetch_token(c, h, scope, deadline, &t, &err);
			}
			if (r >= 0)
				r = keep_spare(c, a, t);
			/* (not again at once: the reads may want it twice a second) */
			if (r < 0)
				a->renew_next_ms = util_now_ms() + OCI_RENEW_RETRY_MS;
		}
		pthread_mutex_unlock(&c->auth_lock);
		if (r < 0) {
			/* (the reads ask themselves once the old one is no longer good) */
			log_debug("oci: renewing the token for %s ahead: %s", h->shown,
				  util_err_msg(&err, r));
			ret = r;
		}
	}
	return ret;
}

int oci_auth_challenged(struct oci_client *c, struct oci_host *h, const char *www_auth, bool push,
			uint64_t gen, int round, uint64_t deadline_ms, struct util_error *err)
{
	struct oci_auth *a = &h->auth;
	_cleanup_free_ char *scope = NULL;
	struct oci_challenge ch;
	struct oci_token *t;
	int r;

	pthread_mutex_lock(&c->auth_lock);
	if (gen != a->gen && round <= 2) {
		/* Another thread changed the credentials since this request went out. */
		r = 0;
		goto out;
	}
	r = oci_challenge_parse(www_auth, strlen(www_auth), &ch);
	if (r < 0) {
		util_err_set_http(
		    err, -EACCES, 401, NULL,
		    "registry %s: HTTP 401 without a usable authentication challenge%s", h->shown,
		    r == -ENOENT && www_auth[0] ? " (unsupported scheme)" : "");
		r = -EACCES;
		goto out;
	}
	if (ch.scheme == OCI_AUTH_BASIC) {
		load_creds(c, h, deadline_ms);
		/* Refused: other ones, if any are found now; none at all is a login missing. */
		if ((a->scheme == OCI_AUTH_BASIC || round > 1) &&
		    !reload_creds(c, h, deadline_ms) && have_password(a)) {
			util_err_set_http(
			    err, -EACCES, 401, NULL,
			    "registry %s: HTTP 401: the credentials for user '%s' (from %s) "
			    "were refused",
			    h->shown, a->creds.username ? a->creds.username : "",
			    a->creds_source ? a->creds_source : "?");
			r = -EACCES;
			goto out;
		}
		if (!have_password(a)) {
			if (a->creds_error)
				util_err_set_http(err, -EACCES, 401, NULL,
						  "registry %s: HTTP 401 and %s", h->shown,
						  a->creds_error_msg);
			else
				util_err_set_http(
				    err, -EACCES, 401, NULL,
				    "registry %s: HTTP 401: a login is required (give -o "
				    "username=...,password-file=..., or log in with docker or "
				    "podman)",
				    h->shown);
			r = -EACCES;
			goto out;
		}
		util_free_secret(&a->basic_header);
		r = make_basic(a->creds.username, a->creds.password, &a->basic_header);
		if (r < 0)
			goto out;
		a->scheme = OCI_AUTH_BASIC;
		a->gen++;
		goto out;
	}
	/* Bearer */
	if (ch.scope[0])
		scope = strdup(ch.scope);
	else
		r = default_scope(c, push, &scope);
	if (!scope) {
		r = -ENOMEM;
		goto out;
	}
	t = token_for(a, scope);
	/* A token obtained for this very request was refused: no access. One taken from the
	 * token cache may have been revoked since; it gets one more try with a fresh token. */
	if (round > 1 && !(t && t->from_file) && !reload_creds(c, h, deadline_ms)) {
		load_creds(c, h, deadline_ms);
		util_err_set_http(
		    err, -EACCES, 401, NULL, "registry %s: HTTP 401: access to %s denied%s%s%s",
		    h->shown, ch.scope[0] ? ch.scope : c->ref->repository,
		    have_password(a) ? " for user '" : " (no credentials given)",
		    have_password(a) ? a->creds.username : "", have_password(a) ? "'" : "");
		r = -EACCES;
		goto out;
	}
	a->challenge = ch;
	a->scheme = OCI_AUTH_BEARER;
	if (t) {
		/* the one just refused, or expired on the server's clock: not from the cache */
		if (cache_usable(c, a)) {
			struct oci_token_key k;

			token_key(h, scope, &k);
			oci_token_cache_drop(c->opts.run_dir, &k);
		}
		token_clear(t);
		r = fetch_token(c, h, scope, deadline_ms, &t, err);
	} else if (!token_from_cache(c, h, scope, deadline_ms, &t)) {
		r = fetch_token(c, h, scope, deadline_ms, &t, err);
	}
out:
	pthread_mutex_unlock(&c->auth_lock);
	return r;
}
