/*
 * Test subject for the /proc reader live tests. Sets up known state, prints
 * one line describing it on stdout, then sleeps until killed.
 *
 *   helper files DIR     comm "a) (b c)", fds 3..9 (see below), odd VMAs
 *   helper touch N LIST  mmap N pages, write the pages in LIST ("0-9,20,100-199"), or populate "all"
 *   helper tree          fork: root -> {A -> {A1, A2}, B}; prints "root A A1 A2 B"
 *   helper threads N     start N threads named t1..tN; prints their tids
 *   helper zombie        fork a child that exits at once and is never reaped; prints its pid
 *   helper cow FILE LIST map FILE privately and read all of it, write the pages in LIST
 *                        (copied on write), read every other page of an anonymous region
 *                        as large (the zero page), write pages LIST of it; prints both starts
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void sleep_forever(void) {
  for (;;) pause();
}

static int files(const char *dir) {
  char path[4096];
  prctl(PR_SET_NAME, "a) (b c)");
  snprintf(path, sizeof path, "%s/with space.txt", dir);
  /* fd 3: regular file, O_CLOEXEC, position 5, unlinked, also mapped shared */
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd != 3) return 1;
  if (ftruncate(fd, 4 * 4096) || lseek(fd, 5, SEEK_SET) != 5) return 1;
  char *file = mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  unlink(path);
  int p[2], sv[2];
  if (pipe(p)) return 1;                               /* fds 4, 5 */
  if (eventfd(7, EFD_NONBLOCK) != 6) return 1;         /* fd 6 */
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1; /* fds 7, 8 */
  if (open("/dev/null", O_RDONLY) != 9) return 1;      /* fd 9 */
  char *growsdown = mmap(0, 4 * 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
  char *dontdump = mmap(0, 4 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(dontdump, 4 * 4096, MADV_DONTDUMP);
  char *shared = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  shared[0] = 1;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, 0);
  signal(SIGUSR2, SIG_IGN);
  printf("%p %p %p %p\n", file, growsdown, dontdump, shared);
  fflush(stdout);
  sleep_forever();
  return 0;
}

/* Marks pages of LIST ("0-9,20") written. */
static void write_list(char *a, const char *list) {
  char *s = strdup(list);
  for (char *tok = strtok(s, ","); tok; tok = strtok(0, ",")) {
    long lo = atol(tok), hi = lo;
    char *dash = strchr(tok, '-');
    if (dash) hi = atol(dash + 1);
    for (long i = lo; i <= hi; i++) a[i * 4096] = 1;
  }
  free(s);
}

static int touch(long pages, const char *list) {
  long size = pages * 4096;
  int all = strcmp(list, "all") == 0;
  /* MAP_POPULATE faults everything in at once, much faster than a write per page;
   * MAP_NORESERVE lets a huge sparse region be mapped at all. */
  char *a = mmap(0, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (all ? MAP_POPULATE : 0), -1, 0);
  if (!all) {
    /* Huge pages would make whole 2 MiB blocks present at once. */
    madvise(a, size, MADV_NOHUGEPAGE);
    write_list(a, list);
  }
  printf("%p\n", a);
  fflush(stdout);
  sleep_forever();
  return 0;
}


static int cow(const char *path, const char *list) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 1;
  long size = lseek(fd, 0, SEEK_END);
  char *f = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  char *a = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (f == MAP_FAILED || a == MAP_FAILED) return 1;
  madvise(f, size, MADV_NOHUGEPAGE);
  madvise(a, size, MADV_NOHUGEPAGE);
  volatile char sink = 0;
  for (long i = 0; i < size; i += 4096) sink += f[i];
  for (long i = 0; i < size; i += 2 * 4096) sink += a[i];
  write_list(f, list);
  write_list(a, list);
  printf("%p %p\n", f, a);
  fflush(stdout);
  sleep_forever();
  return 0;
}

/* Forks a child that runs `body`; returns its pid once it has started. */
static pid_t spawn(void (*body)(int)) {
  int ready[2];
  if (pipe(ready)) exit(1);
  pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    body(ready[1]);
  }
  close(ready[1]);
  char c;
  if (read(ready[0], &c, 1) != 1) exit(1);
  close(ready[0]);
  return pid;
}

static void leaf(int ready) {
  if (write(ready, "x", 1) != 1) exit(1);
  sleep_forever();
}

static void node_a(int ready) {
  /* Report both grandchildren in one write: a pipe write this small is
     atomic, so the parent's single read gets both. */
  pid_t kids[2] = {spawn(leaf), spawn(leaf)};
  if (write(ready, kids, sizeof kids) != sizeof kids) exit(1);
  sleep_forever();
}

static int tree(void) {
  int ready[2];
  if (pipe(ready)) return 1;
  pid_t a = fork();
  if (a == 0) {
    close(ready[0]);
    node_a(ready[1]);
  }
  close(ready[1]);
  pid_t kids[2];
  if (read(ready[0], kids, sizeof kids) != sizeof kids) return 1;
  pid_t b = spawn(leaf);
  printf("%d %d %d %d %d\n", getpid(), a, kids[0], kids[1], b);
  fflush(stdout);
  sleep_forever();
  return 0;
}

static void *thread_main(void *arg) {
  char name[16];
  snprintf(name, sizeof name, "t%ld", (long)arg);
  prctl(PR_SET_NAME, name);
  printf("%d\n", gettid());
  fflush(stdout);
  sleep_forever();
  return 0;
}

static int threads(int n) {
  for (long i = 1; i <= n; i++) {
    pthread_t t;
    pthread_create(&t, 0, thread_main, (void *)i);
  }
  sleep_forever();
  return 0;
}

static int zombie(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(3);
  printf("%d\n", pid);
  fflush(stdout);
  sleep_forever();
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "files") == 0) return files(argv[2]);
  if (argc == 4 && strcmp(argv[1], "touch") == 0) return touch(atol(argv[2]), argv[3]);
  if (argc == 2 && strcmp(argv[1], "tree") == 0) return tree();
  if (argc == 3 && strcmp(argv[1], "threads") == 0) return threads(atoi(argv[2]));
  if (argc == 2 && strcmp(argv[1], "zombie") == 0) return zombie();
  if (argc == 4 && strcmp(argv[1], "cow") == 0) return cow(argv[2], argv[3]);
  fprintf(stderr, "usage: see the comment at the top of helper.c\n");
  return 2;
}
