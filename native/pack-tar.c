/* slipway-pack's tar: tar-stream's (3.x) ustar encoding as packLayer feeds it (numeric fields in
 * octal with a trailing space, names split into prefix and name at a `/` past 100 bytes, empty
 * uname and gname, whole-second mtimes, then two zero blocks), hashed with OpenSSL's one-shot
 * SHA256_* calls as it is written (EVP loads providers, which costs a step's small layer 4-5 ms). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/sha.h>
#include "pack.h"

#define MAX_USTAR_ID 0777777
#define MAX_USTAR_TIME 2147483647LL

static SHA256_CTX sha;
static int tar_fd = -1;
static unsigned long long tar_size;
static unsigned char outbuf[1 << 20];
static size_t outlen;

void tar_open(const char *file) {
  if (SHA256_Init(&sha) != 1) { fprintf(stderr, "slipway-pack: no sha256\n"); exit(1); }
  if (!file) return;
  tar_fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (tar_fd < 0) die("cannot create", file);
}

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

void emit(const void *p, size_t n) {
  const unsigned char *b = p;
  while (n > 0) {
    size_t k = sizeof outbuf - outlen < n ? sizeof outbuf - outlen : n;
    memcpy(outbuf + outlen, b, k);
    outlen += k; b += k; n -= k;
    if (outlen == sizeof outbuf) flush_out();
  }
}

void pad_to_block(unsigned long long n) {
  static const unsigned char zeros[512];
  if (n % 512) emit(zeros, 512 - n % 512);
}

/* tar-stream's encodeOct: n octal digits zero-padded and a space; all 7s when it does not fit. */
static void oct(char *field, unsigned long long v, int n) {
  char digits[24];
  int len = 0;
  do { digits[len++] = (char)('0' + (v & 7)); v >>= 3; } while (v);
  if (len > n) { memset(field, '7', (size_t)n); field[n] = ' '; return; }
  memset(field, '0', (size_t)(n - len));
  for (int i = 0; i < len; i++) field[n - 1 - i] = digits[i];
  field[n] = ' ';
}

static int ascii(const char *s) {
  for (; *s; s++) if ((unsigned char)*s >= 0x80) return 0;
  return 1;
}

void write_header(const struct hdr *h) {
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

int tar_finish(unsigned long long layer_size) {
  static const unsigned char end[1024];
  emit(end, sizeof end);
  flush_out();
  if (tar_fd >= 0 && close(tar_fd) != 0) die("cannot write", "the tar");
  unsigned char md[32];
  if (SHA256_Final(md, &sha) != 1) return 1;
  printf("{\"diffId\":\"sha256:");
  for (unsigned i = 0; i < sizeof md; i++) printf("%02x", md[i]);
  printf("\",\"size\":%llu,\"layerSize\":%llu}\n", tar_size, layer_size);
  return fflush(stdout) == 0 ? 0 : 1;
}
