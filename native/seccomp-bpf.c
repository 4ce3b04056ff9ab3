/*
 * slipway-seccomp: compiles a seccomp profile into the BPF program the kernel loads, once, so
 * that the runtime does not compile it again for every step (crun loads it from the
 * run.oci.seccomp_bpf_data annotation). Reads the profile on stdin, one directive a line,
 * as src/sandbox/seccomp-bpf.ts writes it from the OCI profile; writes the program to stdout.
 *
 *   default errno N           action for every call not allowed (SCMP_ACT_ERRNO(N))
 *   arch NAME                 an architecture, as libseccomp names them (x86_64, x86, x32)
 *   allow NAME                allow NAME with any arguments
 *   allow NAME I OP V [V2]    allow NAME when argument I compares OP (eq, ne, masked_eq, ...) to V
 *   errno N NAME              NAME fails with errno N
 *
 * A name libseccomp does not know on this system is skipped, as runtimes do.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, int err) {
  fprintf(stderr, "slipway-seccomp: %s: %s\n", what, strerror(err < 0 ? -err : err));
  exit(1);
}

static int compare_op(const char *op, enum scmp_compare *out) {
  static const struct { const char *name; enum scmp_compare op; } ops[] = {
    {"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE}, {"eq", SCMP_CMP_EQ},
    {"ge", SCMP_CMP_GE}, {"gt", SCMP_CMP_GT}, {"masked_eq", SCMP_CMP_MASKED_EQ},
  };
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    if (strcmp(op, ops[i].name) == 0) { *out = ops[i].op; return 0; }
  }
  return -1;
}

/* One `allow` or `errno` line: the action, the call, and an optional argument comparison. */
static void add_rule(scmp_filter_ctx ctx, uint32_t action, char *rest, int lineno) {
  char *name = strtok(rest, " \n");
  if (!name) { fprintf(stderr, "slipway-seccomp: line %d: no syscall\n", lineno); exit(1); }
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return;
  char *index = strtok(NULL, " \n");
  if (!index) {
    int r = seccomp_rule_add(ctx, action, nr, 0);
    if (r < 0 && r != -EEXIST) die(name, r);
    return;
  }
  char *op = strtok(NULL, " \n"), *a = strtok(NULL, " \n"), *b = strtok(NULL, " \n");
  struct scmp_arg_cmp cmp;
  memset(&cmp, 0, sizeof cmp);
  if (!op || !a || compare_op(op, &cmp.op) < 0) { fprintf(stderr, "slipway-seccomp: line %d: bad comparison\n", lineno); exit(1); }
  cmp.arg = (unsigned)strtoul(index, NULL, 10);
  cmp.datum_a = strtoull(a, NULL, 0);
  cmp.datum_b = b ? strtoull(b, NULL, 0) : 0;
  int r = seccomp_rule_add_array(ctx, action, nr, 1, &cmp);
  if (r < 0 && r != -EEXIST) die(name, r);
}

int main(void) {
  char line[512];
  scmp_filter_ctx ctx = NULL;
  int lineno = 0;
  while (fgets(line, sizeof line, stdin)) {
    lineno++;
    if (line[0] == '\n' || line[0] == '#') continue;
    if (strncmp(line, "default errno ", 14) == 0) {
      ctx = seccomp_init(SCMP_ACT_ERRNO((uint32_t)atoi(line + 14)));
      if (!ctx) die("seccomp_init", ENOMEM);
      /* A binary tree of the syscall numbers instead of a long chain of comparisons. */
      seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
      continue;
    }
    if (!ctx) { fprintf(stderr, "slipway-seccomp: the first line must be \"default errno N\"\n"); return 1; }
    if (strncmp(line, "arch ", 5) == 0) {
      line[strcspn(line, "\n")] = 0;
      uint32_t arch = seccomp_arch_resolve_name(line + 5);
      if (arch == 0) { fprintf(stderr, "slipway-seccomp: unknown architecture %s\n", line + 5); return 1; }
      int r = seccomp_arch_add(ctx, arch);
      if (r < 0 && r != -EEXIST) die("seccomp_arch_add", r);
    } else if (strncmp(line, "allow ", 6) == 0) {
      add_rule(ctx, SCMP_ACT_ALLOW, line + 6, lineno);
    } else if (strncmp(line, "errno ", 6) == 0) {
      char *rest;
      long err = strtol(line + 6, &rest, 10);
      add_rule(ctx, SCMP_ACT_ERRNO((uint32_t)err), rest, lineno);
    } else {
      fprintf(stderr, "slipway-seccomp: line %d: unknown directive\n", lineno);
      return 1;
    }
  }
  if (!ctx) { fprintf(stderr, "slipway-seccomp: empty profile\n"); return 1; }
  int r = seccomp_export_bpf(ctx, 1);
  if (r < 0) die("seccomp_export_bpf", r);
  seccomp_release(ctx);
  return 0;
}
