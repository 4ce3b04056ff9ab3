/*
 * slipway-spawner: starts the shims of one Node thread, so that Node need not fork itself for
 * every step. Forking a Node process copies its page tables and blocks the calling thread until
 * the child has exec'd (several milliseconds per step, more with a large heap); this process is
 * small, and forks on request.
 *
 *   slipway-spawner            (requests on stdin, replies on stdout; started once per thread)
 *
 * Request frames (little-endian): u32 length of the rest, then u8 op, u32 id, and
 *   op 'S' spawn: u8 flags (1: stdin is a pipe this process keeps open until the child exits,
 *                 else /dev/null), then argv as NUL-terminated strings (argv[0] an absolute path)
 *   op 'K' kill:  u32 signal, sent to child `id` unless it has already been reaped
 *   op 'Y' sync:  a path (NUL-terminated); syncfs(2) on its filesystem, in this process (no
 *                 child): 'X' 0 when done, 'F' if it failed. (A step's layer is synced so,
 *                 beside its pack: a process per step would cost more than the sync of a small
 *                 layer.) The syncs run in order on a thread of their own, so that a long one
 *                 holds up neither the children's output and exits nor the other requests.
 * Reply frames: u32 id, u8 kind, u32 length, data:
 *   'P' the child's pid (decimal)       'F' the spawn failed (message); nothing more follows
 *   'O' / 'E' a chunk of its stdout / stderr        'T' a chunk of what it wrote on fd 3
 *   'X' it has exited and its stdout, stderr and fd 3 are closed: its status (decimal; 128+N
 *       for signal N), the last frame for that id
 * The child gets fds 0-3 and nothing else, an empty signal mask and default signal handlers,
 * and this process's environment. This process dies with the thread that started it
 * (PR_SET_PDEATHSIG), and kills its children when its stdin closes; the shims die with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 256
#define MAX_REQUEST (1 << 20)
#define STREAMS 3

extern char **environ;

struct child {
  int used;
  uint32_t id;
  pid_t pid;
  int reaped;
  int status;
  int fds[STREAMS]; /* read ends of its stdout, stderr and fd 3; -1 once at EOF */
  int stdin_fd;     /* write end of its stdin pipe, or -1 */
};

static struct child children[MAX_CHILDREN];
static const char KINDS[STREAMS] = {'O', 'E', 'T'};

static void write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(1); /* Node is gone: PR_SET_PDEATHSIG finishes the rest */
    p += w;
    n -= (size_t)w;
  }
}

/* Frames go out whole: the sync thread replies too. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void reply(uint32_t id, char kind, const void *data, uint32_t len) {
  unsigned char head[9];
  memcpy(head, &id, 4);
  head[4] = (unsigned char)kind;
  memcpy(head + 5, &len, 4);
  pthread_mutex_lock(&out_lock);
  write_all(1, head, sizeof head);
  if (len) write_all(1, data, len);
  pthread_mutex_unlock(&out_lock);
}

static void reply_num(uint32_t id, char kind, long value) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld", value);
  reply(id, kind, buf, (uint32_t)n);
}

/* 'F' with "what: strerror(errno)". */
static void reply_errno(uint32_t id, const char *what) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "%s: %s", what, strerror(errno));
  reply(id, 'F', buf, (uint32_t)(n >= (int)sizeof buf ? (int)sizeof buf - 1 : n));
}

static struct child *find(uint32_t id) {
  for (int i = 0; i < MAX_CHILDREN; i++) if (children[i].used && children[i].id == id) return &children[i];
  return NULL;
}

/* In the child: fds 0-3 in place, everything else closed, signals as new, then exec. */
static void exec_child(char **argv, int in, const int out[STREAMS], int err_fd) {
  /* An ignored signal stays ignored across exec (this process ignores SIGPIPE): all to default. */
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (dup2(in, 0) < 0 || dup2(out[0], 1) < 0 || dup2(out[1], 2) < 0 || dup2(out[2], 3) < 0) goto fail;
  /* Every other fd of ours is close-on-exec already; this also covers any inherited without it. */
  if (err_fd > 4) syscall(SYS_close_range, 4U, (unsigned)err_fd - 1, 0U);
  syscall(SYS_close_range, (unsigned)err_fd + 1, ~0U, 0U);
  execve(argv[0], argv, environ);
fail:;
  int e = errno;
  write_all(err_fd, &e, sizeof e);
  _exit(127);
}

static void spawn_child(uint32_t id, int keep_stdin, char **argv) {
  struct child *c = NULL;
  for (int i = 0; i < MAX_CHILDREN && !c; i++) if (!children[i].used) c = &children[i];
  if (!c) { errno = EAGAIN; reply_errno(id, "too many children"); return; }
  int pipes[STREAMS][2], in[2] = {-1, -1}, err[2];
  for (int s = 0; s < STREAMS; s++) if (pipe2(pipes[s], O_CLOEXEC) < 0) { reply_errno(id, "pipe"); return; }
  /* (A failed pipe leaks the ones before it; at that point fds are exhausted and Node gives up.) */
  if (keep_stdin ? pipe2(in, O_CLOEXEC) < 0 : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    reply_errno(id, "stdin");
    return;
  }
  if (pipe2(err, O_CLOEXEC) < 0) { reply_errno(id, "pipe"); return; }
  int out[STREAMS] = {pipes[0][1], pipes[1][1], pipes[2][1]};
  /* vfork: the child only makes system calls before its exec (see exec_child). */
  pid_t pid = vfork();
  if (pid == 0) exec_child(argv, in[0], out, err[1]);
  int fork_errno = errno;
  for (int s = 0; s < STREAMS; s++) close(pipes[s][1]);
  close(in[0]);
  close(err[1]);
  int child_errno = 0;
  ssize_t n = pid < 0 ? 0 : read(err[0], &child_errno, sizeof child_errno);
  close(err[0]);
  if (pid < 0 || n > 0) {
    if (pid > 0) waitpid(pid, NULL, 0);
    for (int s = 0; s < STREAMS; s++) close(pipes[s][0]);
    if (in[1] >= 0) close(in[1]);
    char msg[4200];
    snprintf(msg, sizeof msg, "cannot start %s: %s", argv[0], strerror(pid < 0 ? fork_errno : child_errno));
    reply(id, 'F', msg, (uint32_t)strlen(msg));
    return;
  }
  *c = (struct child){1, id, pid, 0, 0, {pipes[0][0], pipes[1][0], pipes[2][0]}, in[1]};
  reply_num(id, 'P', (long)pid);
}

/* Sync requests, oldest first, for the sync thread (started with the first). */
struct sync_req { struct sync_req *next; uint32_t id; char path[]; };
static struct sync_req *sync_head, *sync_tail;
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cond = PTHREAD_COND_INITIALIZER;

static void *sync_thread(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&sync_lock);
    while (!sync_head) pthread_cond_wait(&sync_cond, &sync_lock);
    struct sync_req *r = sync_head;
    sync_head = r->next;
    if (!sync_head) sync_tail = NULL;
    pthread_mutex_unlock(&sync_lock);
    int fd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) != 0) reply_errno(r->id, "syncfs");
    else reply_num(r->id, 'X', 0);
    if (fd >= 0) close(fd);
    free(r);
  }
  return NULL;
}

static void queue_sync(uint32_t id, const char *path) {
  static int started;
  size_t n = strlen(path) + 1;
  struct sync_req *r = malloc(sizeof *r + n);
  if (!r) { reply_errno(id, "syncfs"); return; }
  if (!started) {
    /* Signals stay with the main loop: this thread inherits its mask (SIGCHLD blocked). */
    pthread_t t;
    if (pthread_create(&t, NULL, sync_thread, NULL) != 0) { free(r); errno = EAGAIN; reply_errno(id, "syncfs thread"); return; }
    started = 1;
  }
  r->next = NULL;
  r->id = id;
  memcpy(r->path, path, n);
  pthread_mutex_lock(&sync_lock);
  if (sync_tail) sync_tail->next = r;
  else sync_head = r;
  sync_tail = r;
  pthread_cond_signal(&sync_cond);
  pthread_mutex_unlock(&sync_lock);
}

/* A request: spawn or kill. Returns -1 on a malformed one. */
static int handle(const unsigned char *req, uint32_t len) {
  if (len < 5) return -1;
  uint32_t id;
  memcpy(&id, req + 1, 4);
  if (req[0] == 'K') {
    uint32_t sig;
    if (len < 9) return -1;
    memcpy(&sig, req + 5, 4);
    struct child *c = find(id);
    if (c && !c->reaped) kill(c->pid, (int)sig);
    return 0;
  }
  if (req[0] == 'Y') {
    if (len < 6 || req[len - 1] != 0) return -1;
    queue_sync(id, (const char *)req + 5);
    return 0;
  }
  if (req[0] != 'S' || len < 7 || req[len - 1] != 0) return -1;
  static char *argv[4096];
  int argc = 0;
  for (uint32_t i = 6; i < len && argc < 4095; i += (uint32_t)strlen((const char *)req + i) + 1) argv[argc++] = (char *)req + i;
  argv[argc] = NULL;
  if (argc == 0 || argv[0][0] != '/') { errno = EINVAL; reply_errno(id, "bad command"); return 0; }
  spawn_child(id, req[5] & 1, argv);
  return 0;
}

/* Sends 'X' for a child that has exited and closed its outputs, and forgets it. */
static void finish_if_done(struct child *c) {
  if (!c->reaped) return;
  for (int s = 0; s < STREAMS; s++) if (c->fds[s] >= 0) return;
  if (c->stdin_fd >= 0) close(c->stdin_fd);
  int code = WIFEXITED(c->status) ? WEXITSTATUS(c->status) : WIFSIGNALED(c->status) ? 128 + WTERMSIG(c->status) : 125;
  reply_num(c->id, 'X', code);
  c->used = 0;
}

static void reap(void) {
  int status;
  pid_t p;
  while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_CHILDREN; i++) {
      struct child *c = &children[i];
      if (!c->used || c->pid != p) continue;
      c->reaped = 1;
      c->status = status;
      /* Its stdin is for holding it alive; closed now, nobody waits on it. */
      if (c->stdin_fd >= 0) { close(c->stdin_fd); c->stdin_fd = -1; }
      finish_if_done(c);
    }
  }
}

/* Reads requests from stdin into `buf`; returns 0 at EOF. */
static int read_requests(unsigned char *buf, size_t *have) {
  ssize_t n = read(0, buf + *have, MAX_REQUEST + 4 - *have);
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return 0;
  *have += (size_t)n;
  for (;;) {
    uint32_t len;
    if (*have < 4) break;
    memcpy(&len, buf, 4);
    if (len > MAX_REQUEST) _exit(2);
    if (*have < 4 + (size_t)len) break;
    if (handle(buf + 4, len) < 0) _exit(2);
    memmove(buf, buf + 4 + len, *have - 4 - len);
    *have -= 4 + len;
  }
  return 1;
}

static void kill_all(void) {
  for (int i = 0; i < MAX_CHILDREN; i++) if (children[i].used && !children[i].reaped) kill(children[i].pid, SIGKILL);
}

int main(void) {
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent || parent == 1) return 1;
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  static unsigned char buf[MAX_REQUEST + 4];
  size_t have = 0;
  static struct pollfd pfds[2 + MAX_CHILDREN * STREAMS];
  static struct child *owner[2 + MAX_CHILDREN * STREAMS];
  static int stream[2 + MAX_CHILDREN * STREAMS];
  for (;;) {
    int n = 0;
    pfds[n++] = (struct pollfd){0, POLLIN, 0};
    pfds[n++] = (struct pollfd){sfd, POLLIN, 0};
    for (int i = 0; i < MAX_CHILDREN; i++) {
      for (int s = 0; s < STREAMS && children[i].used; s++) {
        if (children[i].fds[s] < 0) continue;
        owner[n] = &children[i];
        stream[n] = s;
        pfds[n++] = (struct pollfd){children[i].fds[s], POLLIN, 0};
      }
    }
    if (poll(pfds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (pfds[0].revents && !read_requests(buf, &have)) { kill_all(); return 0; }
    if (pfds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap();
    }
    for (int i = 2; i < n; i++) {
      if (!pfds[i].revents) continue;
      struct child *c = owner[i];
      int s = stream[i];
      if (!c->used || c->fds[s] != pfds[i].fd) continue;
      static char chunk[65536];
      ssize_t r = read(c->fds[s], chunk, sizeof chunk);
      if (r > 0) { reply(c->id, KINDS[s], chunk, (uint32_t)r); continue; }
      if (r < 0 && errno == EINTR) continue;
      close(c->fds[s]);
      c->fds[s] = -1;
      finish_if_done(c);
    }
  }
}
