/*
 * tar_set.c: the sets the extractor keeps while it runs: member paths
 * (a string set with a key pool) and inodes (keyed by device and inode
 * number, no key to allocate).  Open addressing with linear probing.
 */
#include <stdlib.h>
#include <string.h>

#include "tar_internal.h"

/* FNV-1a. */
static size_t hash_str(const char *s)
{
  size_t h = 14695981039346656037ULL;

  while(*s)
    h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
  return h;
}

static int set_grow(struct tar_set *s)
{
  size_t i, cap = s->cap ? s->cap * 2 : 1024;
  struct tar_item *items = calloc(cap, sizeof(*items));

  if(!items)
    return -1;
  for(i = 0; i < s->cap; i++) {
    size_t k;

    if(!s->items[i].key)
      continue;
    k = hash_str(s->items[i].key) & (cap - 1);
    while(items[k].key)
      k = (k + 1) & (cap - 1);
    items[k] = s->items[i];
  }
  free(s->items);
  s->items = items;
  s->cap = cap;
  return 0;
}

#define POOL_BLOCK 262144

/* A copy of key in the set's pool (one malloc per 256 KiB of keys, not
   one per key: a restore of many small files keeps a key per file). */
static char *pool_copy(struct tar_set *s, const char *key)
{
  size_t len = strlen(key) + 1;
  char *p;

  if(len > POOL_BLOCK / 4)
    len = 0;                          /* a long key gets a block of its own */
  if(!s->npool || !len || s->pool_used + len > POOL_BLOCK) {
    size_t size = len ? POOL_BLOCK : strlen(key) + 1;
    char **pool = realloc(s->pool, (s->npool + 1) * sizeof(*pool));

    if(!pool)
      return NULL;
    s->pool = pool;
    s->pool[s->npool] = malloc(size);
    if(!s->pool[s->npool])
      return NULL;
    s->npool++;
    if(!len) {
      strcpy(s->pool[s->npool - 1], key);
      s->pool_used = POOL_BLOCK;      /* the next key starts a new block */
      return s->pool[s->npool - 1];
    }
    s->pool_used = 0;
  }
  p = s->pool[s->npool - 1] + s->pool_used;
  memcpy(p, key, len);
  s->pool_used += len;
  return p;
}

struct tar_item *tar_set_get(struct tar_set *s, const char *key, int add)
{
  size_t k;

  if(s->cap) {
    k = hash_str(key) & (s->cap - 1);
    while(s->items[k].key) {
      if(!strcmp(s->items[k].key, key))
        return &s->items[k];
      k = (k + 1) & (s->cap - 1);
    }
  }
  if(!add)
    return NULL;
  if((s->n + 1) * 4 > s->cap * 3 && set_grow(s))   /* at most 3/4 full */
    return NULL;
  k = hash_str(key) & (s->cap - 1);
  while(s->items[k].key)
    k = (k + 1) & (s->cap - 1);
  s->items[k].key = pool_copy(s, key);
  if(!s->items[k].key)
    return NULL;
  s->n++;
  return &s->items[k];
}

void tar_set_free(struct tar_set *s)
{
  size_t i;

  for(i = 0; i < s->npool; i++)
    free(s->pool[i]);
  free(s->pool);
  free(s->items);
  memset(s, 0, sizeof(*s));
}

/* A mix of an inode's identity (splitmix64's finalizer). */
static size_t hash_inode(dev_t dev, ino_t ino)
{
  unsigned long long h = (unsigned long long)ino ^
                         ((unsigned long long)dev * 0x9e3779b97f4a7c15ULL);

  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return (size_t)(h ^ (h >> 31));
}

static int iset_grow(struct tar_iset *s)
{
  size_t i, k, cap = s->cap ? s->cap * 2 : 1024;
  struct tar_inode *items = calloc(cap, sizeof(*items));

  if(!items)
    return -1;
  for(i = 0; i < s->cap; i++) {
    if(!s->items[i].flags)
      continue;
    k = hash_inode(s->items[i].dev, s->items[i].ino) & (cap - 1);
    while(items[k].flags)
      k = (k + 1) & (cap - 1);
    items[k] = s->items[i];
  }
  free(s->items);
  s->items = items;
  s->cap = cap;
  return 0;
}

struct tar_inode *tar_iset_get(struct tar_iset *s, dev_t dev, ino_t ino,
                               int add)
{
  size_t k;

  if(s->cap) {
    k = hash_inode(dev, ino) & (s->cap - 1);
    for(; s->items[k].flags; k = (k + 1) & (s->cap - 1))
      if(s->items[k].ino == ino && s->items[k].dev == dev)
        return &s->items[k];
  }
  if(!add)
    return NULL;
  if((s->n + 1) * 8 > s->cap * 7 && iset_grow(s))   /* at most 7/8 full */
    return NULL;
  k = hash_inode(dev, ino) & (s->cap - 1);
  while(s->items[k].flags)
    k = (k + 1) & (s->cap - 1);
  s->items[k].dev = dev;
  s->items[k].ino = ino;
  s->items[k].flags = TAR_INODE_USED;
  s->items[k].gen = 0;
  s->n++;
  return &s->items[k];
}

void tar_iset_free(struct tar_iset *s)
{
  free(s->items);
  memset(s, 0, sizeof(*s));
}
