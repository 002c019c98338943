// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * struct util_error: setting, prefixing and reading the one error carrier (util/error.h).
 * Every function accepts a NULL carrier.
 */
#include <stdio.h>
#include <string.h>

#include "util/error.h"
#include "util/strutil.h"

/* snprintf that may cut: through va_list, so that the cut is not a compile-time warning. */
static void fmt_cut(char *buf, size_t len, const char *fmt, ...) _printf_(3, 4);
static void fmt_cut(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

void util_err_clear(struct util_error *e)
{
	if (e)
		*e = UTIL_ERROR_INIT;
}

int util_err_vset(struct util_error *e, int code, const char *fmt, va_list ap)
{
	if (!e)
		return code;
	e->code = code;
	e->http_status = 0;
	e->registry_code[0] = 0;
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	util_str_hide_userinfo(e->message); /* libcurl quotes a proxy's URL whole */
	return code;
}

int util_err_set(struct util_error *e, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_err_vset(e, code, fmt, ap);
	va_end(ap);
	return code;
}

int util_err_set_http(struct util_error *e, int code, int http_status, const char *registry_code,
		      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_err_vset(e, code, fmt, ap);
	va_end(ap);
	if (e) {
		e->http_status = http_status;
		fmt_cut(e->registry_code, sizeof(e->registry_code), "%s",
			registry_code ? registry_code : "");
	}
	return code;
}

void util_err_prefix(struct util_error *e, const char *fmt, ...)
{
	char prefix[sizeof(e->message)], old[sizeof(e->message)];
	va_list ap;

	if (!e)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, e->message, sizeof(old));
	fmt_cut(e->message, sizeof(e->message), "%s: %s", prefix, old);
}

bool util_err_has_msg(const struct util_error *e)
{
	return e && e->message[0];
}

const char *util_err_msg(const struct util_error *e, int code)
{
	if (util_err_has_msg(e))
		return e->message;
	return strerror(code < 0 ? -code : code);
}

void util_err_printable(struct util_error *e)
{
	if (!e)
		return;
	util_str_printable(e->message);
}
