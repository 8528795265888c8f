/*
 * fs_internal.h: what fs.c (the small calls) and fs_scan.c (scan,
 * manifest, diff) share.  Private to the clayer.fs module.
 */
#ifndef CLAYER_FS_INTERNAL_H
#define CLAYER_FS_INTERNAL_H

#include <stdint.h>
#include <sys/stat.h>

#include "clayer.h"

#define FS_MANIFEST "clayer.fs.manifest"
#define FS_NOTARGET UINT32_MAX          /* fs_entry.target of a non-link */

/*
 * One entry of a manifest: 64 bytes.  path and target are offsets into
 * the manifest's string arena; mode keeps the type bits of st_mode.
 */
typedef struct fs_entry {
  uint64_t ino;
  uint64_t dev;
  int64_t size;
  int64_t mtime;                        /* nanoseconds since the epoch */
  int64_t ctime;
  uint32_t path;
  uint32_t target;
  uint32_t mode;
  uint32_t uid;
  uint32_t gid;
  uint32_t nlink;
} fs_entry;

/* Copy the fields of st into e; path and target are left alone. */
void fs_entry_fill(fs_entry *e, const struct stat *st);

/* Push the entry table of e; target is the link text or NULL. */
void fs_push_entry(lua_State *L, const fs_entry *e, const char *target);

/* fs.scan, fs.diff and the manifest metatable (fs_scan.c). */
int fs_scan(lua_State *L);
int fs_diff(lua_State *L);
void fs_manifest_register(lua_State *L);

#endif
