// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for reading what an ELF file needs (fetch/elf.c): a real program of this machine,
 * synthetic files of both classes, and each kind of malformed file refused or cut short
 * without reading outside the file. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fetch/elf.h"
#include "util/macro.h"

struct mem {
	const uint8_t *p;
	size_t len;
	unsigned reads;
};

static ssize_t mem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct mem *m = ctx;

	m->reads++;
	if (off >= m->len)
		return 0;
	len = MIN(len, m->len - (size_t)off);
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

static ssize_t failing_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	return -EIO;
}

/* Parse a copy of exactly len bytes (the sanitizers catch a read past it). */
static int parse(const uint8_t *p, size_t len, struct elf_deps *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct mem m;
	int r;

	assert_non_null(copy);
	memcpy(copy, p, len);
	m = (struct mem){.p = copy, .len = len};
	r = elf_deps_read(mem_pread, &m, len, out);
	free(copy);
	return r;
}

/* A 64-bit file: header, a PT_LOAD of the whole file at vaddr 0x400000, a PT_INTERP, a
 * PT_DYNAMIC, the dynamic entries and the string table. */
#define VBASE 0x400000
struct img {
	uint8_t b[16384];
	size_t len;
};

static size_t add_str(struct img *im, size_t strtab, size_t *strsz, const char *s)
{
	size_t at = *strsz;

	memcpy(im->b + strtab + at, s, strlen(s) + 1);
	*strsz += strlen(s) + 1;
	return at;
}

static void make64(struct img *im, const char *interp, const char *const *needed, size_t n,
		   const char *runpath)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)im->b;
	Elf64_Phdr *ph = (Elf64_Phdr *)(im->b + sizeof(*eh));
	size_t interp_at = 512, dyn_at = 1024, strtab = 8192, strsz = 1, k = 0;
	Elf64_Dyn *dyn = (Elf64_Dyn *)(im->b + dyn_at);

	memset(im, 0, sizeof(*im));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_DYN;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 3;
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0, .p_vaddr = VBASE,
			     .p_filesz = sizeof(im->b), .p_memsz = sizeof(im->b)};
	ph[1] = (Elf64_Phdr){.p_type = PT_INTERP, .p_offset = interp_at,
			     .p_filesz = interp ? strlen(interp) + 1 : 0};
	if (interp)
		memcpy(im->b + interp_at, interp, strlen(interp) + 1);
	else
		ph[1].p_type = PT_NOTE;
	for (size_t i = 0; i < n; i++)
		dyn[k++] = (Elf64_Dyn){.d_tag = DT_NEEDED,
				       .d_un.d_val = add_str(im, strtab, &strsz, needed[i])};
	if (runpath)
		dyn[k++] = (Elf64_Dyn){.d_tag = DT_RUNPATH,
				       .d_un.d_val = add_str(im, strtab, &strsz, runpath)};
	dyn[k++] = (Elf64_Dyn){.d_tag = DT_STRTAB, .d_un.d_ptr = VBASE + strtab};
	dyn[k++] = (Elf64_Dyn){.d_tag = DT_STRSZ, .d_un.d_val = strsz};
	dyn[k++] = (Elf64_Dyn){.d_tag = DT_NULL};
	ph[2] = (Elf64_Phdr){.p_type = PT_DYNAMIC, .p_offset = dyn_at,
			     .p_vaddr = VBASE + dyn_at, .p_filesz = k * sizeof(Elf64_Dyn)};
	im->len = sizeof(im->b);
}

static void test_synthetic_64(void **state)
{
	static const char *const libs[] = {"libfoo.so.1", "libc.so.6"};
	struct elf_deps d;
	struct img im;

	make64(&im, "/lib64/ld-linux-x86-64.so.2", libs, 2, "/opt/x/lib:$ORIGIN/../lib");
	assert_int_equal(parse(im.b, im.len, &d), 0);
	assert_int_equal(d.class, ELFCLASS64);
	assert_int_equal(d.machine, EM_X86_64);
	assert_string_equal(d.interp, "/lib64/ld-linux-x86-64.so.2");
	assert_int_equal(d.nneeded, 2);
	assert_string_equal(d.needed[0], "libfoo.so.1");
	assert_string_equal(d.needed[1], "libc.so.6");
	assert_string_equal(d.runpath, "/opt/x/lib:$ORIGIN/../lib");
}

static void test_static_file_needs_nothing(void **state)
{
	struct elf_deps d;
	struct img im;

	make64(&im, NULL, NULL, 0, NULL);
	((Elf64_Phdr *)(im.b + sizeof(Elf64_Ehdr)))[2].p_type = PT_NOTE; /* no PT_DYNAMIC */
	assert_int_equal(parse(im.b, im.len, &d), 0);
	assert_int_equal(d.nneeded, 0);
	assert_string_equal(d.interp, "");
}

/* This machine's own /bin/sh: an interpreter and libc. */
static void test_real_program(void **state)
{
	FILE *f = fopen("/bin/sh", "rb");
	static uint8_t buf[4 << 20];
	struct elf_deps d;
	size_t len;
	bool libc = false;

	if (!f)
		skip();
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(parse(buf, len, &d), 0);
	assert_true(d.interp[0] == '/');
	for (size_t i = 0; i < d.nneeded; i++)
		libc = libc || strncmp(d.needed[i], "libc.", 5) == 0 ||
		       strncmp(d.needed[i], "libc-", 5) == 0;
	assert_true(libc);
}

static void test_refusals(void **state)
{
	static const char *const libs[] = {"libfoo.so.1"};
	struct elf_deps d;
	struct img im;
	struct mem m;

	/* not ELF; too short */
	make64(&im, NULL, libs, 1, NULL);
	im.b[1] = 'X';
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	make64(&im, NULL, libs, 1, NULL);
	assert_int_equal(parse(im.b, 10, &d), -ENOEXEC);
	assert_int_equal(parse(im.b, 60, &d), -ENOEXEC);
	/* big-endian: not supported; an unknown class: not ELF */
	make64(&im, NULL, libs, 1, NULL);
	im.b[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(parse(im.b, im.len, &d), -ENOTSUP);
	make64(&im, NULL, libs, 1, NULL);
	im.b[EI_CLASS] = 7;
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	/* program headers past the end, too many, too small */
	make64(&im, NULL, libs, 1, NULL);
	((Elf64_Ehdr *)im.b)->e_phoff = im.len - 8;
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	make64(&im, NULL, libs, 1, NULL);
	((Elf64_Ehdr *)im.b)->e_phoff = UINT64_MAX - 16;
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	make64(&im, NULL, libs, 1, NULL);
	((Elf64_Ehdr *)im.b)->e_phnum = 60000;
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	make64(&im, NULL, libs, 1, NULL);
	((Elf64_Ehdr *)im.b)->e_phentsize = 8;
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	/* the string table outside every PT_LOAD: the names cannot be read */
	make64(&im, NULL, libs, 1, NULL);
	((Elf64_Phdr *)(im.b + sizeof(Elf64_Ehdr)))[0].p_vaddr = 0x10;
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);
	/* the reader fails: its error */
	m = (struct mem){0};
	assert_int_equal(elf_deps_read(failing_pread, &m, 4096, &d), -EIO);
}

/* What does not fit is left out, never read past: a name past the string table's size, an
 * unterminated one at the end of the file, a dynamic segment that runs off the file (read up
 * to its DT_NULL) or lies past it. */
static void test_cut_short(void **state)
{
	static const char *const libs[] = {"libfoo.so.1", "libbar.so.2"};
	struct elf_deps d;
	struct img im;
	Elf64_Dyn *dyn;

	make64(&im, NULL, libs, 2, NULL);
	dyn = (Elf64_Dyn *)(im.b + 1024);
	dyn[1].d_un.d_val = 100000; /* the second name: past DT_STRSZ */
	assert_int_equal(parse(im.b, im.len, &d), 0);
	assert_int_equal(d.nneeded, 1);
	assert_string_equal(d.needed[0], "libfoo.so.1");

	make64(&im, NULL, libs, 2, NULL);
	memset(im.b + 8192, 'a', sizeof(im.b) - 8192); /* no NUL anywhere in the table */
	assert_int_equal(parse(im.b, im.len, &d), 0);
	assert_int_equal(d.nneeded, 0);

	make64(&im, NULL, libs, 2, NULL);
	((Elf64_Phdr *)(im.b + sizeof(Elf64_Ehdr)))[2].p_filesz = 1 << 20; /* runs off the */
	assert_int_equal(parse(im.b, im.len, &d), 0);			   /* file: read up */
	assert_int_equal(d.nneeded, 2);					   /* to DT_NULL */
	((Elf64_Phdr *)(im.b + sizeof(Elf64_Ehdr)))[2].p_offset = im.len + 16; /* past it */
	assert_int_equal(parse(im.b, im.len, &d), -ENOEXEC);

	/* an interpreter without its NUL: left out, the rest read */
	make64(&im, "/lib/ld.so", libs, 2, NULL);
	((Elf64_Phdr *)(im.b + sizeof(Elf64_Ehdr)))[1].p_filesz = 4;
	assert_int_equal(parse(im.b, im.len, &d), 0);
	assert_string_equal(d.interp, "");
	assert_int_equal(d.nneeded, 2);
}

/* More DT_NEEDED entries than kept: the first ELF_DEPS_MAX_NEEDED. */
static void test_many_needed(void **state)
{
	static char names[ELF_DEPS_MAX_NEEDED + 8][16];
	const char *v[ELF_DEPS_MAX_NEEDED + 8];
	struct elf_deps d;
	struct img im;

	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		snprintf(names[i], sizeof(names[i]), "l%zu.so", i);
		v[i] = names[i];
	}
	make64(&im, NULL, v, ARRAY_SIZE(v), NULL);
	assert_int_equal(parse(im.b, im.len, &d), 0);
	assert_int_equal(d.nneeded, ELF_DEPS_MAX_NEEDED);
	assert_string_equal(d.needed[ELF_DEPS_MAX_NEEDED - 1], names[ELF_DEPS_MAX_NEEDED - 1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_synthetic_64),
	    cmocka_unit_test(test_static_file_needs_nothing),
	    cmocka_unit_test(test_real_program),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_cut_short),
	    cmocka_unit_test(test_many_needed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
