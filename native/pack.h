/* slipway-pack's parts: pack.c walks the layer, pack-tar.c writes and hashes the tar, and
 * pack-ahead.c prepares a folder's entries on a second thread while the walk writes them. */
#ifndef SLIPWAY_PACK_H
#define SLIPWAY_PACK_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/stat.h>

#define EXIT_NEEDS_JS 3

/* Failures name the entry by its path below the layer folder ("" is the folder itself). */
_Noreturn void die_at(const char *what, const char *rel);
_Noreturn void die(const char *what, const char *path);
_Noreturn void needs_js(void);
_Noreturn void changed(const char *rel);

/* pack-tar.c: the tar stream, hashed as it is written (and written to the --tar file, if any). */
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
void tar_open(const char *file);
void emit(const void *p, size_t n);
void pad_to_block(unsigned long long n);
void write_header(const struct hdr *h);
/* Writes the two end blocks and prints the result line; 0 when stdout took it. */
int tar_finish(unsigned long long layer_size);

/* pack-ahead.c: one folder entry, as the walk needs it. */
struct item {
  char *name;
  struct stat st;       /* lstat, owners already mapped back */
  const char *failed;   /* what failed ("cannot lstat", ...), with err; reported when written */
  int err;
  unsigned char *body;  /* a small regular file's whole content, read ahead */
  size_t body_reserved; /* bytes of the read-ahead budget the body holds */
  int body_changed;     /* the file did not have st_size bytes when it was read */
  char *target;         /* a symlink's target */
  atomic_int state;
};

/* A folder's sorted entries, written in order by the walk; the helper may prepare them ahead. */
struct job {
  int dirfd;
  struct item *items;
  size_t n;
  size_t scan;          /* the helper's next candidate (under the helper's lock) */
  atomic_size_t written;
  struct job *outer;    /* the enclosing large folder's job, current again after this one */
};

/* Owners in the step's host range go back to the container's on disk (set-id bits put back).
 * Returns 0, or -1 with errno and *what set. */
int map_owner_back(int dirfd, const char *name, struct stat *st, const char **what);
/* Holds off exit while another thread is between a chown and its chmod. */
void owners_lock(void);
void owners_unlock(void);

/* Starts a folder's job (dirfd, items with their names, n): each entry is prepared by the walk
 * when it reaches it, or by the helper ahead of it when the folder is large. job_entry returns
 * entry i prepared; job_entry_done frees it once written; job_end after the last. */
void job_begin(struct job *job);
struct item *job_entry(struct job *job, size_t i);
void job_entry_done(struct job *job, size_t i);
void job_end(struct job *job);

#endif
