/* Benchmark target: touches N MiB of pseudo-random data, then spins
   checking nothing, so checkpoint sees N MiB of dirty anonymous memory. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* Only stdio: no descriptor the harness happened to leak (a shell's
     pipe, say) becomes part of the tree being measured. */
  syscall(SYS_close_range, 3, ~0U, 0);
  size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 256;
  size_t n = mib << 20;
  uint64_t *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 1;
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < n / 8; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = x;
  }
  if (argc > 2) { FILE *f = fopen(argv[2], "w"); fprintf(f, "%d\n", getpid()); fclose(f); }
  for (;;) pause();
}
