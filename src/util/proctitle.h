/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * The process's command line as others see it (/proc/PID/cmdline, ps). A daemon forked from
 * `lazyerofs mount` would show the mount's arguments for as long as it lives, and those may
 * hold secrets (a URL's user info or signed query, oci.password=): it writes a title of its
 * own over them.
 */
#ifndef LAZYEROFS_UTIL_PROCTITLE_H
#define LAZYEROFS_UTIL_PROCTITLE_H

/* Remember where main's arguments are (call first thing in main). */
void util_proctitle_init(int argc, char **argv);
/* Write title over the arguments (cut to their room) and clear the rest: nothing of them is
 * left in this process's memory. The strings argv pointed to are gone from then on. */
void util_proctitle_set(const char *title);

#endif
