/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * The one carrier of an error message: a -errno code with one printable line saying what
 * failed and why, plus the HTTP status and registry error code when a registry answered.
 * Every function that reports a message takes a struct util_error * that may be NULL (the
 * caller does not care); the return value stays the authoritative -errno.
 */
#ifndef LAZYEROFS_UTIL_ERROR_H
#define LAZYEROFS_UTIL_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

#include "util/macro.h"

struct util_error {
	int code;		/* -errno; 0 while nothing was recorded */
	int http_status;	/* 0 when no HTTP answer */
	char registry_code[64]; /* registry error code, e.g. MANIFEST_UNKNOWN; "" when none */
	char message[1024];	/* one line, ready to print; never a secret */
};

#define UTIL_ERROR_INIT ((struct util_error){0})

/* Forget everything recorded. */
void util_err_clear(struct util_error *e);
/* Record code and the formatted message; the HTTP status and registry code are reset.
 * Returns code, so `return util_err_set(e, -EIO, "...")` works (also when e is NULL). */
int util_err_set(struct util_error *e, int code, const char *fmt, ...) _printf_(3, 4);
int util_err_vset(struct util_error *e, int code, const char *fmt, va_list ap) _printf_(3, 0);
/* As util_err_set, with the registry's answer: http_status (0 for none) and its error code
 * (may be NULL). */
int util_err_set_http(struct util_error *e, int code, int http_status, const char *registry_code,
		      const char *fmt, ...) _printf_(5, 6);
/* Turn the message into "<formatted>: <message>"; code, status and registry code stay. */
void util_err_prefix(struct util_error *e, const char *fmt, ...) _printf_(2, 3);
/* Whether a message was recorded (false for NULL). */
bool util_err_has_msg(const struct util_error *e);
/* Replace the message's control characters with '?': a message that quotes untrusted text
 * (a key of a configuration file, a URL) stays one printable line. */
void util_err_printable(struct util_error *e);
/* The message, or strerror(-code) when there is none (e may be NULL). */
const char *util_err_msg(const struct util_error *e, int code);

#endif
