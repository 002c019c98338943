/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * EROFS on-disk format, as this reader understands it (Linux 6.18, erofs-utils 1.9).
 * Our own definitions: every multi-byte field is little-endian on disk and is read
 * through erofs_le16/32/64(); every structure's size is checked at compile time.
 */
#ifndef LAZYEROFS_EROFS_FORMAT_H
#define LAZYEROFS_EROFS_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "util/endian.h"

#define EROFS_MAGIC        0xE0F5E1E2u
#define EROFS_SB_OFFSET    1024u
#define EROFS_SB_BASE_SIZE 128u /* plus sb_extslots * 16 */
#define EROFS_SB_SLOT_SIZE 16u
#define EROFS_ISLOT_BITS   5 /* nid = offset in the metadata area / 32 */
#define EROFS_NAME_LEN     255u
#define EROFS_NULL_ADDR    UINT64_MAX

/* feature_compat: unknown bits are harmless by definition. */
#define EROFS_COMPAT_SB_CHKSUM            0x01u
#define EROFS_COMPAT_MTIME                0x02u
#define EROFS_COMPAT_XATTR_FILTER         0x04u
#define EROFS_COMPAT_SHARED_EA_IN_METABOX 0x08u
#define EROFS_COMPAT_PLAIN_XATTR_PFX      0x10u
#define EROFS_COMPAT_ISHARE_XATTRS        0x20u

/* feature_incompat: a reader must refuse any bit it does not know. */
#define EROFS_INCOMPAT_LZ4_0PADDING   0x001u
#define EROFS_INCOMPAT_COMPR_CFGS     0x002u /* same bit: big pcluster */
#define EROFS_INCOMPAT_CHUNKED_FILE   0x004u
#define EROFS_INCOMPAT_DEVICE_TABLE   0x008u /* same bit: compression head2 */
#define EROFS_INCOMPAT_ZTAILPACKING   0x010u
#define EROFS_INCOMPAT_FRAGMENTS      0x020u /* same bit: dedupe */
#define EROFS_INCOMPAT_XATTR_PREFIXES 0x040u
#define EROFS_INCOMPAT_48BIT          0x080u
#define EROFS_INCOMPAT_METABOX        0x100u
#define EROFS_INCOMPAT_KNOWN          0x1ffu

/* A 128-byte device table slot, at devt_slotoff * 128 in the primary device. */
struct erofs_disk_devslot {
	uint8_t tag[64];
	uint32_t blocks_lo;
	uint32_t uniaddr_lo;
	uint16_t blocks_hi;  /* 48-bit layout */
	uint16_t uniaddr_hi; /* 48-bit layout */
	uint8_t reserved[52];
} __attribute__((packed));
#define EROFS_DEVSLOT_SIZE 128u

/* The superblock at byte 1024; 128 bytes plus 16 per extension slot (144 with one). */
struct erofs_disk_super {
	uint32_t magic;
	uint32_t checksum; /* crc32c, when EROFS_COMPAT_SB_CHKSUM */
	uint32_t feature_compat;
	uint8_t blkszbits;
	uint8_t sb_extslots;
	uint16_t rootnid_2b; /* 48-bit layout with rootnid_8b set: blocks count MSB */
	uint64_t inos;
	uint64_t epoch;
	uint32_t fixed_nsec;
	uint32_t blocks_lo;
	uint32_t meta_blkaddr;
	uint32_t xattr_blkaddr;
	uint8_t uuid[16];
	uint8_t volume_name[16];
	uint32_t feature_incompat;
	uint16_t u1; /* available_compr_algs (COMPR_CFGS) or lz4_max_distance */
	uint16_t extra_devices;
	uint16_t devt_slotoff;
	uint8_t dirblkbits;
	uint8_t xattr_prefix_count;
	uint32_t xattr_prefix_start; /* in 4-byte units */
	uint64_t packed_nid;
	uint8_t xattr_filter_reserved;
	uint8_t ishare_xattr_prefix_id;
	uint8_t reserved[2];
	uint32_t build_time;
	uint64_t rootnid_8b; /* 48-bit layout */
	uint64_t reserved2;
	/* extension slot 1 */
	uint64_t metabox_nid;
	uint64_t reserved3;
} __attribute__((packed));

/* i_format bits */
#define EROFS_I_VERSION_MASK     0x01u /* 0 compact (32 B), 1 extended (64 B) */
#define EROFS_I_DATALAYOUT_BIT   1
#define EROFS_I_DATALAYOUT_MASK  0x07u
#define EROFS_I_NLINK_1_BIT      4 /* non-directory compact inodes: nlink is 1, i_nb is blocks_hi */
#define EROFS_I_ALL              0x1fu

enum {
	EROFS_LAYOUT_FLAT_PLAIN = 0,
	EROFS_LAYOUT_COMPRESSED_FULL = 1,
	EROFS_LAYOUT_FLAT_INLINE = 2,
	EROFS_LAYOUT_COMPRESSED_COMPACT = 3,
	EROFS_LAYOUT_CHUNK_BASED = 4,
	EROFS_LAYOUT_MAX
};

/* chunk format (chunk-based inodes, in i_u) */
#define EROFS_CHUNK_BLKBITS_MASK 0x001fu
#define EROFS_CHUNK_INDEXES      0x0020u /* 8-byte indexes, else a 4-byte block map */
#define EROFS_CHUNK_48BIT        0x0040u
#define EROFS_CHUNK_ALL          0x007fu

struct erofs_disk_inode_compact {
	uint16_t i_format;
	uint16_t i_xattr_icount;
	uint16_t i_mode;
	uint16_t i_nb; /* nlink, or startblk_hi/blocks_hi (NLINK_1 bit) */
	uint32_t i_size;
	uint32_t i_mtime; /* seconds after the superblock epoch */
	uint32_t i_u;     /* startblk_lo / blocks_lo / rdev / chunk format */
	uint32_t i_ino;
	uint16_t i_uid;
	uint16_t i_gid;
	uint32_t i_reserved;
} __attribute__((packed));

struct erofs_disk_inode_extended {
	uint16_t i_format;
	uint16_t i_xattr_icount;
	uint16_t i_mode;
	uint16_t i_nb; /* startblk_hi / blocks_hi */
	uint64_t i_size;
	uint32_t i_u;
	uint32_t i_ino;
	uint32_t i_uid;
	uint32_t i_gid;
	uint64_t i_mtime;
	uint32_t i_mtime_nsec;
	uint32_t i_nlink;
	uint8_t i_reserved2[16];
} __attribute__((packed));

/* Inline xattrs: a 12-byte header (shared ids follow) when i_xattr_icount > 0;
 * size = 12 + 4 * (icount - 1). */
struct erofs_disk_xattr_ibody_header {
	uint32_t h_name_filter;
	uint8_t h_shared_count;
	uint8_t h_reserved2[7];
} __attribute__((packed));

struct erofs_disk_xattr_entry {
	uint8_t e_name_len;
	uint8_t e_name_index; /* bit 7: long prefix, low bits its index */
	uint16_t e_value_size;
} __attribute__((packed));
#define EROFS_XATTR_LONG_PREFIX      0x80u
#define EROFS_XATTR_LONG_PREFIX_MASK 0x7fu

/* A long xattr name prefix record: le16 length, then base_index + infix; 4-byte aligned. */
struct erofs_disk_xattr_long_prefix {
	uint8_t base_index;
} __attribute__((packed));

struct erofs_disk_chunk_index {
	uint16_t startblk_hi;
	uint16_t device_id;
	uint32_t startblk_lo;
} __attribute__((packed));

#define EROFS_DIRENT_NID_MBOX_BIT 63
#define EROFS_NID_MASK            ((UINT64_C(1) << EROFS_DIRENT_NID_MBOX_BIT) - 1)

struct erofs_disk_dirent {
	uint64_t nid;
	uint16_t nameoff;
	uint8_t file_type;
	uint8_t reserved;
} __attribute__((packed));

enum {
	EROFS_FT_UNKNOWN,
	EROFS_FT_REG_FILE,
	EROFS_FT_DIR,
	EROFS_FT_CHRDEV,
	EROFS_FT_BLKDEV,
	EROFS_FT_FIFO,
	EROFS_FT_SOCK,
	EROFS_FT_SYMLINK,
	EROFS_FT_MAX
};

/* compression */
#define Z_EROFS_PCLUSTER_MAX_SIZE  (1024u * 1024u)
#define Z_EROFS_PCLUSTER_MAX_DSIZE (12u * 1024u * 1024u)
enum {
	Z_EROFS_ALG_LZ4 = 0,
	Z_EROFS_ALG_LZMA = 1,
	Z_EROFS_ALG_DEFLATE = 2,
	Z_EROFS_ALG_ZSTD = 3,
	Z_EROFS_ALG_MAX,
	Z_EROFS_ALG_SHIFTED = Z_EROFS_ALG_MAX, /* stored, maybe shifted */
	Z_EROFS_ALG_INTERLACED,               /* stored, rotated within the block */
};

#define Z_EROFS_ADVISE_COMPACTED_2B        0x0001u /* compact indexes */
#define Z_EROFS_ADVISE_EXTENTS             0x0001u /* full indexes: extent records */
#define Z_EROFS_ADVISE_BIG_PCLUSTER_1      0x0002u
#define Z_EROFS_ADVISE_BIG_PCLUSTER_2      0x0004u
#define Z_EROFS_ADVISE_INLINE_PCLUSTER     0x0008u /* ztailpacking */
#define Z_EROFS_ADVISE_INTERLACED_PCLUSTER 0x0010u
#define Z_EROFS_ADVISE_FRAGMENT_PCLUSTER   0x0020u
#define Z_EROFS_ADVISE_EXTRECSZ_BIT        1
#define Z_EROFS_ADVISE_EXTRECSZ_MASK       0x3u
#define Z_EROFS_FRAGMENT_INODE_BIT         7 /* in h_clusterbits: whole file in the packed inode */

/* 8 bytes at round_up(end of inode + xattrs, 8). Union members are decoded by hand. */
struct z_erofs_disk_map_header {
	uint16_t h_reserved1; /* h_fragmentoff / h_extents_lo low half */
	uint16_t h_idata_size;
	uint16_t h_advise;
	uint8_t h_algorithmtype; /* bits 0-3 head1, 4-7 head2 */
	uint8_t h_clusterbits;   /* bits 0-3 lcluster bits - block bits; bit 7 fragment inode */
} __attribute__((packed));

enum {
	Z_EROFS_LCLUSTER_TYPE_PLAIN = 0,
	Z_EROFS_LCLUSTER_TYPE_HEAD1 = 1,
	Z_EROFS_LCLUSTER_TYPE_NONHEAD = 2,
	Z_EROFS_LCLUSTER_TYPE_HEAD2 = 3,
};
#define Z_EROFS_LI_LCLUSTER_TYPE_MASK 0x3u
#define Z_EROFS_LI_PARTIAL_REF        (1u << 15)
#define Z_EROFS_LI_D0_CBLKCNT         (1u << 11)

/* Legacy (full) index: one per logical cluster, starting 8 bytes after the map header. */
struct z_erofs_disk_lcluster_index {
	uint16_t di_advise;
	uint16_t di_clusterofs;
	uint32_t di_u; /* blkaddr (heads) or delta[0] | delta[1] << 16 (non-heads) */
} __attribute__((packed));

#define Z_EROFS_EXTENT_PLEN_PARTIAL (1u << 27)
#define Z_EROFS_EXTENT_PLEN_FMT_BIT 28
#define Z_EROFS_EXTENT_PLEN_MASK    ((Z_EROFS_PCLUSTER_MAX_SIZE << 1) - 1)
/* Extent record (full layout with Z_EROFS_ADVISE_EXTENTS); records are 4, 8, 16 or 32 bytes,
 * a prefix of this structure. */
struct z_erofs_disk_extent {
	uint32_t plen;
	uint32_t pstart_lo;
	uint32_t pstart_hi;
	uint32_t lstart_lo;
	uint32_t lstart_hi;
	uint8_t reserved[12];
} __attribute__((packed));

_Static_assert(sizeof(struct erofs_disk_super) == 144, "superblock");
_Static_assert(sizeof(struct erofs_disk_devslot) == 128, "device slot");
_Static_assert(sizeof(struct erofs_disk_inode_compact) == 32, "compact inode");
_Static_assert(sizeof(struct erofs_disk_inode_extended) == 64, "extended inode");
_Static_assert(sizeof(struct erofs_disk_xattr_ibody_header) == 12, "xattr ibody header");
_Static_assert(sizeof(struct erofs_disk_xattr_entry) == 4, "xattr entry");
_Static_assert(sizeof(struct erofs_disk_chunk_index) == 8, "chunk index");
_Static_assert(sizeof(struct erofs_disk_dirent) == 12, "dirent");
_Static_assert(sizeof(struct z_erofs_disk_map_header) == 8, "map header");
_Static_assert(sizeof(struct z_erofs_disk_lcluster_index) == 8, "lcluster index");
_Static_assert(sizeof(struct z_erofs_disk_extent) == 32, "extent record");
_Static_assert(__builtin_offsetof(struct erofs_disk_super, feature_incompat) == 80, "sb layout");
_Static_assert(__builtin_offsetof(struct erofs_disk_super, packed_nid) == 96, "sb layout");
_Static_assert(__builtin_offsetof(struct erofs_disk_super, metabox_nid) == 128, "sb layout");

/* Little-endian loads from unaligned bytes (util/endian.h). */
static inline uint16_t erofs_get_le16(const void *p)
{
	return (uint16_t)util_get_le(p, 2);
}

static inline uint32_t erofs_get_le32(const void *p)
{
	return (uint32_t)util_get_le(p, 4);
}

static inline uint64_t erofs_get_le64(const void *p)
{
	return util_get_le(p, 8);
}

#define erofs_le16(field) erofs_get_le16(&(field))
#define erofs_le32(field) erofs_get_le32(&(field))
#define erofs_le64(field) erofs_get_le64(&(field))

#endif
