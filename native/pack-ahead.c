/* slipway-pack's read-ahead. A layer's pack is system calls per entry (lstat, the owner mapped
 * back, open, read, close), about 12 us each on this VM's 2 cores, and the tar needs them in
 * order. The walk prepares each entry as it reaches it; in a folder of PARALLEL_MIN entries or
 * more, a helper thread prepares the next ones ahead of it (at most WINDOW ahead, at most
 * AHEAD_BYTES of file content held), so the two cores share the calls while the walk writes and
 * hashes in order. Whatever fails is recorded and reported by the walk, in order, so the result
 * and the messages are those of a walk alone.
 *
 * An entry is claimed by one thread (state FREE -> CLAIMED) and published READY; the walk waits
 * for an entry the helper holds (CLAIMED -> WAITED, futex). The helper takes entries only from
 * the current job, under `lock`; a job is current from job_begin to job_end, and the walk ends
 * it only after every entry is READY, so the helper never touches a finished job. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "pack.h"

#define PARALLEL_MIN 64
#define WINDOW 512
#define READ_AHEAD_MAX (16 << 10)
#define AHEAD_BYTES (16 << 20)

enum { FREE, CLAIMED, WAITED, READY };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t owners_mu = PTHREAD_MUTEX_INITIALIZER;
static struct job *current;     /* the helper's job (under lock) */
static struct job *walk_current; /* the innermost large folder of the walk (its thread only) */
static int helper_started;
static atomic_int helper_idle;
static atomic_size_t wake_at;
static atomic_size_t ahead_bytes;

void owners_lock(void) { pthread_mutex_lock(&owners_mu); }
void owners_unlock(void) { pthread_mutex_unlock(&owners_mu); }

static int fail(struct item *it, const char *what) {
  it->failed = what;
  it->err = errno;
  return -1;
}

/* A small file's whole content: st_size bytes and then its end (a short read of a regular
 * file is its end; one byte more is asked for, so a file that grew is seen by the same call). */
static void read_body(int dirfd, struct item *it) {
  size_t size = (size_t)it->st.st_size;
  size_t held = atomic_fetch_add(&ahead_bytes, size) + size;
  if (held > AHEAD_BYTES) { atomic_fetch_sub(&ahead_bytes, size); return; }
  it->body_reserved = size;
  int fd = openat(dirfd, it->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) { fail(it, "cannot open"); return; }
  unsigned char *body = malloc(size + 1);
  if (!body) { errno = ENOMEM; fail(it, "cannot read"); close(fd); return; }
  size_t got = 0;
  for (;;) {
    size_t want = size + 1 - got;
    ssize_t n = read(fd, body + got, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { fail(it, "cannot read"); break; }
    got += (size_t)n;
    if ((size_t)n < want || got == size + 1) break;
  }
  close(fd);
  it->body = body;
  if (!it->failed && got != size) it->body_changed = 1;
}

static void prepare(int dirfd, struct item *it) {
  if (fstatat(dirfd, it->name, &it->st, AT_SYMLINK_NOFOLLOW) != 0) { fail(it, "cannot lstat"); return; }
  const char *what;
  if (map_owner_back(dirfd, it->name, &it->st, &what) != 0) { fail(it, what); return; }
  if (S_ISREG(it->st.st_mode) && it->st.st_size > 0 && it->st.st_size <= READ_AHEAD_MAX) {
    read_body(dirfd, it);
  } else if (S_ISLNK(it->st.st_mode)) {
    char *t = malloc(4097);
    if (!t) { errno = ENOMEM; fail(it, "cannot read the link"); return; }
    ssize_t n = readlinkat(dirfd, it->name, t, 4096);
    if (n < 0) { free(t); fail(it, "cannot read the link"); return; }
    t[n] = 0;
    it->target = t;
  }
}

static void publish(struct item *it) {
  if (atomic_exchange(&it->state, READY) == WAITED) syscall(SYS_futex, &it->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The helper's next entry of the current job, claimed; WINDOW bounds how far ahead it runs. */
static size_t claim(struct job *job) {
  size_t limit = atomic_load(&job->written) + WINDOW;
  if (limit > job->n) limit = job->n;
  for (; job->scan < limit; job->scan++) {
    int free_state = FREE;
    if (atomic_compare_exchange_strong(&job->items[job->scan].state, &free_state, CLAIMED)) return job->scan++;
  }
  return (size_t)-1;
}

static void *helper(void *unused) {
  (void)unused;
  pthread_mutex_lock(&lock);
  for (;;) {
    struct job *job = current;
    size_t i = job ? claim(job) : (size_t)-1;
    if (i == (size_t)-1) {
      /* Woken by a new job, or once the walk has written a quarter of the window more. */
      atomic_store(&wake_at, job ? atomic_load(&job->written) + WINDOW / 4 : (size_t)-1);
      atomic_store(&helper_idle, 1);
      pthread_cond_wait(&wake, &lock);
      atomic_store(&helper_idle, 0);
      continue;
    }
    int dirfd = job->dirfd;
    struct item *it = &job->items[i];
    pthread_mutex_unlock(&lock);
    prepare(dirfd, it);
    publish(it);
    pthread_mutex_lock(&lock);
  }
  return NULL;
}

static void make_current(struct job *job) {
  pthread_mutex_lock(&lock);
  current = job;
  if (job) pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
}

void job_begin(struct job *job) {
  job->scan = 0;
  atomic_store(&job->written, 0);
  for (size_t i = 0; i < job->n; i++) atomic_init(&job->items[i].state, FREE);
  /* A small folder is not handed over: the helper goes on ahead in the enclosing one. */
  if (job->n < PARALLEL_MIN) return;
  if (!helper_started) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    /* Without a helper the walk prepares every entry itself: the same result, one core. */
    if (pthread_create(&t, &attr, helper, NULL) == 0) helper_started = 1;
    pthread_attr_destroy(&attr);
  }
  job->outer = walk_current;
  walk_current = job;
  make_current(job);
}

/* Prepares the first free entry of job after i, if there is one within the window. */
static int help_ahead(struct job *job, size_t i) {
  size_t limit = i + WINDOW < job->n ? i + WINDOW : job->n;
  for (size_t j = i + 1; j < limit; j++) {
    struct item *it = &job->items[j];
    int state = atomic_load(&it->state);
    if (state != FREE) continue;
    if (!atomic_compare_exchange_strong(&it->state, &state, CLAIMED)) continue;
    prepare(job->dirfd, it);
    atomic_store(&it->state, READY);
    return 1;
  }
  return 0;
}

struct item *job_entry(struct job *job, size_t i) {
  struct item *it = &job->items[i];
  for (;;) {
    int state = FREE;
    if (atomic_compare_exchange_strong(&it->state, &state, CLAIMED)) {
      prepare(job->dirfd, it);
      atomic_store(&it->state, READY);
      return it;
    }
    if (state == READY) return it;
    /* The helper holds it: prepare a later one meanwhile, rather than wait. */
    if (!help_ahead(job, i)) break;
  }
  int state = atomic_load(&it->state);
  while (state != READY) {
    if (state == CLAIMED && !atomic_compare_exchange_strong(&it->state, &state, WAITED)) continue;
    syscall(SYS_futex, &it->state, FUTEX_WAIT_PRIVATE, WAITED, NULL, NULL, 0);
    state = atomic_load(&it->state);
  }
  return it;
}

void job_entry_done(struct job *job, size_t i) {
  struct item *it = &job->items[i];
  if (it->body_reserved) atomic_fetch_sub(&ahead_bytes, it->body_reserved);
  free(it->body);
  free(it->target);
  free(it->name);
  size_t written = i + 1;
  atomic_store(&job->written, written);
  if (job == walk_current && atomic_load(&helper_idle) && written >= atomic_load(&wake_at)) {
    pthread_mutex_lock(&lock);
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
  }
}

void job_end(struct job *job) {
  if (job->n < PARALLEL_MIN) return;
  /* Every entry is READY (each was written): the helper holds none of this job. */
  walk_current = job->outer;
  make_current(walk_current);
}
