/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Cache entry: one per blob under <cache-dir>/sha256/. The data file <key> holds the blob's
 * bytes at their offsets (sparse or pre-allocated); <key>.bitmap holds a small versioned
 * header and one presence bit per 4 KiB block. The bitmap is the only record of presence:
 * holes are never probed. <key>.lock is flocked by whoever owns the entry (the daemon).
 *
 * Durability: the persisted bitmap never claims a block whose data is not durable. Callers
 * set bits in the in-memory bitmap as soon as data is written (the page cache serves it at
 * once); cache_entry_flush() then makes the data durable first and writes the new bits after.
 */
#ifndef LAZYEROFS_CACHE_CACHE_H
#define LAZYEROFS_CACHE_CACHE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/extents.h"
#include "util/sha256.h"
#include "util/strutil.h"

#define CACHE_BLOCK_SHIFT 12
#define CACHE_BLOCK_SIZE  (1u << CACHE_BLOCK_SHIFT)
#define CACHE_KEY_LEN	  UTIL_SHA256_HEX_LEN

/* A cache key: the blob digest's CACHE_KEY_LEN lowercase hex characters. */
bool cache_key_valid(const char *key);

/* ---- presence bitmap ------------------------------------------------------------------- */

/* One bit per block. Words are read and set with atomics so a reader may test bits without a
 * lock while another thread sets them. While shared, bits are only cleared when a flush failed
 * (their data may never reach the disk): a reader then finds them missing and they are fetched
 * again.
 * With `shared`, the words live in a MAP_SHARED anonymous mapping that survives fork(): a
 * process and its children see the same bits. */
struct cache_bitmap {
	uint64_t *words;
	uint64_t nbits;
	size_t nwords;
	bool shared;
};

int cache_bitmap_init(struct cache_bitmap *b, uint64_t nbits, bool shared);
void cache_bitmap_destroy(struct cache_bitmap *b);
bool cache_bitmap_test(const struct cache_bitmap *b, uint64_t bit);
/* True when every bit of [first, first + n) is set (n == 0: true). Out of range: false. */
bool cache_bitmap_test_range(const struct cache_bitmap *b, uint64_t first, uint64_t n);
/* Set [first, first + n), clamped to nbits. */
void cache_bitmap_set_range(struct cache_bitmap *b, uint64_t first, uint64_t n);
/* Clear the bits of `mask` in word `w`; returns those of them that were set. */
uint64_t cache_bitmap_clear_word(struct cache_bitmap *b, size_t w, uint64_t mask);
/* Set the bits of `mask` in word `w` (bits past nbits are ignored). */
void cache_bitmap_set_word(struct cache_bitmap *b, size_t w, uint64_t mask);
/* The mask of bits [first, first + n) that fall in word w. */
uint64_t cache_bitmap_word_mask(uint64_t first, uint64_t n, size_t w);
/* Clear everything (only while nobody else looks: rebuild, tests). */
void cache_bitmap_clear_all(struct cache_bitmap *b);
/* First bit in [from, limit) whose value is `value`; `limit` when none. */
uint64_t cache_bitmap_find(const struct cache_bitmap *b, uint64_t from, uint64_t limit, bool value);
/* Next run of bits equal to `value` starting at or after `from` and ending at most at
 * `limit`: true and [*ret_start, *ret_start + *ret_len) when found. */
bool cache_bitmap_next_run(const struct cache_bitmap *b, uint64_t from, uint64_t limit, bool value,
			   uint64_t *ret_start, uint64_t *ret_len);
uint64_t cache_bitmap_count(const struct cache_bitmap *b);

/* Blocks covering the byte range [off, off + len) of a file of `size` bytes, clamped to the
 * file: returns false when nothing of the range lies inside the file. */
bool cache_blocks_of(uint64_t off, uint64_t len, uint64_t size, uint64_t *ret_first,
		     uint64_t *ret_n);
/* Whether any block of the byte ranges v[0, n) of a file of `size` bytes has the value
 * `value` in b (the blocks of cache_blocks_of; ranges outside the file count for nothing). */
bool cache_bitmap_any_of(const struct cache_bitmap *b, const struct util_extent *v, size_t n,
			 uint64_t size, bool value);

/* ---- on-disk header ---------------------------------------------------------------------- */

#define CACHE_HEADER_SIZE    512
#define CACHE_BITMAP_OFFSET  4096 /* the bits start here in <key>.bitmap */
#define CACHE_FORMAT_VERSION 1 /* any other version is refused (-EPROTO), never interpreted */

enum {
	CACHE_FLAG_COMPLETE = 1u << 0, /* every block present (and durable) */
	CACHE_FLAG_VERIFIED = 1u << 1, /* whole blob hashed and equal to its digest */
	CACHE_FLAG_BAD = 1u << 2,      /* digest mismatch: never used by a new mount */
	CACHE_FLAGS_KNOWN = CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED | CACHE_FLAG_BAD,
};

struct cache_header {
	uint32_t version;
	uint32_t block_size;
	uint32_t flags;
	uint64_t size;
	uint64_t nblocks;
	char key[CACHE_KEY_LEN + 1];	  /* 64 lowercase hex */
	char digest[UTIL_DIGEST_STR_LEN]; /* "sha256:<hex>" or "" (unpinned URL source) */
};

/* Serialize (little-endian fields, sha256 checksum at the end) into exactly
 * CACHE_HEADER_SIZE bytes. */
void cache_header_encode(const struct cache_header *h, uint8_t out[CACHE_HEADER_SIZE]);
/* Parse untrusted bytes: -EPROTO when the header is ours but of another format version (an
 * older or newer lazyerofs wrote it; its fields are not looked at), -EUCLEAN when the magic,
 * checksum or any field is wrong. */
int cache_header_decode(const void *buf, size_t len, struct cache_header *ret);
/* Bytes of the bitmap area for a blob of `size` bytes (whole 64-bit words). */
uint64_t cache_bitmap_bytes(uint64_t size);

/* ---- the I/O the entry's persistence goes through ------------------------------------------ */

/* Every write, sync, resize and rename of an entry's files goes through this table, so that a
 * unit test can put a simulated filesystem underneath (power loss at any point, a failing
 * fdatasync) without touching the real disk's behaviour. Production uses cache_io_real, the
 * plain syscalls: one indirect call per syscall. Each returns what the syscall returns (-1 and
 * errno on failure). */
struct cache_io_ops {
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	int (*fallocate)(int fd, int mode, off_t off, off_t len);
	int (*renameat)(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
};

extern const struct cache_io_ops cache_io_real;
/* Use `ops` (NULL: the real syscalls) for every entry of this process. Tests only. */
void cache_io_set(const struct cache_io_ops *ops);

/* Pre-allocate a new data file only when the blob fits in the free space minus this share of
 * the filesystem: a lazily loaded image may be far larger than anyone wants stored. */
#define CACHE_PREALLOC_RESERVE_PERCENT 10

/* ---- the entry ----------------------------------------------------------------------------- */

/* Open (creating it, mode 0700, root-owned, no symlinks) the directory that holds entries:
 * <cache_dir>/sha256. Returns an O_PATH directory fd. -EPERM with a reason when ownership or
 * mode is wrong. */
int cache_dir_open(const char *cache_dir, int *ret_fd);

/* Take the entry's lock (<key>.lock, flock exclusive). With `wait` false, -EWOULDBLOCK when
 * someone else holds it. The lock lasts while the returned fd (or a dup / fork copy) is open. */
int cache_entry_lock(int dirfd, const char *key, bool wait, int *ret_fd);

/* What every process of the entry's daemon sees (a MAP_SHARED page, like the bits). */
struct cache_entry_shared {
	uint32_t broken;       /* atomic: the files were changed by someone else */
	uint64_t lost_blocks;  /* atomic: blocks dropped because a flush failed */
	uint64_t sync_errors;  /* atomic: failed flushes of the data file */
};

struct cache_entry {
	int dirfd;     /* <cache-dir>/sha256 */
	int data_fd;   /* O_RDWR; opened before any fanotify mark: writes raise no events */
	int bitmap_fd; /* O_RDWR */
	int lock_fd;   /* the entry lock (owned) */
	struct cache_header hdr;     /* hdr.flags: what is on disk */
	struct cache_bitmap present; /* shared mapping; the in-memory truth */
	uint64_t *persisted;	     /* copy of the bits on disk (flush diffs against it) */
	char data_path[PATH_MAX];
	bool rebuilt;	   /* the entry was created or rebuilt by this open */
	bool preallocated; /* fallocate succeeded on creation */
	bool aside;	   /* renamed aside after being marked bad */
	char aside_name[CACHE_KEY_LEN + 32];
	int owner_pid; /* the process that opened it: names the aside files */
	/* Processes of a daemon before this one that still had the data file open for writing
	 * when it was opened (a daemon verifying the image on its way out): their closes are
	 * not another process's writes (cache_entry_prior_writer). */
	int prior_writers[8];
	unsigned nprior;
	/* Stores take it shared (write, then set bits); a flush whose fdatasync failed takes it
	 * exclusive to drop every bit not yet persisted: no store can slip its bits between the
	 * failed sync and the drop. Per process (only the worker stores and flushes). */
	pthread_rwlock_t store_lock;
	/* Flushes and header writes, one at a time (the housekeeper, the verifier and the exit
	 * path all flush): guards persisted and hdr. Taken before store_lock, never after. */
	pthread_mutex_t flush_lock;
	struct cache_entry_shared *sh;
	char rebuild_reason[96]; /* why an existing entry was rebuilt ("" if it was not) */
};

struct cache_open_params {
	const char *key;    /* 64 lowercase hex */
	const char *digest; /* "sha256:<hex>" or NULL/"" */
	uint64_t size;	    /* > 0 */
	bool preallocate;   /* fallocate a new data file when it fits with room to spare
			     * (CACHE_PREALLOC_RESERVE_PERCENT), sparse otherwise */
};

/* Was pid one of a previous daemon's processes still writing the data file at open? */
bool cache_entry_prior_writer(const struct cache_entry *e, int pid);
/* (Re)initialize the entry's locks: at open, and in a process forked by one with other
 * threads, where one of them may have held a lock at the fork (it stays held for ever). */
void cache_entry_locks_init(struct cache_entry *e);
/* Open the entry with the lock (taken by cache_entry_lock, ownership passes to the entry).
 * A missing entry is created; one whose header is damaged or does not match (key, digest,
 * size) is rebuilt from scratch; one marked bad is discarded and a fresh one made. The
 * presence bitmap is loaded into a shared mapping. */
int cache_entry_open(int dirfd, const char *cache_dir, const struct cache_open_params *p,
		     int lock_fd, struct cache_entry **ret);
/* 1 with *ret the size of entry key when it holds digest (not "") verified against it, as its
 * header says; 0 otherwise. Such an entry's size is the blob's: a manifest that gives the
 * blob another is wrong, and must not have the entry rebuilt at its size. */
int cache_entry_verified_size(int dirfd, const char *key, const char *digest, uint64_t *ret);
void cache_entry_free(struct cache_entry *e);

/* Store blob bytes [off, off + len) through the pre-mark fd, then mark blocks
 * [first, first + n) present (the caller knows which blocks this write completes; n may be 0).
 * 0, or -errno with nothing marked (ENOSPC on a full disk). */
int cache_entry_store(struct cache_entry *e, const void *buf, size_t len, uint64_t off,
		      uint64_t first, uint64_t n);
/* Persist: fdatasync the data file, then write every bitmap word that gained bits since the
 * last flush. With `final`, also fsync the bitmap file. Returns the number of newly persisted
 * blocks, or -errno (nothing claimed on failure). When the fdatasync fails, every block not
 * yet persisted is dropped from the in-memory bitmap as well (Linux reports a writeback error
 * once: a retry would succeed without the data ever reaching the disk); readers fetch those
 * blocks again. Single caller at a time. */
int cache_entry_flush(struct cache_entry *e, bool final);
/* Evict blocks of an entry that may be in use: their data goes (holes punched), their bits
 * first. Stores and flushes wait meanwhile. clear(ctx, cleared) clears bits of e->present --
 * under whatever excludes the caller's readers -- and adds each bit it cleared to
 * cleared[word] (nwords words, zeroed); then those bits leave the persisted bitmap (written
 * and synced: it never claims a block whose data is gone) and only then are the blocks'
 * holes punched. *ret_blocks: the blocks evicted. -errno when the bitmap could not be
 * persisted (then no data was removed; the cleared bits stay cleared in memory: those
 * blocks are fetched again when read). */
int cache_entry_evict(struct cache_entry *e, int (*clear)(void *ctx, uint64_t *cleared), void *ctx,
		      uint64_t *ret_blocks);
/* Rewrite the header with new flags (fsync'd). COMPLETE and VERIFIED are refused (-EAGAIN)
 * unless every block is persisted, i.e. durable. */
int cache_entry_set_flags(struct cache_entry *e, uint32_t set, uint32_t clear);
/* Mark bad (header flag) and rename the files aside so that a new mount gets a fresh entry at
 * the original names, while live users keep the renamed inodes. */
int cache_entry_mark_bad(struct cache_entry *e);
/* Unlink the files of an entry that was renamed aside (its last user is leaving). */
void cache_entry_remove_aside(struct cache_entry *e);
/* For a process sharing the entry with the one that changed it (a forked child): re-read the
 * header and what the bitmap file claims from disk, and when the header says bad, take note
 * that the files were set aside. */
int cache_entry_reload(struct cache_entry *e);

/* Whether the files are still as this entry left them: 0, or -ESTALE with *ret_why saying
 * what happened ("deleted", "truncated or extended", "renamed or replaced", ...). A few
 * fstat calls: cheap enough to run every tick. */
int cache_entry_check(struct cache_entry *e, const char **ret_why);
/* The files were changed by someone else: remember it (every process of the daemon sees it),
 * mark the entry bad and set it aside so that new mounts get a fresh one. */
int cache_entry_mark_broken(struct cache_entry *e);
bool cache_entry_broken(const struct cache_entry *e);

bool cache_entry_complete(const struct cache_entry *e);
/* Bytes the entry's data file may still grow by and leave CACHE_PREALLOC_RESERVE_PERCENT of
 * its filesystem free: UINT64_MAX when every block of the blob has its place already (the
 * file was pre-allocated). What the daemon fetches ahead of need stays within it. */
int cache_entry_room(const struct cache_entry *e, uint64_t *ret);
uint64_t cache_entry_present_bytes(const struct cache_entry *e);

/* Record a use of the entry now: the bitmap file's times, which `gc` evicts by (least recently
 * used first). At open and when the last user leaves. Best effort. */
void cache_entry_touch(struct cache_entry *e);

/* Remove the files of entry `key`, whose lock the caller holds (lock_fd, from
 * cache_entry_lock): the bitmap first (a crash then leaves a data file without one, which the
 * next open rebuilds), then the data file, then the lock file's name, so that whoever waits
 * for the lock retries on a new lock file and creates a fresh entry, never opening
 * half-removed files. Also removes what a dead holder of a bad entry left aside. */
int cache_entry_remove(int dirfd, const char *key, int lock_fd);

/* Read an entry's header without taking its lock (e.g. to find the size of a complete entry
 * for an offline mount). -ENOENT when there is no entry, -EUCLEAN when damaged. */
int cache_entry_peek(int dirfd, const char *key, struct cache_header *ret);
/* The bytes the entry's bitmap file claims present (persisted: what a daemon that is gone
 * left), without its lock; the header into hdr. */
int cache_entry_peek_present(int dirfd, const char *key, struct cache_header *hdr,
			     uint64_t *ret_bytes);
/* Is path the data file of an entry (<cache-dir>/sha256/<key>, its header beside it)? */
bool cache_entry_is_data_path(const char *path);

/* ---- eviction (gc.c) ----------------------------------------------------------------------- */

/* One entry as eviction sees it. */
struct cache_gc_entry {
	char key[CACHE_KEY_LEN + 1];
	char digest[UTIL_DIGEST_STR_LEN]; /* from its header; "" when none or unreadable */
	uint64_t bytes;			  /* disk space its files take (allocated blocks) */
	int64_t last_use;		  /* seconds since the epoch: the LRU stamp */
	bool in_use;			  /* its lock is held: a daemon (a mount) uses it */
	bool evict;			  /* chosen (cache_gc_plan) */
	bool gone;			  /* evicted */
	uint64_t freed;			  /* what its eviction or trim gave back */
};

/* Order entries least recently used first (ties: the larger first, then by key). */
void cache_gc_sort(struct cache_gc_entry *v, size_t n);
/* Choose, in order, entries neither in use nor gone to evict until the bytes of all entries
 * left (in use ones included, gone ones not) are at most budget: their `evict` is set, every
 * other's cleared. Returns the bytes that stay. Pure: the unit tests run it. */
uint64_t cache_gc_plan(struct cache_gc_entry *v, size_t n, uint64_t budget);

/* The budget in bytes: size->bytes, or size->percent of the cache filesystem's size (while
 * cache_dir is not made yet, of the filesystem it will be made on). */
int cache_gc_budget(const char *cache_dir, const struct util_size *size, uint64_t *ret);

struct cache_gc_result {
	size_t entries, evicted, trimmed, in_use; /* seen; evicted (or would be); trimmed; in use */
	uint64_t total, freed, in_use_bytes, budget; /* bytes: before, freed, held in use after */
	/* Entries that could not be removed (a file of theirs gc cannot take); the run went on
	 * past them. */
	size_t failed;
	char failed_key[CACHE_KEY_LEN + 1]; /* the first of them */
	int failed_err;
};

struct cache_gc_hooks {
	/* An entry evicted (or that would be, on a dry run): e->gone. Or trimmed: !e->gone,
	 * e->freed what it gave back. May be NULL. */
	void (*each)(void *ctx, const struct cache_gc_entry *e);
	/* An entry in use, least recently used first, while the cache is still over its budget
	 * by `over` bytes once every unused entry went: ask whoever uses it to give back up to
	 * that much (trim its cold blocks). What it gave back is measured on disk. NULL: entries
	 * in use stay whole. Never on a dry run. */
	void (*trim)(void *ctx, const struct cache_gc_entry *e, uint64_t over);
	void *ctx;
};

/* A hooks.each that logs what cache-max took (an entry evicted or trimmed), for the mount
 * that applies the budget and the daemon that keeps it (ctx unused). */
void cache_gc_log_budget(void *ctx, const struct cache_gc_entry *e);

/* Evict entries of cache_dir that no mount uses, least recently used first, until the cache
 * takes at most `size` (a percentage: of its filesystem). An entry's lock is taken without
 * waiting and it is skipped when held (a daemon serves it, or a mount is opening it); it is
 * removed while locked (cache_entry_remove). Then, still over, entries in use are trimmed
 * (hooks->trim). dry_run: only report what would be evicted. A missing cache directory holds
 * nothing. -errno on failure (what was evicted so far stays evicted, and was reported). */
int cache_gc(const char *cache_dir, const struct util_size *size, bool dry_run,
	     const struct cache_gc_hooks *hooks, struct cache_gc_result *ret);

/* Name the filesystem type of fd ("ext4", "tmpfs", "overlayfs", ... or "0x<magic>"). */
const char *cache_fs_name(int fd, char *buf, size_t len);

#endif
