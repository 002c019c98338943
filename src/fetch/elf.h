/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * What a dynamically linked program or library needs before it runs: its program
 * interpreter (the dynamic loader), the shared objects it names (DT_NEEDED) and where it
 * asks for them to be looked up (DT_RUNPATH, else DT_RPATH). The daemon reads these from an
 * executable that has started on its mount and fetches those objects ahead of the loader,
 * which would otherwise open them one after the other, a round trip each (predict.c).
 *
 * The bytes come from an image, so they are untrusted: every offset, size and count is checked
 * against the file's size and this module's bounds before use; names that do not fit are
 * left out. Little-endian ELF only (32- and 64-bit); anything else is refused. It has a fuzz
 * target (tests/fuzz/fuzz_fetch_elf.c).
 */
#ifndef LAZYEROFS_FETCH_ELF_H
#define LAZYEROFS_FETCH_ELF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ELF_DEPS_MAX_NEEDED 64	/* DT_NEEDED entries kept (a program names ~5-20) */
#define ELF_DEPS_NAME_MAX   128 /* longest name kept, with its NUL */
#define ELF_DEPS_PATH_MAX   512 /* longest interpreter or run path kept, with its NUL */

/* Reads up to len bytes at off; returns how many (fewer only at the end) or -errno. */
typedef ssize_t (*elf_pread_fn)(void *ctx, void *buf, size_t len, uint64_t off);

struct elf_deps {
	uint16_t machine; /* e_machine */
	uint8_t class;	  /* ELFCLASS32 or ELFCLASS64 */
	char interp[ELF_DEPS_PATH_MAX];	 /* PT_INTERP, "" if none */
	char runpath[ELF_DEPS_PATH_MAX]; /* DT_RUNPATH (or DT_RPATH), "" if none */
	size_t nneeded;
	char needed[ELF_DEPS_MAX_NEEDED][ELF_DEPS_NAME_MAX];
};

/* Parse the ELF file of `size` bytes read through rd. Returns 0 (a static or dynamic ELF
 * file: out filled), -ENOEXEC (not ELF, or malformed), -ENOTSUP (big-endian) or rd's error. */
int elf_deps_read(elf_pread_fn rd, void *ctx, uint64_t size, struct elf_deps *out);

#endif
