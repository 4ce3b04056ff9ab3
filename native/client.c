/*
 * slipway's native front (dist/native/slipway; optional: the package's bin is the Node.js
 * CLI, which a user may replace with this on PATH, see the README). A plain `slipway build`
 * on a root whose resident engine (`slipway serve`) is up is handed to that engine from here,
 * with no Node.js process at all,
 * as docker's CLI hands builds to dockerd. Everything else, and anything this program is not
 * sure of, runs the Node.js CLI (dist/src/cli/main.js beside this program's folder) with the
 * same arguments: `execvp("node", ...)`, as the script's `#!/usr/bin/env node` line would.
 *
 * Handled here, and only with the engine answering on `<root>/slipway.sock`, as root:
 *   slipway [--root DIR] build [-t T | --tag T]... [-f F | --file F] [--build-arg K[=V]]...
 *           [--target S] [--no-cache] [-q | --quiet] PATH
 * (`--opt=value` forms too). It sends what the Node.js client sends (cli/build-cmd.ts) plus
 * `render`, and the engine answers with the output already rendered: stdout and stderr
 * frames, then the exit status (src/api/rendered-answer.ts). A refusal before the build
 * starts (a bad tag, an engine that does not render) hands the line to the Node.js CLI,
 * which reports it. Ctrl-C (SIGINT, SIGTERM) closes the connection, which cancels the build.
 *
 * Arguments with bytes outside printable ASCII, `-` as the context or Dockerfile, a
 * Dockerfile that is a pipe, socket or device, --debug, SLIPWAY_DEBUG=1 and
 * SLIPWAY_ENGINE=off all go to the Node.js CLI.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char **g_argv;

/* Runs the Node.js CLI with this process's arguments. Never returns. */
static void node_cli(void) {
  signal(SIGPIPE, SIG_DFL);  /* ignored while relaying; an ignored signal would outlive exec */
  static char self[PATH_MAX], main_js[PATH_MAX + 32];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) { fprintf(stderr, "slipway: cannot find its own program: %s\n", strerror(errno)); exit(127); }
  self[n] = 0;
  char *slash = strrchr(self, '/');
  *slash = 0;  /* dist/native */
  snprintf(main_js, sizeof main_js, "%s/../src/cli/main.js", self);
  int argc = 0;
  while (g_argv[argc]) argc++;
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) exit(127);
  args[0] = "node";
  args[1] = main_js;
  for (int i = 1; i < argc; i++) args[i + 1] = g_argv[i];
  execvp("node", args);
  fprintf(stderr, "slipway: cannot run node: %s\n", strerror(errno));
  exit(127);
}

/* A growable string. Running out of memory hands the line to the Node.js CLI. */
struct buf { char *p; size_t len, cap; };

static void put(struct buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) node_cli();
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string. Only printable ASCII gets here (plain_arg), so `"` and `\` are all there is to escape. */
static void json_str(struct buf *b, const char *s) {
  put(b, "\"", 1);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') put(b, "\\", 1);
    put(b, s, 1);
  }
  put(b, "\"", 1);
}

/* Printable ASCII only: anything else (UTF-8, control characters) is the Node.js CLI's to decode. */
static int plain_arg(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
  return 1;
}

/* Node's path.resolve(cwd, p): absolute, `.` and `..` folded away lexically, no trailing slash. */
static void resolve(const char *p, char *out, size_t cap) {
  char tmp[PATH_MAX * 2], cwd[PATH_MAX] = "";
  if (p[0] != '/' && !getcwd(cwd, sizeof cwd)) node_cli();
  int n = snprintf(tmp, sizeof tmp, "%s/%s", cwd, p);
  if (n < 0 || (size_t)n >= sizeof tmp) node_cli();
  size_t len = 0;
  out[0] = 0;
  for (char *save = NULL, *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    if (!strcmp(c, ".")) continue;
    if (!strcmp(c, "..")) {
      while (len > 0 && out[len - 1] != '/') len--;
      if (len > 0) len--;
      out[len] = 0;
      continue;
    }
    size_t n = strlen(c);
    if (len + 1 + n + 1 > cap) node_cli();
    out[len++] = '/';
    memcpy(out + len, c, n);
    len += n;
    out[len] = 0;
  }
  if (len == 0) snprintf(out, cap, "/");
}

/* Node's path.relative(from, to) for two resolved paths. */
static void relative(const char *from, const char *to, struct buf *b) {
  size_t i = 0, common = 0;
  /* The longest shared run of whole components. */
  for (;; i++) {
    char f = from[i], t = to[i];
    if ((f == '/' || f == 0) && (t == '/' || t == 0)) common = i;
    if (f == 0 || t == 0 || f != t) break;
  }
  if (!strcmp(from, "/")) {  /* every path is beneath it */
    puts_(b, to + 1);
    return;
  }
  int first = 1;
  for (const char *f = from + common; *f; f++)
    if (*f == '/') { puts_(b, first ? ".." : "/.."); first = 0; }
  const char *rest = to + common;
  if (*rest == '/') rest++;
  if (*rest) {
    if (!first) put(b, "/", 1);
    puts_(b, rest);
  }
}

struct request { const char *root, *context, *file, *target; int quiet, no_cache; struct buf tags, args; };

/* A build flag's value: `--name=V` inline, else the next argument (one that looks like a flag is the Node.js CLI's to refuse). */
static const char *value_of(char **argv, int *i, const char *inline_value) {
  if (inline_value) return inline_value;
  const char *v = argv[*i + 1];
  if (!v || v[0] == '-') node_cli();
  (*i)++;
  return v;
}

static void add_build_arg(struct buf *b, const char *kv) {
  const char *eq = strchr(kv, '=');
  char key[4096];
  const char *val;
  if (eq) {
    if ((size_t)(eq - kv) >= sizeof key) node_cli();
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = 0;
    val = eq + 1;
  } else {
    /* `--build-arg NAME` takes the client's $NAME, and nothing when it is unset (cli/args.ts). */
    snprintf(key, sizeof key, "%s", kv);
    val = getenv(kv);
    if (!val) return;
    if (!plain_arg(val)) node_cli();
  }
  if (b->len) put(b, ",", 1);
  json_str(b, key);
  put(b, ":", 1);
  json_str(b, val);
}

/* The line this program handles, or a hand-over to the Node.js CLI. */
static void parse(int argc, char **argv, struct request *r) {
  int i = 1;
  const char *env_root = getenv("SLIPWAY_ROOT");
  r->root = env_root && *env_root ? env_root : "/var/lib/slipway";
  for (int k = 1; k < argc; k++)
    if (!plain_arg(argv[k])) node_cli();
  if (i < argc && !strcmp(argv[i], "--root")) { if (i + 1 >= argc) node_cli(); r->root = argv[i + 1]; i += 2; }
  else if (i < argc && !strncmp(argv[i], "--root=", 7)) { r->root = argv[i] + 7; i++; }
  if (i >= argc || strcmp(argv[i], "build") || !*r->root) node_cli();
  for (i++; i < argc; i++) {
    char *a = argv[i];
    if (a[0] != '-') { if (r->context) node_cli(); r->context = a; continue; }
    char name[32] = "";
    const char *inline_value = NULL;
    if (a[1] == '-') {
      const char *eq = strchr(a, '=');
      size_t n = eq ? (size_t)(eq - a) : strlen(a);
      if (n >= sizeof name) node_cli();
      memcpy(name, a, n);
      name[n] = 0;
      inline_value = eq ? eq + 1 : NULL;
    } else if (a[1] && !a[2]) snprintf(name, sizeof name, "%s", a);
    else node_cli();
    if (!strcmp(name, "-t") || !strcmp(name, "--tag")) {
      if (r->tags.len) put(&r->tags, ",", 1);
      json_str(&r->tags, value_of(argv, &i, inline_value));
    } else if (!strcmp(name, "-f") || !strcmp(name, "--file")) r->file = value_of(argv, &i, inline_value);
    else if (!strcmp(name, "--target")) r->target = value_of(argv, &i, inline_value);
    else if (!strcmp(name, "--build-arg")) add_build_arg(&r->args, value_of(argv, &i, inline_value));
    else if (!inline_value && (!strcmp(name, "-q") || !strcmp(name, "--quiet"))) r->quiet = 1;
    else if (!inline_value && !strcmp(name, "--no-cache")) r->no_cache = 1;
    else node_cli();
  }
  if (!r->context || !strcmp(r->context, "-") || (r->file && !strcmp(r->file, "-"))) node_cli();
}

/*
 * Ctrl-C: what the Node.js client prints, then exit, which closes the connection and so cancels
 * the build in the engine. Done in the handler (write and _exit are async-signal-safe), so that
 * no signal can fall between a check and a blocking read.
 */
static void on_signal(int sig) {
  (void)sig;
  static const char msg[] = "Error: build cancelled\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  _exit(1);
}

/* Reads exactly n bytes; 0 at a clean end before any of them, -1 on an error or a cut-off frame. */
static int read_full(int fd, void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, (char *)p + got, n - got);
    if (k > 0) { got += (size_t)k; continue; }
    if (k == 0) return got == 0 ? 0 : -1;
    if (errno == EINTR) continue;
    return -1;
  }
  return 1;
}

/* Writes all of it, unless the reader went away: then the rest of the output is dropped, as the Node.js CLI does. */
static void write_out(int fd, int *gone, const char *p, size_t n) {
  while (n > 0 && !*gone) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) { *gone = 1; return; }
    p += k;
    n -= (size_t)k;
  }
}

static int fail(const char *sock, const char *what) {
  fprintf(stderr, "Error: the engine at %s %s\n", sock, what);
  return 1;
}

/* The answer: HTTP head, then frames until the exit status. Returns the status to exit with. */
static int relay(int fd, const char *sock) {
  char head[16384];
  size_t len = 0;
  char *end = NULL;
  while (!end) {
    if (len == sizeof head - 1) node_cli();
    ssize_t k = read(fd, head + len, sizeof head - 1 - len);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) node_cli();  /* gone before it answered: nothing started */
    len += (size_t)k;
    head[len] = 0;
    end = strstr(head, "\r\n\r\n");
  }
  /* A refusal (400 for a bad tag, 403, …) or an engine that answers in events: nothing was built, so the Node.js CLI takes over. */
  if (strncmp(head, "HTTP/1.", 7) || strncmp(head + 8, " 200 ", 5) || !strcasestr(head, "\r\ncontent-type: application/vnd.docker.multiplexed-stream")) {
    close(fd);
    node_cli();
  }
  char *body = end + 4;
  size_t have = len - (size_t)(body - head);
  int out_gone = 0, err_gone = 0;
  for (;;) {
    uint8_t h[8];
    size_t from_head = have < 8 ? have : 8;
    memcpy(h, body, from_head);
    body += from_head;
    have -= from_head;
    int r = from_head == 8 ? 1 : read_full(fd, h + from_head, 8 - from_head);
    if (r == 0 && from_head == 0) return fail(sock, "ended the build without a result");
    if (r <= 0) return fail(sock, "went away");
    uint32_t n = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    char *p = malloc(n + 1);
    if (!p) return fail(sock, "sent a frame too large to hold");
    size_t take = have < n ? have : n;
    memcpy(p, body, take);
    body += take;
    have -= take;
    if (take < n && read_full(fd, p + take, n - take) <= 0) {
      free(p);
      return fail(sock, "went away");
    }
    p[n] = 0;
    if (h[0] == 1) write_out(1, &out_gone, p, n);
    else if (h[0] == 2) write_out(2, &err_gone, p, n);
    else if (h[0] == 3) {
      char *e;
      long status = strtol(p, &e, 10);
      int malformed = n == 0 || *e || status < 0 || status > 255;
      free(p);
      if (malformed) return fail(sock, "sent a malformed answer");
      return (int)status;
    }
    free(p);
  }
}

/* A Dockerfile that is a pipe, socket or device is the Node.js CLI's to refuse or read (cli/build-cmd.ts). */
static void check_dockerfile(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) node_cli();
}

int main(int argc, char **argv) {
  g_argv = argv;
  const char *engine = getenv("SLIPWAY_ENGINE"), *debug = getenv("SLIPWAY_DEBUG");
  if ((engine && !strcmp(engine, "off")) || (debug && !strcmp(debug, "1")) || getuid() != 0) node_cli();
  struct request r = {0};
  parse(argc, argv, &r);

  char root[PATH_MAX], context[PATH_MAX], file[PATH_MAX + 16];
  resolve(r.root, root, sizeof root);
  resolve(r.context, context, sizeof context);
  if (r.file) resolve(r.file, file, sizeof file);
  else snprintf(file, sizeof file, "%s/Dockerfile", !strcmp(context, "/") ? "" : context);
  check_dockerfile(file);

  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/slipway.sock", !strcmp(root, "/") ? "" : root);
  struct stat st;
  /* Only root's engine: a socket another user made (in a folder they can write) is not one to send a root build to. */
  if (n < 0 || (size_t)n >= sizeof addr.sun_path || lstat(addr.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != 0) node_cli();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) node_cli();

  struct buf body = {0};
  puts_(&body, "{\"contextDir\":");
  json_str(&body, context);
  if (r.file) {
    struct buf rel = {0};
    relative(context, file, &rel);
    puts_(&body, ",\"dockerfile\":");
    json_str(&body, rel.p ? rel.p : "");
  }
  puts_(&body, ",\"tags\":[");
  if (r.tags.p) puts_(&body, r.tags.p);
  puts_(&body, "],\"buildArgs\":{");
  if (r.args.p) puts_(&body, r.args.p);
  puts_(&body, "}");
  if (r.target) { puts_(&body, ",\"target\":"); json_str(&body, r.target); }
  puts_(&body, r.no_cache ? ",\"noCache\":true" : ",\"noCache\":false");
  puts_(&body, r.quiet ? ",\"render\":{\"quiet\":true}}" : ",\"render\":{\"quiet\":false}}");

  struct buf req = {0};
  char head[256];
  /* HTTP/1.0: the answer ends with the connection, never in chunks. */
  snprintf(head, sizeof head, "POST /slipway/v1/local-builds HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.len);
  puts_(&req, head);
  put(&req, body.p, body.len);

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = { .sa_handler = on_signal };
  sigfillset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  for (size_t off = 0; off < req.len;) {
    ssize_t k = write(fd, req.p + off, req.len - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) node_cli();
    off += (size_t)k;
  }
  int status = relay(fd, addr.sun_path);
  close(fd);
  return status;
}
