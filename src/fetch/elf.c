// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * A dynamically linked ELF file's interpreter, needed objects and run path (elf.h). The
 * file is read through a callback in a few small pieces (the headers, the dynamic segment,
 * the names); nothing in it is trusted.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "fetch/elf.h"
#include "util/endian.h"
#include "util/macro.h"

#define PHDRS_MAX   256		/* program headers looked at */
#define DYNAMIC_MAX (64 * 1024) /* bytes of the dynamic segment looked at */

/* The fields of either class, widened. */
struct phdr {
	uint32_t type;
	uint64_t offset, vaddr, filesz;
};

static int read_exact(elf_pread_fn rd, void *ctx, uint64_t size, void *buf, size_t len,
		      uint64_t off)
{
	ssize_t got;

	if (off > size || len > size - off)
		return -ENOEXEC;
	got = rd(ctx, buf, len, off);
	if (got < 0)
		return (int)got;
	return (size_t)got == len ? 0 : -ENOEXEC;
}

/* A NUL-terminated string of at most cap - 1 bytes at off (inside [off, end)); "" and
 * -ENAMETOOLONG when it does not fit. */
static int read_string(elf_pread_fn rd, void *ctx, uint64_t size, uint64_t off, uint64_t end,
		       char *out, size_t cap)
{
	size_t len = (size_t)MIN((uint64_t)cap, MIN(end, size) > off ? MIN(end, size) - off : 0);
	ssize_t got;

	out[0] = 0;
	if (len == 0)
		return -ENOEXEC;
	got = rd(ctx, out, len, off);
	if (got < 0)
		return (int)got;
	if (memchr(out, 0, (size_t)got) == NULL) {
		out[0] = 0;
		return -ENAMETOOLONG;
	}
	return 0;
}

/* The file offset of a virtual address, through the PT_LOAD segment that holds it. */
static int vaddr_offset(const struct phdr *ph, size_t n, uint64_t vaddr, uint64_t *ret)
{
	for (size_t i = 0; i < n; i++)
		if (ph[i].type == PT_LOAD && vaddr >= ph[i].vaddr &&
		    vaddr - ph[i].vaddr < ph[i].filesz) {
			*ret = ph[i].offset + (vaddr - ph[i].vaddr);
			return 0;
		}
	return -ENOEXEC;
}

int elf_deps_read(elf_pread_fn rd, void *ctx, uint64_t size, struct elf_deps *out)
{
	uint8_t eh[sizeof(Elf64_Ehdr)], buf[sizeof(Elf64_Phdr)];
	struct phdr ph[PHDRS_MAX];
	uint64_t phoff, dyn_off = 0, dyn_len = 0, strtab = 0, strsz = UINT64_MAX, str_off, str_end;
	uint64_t needed[ELF_DEPS_MAX_NEEDED], runpath = UINT64_MAX;
	size_t nph, phent, nneeded = 0, dynent;
	bool is64, have_strtab = false;
	int r;

	memset(out, 0, sizeof(*out));
	r = read_exact(rd, ctx, size, eh, EI_NIDENT, 0);
	if (r < 0)
		return r;
	if (memcmp(eh, ELFMAG, SELFMAG) != 0 || (eh[EI_CLASS] != ELFCLASS32 &&
						 eh[EI_CLASS] != ELFCLASS64))
		return -ENOEXEC;
	if (eh[EI_DATA] != ELFDATA2LSB)
		return eh[EI_DATA] == ELFDATA2MSB ? -ENOTSUP : -ENOEXEC;
	is64 = eh[EI_CLASS] == ELFCLASS64;
	r = read_exact(rd, ctx, size, eh, is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr), 0);
	if (r < 0)
		return r;
	out->class = eh[EI_CLASS];
	out->machine = (uint16_t)util_get_le(eh + 18, 2);
	/* e_phoff, e_phentsize, e_phnum */
	phoff = is64 ? util_get_le(eh + 32, 8) : util_get_le(eh + 28, 4);
	phent = (size_t)(is64 ? util_get_le(eh + 54, 2) : util_get_le(eh + 42, 2));
	nph = (size_t)(is64 ? util_get_le(eh + 56, 2) : util_get_le(eh + 44, 2));
	if (phent < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)) || nph > PHDRS_MAX)
		return nph == 0 ? 0 : -ENOEXEC;
	for (size_t i = 0; i < nph; i++) {
		uint64_t at = phoff + i * phent;

		if (at < phoff)
			return -ENOEXEC;
		r = read_exact(rd, ctx, size, buf, is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr),
			       at);
		if (r < 0)
			return r;
		ph[i].type = (uint32_t)util_get_le(buf, 4);
		ph[i].offset = is64 ? util_get_le(buf + 8, 8) : util_get_le(buf + 4, 4);
		ph[i].vaddr = is64 ? util_get_le(buf + 16, 8) : util_get_le(buf + 8, 4);
		ph[i].filesz = is64 ? util_get_le(buf + 32, 8) : util_get_le(buf + 16, 4);
	}
	for (size_t i = 0; i < nph; i++) {
		if (ph[i].type == PT_INTERP && !out->interp[0])
			(void)read_string(rd, ctx, size, ph[i].offset,
					  ph[i].offset + MIN(ph[i].filesz, (uint64_t)UINT32_MAX),
					  out->interp, sizeof(out->interp));
		if (ph[i].type == PT_DYNAMIC && !dyn_len) {
			dyn_off = ph[i].offset;
			dyn_len = MIN(ph[i].filesz, (uint64_t)DYNAMIC_MAX);
		}
	}
	if (!dyn_len)
		return 0; /* static: needs nothing */
	dynent = is64 ? sizeof(Elf64_Dyn) : sizeof(Elf32_Dyn);
	for (uint64_t at = dyn_off; at + dynent <= dyn_off + dyn_len; at += dynent) {
		uint64_t tag, val;

		r = read_exact(rd, ctx, size, buf, dynent, at);
		if (r < 0)
			return r;
		tag = is64 ? util_get_le(buf, 8) : util_get_le(buf, 4);
		val = is64 ? util_get_le(buf + 8, 8) : util_get_le(buf + 4, 4);
		if (tag == DT_NULL)
			break;
		if (tag == DT_NEEDED && nneeded < ELF_DEPS_MAX_NEEDED)
			needed[nneeded++] = val;
		else if (tag == DT_STRTAB) {
			strtab = val;
			have_strtab = true;
		} else if (tag == DT_STRSZ)
			strsz = val;
		else if (tag == DT_RUNPATH || (tag == DT_RPATH && runpath == UINT64_MAX))
			runpath = val;
	}
	if (!have_strtab || vaddr_offset(ph, nph, strtab, &str_off) < 0)
		return nneeded ? -ENOEXEC : 0;
	/* Where the string table ends: its size, else the file's (read_string stops there). */
	str_end = strsz == UINT64_MAX ? size : str_off + MIN(strsz, size);
	for (size_t i = 0; i < nneeded; i++) {
		char *name = out->needed[out->nneeded];

		if (needed[i] >= strsz || str_off + needed[i] < str_off)
			continue;
		if (read_string(rd, ctx, size, str_off + needed[i], str_end, name,
				ELF_DEPS_NAME_MAX) == 0 &&
		    name[0])
			out->nneeded++;
	}
	if (runpath != UINT64_MAX && runpath < strsz && str_off + runpath >= str_off)
		(void)read_string(rd, ctx, size, str_off + runpath, str_end, out->runpath,
				  sizeof(out->runpath));
	return 0;
}
