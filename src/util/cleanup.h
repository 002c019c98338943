/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Scope-bound ownership: cleanup attributes for owning locals and the
 * TAKE_PTR/TAKE_FD idiom to hand ownership on. Destructors accept NULL / -1.
 */
#ifndef LAZYEROFS_UTIL_CLEANUP_H
#define LAZYEROFS_UTIL_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void util_freep(void *p)
{
	free(*(void **)p);
}

static inline void util_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;

		close(*fd);
		errno = saved;
	}
}

static inline void util_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static inline void util_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_free_ _cleanup_(util_freep)
#define _cleanup_close_ _cleanup_(util_closep)
#define _cleanup_fclose_ _cleanup_(util_fclosep)

/* Declare a pointer cleanup for a destructor `void func(type *)` that accepts NULL. */
#define DEFINE_CLEANUP_FUNC(type, func)                 \
	static inline void func##p(type **p)            \
	{                                               \
		if (*p)                                 \
			func(*p);                       \
	}                                               \
	struct util_cleanup_dummy_##func

#define TAKE_PTR(p)                         \
	({                                  \
		__typeof__(p) _tp_ = (p);   \
		(p) = NULL;                 \
		_tp_;                       \
	})

#define TAKE_FD(fd)                 \
	({                          \
		int _tf_ = (fd);    \
		(fd) = -1;          \
		_tf_;               \
	})

#endif
