/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Internal interface of the erofs module: the reader context, decoded inodes and the
 * pure decoders (used by the walker, the unit tests and the fuzz targets).
 *
 * Two address spaces hold metadata: the image itself ("main") and, with metadata
 * compression, the decompressed contents of the metabox inode ("mbox"); an inode whose nid
 * has bit 63 set lives in the metabox. Every read of the image goes through
 * erofs_ctx_read(); when ctx->record is set, each range read is also added to it.
 */
#ifndef LAZYEROFS_EROFS_INTERNAL_H
#define LAZYEROFS_EROFS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "erofs/erofs.h"
#include "erofs/format.h"
#include "util/macro.h"

#define EROFS_MAX_DIR_SIZE     (256u << 20) /* one directory's bytes */
#define EROFS_MAX_SYMLINK      4096u
#define EROFS_MAX_MBOX_SIZE    (1024ull << 20)
#define EROFS_DEFAULT_MAX_INODES (1ull << 24)
#define EROFS_MAX_DATA_WORK    (16ull << 30) /* directory/symlink bytes decoded per walk */
#define EROFS_MAX_DEPTH        4096u

struct erofs_ctx {
	const struct erofs_io *io;
	struct erofs_info info;
	unsigned int blkbits;
	uint32_t bs;
	uint32_t sb_size;
	uint64_t meta_base;  /* byte offset of nid 0 (main space) */
	uint64_t xattr_base; /* byte offset of the shared xattr area (main or mbox space) */
	bool xattr_in_mbox;
	uint64_t root_nid;
	uint64_t packed_nid; /* 0: none */
	uint64_t metabox_nid;
	bool has_metabox;
	uint16_t available_algs;
	uint8_t xattr_prefix_count;
	uint32_t xattr_prefix_start;
	uint16_t device_id_mask;
	uint16_t devt_slotoff;
	uint64_t primary_blocks;
	int64_t epoch;       /* base of compact inodes' mtime */
	uint32_t fixed_nsec;

	/* long xattr prefixes: prefix[i] = base index + infix */
	struct {
		uint8_t base_index;
		uint8_t infix_len;
		char infix[EROFS_NAME_LEN + 1];
	} *prefixes;
	bool prefixes_loaded;

	/* metadata compression: the whole metabox, decompressed once */
	uint8_t *mbox;
	uint64_t mbox_size;
	bool mbox_loaded;
	bool mbox_loading;

	struct erofs_inode *packed; /* the packed inode, once loaded */

	struct util_extents *record; /* ranges read from the image, when set */
	uint64_t reads;
	uint64_t zloads;             /* compression index loads so far (bounded) */
	uint64_t data_work;          /* bytes of directory/symlink data decoded so far */
	unsigned int depth;          /* nested data reads (fragments, metabox) */

	struct util_error *err; /* may be NULL; the first reason recorded wins */
};

struct erofs_inode {
	uint64_t nid;
	bool in_mbox;
	uint64_t iloc; /* byte offset of the record in its space */
	uint16_t ifmt;
	uint8_t layout;
	uint8_t isize; /* 32 or 64 */
	uint32_t xattr_isize;
	uint16_t mode;
	uint32_t uid, gid, nlink;
	uint64_t size;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t rdev; /* encoded (new_encode_dev) */
	uint64_t blkaddr; /* flat layouts: first block, EROFS_NULL_ADDR for none */
	uint16_t chunkformat;
	unsigned int chunkbits;

	/* compressed layouts, filled by erofs_zmap_init() */
	bool z_inited;
	bool z_whole_fragment;
	uint16_t z_advise;
	uint8_t z_algs[2];
	unsigned int z_lclusterbits;
	uint16_t z_idata_size;
	uint64_t z_idataoff; /* ztailpacking: offset of the inline tail pcluster */
	uint64_t z_fragmentoff;
	uint64_t z_tailextent_headlcn;
	uint64_t z_extents;

	uint64_t meta_end; /* end of everything stored with the inode record, in its space */
};

/* A mapped logical extent of an inode's data. */
#define EROFS_MAP_MAPPED   0x01u
#define EROFS_MAP_META     0x02u /* pa is in the inode's metadata space (inline) */
#define EROFS_MAP_ENCODED  0x04u
#define EROFS_MAP_FRAGMENT 0x08u
#define EROFS_MAP_FULL     0x10u /* the extent covers its pcluster's whole output */
#define EROFS_MAP_PARTIAL  0x20u

struct erofs_map {
	uint64_t la, llen;
	uint64_t pa, plen;
	unsigned int flags;
	unsigned int alg;
	uint16_t device;
};

/* errors */
int erofs_corrupt(struct erofs_ctx *ctx, const char *fmt, ...) _printf_(2, 3);
int erofs_unsupported(struct erofs_ctx *ctx, const char *fmt, ...) _printf_(2, 3);

/* crc32c as the kernel computes it: no final inversion. */
uint32_t erofs_crc32c(uint32_t crc, const void *buf, size_t len);

/* Context: parse the superblock (reads the first block through io). */
int erofs_ctx_init(struct erofs_ctx *ctx, const struct erofs_io *io, struct util_error *err);
void erofs_ctx_done(struct erofs_ctx *ctx);
/* Read again, recording, what the superblock implies: its block, compression
 * configurations, the device table. */
int erofs_ctx_note_super(struct erofs_ctx *ctx);
/* Pure superblock decoder over the first bytes of an image (at least 1024 + 128). */
int erofs_super_decode(struct erofs_ctx *ctx, const uint8_t *buf, size_t len);

/* Read from the image (main space), recording the range when ctx->record is set. */
int erofs_ctx_read(struct erofs_ctx *ctx, void *buf, uint64_t len, uint64_t off);
/* Read metadata from main or metabox space. */
int erofs_meta_read(struct erofs_ctx *ctx, bool in_mbox, void *buf, uint64_t len, uint64_t off);
int erofs_note(struct erofs_ctx *ctx, uint64_t off, uint64_t len);

/* Inodes */
uint64_t erofs_iloc(const struct erofs_ctx *ctx, uint64_t nid);
/* Decode an inode record from buf (the bytes at its location; len >= 32, 64 for extended). */
int erofs_inode_decode(struct erofs_ctx *ctx, uint64_t nid, const uint8_t *buf, size_t len,
		       struct erofs_inode *ret);
int erofs_inode_read(struct erofs_ctx *ctx, uint64_t nid, struct erofs_inode *ret);
/* Read, compute the metadata extent and record [iloc, meta_end) when in the main space. */
int erofs_inode_load(struct erofs_ctx *ctx, uint64_t nid, struct erofs_inode *ret);
/* Compute ret->meta_end (and fill the compression header); reads the map header. */
int erofs_inode_meta_extent(struct erofs_ctx *ctx, struct erofs_inode *vi);
bool erofs_inode_is_compressed(const struct erofs_inode *vi);

/* Data: map one logical extent; read (or, with ranges_cb, list the physical ranges of) data. */
int erofs_map_blocks(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		     struct erofs_map *map);
/* The same, and the extent must hold la (-EUCLEAN otherwise). */
int erofs_map_at(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la, struct erofs_map *map);
typedef int (*erofs_range_cb)(void *opaque, uint64_t off, uint64_t len);
int erofs_read_data(struct erofs_ctx *ctx, struct erofs_inode *vi, void *buf, uint64_t len,
		    uint64_t off);
int erofs_data_ranges(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t len, uint64_t off,
		      erofs_range_cb cb, void *opaque);

/* Compressed inodes */
int erofs_zmap_init(struct erofs_ctx *ctx, struct erofs_inode *vi);
/* Position of compact index `lcn` (and its pack's size shift); returns the offset just past
 * the pack that holds it. */
uint64_t erofs_compact_pack_end(const struct erofs_ctx *ctx, const struct erofs_inode *vi,
				uint64_t lcn, unsigned int *ret_shift, uint64_t *ret_pos);
int erofs_zmap_blocks(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		      struct erofs_map *map);
/* Decode the compact index pack holding lcluster `lcn` from `pack` (its 8 or 32 bytes). */
int erofs_decompress(struct erofs_ctx *ctx, unsigned int alg, const uint8_t *in, size_t inlen,
		     uint8_t *out, size_t outlen, bool partial, uint64_t interlaced_off);

/* The packed inode (fragments), loaded on first use. */
int erofs_packed_inode(struct erofs_ctx *ctx, struct erofs_inode **ret);
/* Where bytes [rel, rel + n) of vi's fragment (its tail, kept in the packed inode) lie: the
 * packed inode and the offset in it; -EUCLEAN when beyond it. */
int erofs_fragment_locate(struct erofs_ctx *ctx, const struct erofs_inode *vi, uint64_t rel,
			  uint64_t n, struct erofs_inode **ret_packed, uint64_t *ret_at);
/* Metabox and long prefixes */
int erofs_mbox_load(struct erofs_ctx *ctx);
int erofs_prefixes_load(struct erofs_ctx *ctx);

/* Directories: parse one directory block (pure). cb gets each entry; returns <0 to stop. */
struct erofs_dirent_view {
	uint64_t nid;
	uint8_t file_type;
	const char *name;
	unsigned int namelen;
};
typedef int (*erofs_dirent_cb)(void *opaque, const struct erofs_dirent_view *de);
int erofs_dir_block_parse(struct erofs_ctx *ctx, uint64_t nid, uint64_t blk, const uint8_t *buf,
			  size_t len, erofs_dirent_cb cb, void *opaque);
int erofs_readdir(struct erofs_ctx *ctx, struct erofs_inode *dir, erofs_dirent_cb cb,
		  void *opaque);
int erofs_lookup_path(struct erofs_ctx *ctx, const char *path, struct erofs_inode *ret);
int erofs_read_symlink(struct erofs_ctx *ctx, struct erofs_inode *vi, char *buf, size_t len);

/* Xattrs: parse an inode's xattr ibody (pure over buf = the xattr_isize bytes). */
typedef int (*erofs_xattr_cb)(void *opaque, const char *name, size_t namelen, const void *value,
			      size_t valuelen);
int erofs_xattr_ibody_parse(struct erofs_ctx *ctx, uint64_t nid, const uint8_t *buf, size_t len,
			    uint32_t *shared_ids, unsigned int *nshared, erofs_xattr_cb cb,
			    void *opaque);
/* Length of the shared xattr entry at id (reads its header), for the walk. */
int erofs_shared_xattr_extent(struct erofs_ctx *ctx, uint32_t id, uint64_t *ret_off,
			      uint64_t *ret_len);
/* Read an inode's xattr ibody and parse it: inline entries go to cb (may be NULL), the shared
 * entries' ids to shared_ids (room for 256). */
int erofs_xattr_ibody_read(struct erofs_ctx *ctx, struct erofs_inode *vi, uint32_t *shared_ids,
			   unsigned int *nshared, erofs_xattr_cb cb, void *opaque);
int erofs_listxattr(struct erofs_ctx *ctx, struct erofs_inode *vi, erofs_xattr_cb cb, void *opaque);

/* dev_t of an erofs-encoded device number */
static inline unsigned int erofs_rdev_major(uint32_t dev)
{
	return (dev & 0xfff00u) >> 8;
}

static inline unsigned int erofs_rdev_minor(uint32_t dev)
{
	return (dev & 0xffu) | ((dev >> 12) & 0xfff00u);
}

#endif
