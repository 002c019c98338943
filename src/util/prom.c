// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The Prometheus text exposition format, written by hand (prom.h): escaping, families,
 * samples and histograms. Values are unsigned integers, or durations turned from microseconds
 * into decimal seconds without going through floating point.
 */
#include <inttypes.h>

#include "util/prom.h"

void util_prom_escape(FILE *f, const char *s, bool help)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '"' && !help)
			fputs("\\\"", f);
		else
			fputc(*s, f);
	}
}

void util_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s ", name);
	util_prom_escape(f, help, true);
	fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* name suffix {l..., extra} value: extra (may be NULL) is one more label after l. */
static void sample(FILE *f, const char *name, const char *suffix, const struct util_prom_label *l,
		   size_t n, const struct util_prom_label *extra, const char *value)
{
	size_t all = n + (extra != NULL);

	fprintf(f, "%s%s", name, suffix);
	for (size_t i = 0; i < all; i++) {
		const struct util_prom_label *x = i < n ? &l[i] : extra;

		fprintf(f, "%s%s=\"", i ? "," : "{", x->name);
		util_prom_escape(f, x->value, false);
		fputc('"', f);
	}
	fprintf(f, "%s %s\n", all ? "}" : "", value);
}

static void u64_text(char buf[24], uint64_t v)
{
	snprintf(buf, 24, "%" PRIu64, v);
}

void util_prom_sample(FILE *f, const char *name, const struct util_prom_label *l, size_t n,
		     uint64_t value)
{
	char v[24];

	u64_text(v, value);
	sample(f, name, "", l, n, NULL, v);
}

void util_prom_seconds(char buf[UTIL_PROM_SECONDS_LEN], uint64_t us)
{
	uint64_t frac = us % 1000000;
	int digits = 6;

	if (!frac) {
		snprintf(buf, UTIL_PROM_SECONDS_LEN, "%" PRIu64, us / 1000000);
		return;
	}
	/* Drop the fraction's trailing zeros: 100 us is "0.0001", not "0.000100". */
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	snprintf(buf, UTIL_PROM_SECONDS_LEN, "%" PRIu64 ".%0*" PRIu64, us / 1000000, digits, frac);
}

void util_prom_histogram(FILE *f, const char *name, const struct util_prom_label *l, size_t n,
			const uint64_t *bounds_us, const uint64_t *counts, size_t nbounds,
			uint64_t sum_us)
{
	char le[UTIL_PROM_SECONDS_LEN], v[24];
	uint64_t total = 0;

	for (size_t i = 0; i <= nbounds; i++) {
		struct util_prom_label x = {"le", le};

		if (i < nbounds)
			util_prom_seconds(le, bounds_us[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		total += counts[i];
		u64_text(v, total);
		sample(f, name, "_bucket", l, n, &x, v);
	}
	util_prom_seconds(le, sum_us);
	sample(f, name, "_sum", l, n, NULL, le);
	u64_text(v, total);
	sample(f, name, "_count", l, n, NULL, v);
}
