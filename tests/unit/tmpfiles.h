/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Unit-test helper: files in a test's temporary directory. */
#ifndef LAZYEROFS_TESTS_TMPFILES_H
#define LAZYEROFS_TESTS_TMPFILES_H

/* Write text to DIR/REL, making REL's parent directory first when REL has one (a cmocka
 * failure if anything goes wrong). */
void tmp_write_file(const char *dir, const char *rel, const char *text);

#endif
