/*
 * slipway-shim: the host side of one sandboxed step. It is what Node cannot do without a
 * native addon: join cgroups, make namespaces, idmapped mounts and the overlay, and be pid 1
 * of a pid namespace so that everything it starts dies with it.
 *
 *   slipway-shim [OPTIONS] -- COMMAND [ARG]...
 *
 * The process tree, and why:
 *   outer shim (host pid ns)    joins the step's cgroups, forwards signals, reports the pid of
 *    |                          pid 1 on the status fd, exits with COMMAND's status
 *    +- shim, pid 1 of a new pid ns and mount ns: private mounts, its own /proc, the user and
 *       |                       network namespaces of the step, the rootfs; reaps orphans
 *       +- COMMAND              the OCI runtime (crun/runc run ...) or a helper
 * Both shims die with their parent (PR_SET_PDEATHSIG). When pid 1 exits, the kernel kills
 * every process left in its pid namespace, the runtime's container included, and the mount
 * namespace with the overlay goes away with the last of them: nothing is left running or
 * mounted, even after kill -9 of the Node process.
 *
 * Options:
 *   --cgroup DIR      join the cgroup DIR (repeatable: one per v1 hierarchy, or the v2 dir)
 *   --idmap H:N       make a user namespace mapping ids 0..N-1 to host ids H..H+N-1, and mount
 *                     the rootfs layers idmapped through it (files keep their on-disk owners)
 *   --gidmap G        gids map to G..G+N-1 instead (default: as uids)
 *   --netns MODE      none: a new network namespace with loopback only; slirp: plus a
 *                     user-mode network (outbound only, no host loopback, see --netd); absent:
 *                     the host network
 *   --netd NAME       for --netns slirp: make and configure tap0 in the step's network
 *                     namespace (10.0.2.100/24 via 10.0.2.2, MTU 65520) and hand its fd to the
 *                     slipway-netd listening on the abstract unix socket NAME (native/netd.c);
 *                     the connection, held until this process exits, keeps that network up
 *   --nsdir DIR       the new user/network namespaces are bind-mounted at DIR/user, DIR/net
 *   --lower DIR       an overlay lower dir, top-most first (repeatable)
 *   --upper DIR       the overlay upper dir (not idmapped: the caller shifts owners back)
 *   --work DIR        the overlay work dir
 *   --links DIR       an empty dir for short layer names (the option string fits one page)
 *   --rootdir DIR     instead of an overlay, this dir is the rootfs (a plain bind: with --idmap
 *                     the caller has given its files the host owners already)
 *   --merged DIR      where the rootfs is mounted
 *   --from-lower DIR  COPY --from's source image, layer dirs top-most first (repeatable, at least
 *                     2): mounted read-only, not idmapped, at --from-merged, with short names
 *                     in --from-links (a single layer needs no mount: it is read in place)
 *   --stage DIR       instead of --merged: mount a private tmpfs on DIR (made 0711 if missing)
 *                     and the rootfs at DIR/rootfs; --nsdir and --links inside DIR are made
 *                     there (as can be the runtime's state dir: the runtime sees the stage). A runtime that has joined the user
 *                     namespace opens the rootfs and bind sources by path as an unprivileged
 *                     uid, so every directory above them must be searchable by it, which the
 *                     store's 0700 folders are not; DIR's are.
 *   --stage-files DIR bind DIR at STAGE/files (the container's /etc files)
 *   --stage-bind SRC  bind SRC (a folder, file or socket) at STAGE/m<i>, i counting from 0 in
 *                     the order given (repeatable): a RUN --mount's source, reachable by the
 *                     runtime from inside the user namespace wherever SRC lives
 *   --hide-cgroup2    mount an empty tmpfs over /sys/fs/cgroup/unified (crun refuses hybrid hosts)
 *   --seal-command    bind COMMAND's binary read-only over itself in pid 1's mount namespace.
 *                     crun and runc otherwise copy themselves (a memfd or a read-only bind of
 *                     their own, then a second exec) so that a container reaching the runtime's
 *                     /proc/PID/exe cannot overwrite the host's binary (CVE-2019-5736); a binary
 *                     that is already on a read-only mount cannot be written through that link,
 *                     and they skip the copy and the second exec
 *   --volume PATH     a VOLUME: an overlay over PATH whose writes are discarded (repeatable)
 *   --volume-dir DIR  the i-th volume's upper and work dirs are DIR/i/u and DIR/i/w
 *   --mkdir PATH      mkdir -p PATH inside the rootfs (the working directory, mount points)
 *   --mkfile PATH     as --mkdir for PATH's parent, then an empty file PATH (mode 0755, as
 *                     runc makes a file mount's point) unless something is there already
 *   --exec NAME       check that NAME can be executed (--exec-path PATH, --exec-cwd DIR) as the
 *                     runtime would look it up; if not, exit 127 (126) with Docker's message
 *   --join-user PATH  join this user namespace (made by a --hold shim) instead of making one;
 *                     --idmap still states its mapping (the owner of what the shim creates)
 *   --join-net PATH   instead of --netns: join this network namespace
 *   --hold            make the user and network namespaces (and the network) only, report
 *                     "ready PID" (the process holding them; a step joins /proc/PID/ns/user and
 *                     /proc/PID/ns/net), and keep them until stdin closes, so that a step started
 *                     later need not wait for them
 *   --hold-mounts     no command: once everything is mounted, pid 1 writes "mounted" on the
 *                     status fd and holds the mount namespace (the caller writes through
 *                     /proc/PID/root) until it is killed or its stdin closes
 *   --status-fd N     the outer shim writes "pid P\n" (pid 1 in the host's pid ns); a setup
 *                     failure writes "error MESSAGE\n" and exits 125
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LIST 4096
#define FD_PATH_LEN 32

struct options {
  const char *cgroups[64];
  int ncgroups;
  long idmap_host, idmap_count, gidmap_host;
  const char *netns;
  const char *netd;
  const char *nsdir;
  const char *lowers[MAX_LIST];
  int nlowers;
  const char *upper, *work, *links, *rootdir, *merged;
  const char *from_lowers[MAX_LIST];
  int nfrom;
  const char *from_links, *from_merged;
  int hide_cgroup2, seal_command;
  int status_fd;
  const char *volumes[256];
  int nvolumes;
  const char *volume_dir;
  const char *mkdirs[80];
  int nmkdirs;
  const char *mkfiles[64];
  int nmkfiles;
  const char *stage_binds[64];
  int nstage_binds;
  const char *exec_name, *exec_path, *exec_cwd;
  const char *stage, *stage_files;
  const char *join_user, *join_net;
  int join_user_fd, join_net_fd;
  int hold, hold_mounts;
  char stage_rootfs[4096];
  char **command;
};

static int status_fd = -1;
static volatile pid_t forward_to = 0;

/* Reports a setup failure on the status fd (and stderr without one) and exits 125. */
static void fail(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (status_fd >= 0) dprintf(status_fd, "error %s\n", msg);
  else fprintf(stderr, "slipway-shim: %s\n", msg);
  _exit(125);
}

/* Reports a setup failure on the status fd (and stderr without one), without exiting. */
static void report(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (status_fd >= 0) dprintf(status_fd, "error %s\n", msg);
  else fprintf(stderr, "slipway-shim: %s\n", msg);
}

static void die_with_parent(void) {
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl: %s", strerror(errno));
  /* The parent may have died before the request took effect: then we were reparented. */
  if (getppid() != parent || parent == 1) _exit(125);
}

static long parse_long(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end) fail("bad %s: %s", what, s);
  return v;
}

static void parse_args(int argc, char **argv, struct options *o) {
  memset(o, 0, sizeof *o);
  o->status_fd = -1;
  o->join_user_fd = o->join_net_fd = -1;
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "--hide-cgroup2") == 0) { o->hide_cgroup2 = 1; continue; }
    if (strcmp(a, "--hold") == 0) { o->hold = 1; continue; }
    if (strcmp(a, "--hold-mounts") == 0) { o->hold_mounts = 1; continue; }
    if (strcmp(a, "--seal-command") == 0) { o->seal_command = 1; continue; }
    if (i + 1 >= argc) fail("option %s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--cgroup") == 0) {
      if (o->ncgroups == 64) fail("too many cgroups");
      o->cgroups[o->ncgroups++] = v;
    } else if (strcmp(a, "--idmap") == 0) {
      const char *colon = strchr(v, ':');
      if (!colon) fail("bad --idmap: %s", v);
      char host[32];
      snprintf(host, sizeof host, "%.*s", (int)(colon - v), v);
      o->idmap_host = parse_long(host, "--idmap host id");
      o->idmap_count = parse_long(colon + 1, "--idmap count");
      if (!o->gidmap_host) o->gidmap_host = o->idmap_host;
    } else if (strcmp(a, "--gidmap") == 0) o->gidmap_host = parse_long(v, "--gidmap"); else if (strcmp(a, "--netns") == 0) o->netns = v;
    else if (strcmp(a, "--netd") == 0) o->netd = v;
    else if (strcmp(a, "--nsdir") == 0) o->nsdir = v;
    else if (strcmp(a, "--lower") == 0) {
      if (o->nlowers == MAX_LIST) fail("too many layers");
      o->lowers[o->nlowers++] = v;
    } else if (strcmp(a, "--from-lower") == 0) {
      if (o->nfrom == MAX_LIST) fail("too many layers");
      o->from_lowers[o->nfrom++] = v;
    } else if (strcmp(a, "--from-links") == 0) o->from_links = v;
    else if (strcmp(a, "--from-merged") == 0) o->from_merged = v;
    else if (strcmp(a, "--upper") == 0) o->upper = v;
    else if (strcmp(a, "--work") == 0) o->work = v;
    else if (strcmp(a, "--links") == 0) o->links = v;
    else if (strcmp(a, "--rootdir") == 0) o->rootdir = v;
    else if (strcmp(a, "--merged") == 0) o->merged = v;
    else if (strcmp(a, "--stage") == 0) o->stage = v;
    else if (strcmp(a, "--stage-files") == 0) o->stage_files = v;
    else if (strcmp(a, "--join-user") == 0) o->join_user = v;
    else if (strcmp(a, "--join-net") == 0) o->join_net = v;
    else if (strcmp(a, "--status-fd") == 0) o->status_fd = (int)parse_long(v, "--status-fd");
    else if (strcmp(a, "--volume") == 0) {
      if (o->nvolumes == 256) fail("too many volumes");
      o->volumes[o->nvolumes++] = v;
    } else if (strcmp(a, "--volume-dir") == 0) o->volume_dir = v;
    else if (strcmp(a, "--mkdir") == 0) {
      if (o->nmkdirs == 80) fail("too many --mkdir");
      o->mkdirs[o->nmkdirs++] = v;
    } else if (strcmp(a, "--mkfile") == 0) {
      if (o->nmkfiles == 64) fail("too many --mkfile");
      o->mkfiles[o->nmkfiles++] = v;
    } else if (strcmp(a, "--stage-bind") == 0) {
      if (o->nstage_binds == 64) fail("too many --stage-bind");
      o->stage_binds[o->nstage_binds++] = v;
    } else if (strcmp(a, "--exec") == 0) o->exec_name = v;
    else if (strcmp(a, "--exec-path") == 0) o->exec_path = v;
    else if (strcmp(a, "--exec-cwd") == 0) o->exec_cwd = v;
    else fail("unknown option %s", a);
  }
  if (o->hold) {
    if (!o->idmap_count && !o->netns) fail("--hold needs --idmap or --netns");
    if (o->netns && !strcmp(o->netns, "slirp") && !o->netd) fail("--hold --netns slirp needs --netd");
    o->command = argv + i;
    return;
  }
  if (o->hold_mounts) {
    if (i < argc) fail("--hold-mounts takes no command");
    if (o->status_fd < 0) fail("--hold-mounts needs --status-fd");
  } else if (i >= argc) fail("no command");
  if ((o->join_user || o->join_net) && o->netns) fail("--join-user/--join-net exclude --netns");
  if (o->join_user && !o->idmap_count) fail("--join-user needs --idmap: the joined namespace's mapping");
  if (o->stage) {
    if (o->merged) fail("--stage and --merged exclude each other");
    snprintf(o->stage_rootfs, sizeof o->stage_rootfs, "%s/rootfs", o->stage);
    o->merged = o->stage_rootfs;
  }
  if ((o->stage_files || o->nstage_binds) && !o->stage) fail("--stage-files and --stage-bind need --stage");
  o->command = argv + i;
  if ((o->idmap_host || o->netns || o->join_user || o->join_net) && !o->nsdir) fail("--idmap, --netns and --join-* need --nsdir");
  if (o->netns && strcmp(o->netns, "none") && strcmp(o->netns, "slirp")) fail("bad --netns: %s", o->netns);
  if (o->netns && !strcmp(o->netns, "slirp") && !o->netd) fail("--netns slirp needs --netd");
  if (o->nlowers && (!o->upper || !o->work || !o->links || !o->merged)) fail("an overlay needs --upper, --work, --links and --merged");
  if (o->nfrom && (o->nfrom < 2 || !o->from_links || !o->from_merged)) fail("--from-lower needs two or more layers, --from-links and --from-merged");
  if (o->rootdir && !o->merged) fail("--rootdir needs --merged");
  if ((o->nvolumes || o->nmkdirs || o->nmkfiles || o->exec_name) && !o->merged) fail("--volume, --mkdir, --mkfile and --exec need --merged");
  if (o->nvolumes && !o->volume_dir) fail("--volume needs --volume-dir");
}

static void write_file(const char *path, const char *data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail("open %s: %s", path, strerror(errno));
  size_t n = strlen(data);
  if (write(fd, data, n) != (ssize_t)n) fail("write %s: %s", path, strerror(errno));
  close(fd);
}

static void join_cgroups(const struct options *o) {
  char path[4096];
  for (int i = 0; i < o->ncgroups; i++) {
    snprintf(path, sizeof path, "%s/cgroup.procs", o->cgroups[i]);
    write_file(path, "0\n");
  }
}

static void forward_signal(int sig) {
  if (forward_to > 0) kill(forward_to, sig);
}

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

static void forward_signals_to(pid_t pid) {
  forward_to = pid;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++) sigaction(FORWARDED[i], &sa, NULL);
}

static int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 125;
}

/* Brings `lo` up in the current network namespace. */
static int loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  int r = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    r = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  close(s);
  return r;
}


/* A short-lived child holding fresh user and network namespaces, released by closing `done`. */
struct holder { pid_t pid; int done; };

/* Forks the holder: it unshares the namespaces (and brings up loopback); its maps are written here. */
static struct holder spawn_holder(const struct options *o) {
  int userns = o->idmap_count > 0, netns = o->netns != NULL;
  int ready[2], done[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
  pid_t child = fork();
  if (child < 0) fail("fork: %s", strerror(errno));
  if (child == 0) {
    close(ready[0]);
    close(done[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int flags = (userns ? CLONE_NEWUSER : 0) | (netns ? CLONE_NEWNET : 0);
    char r = 'r';
    if (unshare(flags) < 0) r = 'u';
    else if (netns && loopback_up() < 0) r = 'l';
    if (write(ready[1], &r, 1) != 1) _exit(1);
    char c;
    while (read(done[0], &c, 1) < 0 && errno == EINTR) {}
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  char r = 0;
  if (read(ready[0], &r, 1) != 1) fail("namespace helper died");
  close(ready[0]);
  if (r == 'u') fail("cannot create namespaces (unshare): is this kernel built with user namespaces?");
  if (r == 'l') fail("cannot bring up loopback in the step's network namespace");
  if (userns) {
    char path[64], map[128];
    snprintf(map, sizeof map, "0 %ld %ld\n", o->idmap_host, o->idmap_count);
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
    write_file(path, map);
    snprintf(map, sizeof map, "0 %ld %ld\n", o->gidmap_host, o->idmap_count);
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
    write_file(path, map);
  }
  return (struct holder){child, done[1]};
}

/* Binds the namespace file `src` at NSDIR/name (the spec names that path). */
static void bind_ns_file(const char *src, const char *nsdir, const char *name) {
  char dst[4096];
  snprintf(dst, sizeof dst, "%s/%s", nsdir, name);
  int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) fail("create %s: %s", dst, strerror(errno));
  close(fd);
  if (mount(src, dst, NULL, MS_BIND, NULL) < 0) fail("bind %s: %s", src, strerror(errno));
}

/*
 * The step's user and network namespaces, bound into nsdir for the runtime: made now, or joined
 * (made earlier by a --hold shim). Returns an fd of the user namespace (or -1 without one).
 */
static int make_namespaces(const struct options *o) {
  char path[64];
  if (o->join_user_fd >= 0 || o->join_net_fd >= 0) {
    if (o->join_net_fd >= 0) {
      snprintf(path, sizeof path, "/proc/self/fd/%d", o->join_net_fd);
      bind_ns_file(path, o->nsdir, "net");
    }
    if (o->join_user_fd < 0) return -1;
    snprintf(path, sizeof path, "/proc/self/fd/%d", o->join_user_fd);
    bind_ns_file(path, o->nsdir, "user");
    return o->join_user_fd;
  }
  if (!o->idmap_count && !o->netns) return -1;
  struct holder h = spawn_holder(o);
  int fd = -1;
  if (o->idmap_count) {
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)h.pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open %s: %s", path, strerror(errno));
    bind_ns_file(path, o->nsdir, "user");
  }
  if (o->netns) {
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)h.pid);
    bind_ns_file(path, o->nsdir, "net");
  }
  close(h.done);
  waitpid(h.pid, NULL, 0);
  return fd;
}

/* An ioctl on `s` for tap0 that sets an IPv4 address field of the request. */
static int set_in_addr(int s, unsigned long req, const char *addr) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "tap0");
  struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, addr, &sin->sin_addr);
  return ioctl(s, req, &ifr);
}

/* tap0 in the current network namespace, configured as slirp4netns --configure does; its fd. */
static int make_tap(void) {
  int tap = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (tap < 0) { report("open /dev/net/tun: %s", strerror(errno)); return -1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "tap0");
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int ok = s >= 0 && ioctl(tap, TUNSETIFF, &ifr) == 0;
  ifr.ifr_mtu = 65520;
  ok = ok && ioctl(s, SIOCSIFMTU, &ifr) == 0;
  ok = ok && set_in_addr(s, SIOCSIFADDR, "10.0.2.100") == 0 && set_in_addr(s, SIOCSIFNETMASK, "255.255.255.0") == 0;
  ok = ok && ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  ok = ok && ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
  ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
  struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway;
  gw->sin_family = AF_INET;
  inet_pton(AF_INET, "10.0.2.2", &gw->sin_addr);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  ok = ok && ioctl(s, SIOCADDRT, &rt) == 0;
  if (!ok) report("configure tap0: %s", strerror(errno));
  if (s >= 0) close(s);
  if (!ok) { close(tap); return -1; }
  return tap;
}

/*
 * The step's default network through slipway-netd: tap0 is made in the namespace at `netpath`
 * (this process enters it and comes back), and its fd is handed to the daemon, which answers
 * once the tap has its network stack. Returns the connection (kept open: closing it, or this
 * process's exit, ends that network), or -1 after reporting.
 */
static int attach_netd(const struct options *o, const char *netpath) {
  int target = open(netpath, O_RDONLY | O_CLOEXEC), self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (target < 0 || self < 0) { report("open %s: %s", netpath, strerror(errno)); return -1; }
  struct stat ts, ss;
  if (fstat(target, &ts) < 0 || fstat(self, &ss) < 0 || (ts.st_dev == ss.st_dev && ts.st_ino == ss.st_ino)) {
    report("%s is not a network namespace of its own", netpath);
    return -1;
  }
  if (setns(target, CLONE_NEWNET) < 0) { report("setns %s: %s", netpath, strerror(errno)); return -1; }
  int tap = make_tap();
  if (setns(self, CLONE_NEWNET) < 0) fail("setns back to the host network: %s", strerror(errno));
  close(target);
  close(self);
  if (tap < 0) return -1;
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  size_t len = strlen(o->netd);
  if (len + 1 >= sizeof a.sun_path) fail("--netd name too long");
  memcpy(a.sun_path + 1, o->netd, len);
  char byte = 't', ctrl[CMSG_SPACE(sizeof(int))];
  memset(ctrl, 0, sizeof ctrl);
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  h->cmsg_level = SOL_SOCKET;
  h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &tap, sizeof tap);
  int ok = c >= 0 && connect(c, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) == 0;
  ok = ok && sendmsg(c, &m, MSG_NOSIGNAL) == 1;
  ssize_t n = 0;
  if (ok) while ((n = read(c, &byte, 1)) < 0 && errno == EINTR) {}
  close(tap);
  if (!ok || n != 1 || byte != 'k') {
    report("the network daemon (@%s) did not take the step's tap: %s", o->netd, ok && n >= 0 ? "refused" : strerror(errno));
    if (c >= 0) close(c);
    return -1;
  }
  return c;
}

/* A clone of the mount at `src`, idmapped through userns_fd, attached at `dst`. */
static void idmapped_bind(const char *src, const char *dst, int userns_fd, int readonly) {
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) fail("open_tree %s: %s", src, strerror(errno));
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP | (readonly ? MOUNT_ATTR_RDONLY : 0);
  attr.userns_fd = (unsigned long long)userns_fd;
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    fail("cannot make an idmapped mount of %s (%s): this kernel or filesystem does not support "
         "idmapped mounts; use --userns=host to run steps without a user namespace", src, strerror(errno));
  }
  if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) fail("move_mount %s: %s", dst, strerror(errno));
  close(fd);
}

/* In the current dir (a links dir), short names 0, 1, ... for `dirs` (idmapped binds with a user
   namespace, else symlinks), and "lowerdir=0:1:..." in `opts` (up to 5 digits and a colon per
   layer); returns that string's length. */
static size_t lower_names(char *opts, size_t cap, const char *const *dirs, int n, int userns_fd) {
  size_t len = (size_t)snprintf(opts, cap, "lowerdir=");
  for (int i = 0; i < n; i++) {
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    if (userns_fd >= 0) {
      if (mkdir(name, 0700) < 0 && errno != EEXIST) fail("mkdir %s: %s", name, strerror(errno));
      idmapped_bind(dirs[i], name, userns_fd, 1);
    } else if (symlink(dirs[i], name) < 0) fail("symlink %s: %s", dirs[i], strerror(errno));
    len += (size_t)snprintf(opts + len, cap - len, "%s%s", i ? ":" : "", name);
  }
  return len;
}

static void mount_overlay(const struct options *o, int userns_fd) {
  if (chdir(o->links) < 0) fail("chdir %s: %s", o->links, strerror(errno));
  static char opts[MAX_LIST * 6 + 256];
  size_t len = lower_names(opts, sizeof opts, o->lowers, o->nlowers, userns_fd);
  if (symlink(o->upper, "u") < 0 || symlink(o->work, "w") < 0) fail("symlink: %s", strerror(errno));
  snprintf(opts + len, sizeof opts - len, ",upperdir=u,workdir=w");
  /* index/redirect_dir/metacopy would make the upper dir depend on the lower dirs; a layer
     must stand alone. volatile: the unmount as the step ends does not sync the whole upper
     filesystem (0.1 s for a 10,000-file RUN); the layer is synced beside its pack instead
     (src/snapshot/sync-layer.ts). Older kernels reject unknown options: fall back in order. */
  const char *extra[] = {",index=off,redirect_dir=off,metacopy=off,volatile", ",index=off,redirect_dir=off,metacopy=off", ",index=off", ""};
  char full[sizeof opts + 64];
  int err = 0;
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
    snprintf(full, sizeof full, "%s%s", opts, extra[i]);
    if (mount("overlay", o->merged, "overlay", 0, full) == 0) { err = 0; break; }
    err = errno;
  }
  if (err) fail("mount overlay on %s: %s", o->merged, strerror(err));
  if (chdir("/") < 0) fail("chdir /: %s", strerror(errno));
}

/* COPY --from's source: a read-only overlay of its layers (no upper, so nothing can change). */
static void mount_from(const struct options *o) {
  if (chdir(o->from_links) < 0) fail("chdir %s: %s", o->from_links, strerror(errno));
  static char opts[MAX_LIST * 6 + 64];
  lower_names(opts, sizeof opts, o->from_lowers, o->nfrom, -1);
  if (mount("overlay", o->from_merged, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0) {
    fail("mount overlay on %s: %s", o->from_merged, strerror(errno));
  }
  if (chdir("/") < 0) fail("chdir /: %s", strerror(errno));
}

static void mount_rootfs(const struct options *o, int userns_fd) {
  if (o->nlowers > 0) mount_overlay(o, userns_fd);
  /* A vfs rootfs is a plain copy: its owners were shifted by the caller (not every filesystem
     that needs vfs can idmap a bind mount). */
  else if (o->rootdir && mount(o->rootdir, o->merged, NULL, MS_BIND | MS_REC, NULL) < 0) {
    fail("bind %s: %s", o->rootdir, strerror(errno));
  }
  if (o->nfrom > 0) mount_from(o);
}

/* A private tmpfs at the stage dir, with the rootfs mount point (and the /etc files) in it. */
static void mount_stage(const struct options *o) {
  if (mkdir(o->stage, 0711) < 0 && errno != EEXIST) fail("mkdir %s: %s", o->stage, strerror(errno));
  if (mount("tmpfs", o->stage, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0711,size=4m") < 0) {
    fail("mount tmpfs on %s: %s", o->stage, strerror(errno));
  }
  if (mkdir(o->merged, 0755) < 0) fail("mkdir %s: %s", o->merged, strerror(errno));
  /* --nsdir and --links may name dirs in the stage: made here, they cost the store's filesystem nothing. */
  const char *inside[] = {o->nsdir, o->links};
  size_t n = strlen(o->stage);
  for (size_t i = 0; i < 2; i++) {
    if (!inside[i] || strncmp(inside[i], o->stage, n) != 0 || inside[i][n] != '/') continue;
    if (mkdir(inside[i], 0700) < 0 && errno != EEXIST) fail("mkdir %s: %s", inside[i], strerror(errno));
  }
  if (o->stage_files) {
    char files[4096];
    snprintf(files, sizeof files, "%s/files", o->stage);
    if (mkdir(files, 0755) < 0) fail("mkdir %s: %s", files, strerror(errno));
    if (mount(o->stage_files, files, NULL, MS_BIND, NULL) < 0) fail("bind %s: %s", o->stage_files, strerror(errno));
  }
  for (int i = 0; i < o->nstage_binds; i++) {
    char dst[4096];
    struct stat st;
    snprintf(dst, sizeof dst, "%s/m%d", o->stage, i);
    if (lstat(o->stage_binds[i], &st) < 0) fail("stat %s: %s", o->stage_binds[i], strerror(errno));
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(dst, 0755) < 0) fail("mkdir %s: %s", dst, strerror(errno));
    } else {
      int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) fail("create %s: %s", dst, strerror(errno));
      close(fd);
    }
    if (mount(o->stage_binds[i], dst, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind %s: %s", o->stage_binds[i], strerror(errno));
  }
}

/* Every fd above 2 is closed on exec: the command sees only stdin, stdout and stderr. */
static void cloexec_all(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) fail("opendir /proc/self/fd: %s", strerror(errno));
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd > 2 && fd != self) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  closedir(d);
}

/* Opens `path` inside the rootfs `root` as if it were `/` (symlinks and `..` stay inside). */
static int open_in_root(int root, const char *path, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/*
 * mkdir -p of `path` inside the rootfs: missing components are made 0755 and owned by the
 * step's root (on-disk `owner`, which the caller maps back to 0 in the layer). Returns an
 * O_PATH fd of the directory.
 */
static int mkdir_in_root(int root, const char *path, uid_t owner, gid_t group) {
  char prefix[4096];
  size_t len = strlen(path);
  if (len >= sizeof prefix) fail("path too long: %s", path);
  int fd = open_in_root(root, "/", O_PATH | O_DIRECTORY);
  for (size_t i = 0; i <= len; i++) {
    if (i < len && path[i] != '/') continue;
    if (i == 0 || path[i - 1] == '/') continue;
    memcpy(prefix, path, i);
    prefix[i] = 0;
    int next = open_in_root(root, prefix, O_PATH | O_DIRECTORY);
    if (next < 0 && errno == ENOENT) {
      const char *name = strrchr(prefix, '/');
      name = name ? name + 1 : prefix;
      if (strcmp(name, "..") == 0 || strcmp(name, ".") == 0) fail("cannot create %s", path);
      if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST) fail("cannot create %s: %s", path, strerror(errno));
      if (fchownat(fd, name, owner, group, AT_SYMLINK_NOFOLLOW) < 0) fail("chown %s: %s", prefix, strerror(errno));
      if (fchmodat(fd, name, 0755, 0) < 0) fail("chmod %s: %s", prefix, strerror(errno));
      next = open_in_root(root, prefix, O_PATH | O_DIRECTORY);
    }
    if (next < 0) fail("cannot create %s: %s is %s", path, prefix, errno == ENOTDIR ? "not a directory" : strerror(errno));
    close(fd);
    fd = next;
  }
  return fd;
}

/*
 * VOLUME paths: like Docker, a RUN sees the image's content there, and what it writes there is
 * discarded. An overlay with the image's directory as its only lower dir and a throwaway upper
 * dir is mounted over the path; the mount point itself lands in the layer.
 */
static void mount_volumes(const struct options *o, int root, uid_t owner, gid_t group) {
  for (int i = 0; i < o->nvolumes; i++) {
    int dir = mkdir_in_root(root, o->volumes[i], owner, group);
    char fdpath[FD_PATH_LEN], opts[8192];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", dir);
    /* The upper dir is thrown away: never worth syncing (volatile, where the kernel has it). */
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s/%d/u,workdir=%s/%d/w,volatile", fdpath, o->volume_dir, i, o->volume_dir, i);
    if (mount("overlay", fdpath, "overlay", 0, opts) < 0) {
      *strrchr(opts, ',') = 0;
      if (mount("overlay", fdpath, "overlay", 0, opts) < 0) fail("mount volume %s: %s", o->volumes[i], strerror(errno));
    }
    close(dir);
  }
}

/* An empty file at `path` inside the rootfs (a file mount's point), parents made as by --mkdir. */
static void mkfile_in_root(int root, const char *path, uid_t owner, gid_t group) {
  char parent[4096];
  const char *slash = strrchr(path, '/');
  if (!slash || !slash[1]) fail("bad --mkfile %s", path);
  snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
  int dir = parent[0] ? mkdir_in_root(root, parent, owner, group) : open_in_root(root, "/", O_PATH | O_DIRECTORY);
  if (dir < 0) fail("open / of the rootfs: %s", strerror(errno));
  const char *name = slash + 1;
  struct stat st;
  if (strcmp(name, "..") == 0 || strcmp(name, ".") == 0) fail("cannot create %s", path);
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno != ENOENT) fail("stat %s: %s", path, strerror(errno));
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
    if (fd < 0) fail("create %s: %s", path, strerror(errno));
    if (fchown(fd, owner, group) < 0 || fchmod(fd, 0755) < 0) fail("chown %s: %s", path, strerror(errno));
    close(fd);
  }
  close(dir);
}

/* Is `path` (inside the rootfs, relative to cwd) a regular file with an execute bit? */
static int executable_in_root(int root, const char *cwd, const char *path, int *exists) {
  char full[8192];
  if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
  else snprintf(full, sizeof full, "%s/%s", cwd, path);
  int fd = open_in_root(root, full, O_PATH);
  if (fd < 0) return 0;
  struct stat st;
  int ok = fstat(fd, &st) == 0;
  close(fd);
  if (!ok) return 0;
  *exists = 1;
  return S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

/*
 * The runtime's exec, checked before it runs, so that a missing command fails the way Docker
 * reports it (127, "executable file not found in $PATH"; 126 for one that cannot be run).
 */
static void check_exec(const struct options *o, int root) {
  const char *name = o->exec_name;
  const char *cwd = o->exec_cwd ? o->exec_cwd : "/";
  int exists = 0;
  if (strchr(name, '/')) {
    if (executable_in_root(root, cwd, name, &exists)) return;
    if (exists) {
      fprintf(stderr, "slipway: exec: \"%s\": permission denied\n", name);
      _exit(126);
    }
    fprintf(stderr, "slipway: exec: \"%s\": stat %s: no such file or directory\n", name, name);
    _exit(127);
  }
  const char *p = o->exec_path ? o->exec_path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char dir[4096], candidate[8192];
  while (1) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(dir, sizeof dir, "%.*s", (int)(n < sizeof dir ? n : sizeof dir - 1), p);
    snprintf(candidate, sizeof candidate, "%s/%s", n ? dir : ".", name);
    if (executable_in_root(root, cwd, candidate, &exists)) return;
    if (!colon) break;
    p = colon + 1;
  }
  fprintf(stderr, "slipway: exec: \"%s\": executable file not found in $PATH\n", name);
  _exit(127);
}

/* What happens inside the mounted rootfs before the command: volumes, the cwd, the exec check. */
static void prepare_root(const struct options *o) {
  if (!o->nvolumes && !o->nmkdirs && !o->nmkfiles && !o->exec_name) return;
  int root = open(o->merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) fail("open %s: %s", o->merged, strerror(errno));
  uid_t owner = o->idmap_count > 0 ? (uid_t)o->idmap_host : 0;
  gid_t group = o->idmap_count > 0 ? (gid_t)o->gidmap_host : 0;
  mount_volumes(o, root, owner, group);
  for (int i = 0; i < o->nmkdirs; i++) close(mkdir_in_root(root, o->mkdirs[i], owner, group));
  for (int i = 0; i < o->nmkfiles; i++) mkfile_in_root(root, o->mkfiles[i], owner, group);
  if (o->exec_name) check_exec(o, root);
  close(root);
}

/* `path` (an absolute path to a binary) bound read-only over itself, in this mount namespace only. */
static void seal_binary(const char *path) {
  if (path[0] != '/') fail("--seal-command needs an absolute command path: %s", path);
  if (mount(path, path, NULL, MS_BIND, NULL) < 0) fail("bind %s: %s", path, strerror(errno));
  if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) {
    fail("remount %s read-only: %s", path, strerror(errno));
  }
}

/* The two pipes between pid 1 and the outer shim while the network is set up (-1 without). */
struct handshake { int net_ready; int net_go; };

/* Blocks until stdin reaches end of file or fails: the caller holding its other end is done or gone. */
static void wait_stdin_closed(void) {
  char buf[64];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}

/* pid 1: set up, run the command, reap everything, exit with the command's status. */
static int run_init(const struct options *o, struct handshake h) {
  die_with_parent();
  /* A mount namespace of its own (the outer shim stays in the host's). */
  if (unshare(CLONE_NEWNS) < 0) fail("unshare mount namespace: %s", strerror(errno));
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("make / private: %s", strerror(errno));
  /* Our own /proc, so that pids we see (ours, the runtime's) are the ones it shows. */
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount /proc: %s", strerror(errno));
  if (o->hide_cgroup2) {
    struct stat st;
    if (stat("/sys/fs/cgroup/unified", &st) == 0 &&
        mount("none", "/sys/fs/cgroup/unified", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") < 0) {
      fail("hide /sys/fs/cgroup/unified: %s", strerror(errno));
    }
  }
  if (o->seal_command) seal_binary(o->command[0]);
  if (o->stage) mount_stage(o);
  int userns_fd = make_namespaces(o);
  if (h.net_ready >= 0) {
    /* The outer shim gives the namespace now bound its network, and says when it is up. */
    char c = 'n';
    if (write(h.net_ready, &c, 1) != 1) fail("handshake: %s", strerror(errno));
    ssize_t n;
    while ((n = read(h.net_go, &c, 1)) < 0 && errno == EINTR) {}
    if (n != 1) fail("the network could not be set up");
    close(h.net_ready);
    close(h.net_go);
  }
  mount_rootfs(o, userns_fd);
  if (userns_fd >= 0) close(userns_fd);
  prepare_root(o);
  if (o->hold_mounts) {
    /* Nothing to run: the caller writes through /proc/<this pid>/root until it kills us, or
       until our stdin closes (the caller is gone). Then the namespace and its mounts go. */
    dprintf(status_fd, "mounted\n");
    wait_stdin_closed();
    return 0;
  }
  cloexec_all();
  /* vfork: the runtime is exec'd at once, and copying our page tables for it costs more than the
     rest of this process's work (page table updates are slow in some VMs). Only system calls in
     the child; its exec error comes back through `exec_errno`, which the child shares with us. */
  volatile int exec_errno = 0;
  sigset_t none;
  sigemptyset(&none);
  pid_t cmd = vfork();
  if (cmd < 0) fail("fork: %s", strerror(errno));
  if (cmd == 0) {
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(o->command[0], o->command);
    exec_errno = errno;
    _exit(127);
  }
  if (exec_errno != 0) fprintf(stderr, "slipway-shim: exec %s: %s\n", o->command[0], strerror(exec_errno));
  forward_signals_to(cmd);
  for (;;) {
    int status;
    pid_t p = waitpid(-1, &status, 0);
    if (p < 0 && errno == EINTR) continue;
    if (p < 0) return 125;
    if (p == cmd) return exit_code_of(status);
  }
}

/*
 * --hold: namespaces (and the network) made ahead of a step. Reports "ready PID" and keeps them
 * until stdin closes (or this process is killed); the network daemon then drops the network.
 */
static int hold(const struct options *o) {
  struct holder h = spawn_holder(o);
  if (o->netns && !strcmp(o->netns, "slirp")) {
    char netpath[64];
    snprintf(netpath, sizeof netpath, "/proc/%d/ns/net", (int)h.pid);
    if (attach_netd(o, netpath) < 0) { kill(h.pid, SIGKILL); return 125; }
  }
  if (status_fd >= 0) dprintf(status_fd, "ready %d\n", (int)h.pid);
  wait_stdin_closed();
  kill(h.pid, SIGKILL);
  return 0;
}

int main(int argc, char **argv) {
  struct options o;
  parse_args(argc, argv, &o);
  status_fd = o.status_fd;
  if (status_fd >= 0) fcntl(status_fd, F_SETFD, FD_CLOEXEC);
  die_with_parent();
  if (o.hold) return hold(&o);
  if (o.join_user) o.join_user_fd = open(o.join_user, O_RDONLY | O_CLOEXEC);
  if (o.join_net) o.join_net_fd = open(o.join_net, O_RDONLY | O_CLOEXEC);
  if ((o.join_user && o.join_user_fd < 0) || (o.join_net && o.join_net_fd < 0)) fail("open the namespaces to join: %s", strerror(errno));
  join_cgroups(&o);
  int slirp = o.netns && !strcmp(o.netns, "slirp");
  int up[2] = {-1, -1}, go[2] = {-1, -1};
  if (slirp && (pipe2(up, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)) fail("pipe: %s", strerror(errno));
  /* Only the next child, pid 1, is made in the new pid namespace: this process forks no other. */
  if (unshare(CLONE_NEWPID) < 0) fail("unshare: %s (Slipway needs root)", strerror(errno));
  pid_t init = fork();
  if (init < 0) fail("fork: %s", strerror(errno));
  if (init == 0) {
    if (slirp) { close(up[0]); close(go[1]); }
    _exit(run_init(&o, (struct handshake){up[1], go[0]}));
  }
  if (status_fd >= 0) dprintf(status_fd, "pid %d\n", (int)init);
  forward_signals_to(init);
  if (slirp) {
    close(up[1]);
    close(go[0]);
    char c;
    ssize_t n;
    while ((n = read(up[0], &c, 1)) < 0 && errno == EINTR) {}
    /* No byte: pid 1 failed before its namespaces were ready, and said why. */
    char netpath[4096];
    snprintf(netpath, sizeof netpath, "/proc/%d/root%s/net", (int)init, o.nsdir);
    if (n != 1 || attach_netd(&o, netpath) < 0 || write(go[1], &c, 1) != 1) kill(init, SIGKILL);
    close(up[0]);
    close(go[1]);
    /* The daemon's connection stays open until we exit: then it drops the step's network. */
  }
  for (;;) {
    int status;
    pid_t p = waitpid(init, &status, 0);
    if (p < 0 && errno == EINTR) continue;
    if (p < 0) fail("waitpid: %s", strerror(errno));
    return exit_code_of(status);
  }
}
