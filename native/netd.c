/*
 * slipway-netd: the default network of RUN steps, one resident process for many steps.
 *
 *   slipway-netd --socket NAME [--uid UID --gid GID]
 *
 * A step's network namespace gets a tap device, made and configured by the shim (10.0.2.100/24,
 * default route via 10.0.2.2, as slirp4netns --configure does). The shim connects to the abstract
 * unix socket NAME and passes the tap's fd; this process gives that tap its own user-mode network
 * stack (libslirp): outbound TCP and UDP become this process's sockets on the host, DNS to
 * 10.0.2.3 is forwarded to the host's resolvers, and 10.0.2.2 is not the host's loopback
 * (disable_host_loopback). Each tap has its own stack and nothing is shared between them: a step
 * sees only its own traffic. The stack goes when the shim's connection closes (the step's
 * namespace holder is gone).
 *
 * Why: slirp4netns is a process per step, dynamically linked, that forks itself after loading
 * its libraries; on VMs where page-table updates are slow that is about 10 ms of CPU per step,
 * on machines with two cores competing with the step itself. Here a step costs an accept, a
 * recvmsg and slirp_new.
 *
 * Privileges: only the bind needs root (none really: the name is abstract); right after it the
 * process drops to UID/GID (default 65534, nobody), with no capabilities, no supplementary
 * groups and no_new_privs, and a seccomp filter then refuses (EPERM) what a process carrying
 * hostile traffic has no use for: exec, ptrace and reading other processes' memory, namespaces
 * (unshare, setns, a clone with a namespace flag: unprivileged user namespaces would hand an
 * attacker capabilities), mounts, bpf, perf, userfaultfd, io_uring, keys and modules. Only a peer whose uid is 0 in this process's user namespace (the
 * shim) is served. It exits when stdin reaches end of file (its parent, which holds the other
 * end, is gone) and with its parent (PR_SET_PDEATHSIG). On stdout it writes "ready\n" once it
 * listens.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>
#include <seccomp.h>
#include <slirp/libslirp.h>

#define MAX_SESSIONS 256
#define MAX_TIMERS 32
#define FRAME_MAX 65536 + 64

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("slipway-netd: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

struct timer {
  int active;
  int64_t expire_ms;
  SlirpTimerCb cb;
  void *cb_opaque;
};

/* One step's network: its tap, the shim's connection, and its own slirp stack. */
struct session {
  int used;
  int dead;
  int ctl;
  int tap;
  Slirp *slirp;
  struct timer timers[MAX_TIMERS];
  int first_fd, nfds; /* this session's slice of the pollfd array, filled by libslirp */
};

static struct session sessions[MAX_SESSIONS];
static struct pollfd *fds;
static size_t nfds, capfds;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque) {
  struct session *s = opaque;
  ssize_t n = write(s->tap, buf, len);
  /* A full tap queue drops the frame, as a network would; TCP resends. */
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return (ssize_t)len;
  return n;
}

static void cb_guest_error(const char *msg, void *opaque) { (void)msg; (void)opaque; }
static int64_t cb_clock_get_ns(void *opaque) { (void)opaque; return now_ns(); }

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque) {
  struct session *s = opaque;
  for (int i = 0; i < MAX_TIMERS; i++) {
    struct timer *t = &s->timers[i];
    if (t->cb == NULL) {
      t->cb = cb;
      t->cb_opaque = cb_opaque;
      t->active = 0;
      return t;
    }
  }
  fail("out of timers");
  return NULL;
}

static void cb_timer_free(void *timer, void *opaque) {
  (void)opaque;
  memset(timer, 0, sizeof(struct timer));
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque) {
  (void)opaque;
  struct timer *t = timer;
  t->active = 1;
  t->expire_ms = expire_ms;
}

static void cb_register_poll_fd(int fd, void *opaque) { (void)fd; (void)opaque; }
static void cb_unregister_poll_fd(int fd, void *opaque) { (void)fd; (void)opaque; }
static void cb_notify(void *opaque) { (void)opaque; }

static const SlirpCb callbacks = {
  .send_packet = cb_send_packet,
  .guest_error = cb_guest_error,
  .clock_get_ns = cb_clock_get_ns,
  .timer_new = cb_timer_new,
  .timer_free = cb_timer_free,
  .timer_mod = cb_timer_mod,
  .register_poll_fd = cb_register_poll_fd,
  .unregister_poll_fd = cb_unregister_poll_fd,
  .notify = cb_notify,
};

/* The network slirp4netns gives by default: 10.0.2.0/24, the host alias .2, DNS .3, IPv4 only. */
static Slirp *new_stack(struct session *s) {
  SlirpConfig c;
  memset(&c, 0, sizeof c);
  c.version = 3;
  c.restricted = 0;
  c.in_enabled = true;
  inet_pton(AF_INET, "10.0.2.0", &c.vnetwork);
  inet_pton(AF_INET, "255.255.255.0", &c.vnetmask);
  inet_pton(AF_INET, "10.0.2.2", &c.vhost);
  inet_pton(AF_INET, "10.0.2.15", &c.vdhcp_start);
  inet_pton(AF_INET, "10.0.2.3", &c.vnameserver);
  c.in6_enabled = false;
  c.if_mtu = 65520;
  c.if_mru = 65520;
  c.disable_host_loopback = true;
  c.enable_emu = false;
  c.disable_dns = false;
  return slirp_new(&c, &callbacks, s);
}

static size_t add_fd(int fd, short events) {
  if (nfds == capfds) {
    capfds = capfds ? capfds * 2 : 64;
    fds = realloc(fds, capfds * sizeof *fds);
    if (fds == NULL) fail("out of memory");
  }
  fds[nfds] = (struct pollfd){.fd = fd, .events = events, .revents = 0};
  return nfds++;
}

/* libslirp's poll events and poll(2)'s, pair by pair. */
static const struct { int slirp; short poll; } EVENTS[] = {
  {SLIRP_POLL_IN, POLLIN}, {SLIRP_POLL_OUT, POLLOUT}, {SLIRP_POLL_PRI, POLLPRI}, {SLIRP_POLL_ERR, POLLERR}, {SLIRP_POLL_HUP, POLLHUP},
};

static int cb_add_poll(int fd, int events, void *opaque) {
  (void)opaque;
  short e = 0;
  for (size_t i = 0; i < sizeof EVENTS / sizeof EVENTS[0]; i++) if (events & EVENTS[i].slirp) e |= EVENTS[i].poll;
  return (int)add_fd(fd, e);
}

static int cb_get_revents(int idx, void *opaque) {
  (void)opaque;
  int e = 0;
  for (size_t i = 0; i < sizeof EVENTS / sizeof EVENTS[0]; i++) if (fds[idx].revents & EVENTS[i].poll) e |= EVENTS[i].slirp;
  return e;
}

/* A shim's connection: one byte with the tap's fd. Replies 'k' once the stack is up. */
static void accept_session(int lfd) {
  int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (c < 0) return;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != 0) { close(c); return; }
  /* The shim sends at once; a peer that does not is dropped rather than waited for. */
  struct pollfd p = {.fd = c, .events = POLLIN};
  if (poll(&p, 1, 2000) != 1) { close(c); return; }
  char byte;
  char ctrl[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
  ssize_t n = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
  struct cmsghdr *h = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
  if (h == NULL || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS || h->cmsg_len != CMSG_LEN(sizeof(int))) {
    close(c);
    return;
  }
  int tap;
  memcpy(&tap, CMSG_DATA(h), sizeof tap);
  struct session *s = NULL;
  for (int i = 0; i < MAX_SESSIONS && s == NULL; i++) if (!sessions[i].used) s = &sessions[i];
  if (s == NULL) { close(tap); close(c); return; }
  memset(s, 0, sizeof *s);
  s->used = 1;
  s->ctl = c;
  s->tap = tap;
  fcntl(tap, F_SETFL, fcntl(tap, F_GETFL) | O_NONBLOCK);
  s->slirp = new_stack(s);
  if (s->slirp == NULL || write(c, "k", 1) != 1) s->dead = 1;
}

static void end_session(struct session *s) {
  if (s->slirp) slirp_cleanup(s->slirp);
  close(s->tap);
  close(s->ctl);
  memset(s, 0, sizeof *s);
}

/* Frames from the step, each read one frame, until the tap is empty (or a burst is done). */
static void read_tap(struct session *s) {
  static uint8_t frame[FRAME_MAX];
  for (int i = 0; i < 64; i++) {
    ssize_t n = read(s->tap, frame, sizeof frame);
    if (n > 0) { slirp_input(s->slirp, frame, (int)n); continue; }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    s->dead = 1;
    return;
  }
}

static int64_t next_timer_ms(void) {
  int64_t next = -1;
  for (int i = 0; i < MAX_SESSIONS; i++) {
    if (!sessions[i].used) continue;
    for (int j = 0; j < MAX_TIMERS; j++) {
      struct timer *t = &sessions[i].timers[j];
      if (t->cb && t->active && (next < 0 || t->expire_ms < next)) next = t->expire_ms;
    }
  }
  return next;
}

static void run_timers(void) {
  int64_t now = now_ns() / 1000000;
  for (int i = 0; i < MAX_SESSIONS; i++) {
    struct session *s = &sessions[i];
    if (!s->used || s->dead) continue;
    for (int j = 0; j < MAX_TIMERS; j++) {
      struct timer *t = &s->timers[j];
      if (t->cb && t->active && t->expire_ms <= now) {
        t->active = 0;
        t->cb(t->cb_opaque);
      }
    }
  }
}

static void drop_privileges(uid_t uid, gid_t gid) {
  if (getuid() != 0) return;
  if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) fail("drop to %u:%u: %s", uid, gid, strerror(errno));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("no_new_privs: %s", strerror(errno));
}

/* The syscalls refused once the daemon listens (see the header). */
static void confine(void) {
  static const int refused[] = {
    SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
    SCMP_SYS(unshare), SCMP_SYS(setns), SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot),
    SCMP_SYS(fsopen), SCMP_SYS(fsmount), SCMP_SYS(fspick), SCMP_SYS(open_tree), SCMP_SYS(move_mount), SCMP_SYS(mount_setattr),
    SCMP_SYS(bpf), SCMP_SYS(perf_event_open), SCMP_SYS(userfaultfd), SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register), SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key), SCMP_SYS(init_module),
    SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load),
    SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at), SCMP_SYS(personality), SCMP_SYS(setuid), SCMP_SYS(setgid),
    SCMP_SYS(setresuid), SCMP_SYS(setresgid), SCMP_SYS(setgroups), SCMP_SYS(memfd_create),
  };
  static const unsigned long ns_flags[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};
  scmp_filter_ctx c = seccomp_init(SCMP_ACT_ALLOW);
  if (c == NULL) fail("seccomp_init");
  int r = 0;
  for (size_t i = 0; i < sizeof refused / sizeof refused[0] && r == 0; i++) r = seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), refused[i], 0);
  for (size_t i = 0; i < sizeof ns_flags / sizeof ns_flags[0] && r == 0; i++) {
    r = seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
  }
  /* clone3's flags are behind a pointer: refused as unknown, so a caller falls back to clone. */
  if (r == 0) r = seccomp_rule_add(c, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (r == 0) r = seccomp_load(c);
  if (r != 0) fail("seccomp: %s", strerror(-r));
  seccomp_release(c);
}

static int listen_on(const char *name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) fail("socket: %s", strerror(errno));
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  size_t len = strlen(name);
  if (len == 0 || len + 1 >= sizeof a.sun_path) fail("bad socket name");
  memcpy(a.sun_path + 1, name, len); /* abstract: sun_path[0] is 0 */
  if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0) fail("bind @%s: %s", name, strerror(errno));
  if (listen(fd, 64) < 0) fail("listen: %s", strerror(errno));
  return fd;
}

int main(int argc, char **argv) {
  const char *name = NULL;
  uid_t uid = 65534;
  gid_t gid = 65534;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) fail("%s needs a value", argv[i]);
    if (!strcmp(argv[i], "--socket")) name = argv[++i];
    else if (!strcmp(argv[i], "--uid")) uid = (uid_t)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--gid")) gid = (gid_t)strtoul(argv[++i], NULL, 10);
    else fail("unknown option %s", argv[i]);
  }
  if (name == NULL) fail("usage: slipway-netd --socket NAME [--uid UID --gid GID]");
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;
  /* Each connection a step opens is a socket here: allow as many as the hard limit does. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  signal(SIGPIPE, SIG_IGN);
  int lfd = listen_on(name);
  drop_privileges(uid, gid);
  confine();
  if (write(1, "ready\n", 6) != 6) return 1;
  for (;;) {
    nfds = 0;
    add_fd(0, POLLIN);
    add_fd(lfd, POLLIN);
    uint32_t timeout = 1000;
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (!s->used) continue;
      add_fd(s->ctl, POLLIN);
      add_fd(s->tap, POLLIN);
      s->first_fd = (int)nfds;
      slirp_pollfds_fill(s->slirp, &timeout, cb_add_poll, s);
      s->nfds = (int)nfds - s->first_fd;
    }
    int64_t t = next_timer_ms();
    if (t >= 0) {
      int64_t left = t - now_ns() / 1000000;
      if (left < 0) left = 0;
      if (left < timeout) timeout = (uint32_t)left;
    }
    int r = poll(fds, nfds, (int)timeout);
    if (r < 0 && errno != EINTR) fail("poll: %s", strerror(errno));
    if (r > 0 && fds[0].revents) {
      char b[64];
      ssize_t n = read(0, b, sizeof b);
      if (n <= 0) return 0; /* the parent is gone */
    }
    if (r > 0 && (fds[1].revents & POLLIN)) accept_session(lfd);
    /* Walk sessions in the order they were added; sessions accepted just now have no slice. */
    size_t k = 2;
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (!s->used || k >= nfds || fds[k].fd != s->ctl || s->first_fd == 0) continue;
      short ctl = r > 0 ? fds[k].revents : 0, tap = r > 0 ? fds[k + 1].revents : 0;
      k += 2 + (size_t)s->nfds;
      if (ctl) s->dead = 1; /* the shim never writes after the fd: anything is its end */
      if (!s->dead && (tap & (POLLERR | POLLHUP | POLLNVAL))) s->dead = 1;
      if (!s->dead && (tap & POLLIN)) read_tap(s);
      if (!s->dead) slirp_pollfds_poll(s->slirp, r < 0, cb_get_revents, s);
    }
    run_timers();
    for (int i = 0; i < MAX_SESSIONS; i++) {
      if (sessions[i].used && sessions[i].dead) end_session(&sessions[i]);
      else if (sessions[i].used) sessions[i].first_fd = 0;
    }
  }
}
