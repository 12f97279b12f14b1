/* Benchmark target: a parent with N-1 children, all waiting in pause(),
   for checkpoint/restart of a whole tree. Writes the parent's pid to
   argv[2] once every child exists. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* Only stdio: no descriptor the harness happened to leak (a shell's
     pipe, say) becomes part of the tree being measured. */
  syscall(SYS_close_range, 3, ~0U, 0);
  int n = argc > 1 ? atoi(argv[1]) : 128;
  for (int i = 1; i < n; i++) {
    pid_t p = fork();
    if (p == 0) {
      for (;;) pause();
    }
    if (p < 0) return 1;
  }
  if (argc > 2) {
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
  }
  for (;;) pause();
}
