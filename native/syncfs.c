/*
 * slipway-syncfs: writes a step's new layer to disk before the layer is registered, as the
 * overlay's unmount used to (it synced the whole upper filesystem on the step's critical path;
 * steps now mount their overlay `volatile`, and this runs beside the layer's pack instead).
 *
 *   slipway-syncfs DIR      syncfs(2) on the filesystem holding DIR; exit 0, or 1 and a line on stderr
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* Dies with the spawner that started it, as the packer does. */
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return 1;
  if (argc != 2) { fprintf(stderr, "usage: slipway-syncfs DIR\n"); return 1; }
  int fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs(fd) != 0) {
    fprintf(stderr, "slipway-syncfs: cannot sync the filesystem of %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  return 0;
}
