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
 * Linked statically, with OpenSSL's one-shot SHA256_* calls rather than EVP (which loads
 * providers): a step's small layer then costs a fork and an exec, about 2 ms here, not 6-7.
 *
 * The format is tar-stream's (3.x) ustar encoding as packLayer feeds it: numeric fields in
 * octal with a trailing space, names split into prefix and name at a `/` past 100 bytes,
 * empty uname and gname, whole-second mtimes, then two zero blocks.
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
#include <openssl/sha.h>

#define SMALL_FILE (1 << 20)
#define MAX_USTAR_ID 0777777
#define MAX_USTAR_TIME 2147483647LL
#define EXIT_NEEDS_JS 3

static SHA256_CTX sha;
static int tar_fd = -1;
static unsigned long long tar_size;
static unsigned long long apparent;
static unsigned char outbuf[1 << 20];
static size_t outlen;
static int shift;
static unsigned long uid_host, uid_count, gid_host, gid_count;

static void die(const char *what, const char *path) {
  fprintf(stderr, "slipway-pack: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void needs_js(void) { exit(EXIT_NEEDS_JS); }

static void flush_out(void) {
  if (outlen == 0) return;
  if (SHA256_Update(&sha, outbuf, outlen) != 1) { fprintf(stderr, "slipway-pack: sha256 failed\n"); exit(1); }
  if (tar_fd >= 0) {
    size_t off = 0;
    while (off < outlen) {
      ssize_t n = write(tar_fd, outbuf + off, outlen - off);
      if (n < 0) { if (errno == EINTR) continue; die("cannot write", "the tar"); }
      off += (size_t)n;
    }
  }
  tar_size += outlen;
  outlen = 0;
}

static void emit(const void *p, size_t n) {
  const unsigned char *b = p;
  while (n > 0) {
    size_t k = sizeof outbuf - outlen < n ? sizeof outbuf - outlen : n;
    memcpy(outbuf + outlen, b, k);
    outlen += k; b += k; n -= k;
    if (outlen == sizeof outbuf) flush_out();
  }
}

static void pad_to_block(unsigned long long n) {
  static const unsigned char zeros[512];
  if (n % 512) emit(zeros, 512 - n % 512);
}

/* tar-stream's encodeOct: n octal digits zero-padded and a space; all 7s when it does not fit. */
static void oct(char *field, unsigned long long v, int n) {
  char tmp[32];
  int len = snprintf(tmp, sizeof tmp, "%llo", v);
  if (len > n) { memset(field, '7', (size_t)n); field[n] = ' '; return; }
  memset(field, '0', (size_t)(n - len));
  memcpy(field + n - len, tmp, (size_t)len);
  field[n] = ' ';
}

static int ascii(const char *s) {
  for (; *s; s++) if ((unsigned char)*s >= 0x80) return 0;
  return 1;
}

struct hdr {
  const char *name; /* full name, a directory's with its trailing slash */
  unsigned mode;    /* permission bits (masked to 07777) */
  unsigned long uid, gid;
  unsigned long long size;
  long long mtime;
  char type;        /* '0' file, '1' link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo */
  const char *linkname;
  unsigned long devmajor, devminor;
};

static void write_header(const struct hdr *h) {
  unsigned char b[512];
  memset(b, 0, sizeof b);
  const char *name = h->name;
  char prefix[512] = "";
  size_t plen = 0;
  if (!ascii(name) || (h->linkname && !ascii(h->linkname))) needs_js();
  /* Components move into the prefix while the name is longer than 100 bytes. */
  while (strlen(name) > 100) {
    const char *slash = strchr(name, '/');
    if (!slash) needs_js();
    size_t k = (size_t)(slash - name);
    if (plen + k + 1 >= sizeof prefix) needs_js();
    if (plen) prefix[plen++] = '/';
    memcpy(prefix + plen, name, k);
    plen += k;
    prefix[plen] = 0;
    name = slash + 1;
  }
  if (strlen(name) > 100 || plen > 155) needs_js();
  if (h->linkname && strlen(h->linkname) > 100) needs_js();
  if (h->uid > MAX_USTAR_ID || h->gid > MAX_USTAR_ID) needs_js();
  if (h->mtime < 0 || h->mtime > MAX_USTAR_TIME) needs_js();
  if (h->size > 077777777777ULL) needs_js();
  memcpy(b, name, strlen(name));
  oct((char *)b + 100, h->mode & 07777, 6);
  oct((char *)b + 108, h->uid, 6);
  oct((char *)b + 116, h->gid, 6);
  oct((char *)b + 124, h->size, 11);
  oct((char *)b + 136, (unsigned long long)h->mtime, 11);
  b[156] = (unsigned char)h->type;
  if (h->linkname) memcpy(b + 157, h->linkname, strlen(h->linkname));
  memcpy(b + 257, "ustar\0" "00", 8);
  oct((char *)b + 329, h->devmajor, 6);
  oct((char *)b + 337, h->devminor, 6);
  if (plen) memcpy(b + 345, prefix, plen);
  unsigned sum = 8 * 32;
  for (int i = 0; i < 148; i++) sum += b[i];
  for (int i = 156; i < 512; i++) sum += b[i];
  oct((char *)b + 148, sum, 6);
  emit(b, sizeof b);
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
  if (!s || !(s->first = strdup(rel))) { fprintf(stderr, "slipway-pack: out of memory\n"); exit(1); }
  s->dev = dev; s->ino = ino; s->next = table[h];
  table[h] = s;
  return NULL;
}

/* packLayer's owner rule: ids in the step's host range go back to the container's. */
static void owners(int dirfd, const char *name, const char *path, struct stat *st) {
  if (!shift) return;
  unsigned long uid = st->st_uid, gid = st->st_gid;
  if (uid >= uid_host && uid < uid_host + uid_count) uid -= uid_host;
  if (gid >= gid_host && gid < gid_host + gid_count) gid -= gid_host;
  if (uid == st->st_uid && gid == st->st_gid) return;
  if (fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) != 0) die("cannot chown", path);
  /* chown clears set-user-ID and set-group-ID bits: they are put back. */
  if (!S_ISLNK(st->st_mode) && (st->st_mode & 06000) && fchmodat(dirfd, name, st->st_mode & 07777, 0) != 0) die("cannot chmod", path);
  st->st_uid = (uid_t)uid;
  st->st_gid = (gid_t)gid;
}

/* Whole seconds, rounded down (tv_sec is, for times before 1970 too). */
static long long mtime_of(const struct stat *st) { return (long long)st->st_mtim.tv_sec; }

/* overlayOpaque: redirect or metacopy means the upper dir is not a complete diff. */
static int opaque(int fd, const char *path) {
  char names[4096];
  ssize_t n = flistxattr(fd, names, sizeof names);
  if (n < 0) {
    if (errno == ENOTSUP) return 0;
    if (errno == ERANGE) needs_js(); /* more attributes than this buffer holds */
    die("cannot list the attributes of", path);
  }
  int found = 0;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
    if (!strcmp(names + i, "trusted.overlay.redirect") || !strcmp(names + i, "trusted.overlay.metacopy")) {
      fprintf(stderr, "slipway-pack: %s has %s; mount overlays with redirect_dir=off,metacopy=off\n", path, names + i);
      exit(1);
    }
    if (!strcmp(names + i, "trusted.overlay.opaque")) found = 1;
  }
  if (!found) return 0;
  char v[8];
  ssize_t k = fgetxattr(fd, "trusted.overlay.opaque", v, sizeof v);
  return k == 1 && v[0] == 'y';
}

static int by_bytes(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void copy_body(int dirfd, const char *name, const char *path, unsigned long long size) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die("cannot open", path);
  static unsigned char buf[1 << 20];
  unsigned long long left = size;
  while (left > 0) {
    ssize_t n = read(fd, buf, left < sizeof buf ? (size_t)left : sizeof buf);
    if (n < 0) { if (errno == EINTR) continue; die("cannot read", path); }
    if (n == 0) break;
    emit(buf, (size_t)n);
    left -= (unsigned long long)n;
  }
  unsigned char extra;
  ssize_t more = left == 0 ? read(fd, &extra, 1) : 0;
  close(fd);
  if (left != 0 || more > 0) { fprintf(stderr, "slipway-pack: %s changed while it was packed\n", path); exit(1); }
  pad_to_block(size);
}

static void walk(int dirfd, const char *rel, const char *host);

static void entry(int dirfd, const char *name, const char *rel, const char *host) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) die("cannot lstat", host);
  owners(dirfd, name, host, &st);
  struct hdr h = { .name = rel, .mode = st.st_mode & 07777, .uid = st.st_uid, .gid = st.st_gid, .mtime = mtime_of(&st), .type = '0' };
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) die("cannot open", host);
    int is_opaque = opaque(fd, host);
    char *dname = malloc(strlen(rel) + 2);
    if (!dname) exit(1);
    sprintf(dname, "%s/", rel);
    h.name = dname; h.type = '5';
    write_header(&h);
    if (is_opaque) {
      char *wh = malloc(strlen(rel) + 16);
      if (!wh) exit(1);
      sprintf(wh, "%s/.wh..wh..opq", rel);
      struct hdr o = h;
      o.name = wh; o.type = '0'; o.mode = st.st_mode & 0777; o.size = 0;
      o.mtime = 0;
      write_header(&o);
      free(wh);
    }
    free(dname);
    walk(fd, rel, host);
    close(fd);
    return;
  }
  /* Docker's layersize: apparent sizes of non-directories, each inode once. A whiteout or a
   * socket is never a link entry (both return below): every name of an inode has its type. */
  struct seen *earlier = st.st_nlink > 1 ? seen_before(st.st_dev, st.st_ino, rel) : NULL;
  if (st.st_size > 0 && !earlier) apparent += (unsigned long long)st.st_size;
  if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
    /* An overlayfs whiteout. */
    const char *slash = strrchr(rel, '/');
    size_t dir = slash ? (size_t)(slash - rel + 1) : 0;
    char *wh = malloc(strlen(rel) + 8);
    if (!wh) exit(1);
    memcpy(wh, rel, dir);
    sprintf(wh + dir, ".wh.%s", rel + dir);
    h.name = wh; h.mode = 0600;
    write_header(&h);
    free(wh);
    return;
  }
  if (S_ISSOCK(st.st_mode)) return;
  if (earlier) {
    h.type = '1'; h.linkname = earlier->first;
    write_header(&h);
    return;
  }
  if (S_ISREG(st.st_mode)) {
    h.size = (unsigned long long)st.st_size;
    write_header(&h);
    if (h.size > 0) copy_body(dirfd, name, host, h.size);
  } else if (S_ISLNK(st.st_mode)) {
    char target[4097];
    ssize_t n = readlinkat(dirfd, name, target, sizeof target - 1);
    if (n < 0) die("cannot read the link", host);
    target[n] = 0;
    h.type = '2'; h.linkname = target;
    write_header(&h);
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    h.type = S_ISCHR(st.st_mode) ? '3' : '4';
    h.devmajor = major(st.st_rdev); h.devminor = minor(st.st_rdev);
    write_header(&h);
  } else if (S_ISFIFO(st.st_mode)) {
    h.type = '6';
    write_header(&h);
  }
}

static void walk(int dirfd, const char *rel, const char *host) {
  int fd = dup(dirfd);
  if (fd < 0) die("cannot read", host);
  DIR *d = fdopendir(fd);
  if (!d) die("cannot read", host);
  size_t n = 0, cap = 64;
  char **names = malloc(cap * sizeof *names);
  if (!names) exit(1);
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap && !(names = realloc(names, (cap *= 2) * sizeof *names))) exit(1);
    if (!(names[n++] = strdup(e->d_name))) exit(1);
  }
  if (errno) die("cannot read", host);
  closedir(d);
  qsort(names, n, sizeof *names, by_bytes);
  for (size_t i = 0; i < n; i++) {
    char *r = malloc(strlen(rel) + strlen(names[i]) + 2);
    char *p = malloc(strlen(host) + strlen(names[i]) + 2);
    if (!r || !p) exit(1);
    if (*rel) sprintf(r, "%s/%s", rel, names[i]); else strcpy(r, names[i]);
    sprintf(p, "%s/%s", host, names[i]);
    entry(dirfd, names[i], r, p);
    free(r); free(p); free(names[i]);
  }
  free(names);
}

int main(int argc, char **argv) {
  /* Dies with the spawner that started it (which dies with its Node.js thread): a killed engine
   * leaves no packer writing into its tmp folder. */
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return 1;
  if (argc < 2) { fprintf(stderr, "usage: slipway-pack LAYERDIR [--owners-back UH:UC:GH:GC] [--tar FILE]\n"); return 1; }
  const char *root = argv[1];
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--owners-back") && i + 1 < argc) {
      if (sscanf(argv[++i], "%lu:%lu:%lu:%lu", &uid_host, &uid_count, &gid_host, &gid_count) != 4) { fprintf(stderr, "slipway-pack: bad --owners-back\n"); return 1; }
      shift = 1;
    } else if (!strcmp(argv[i], "--tar") && i + 1 < argc) {
      tar_fd = open(argv[++i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (tar_fd < 0) die("cannot create", argv[i]);
    } else { fprintf(stderr, "slipway-pack: unknown argument %s\n", argv[i]); return 1; }
  }
  if (SHA256_Init(&sha) != 1) { fprintf(stderr, "slipway-pack: no sha256\n"); return 1; }
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) die("cannot open", root);
  if (shift) {
    struct stat st;
    if (fstat(fd, &st) != 0) die("cannot stat", root);
    /* The folder itself: mapped back on disk, never in the tar. */
    unsigned long uid = st.st_uid, gid = st.st_gid;
    if (uid >= uid_host && uid < uid_host + uid_count) uid -= uid_host;
    if (gid >= gid_host && gid < gid_host + gid_count) gid -= gid_host;
    if ((uid != st.st_uid || gid != st.st_gid) && fchown(fd, (uid_t)uid, (gid_t)gid) != 0) die("cannot chown", root);
    if ((uid != st.st_uid || gid != st.st_gid) && (st.st_mode & 06000) && fchmod(fd, st.st_mode & 07777) != 0) die("cannot chmod", root);
  }
  walk(fd, "", root);
  close(fd);
  static const unsigned char end[1024];
  emit(end, sizeof end);
  flush_out();
  if (tar_fd >= 0 && close(tar_fd) != 0) die("cannot write", "the tar");
  unsigned char md[32];
  unsigned len = 32;
  if (SHA256_Final(md, &sha) != 1) return 1;
  printf("{\"diffId\":\"sha256:");
  for (unsigned i = 0; i < len; i++) printf("%02x", md[i]);
  printf("\",\"size\":%llu,\"layerSize\":%llu}\n", tar_size, apparent);
  return fflush(stdout) == 0 ? 0 : 1;
}
