/*
 * slipway-pack: a step's new layer folder (overlayfs upper-dir form) measured in one walk, the
 * way src/snapshot/pack.ts `packLayer` does it, byte for byte, without a JavaScript call per
 * file (a 10,000-file layer is all system calls, which cost Node.js about twice what they cost
 * here). It writes the deterministic layer tar (to --tar FILE, else nowhere), and prints
 *   {"diffId":"sha256:<hex>","size":<tar bytes>,"layerSize":<Docker's layersize>}
 * on stdout. With --owners-back, owners inside the step's host range are mapped back on disk as
 * the walk meets them (chown, then set-id bits put back), and written mapped in the tar.
 *
 *   slipway-pack LAYERDIR [--owners-back UIDHOST:UIDCOUNT:GIDHOST:GIDCOUNT] [--tar FILE]
 *
 * (SOURCE_DATE_EPOCH's clamp is applied on disk before a step's layer is packed.)
 *
 * Exit 0: done. Exit 3: the layer needs a header this program does not write (a PAX record:
 * a name or link target that is not ASCII or too long, an id or mtime out of ustar's range);
 * the caller packs it with packLayer instead (owners already mapped back stay so: the mapping
 * is idempotent). Any other failure: exit 1 and a line on stderr.
 *
 * This file walks and writes the entries in order; pack-tar.c encodes and hashes the tar, and
 * pack-ahead.c prepares a large folder's entries on a second thread ahead of the walk. Linked
 * statically: a step's small layer then costs a fork and an exec, about 2 ms here.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "pack.h"

static const char *root;
static unsigned long long apparent;
static int shift;
static unsigned long uid_host, uid_count, gid_host, gid_count;

/* Exit, once no thread is between a chown and the chmod that puts its set-id bits back. */
static _Noreturn void leave(int code) {
  owners_lock();
  exit(code);
}

_Noreturn void die(const char *what, const char *path) {
  fprintf(stderr, "slipway-pack: %s %s: %s\n", what, path, strerror(errno));
  leave(1);
}

_Noreturn void die_at(const char *what, const char *rel) {
  fprintf(stderr, "slipway-pack: %s %s%s%s: %s\n", what, root, *rel ? "/" : "", rel, strerror(errno));
  leave(1);
}

_Noreturn void needs_js(void) { leave(EXIT_NEEDS_JS); }

_Noreturn void changed(const char *rel) {
  fprintf(stderr, "slipway-pack: %s/%s changed while it was packed\n", root, rel);
  leave(1);
}

/* dev:ino -> the first path of a hard-link group: an inode's later names are links to it, and
 * Docker's layersize counts it once. */
struct seen { dev_t dev; ino_t ino; char *first; struct seen *next; };
static struct seen *table[65536];

/* The inode's first name when it was met before; else it is recorded under `rel`, and NULL. */
static struct seen *seen_before(dev_t dev, ino_t ino, const char *rel) {
  unsigned h = (unsigned)((ino * 2654435761u) ^ dev) & 65535;
  for (struct seen *s = table[h]; s; s = s->next) if (s->dev == dev && s->ino == ino) return s;
  struct seen *s = calloc(1, sizeof *s);
  if (!s || !(s->first = strdup(rel))) { fprintf(stderr, "slipway-pack: out of memory\n"); leave(1); }
  s->dev = dev; s->ino = ino; s->next = table[h];
  table[h] = s;
  return NULL;
}

/* packLayer's owner rule: ids in the step's host range go back to the container's. */
static int map_ids(unsigned long *uid, unsigned long *gid) {
  unsigned long u = *uid, g = *gid;
  if (u >= uid_host && u < uid_host + uid_count) u -= uid_host;
  if (g >= gid_host && g < gid_host + gid_count) g -= gid_host;
  if (u == *uid && g == *gid) return 0;
  *uid = u;
  *gid = g;
  return 1;
}

int map_owner_back(int dirfd, const char *name, struct stat *st, const char **what) {
  unsigned long uid = st->st_uid, gid = st->st_gid;
  if (!shift || !map_ids(&uid, &gid)) return 0;
  /* chown clears set-user-ID and set-group-ID bits: they are put back, and no exit comes
   * between the two calls (the pack of a layer left to packLayer would lose them). */
  int setid = !S_ISLNK(st->st_mode) && (st->st_mode & 06000);
  int r = 0;
  if (setid) owners_lock();
  if (fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) != 0) { *what = "cannot chown"; r = -1; }
  else if (setid && fchmodat(dirfd, name, st->st_mode & 07777, 0) != 0) { *what = "cannot chmod"; r = -1; }
  int saved = errno;
  if (setid) owners_unlock();
  errno = saved;
  if (r == 0) { st->st_uid = (uid_t)uid; st->st_gid = (gid_t)gid; }
  return r;
}

/* Whole seconds, rounded down (tv_sec is, for times before 1970 too). */
static long long mtime_of(const struct stat *st) { return (long long)st->st_mtim.tv_sec; }

/* overlayOpaque: redirect or metacopy means the upper dir is not a complete diff. */
static int opaque(int fd, const char *rel) {
  char names[4096];
  ssize_t n = flistxattr(fd, names, sizeof names);
  if (n < 0) {
    if (errno == ENOTSUP) return 0;
    if (errno == ERANGE) needs_js(); /* more attributes than this buffer holds */
    die_at("cannot list the attributes of", rel);
  }
  int found = 0;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
    if (!strcmp(names + i, "trusted.overlay.redirect") || !strcmp(names + i, "trusted.overlay.metacopy")) {
      fprintf(stderr, "slipway-pack: %s/%s has %s; mount overlays with redirect_dir=off,metacopy=off\n", root, rel, names + i);
      leave(1);
    }
    if (!strcmp(names + i, "trusted.overlay.opaque")) found = 1;
  }
  if (!found) return 0;
  char v[8];
  ssize_t k = fgetxattr(fd, "trusted.overlay.opaque", v, sizeof v);
  return k == 1 && v[0] == 'y';
}

static int by_name(const void *a, const void *b) { return strcmp(((const struct item *)a)->name, ((const struct item *)b)->name); }

static void *must(void *p) {
  if (!p) { fprintf(stderr, "slipway-pack: out of memory\n"); leave(1); }
  return p;
}

/* A large file, read as it is written: st_size bytes and then its end. */
static void copy_body(int dirfd, const char *name, const char *rel, unsigned long long size) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die_at("cannot open", rel);
  static unsigned char buf[1 << 20];
  unsigned long long left = size;
  int at_end = 0;
  while (left > 0) {
    /* One byte more than is left: a short read of a regular file is its end. */
    size_t want = left < sizeof buf ? (size_t)left + 1 : sizeof buf;
    ssize_t n = read(fd, buf, want);
    if (n < 0) { if (errno == EINTR) continue; die_at("cannot read", rel); }
    if (n == 0) break;
    if ((unsigned long long)n > left) changed(rel);
    emit(buf, (size_t)n);
    left -= (unsigned long long)n;
    at_end = (size_t)n < want;
  }
  unsigned char extra;
  ssize_t more = left == 0 && !at_end ? read(fd, &extra, 1) : 0;
  close(fd);
  if (left != 0 || more > 0) changed(rel);
  pad_to_block(size);
}

static void walk(int dirfd, const char *rel);

static void directory(int dirfd, const char *name, const char *rel, struct hdr *h) {
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die_at("cannot open", rel);
  int is_opaque = opaque(fd, rel);
  size_t len = strlen(rel);
  char *dname = must(malloc(len + 16));
  memcpy(dname, rel, len);
  strcpy(dname + len, "/");
  h->name = dname; h->type = '5';
  write_header(h);
  if (is_opaque) {
    strcpy(dname + len, "/.wh..wh..opq");
    struct hdr o = *h;
    o.type = '0'; o.mode &= 0777; o.size = 0; o.mtime = 0;
    write_header(&o);
  }
  free(dname);
  walk(fd, rel);
  close(fd);
}

static void entry(int dirfd, const struct item *it, const char *rel) {
  const struct stat *st = &it->st;
  if (it->failed) { errno = it->err; die_at(it->failed, rel); }
  struct hdr h = { .name = rel, .mode = st->st_mode & 07777, .uid = st->st_uid, .gid = st->st_gid, .mtime = mtime_of(st), .type = '0' };
  if (S_ISDIR(st->st_mode)) { directory(dirfd, it->name, rel, &h); return; }
  /* Docker's layersize: apparent sizes of non-directories, each inode once. A whiteout or a
   * socket is never a link entry (both return below): every name of an inode has its type. */
  struct seen *earlier = st->st_nlink > 1 ? seen_before(st->st_dev, st->st_ino, rel) : NULL;
  if (st->st_size > 0 && !earlier) apparent += (unsigned long long)st->st_size;
  if (S_ISCHR(st->st_mode) && st->st_rdev == 0) {
    /* An overlayfs whiteout. */
    const char *slash = strrchr(rel, '/');
    size_t dir = slash ? (size_t)(slash - rel + 1) : 0;
    char *wh = must(malloc(strlen(rel) + 8));
    memcpy(wh, rel, dir);
    sprintf(wh + dir, ".wh.%s", rel + dir);
    h.name = wh; h.mode = 0600;
    write_header(&h);
    free(wh);
    return;
  }
  if (S_ISSOCK(st->st_mode)) return;
  if (earlier) {
    h.type = '1'; h.linkname = earlier->first;
    write_header(&h);
    return;
  }
  if (S_ISREG(st->st_mode)) {
    h.size = (unsigned long long)st->st_size;
    write_header(&h);
    if (it->body_changed) changed(rel);
    if (it->body) { emit(it->body, h.size); pad_to_block(h.size); }
    else if (h.size > 0) copy_body(dirfd, it->name, rel, h.size);
  } else if (S_ISLNK(st->st_mode)) {
    h.type = '2'; h.linkname = it->target;
    write_header(&h);
  } else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
    h.type = S_ISCHR(st->st_mode) ? '3' : '4';
    h.devmajor = major(st->st_rdev); h.devminor = minor(st->st_rdev);
    write_header(&h);
  } else if (S_ISFIFO(st->st_mode)) {
    h.type = '6';
    write_header(&h);
  }
}

/* A folder's entries, sorted by name as bytes. */
static struct item *list(int dirfd, const char *rel, size_t *count) {
  int fd = dup(dirfd);
  if (fd < 0) die_at("cannot read", rel);
  DIR *d = fdopendir(fd);
  if (!d) die_at("cannot read", rel);
  size_t n = 0, cap = 64;
  struct item *items = must(malloc(cap * sizeof *items));
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap) items = must(realloc(items, (cap *= 2) * sizeof *items));
    memset(&items[n], 0, sizeof items[n]);
    items[n++].name = must(strdup(e->d_name));
  }
  if (errno) die_at("cannot read", rel);
  closedir(d);
  qsort(items, n, sizeof *items, by_name);
  *count = n;
  return items;
}

static void walk(int dirfd, const char *rel) {
  struct job job = { .dirfd = dirfd };
  job.items = list(dirfd, rel, &job.n);
  job_begin(&job);
  size_t len = strlen(rel);
  for (size_t i = 0; i < job.n; i++) {
    struct item *it = job_entry(&job, i);
    size_t nlen = strlen(it->name);
    char *r = must(malloc(len + nlen + 2));
    if (len) { memcpy(r, rel, len); r[len] = '/'; memcpy(r + len + 1, it->name, nlen + 1); }
    else memcpy(r, it->name, nlen + 1);
    entry(dirfd, it, r);
    free(r);
    job_entry_done(&job, i);
  }
  job_end(&job);
  free(job.items);
}

int main(int argc, char **argv) {
  /* Dies with the spawner that started it (which dies with its Node.js thread): a killed engine
   * leaves no packer writing into its tmp folder. */
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return 1;
  if (argc < 2) { fprintf(stderr, "usage: slipway-pack LAYERDIR [--owners-back UH:UC:GH:GC] [--tar FILE]\n"); return 1; }
  root = argv[1];
  const char *tar = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--owners-back") && i + 1 < argc) {
      if (sscanf(argv[++i], "%lu:%lu:%lu:%lu", &uid_host, &uid_count, &gid_host, &gid_count) != 4) { fprintf(stderr, "slipway-pack: bad --owners-back\n"); return 1; }
      shift = 1;
    } else if (!strcmp(argv[i], "--tar") && i + 1 < argc) {
      tar = argv[++i];
    } else { fprintf(stderr, "slipway-pack: unknown argument %s\n", argv[i]); return 1; }
  }
  tar_open(tar);
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) die("cannot open", root);
  if (shift) {
    /* The folder itself: mapped back on disk, never in the tar. */
    struct stat st;
    if (fstat(fd, &st) != 0) die("cannot stat", root);
    unsigned long uid = st.st_uid, gid = st.st_gid;
    if (map_ids(&uid, &gid)) {
      if (fchown(fd, (uid_t)uid, (gid_t)gid) != 0) die("cannot chown", root);
      if ((st.st_mode & 06000) && fchmod(fd, st.st_mode & 07777) != 0) die("cannot chmod", root);
    }
  }
  walk(fd, "");
  close(fd);
  return tar_finish(apparent);
}
