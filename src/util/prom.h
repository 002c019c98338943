/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Writing the Prometheus text exposition format (version 0.0.4): a family's HELP and TYPE
 * lines, samples whose label values are escaped as the format requires, and histograms with
 * cumulative buckets. Pure: everything goes to the FILE * given.
 */
#ifndef LAZYEROFS_UTIL_PROM_H
#define LAZYEROFS_UTIL_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct util_prom_label {
	const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not escaped */
	const char *value; /* any UTF-8 text: escaped */
};

/* s escaped for a label value (backslash, double quote and line feed become \\, \" and \n)
 * or, with help, for a HELP text (backslash and line feed only). */
void util_prom_escape(FILE *f, const char *s, bool help);
/* "# HELP name help" and "# TYPE name type": once a family, before its samples. */
void util_prom_family(FILE *f, const char *name, const char *type, const char *help);
/* name{l[0],...,l[n-1]} value (no braces when n is 0). */
void util_prom_sample(FILE *f, const char *name, const struct util_prom_label *l, size_t n,
		     uint64_t value);
/* A duration of us microseconds in seconds, in decimal and exact: "0.0001", "1", "30.25". */
#define UTIL_PROM_SECONDS_LEN 32
void util_prom_seconds(char buf[UTIL_PROM_SECONDS_LEN], uint64_t us);
/* A histogram's samples: name_bucket{l..., le="<bound in seconds>"} for each of the nbounds
 * upper bounds (microseconds, ascending) and le="+Inf", cumulative, from counts[nbounds + 1]
 * observations per bucket (bucket i: in (bound[i-1], bound[i]]); then name_sum (sum_us in
 * seconds) and name_count. */
void util_prom_histogram(FILE *f, const char *name, const struct util_prom_label *l, size_t n,
			const uint64_t *bounds_us, const uint64_t *counts, size_t nbounds,
			uint64_t sum_us);

#endif
