/*
 * slipway-console: the terminal of a container whose client is not a terminal (docker run -t
 * through `slipway serve`). The OCI runtime makes the container's pty and hands its master end
 * over a unix socket (--console-socket); Node cannot receive a file descriptor, so this does:
 *
 *   slipway-console SOCKET CTLFD -- COMMAND [ARG]...
 *
 * It listens on SOCKET (made mode 0666: the caller puts it in a folder only the container's
 * root can enter), runs COMMAND (the shim, which runs the runtime with --console-socket
 * SOCKET), takes the master from the first connection, then relays stdin to the master and
 * the master to stdout until the container's side is closed. Lines "ROWS COLS\n" on CTLFD set
 * the window size (the kernel sends SIGWINCH into the container). Signals are forwarded to
 * COMMAND; it exits with COMMAND's status, and dies with its parent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static volatile pid_t child = 0;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

static int code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 125;
}

static int listen_on(const char *path) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a.sun_path) { fprintf(stderr, "slipway-console: socket path too long\n"); exit(125); }
  strcpy(a.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || chmod(path, 0666) < 0 || listen(s, 1) < 0) {
    fprintf(stderr, "slipway-console: listen %s: %s\n", path, strerror(errno));
    exit(125);
  }
  return s;
}

/* The fd carried by one SCM_RIGHTS message, or -1. */
static int receive_fd(int conn) {
  char data[256];
  char ctl[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {data, sizeof data};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  if (recvmsg(conn, &m, MSG_CMSG_CLOEXEC) < 0) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

/* Waits for the runtime's connection; -1 when COMMAND ended first (its status in *status). */
static int accept_master(int s, int *status) {
  for (;;) {
    struct pollfd p = {s, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r > 0) {
      int conn = accept4(s, NULL, NULL, SOCK_CLOEXEC);
      if (conn < 0) continue;
      int fd = receive_fd(conn);
      close(conn);
      if (fd >= 0) return fd;
      continue;
    }
    if (waitpid(child, status, WNOHANG) == child) return -1;
  }
}

static int write_all(int fd, const char *b, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, b, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= w;
  }
  return 0;
}

/* "ROWS COLS" lines set the pty's size. */
static void control(int ctl, int master, char *line, size_t *len) {
  ssize_t n = read(ctl, line + *len, 63 - *len);
  if (n <= 0) return;
  *len += (size_t)n;
  line[*len] = 0;
  char *nl;
  while ((nl = strchr(line, '\n')) != NULL) {
    unsigned rows = 0, cols = 0;
    if (sscanf(line, "%u %u", &rows, &cols) == 2 && rows > 0 && cols > 0 && rows < 10000 && cols < 10000) {
      struct winsize ws = {(unsigned short)rows, (unsigned short)cols, 0, 0};
      ioctl(master, TIOCSWINSZ, &ws);
    }
    size_t used = (size_t)(nl - line) + 1;
    memmove(line, nl + 1, *len - used + 1);
    *len -= used;
  }
  if (*len >= 63) *len = 0; /* a line too long is dropped */
}

static void relay(int master, int ctl) {
  char buf[16384];
  char line[64];
  size_t len = 0;
  int in_open = 1;
  for (;;) {
    struct pollfd p[3] = {{master, POLLIN, 0}, {in_open ? 0 : -1, POLLIN, 0}, {ctl, POLLIN, 0}};
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return; /* EIO: every slave end is closed, the container is gone */
      if (write_all(1, buf, n) < 0) return;
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) in_open = 0;
      else if (write_all(master, buf, n) < 0) return;
    }
    if (ctl >= 0 && (p[2].revents & POLLIN)) control(ctl, master, line, &len);
    else if (ctl >= 0 && (p[2].revents & (POLLHUP | POLLERR))) ctl = -1;
  }
}

int main(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: slipway-console SOCKET CTLFD -- COMMAND [ARG]...\n");
    return 125;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 125;
  int ctl = atoi(argv[2]);
  if (ctl >= 0) fcntl(ctl, F_SETFD, FD_CLOEXEC);
  int s = listen_on(argv[1]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  child = fork();
  if (child < 0) return 125;
  if (child == 0) {
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    execvp(argv[4], argv + 4);
    fprintf(stderr, "slipway-console: exec %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  int status = 0;
  int master = accept_master(s, &status);
  close(s);
  unlink(argv[1]);
  if (master < 0) return code_of(status);
  relay(master, ctl);
  close(master);
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  return code_of(status);
}
