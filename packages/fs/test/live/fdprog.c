/*
 * fdprog MODE DIR: sets up one kind of fd state for the @ckpt/fs live
 * tests and writes DIR/ready. The modes that are restarted then poll for
 * DIR/go (every 10 ms) and check or report: exit 0 = checks passed, 1 = setup
 * failed, 2 = a check failed, 3 = no go within 20 s.
 *
 *   deleted  opens the directory DIR/gone.d at fd 5 and removes it; pauses forever
 *   userfaultfd  a userfaultfd at fd 5; pauses forever
 *   listen   a TCP socket listening on 127.0.0.1 (any port) at fd 5, with a
 *            connection from fd 6 waiting to be accepted; pauses forever
 *   socketpair  a unix stream socketpair: fd 5 here, the other end in a
 *            process outside the tree (for 30 s); pauses forever
 *   covered  opens DIR/h/f at fd 5 and enters DIR/c (the test then mounts over
 *            one of them); pauses forever
 *   stdio    fd 1 and fd 7 go to the FIFO DIR/fifo (O_WRONLY); writes "before\n"
 *            to fd 1; after go writes "after PID\n" to fd 1 and "fd7 PID\n"
 *            to fd 7
 *   dir      opens directory DIR/d at fd 5; after go checks it is a directory
 *   chroot   chroot(DIR), chdir("/sub"); after go checks getcwd() == "/sub"
 *            and that "/marker" can be opened
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[4096];

static void at(char *out, const char *name) { snprintf(out, 4200, "%s/%s", dir, name); }

static void ready(void) {
  char p[4200], tmp[4200], text[32];
  at(p, "ready");
  at(tmp, ".ready");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int n = snprintf(text, sizeof text, "%d\n", getpid());
  if (fd < 0 || write(fd, text, n) != n) exit(1);
  close(fd);
  rename(tmp, p);
}

/* Give up after 20 s, so that a broken restart fails the test quickly. */
static void wait_go(const char *go) {
  for (int i = 0; access(go, F_OK) != 0; i++) {
    if (i == 2000) exit(3);
    usleep(10000);
  }
}

static void place(int fd, int at_fd) {
  if (fd < 0 || dup2(fd, at_fd) != at_fd) exit(1);
  if (fd != at_fd) close(fd);
}

int main(int argc, char **argv) {
  if (argc < 3) return 1;
  const char *mode = argv[1];
  snprintf(dir, sizeof dir, "%s", argv[2]);
  char p[4200], go[4200];
  if (!strcmp(mode, "deleted")) {
    at(p, "gone.d");
    if (mkdir(p, 0755) < 0) return 1;
    place(open(p, O_RDONLY | O_DIRECTORY), 5);
    if (rmdir(p) < 0) return 1;
  } else if (!strcmp(mode, "userfaultfd")) {
    place((int)syscall(SYS_userfaultfd, 0), 5);
  } else if (!strcmp(mode, "listen")) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4) < 0) return 1;
    place(s, 5);
    /* A connection waiting to be accepted. */
    socklen_t len = sizeof a;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (getsockname(5, (struct sockaddr *)&a, &len) < 0 || connect(c, (struct sockaddr *)&a, len) < 0)
      return 1;
    place(c, 6);
  } else if (!strcmp(mode, "covered")) {
    at(p, "h");
    if (mkdir(p, 0755) < 0) return 1;
    at(p, "h/f");
    place(open(p, O_RDWR | O_CREAT, 0644), 5);
    at(p, "c");
    if (mkdir(p, 0755) < 0 || chdir(p) < 0) return 1;
  } else if (!strcmp(mode, "socketpair")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return 1;
    place(sv[0], 5);
    /* The other end goes to a process outside the tree: a grandchild
       whose parent exits at once, so that it is reparented away. */
    pid_t c = fork();
    if (c == 0) {
      if (fork() == 0) {
        close(5);
        sleep(30);
        _exit(0);
      }
      _exit(0);
    }
    close(sv[1]);
    waitpid(c, NULL, 0);
  } else if (!strcmp(mode, "stdio")) {
    at(p, "fifo");
    place(open(p, O_WRONLY), 1);
    place(dup(1), 7);
    if (write(1, "before\n", 7) != 7) return 1;
  } else if (!strcmp(mode, "dir")) {
    at(p, "d");
    place(open(p, O_RDONLY | O_DIRECTORY), 5);
  } else if (!strcmp(mode, "chroot")) {
    if (chroot(dir) < 0 || chdir("/sub") < 0) return 1;
    dir[0] = 0; /* DIR is "/" now */
  } else {
    return 1;
  }
  at(go, "go");
  ready();
  if (!strcmp(mode, "deleted") || !strcmp(mode, "userfaultfd") || !strcmp(mode, "listen") ||
      !strcmp(mode, "socketpair") ||
      !strcmp(mode, "covered"))
    for (;;) pause();
  wait_go(go);
  if (!strcmp(mode, "stdio")) {
    char line[64];
    int n = snprintf(line, sizeof line, "after %d\n", getpid());
    if (write(1, line, n) != n) return 2;
    n = snprintf(line, sizeof line, "fd7 %d\n", getpid());
    return write(7, line, n) == n ? 0 : 2;
  }
  if (!strcmp(mode, "dir")) {
    struct stat st;
    return fstat(5, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : 2;
  }
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/sub")) return 2;
  int fd = open("/marker", O_RDONLY);
  return fd >= 0 ? 0 : 2;
}
