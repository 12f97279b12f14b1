/*
 * onstack WORKDIR: frozen inside a SIGUSR1 handler running on the
 * alternate signal stack, blocked in sigsuspend() with a temporary mask
 * that lets only SIGUSR2 through.  The harness checkpoints it there,
 * restarts it, then sends SIGUSR2.  Checks that the restored task is still
 * on the alternate stack (sigaltstack reports SS_ONSTACK), that sigsuspend
 * gave back the handler's own mask (not the temporary one), and that the
 * mask and stack are back to normal once the handler returns.
 * Uses the fixture protocol of test/fixtures/fixture.h; ready is written
 * from inside the handler, just before sigsuspend (syscall 130).
 */
#include "fixture.h"

#include <signal.h>

#define ALT_SIZE (64 * 1024)

static char alt[ALT_SIZE] __attribute__((aligned(16)));
static volatile sig_atomic_t usr1, usr2;

static void h2(int s) {
  (void)s;
  usr2++;
}

static void h1(int s) {
  (void)s;
  char probe;
  usr1++;
  FX_CHECK(&probe >= alt && &probe < alt + ALT_SIZE, "SIGUSR1 handler not on the alternate stack");
  sigset_t tmp;
  sigfillset(&tmp);
  sigdelset(&tmp, SIGUSR2);
  fx_ready();
  sigsuspend(&tmp);
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  FX_CHECK(sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGTERM) && !sigismember(&cur, SIGHUP) &&
               !sigismember(&cur, SIGUSR2),
           "mask after sigsuspend is not the handler's {SIGUSR1, SIGTERM}");
  stack_t ss;
  sigaltstack(NULL, &ss);
  FX_CHECK(ss.ss_flags == SS_ONSTACK && ss.ss_sp == alt && ss.ss_size == ALT_SIZE,
           "in the handler: sigaltstack sp=%p size=%zu flags=%d, want %p %d SS_ONSTACK", ss.ss_sp,
           ss.ss_size, ss.ss_flags, (void *)alt, ALT_SIZE);
  FX_CHECK(&probe >= alt && &probe < alt + ALT_SIZE, "handler left the alternate stack");
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  stack_t ss = {.ss_sp = alt, .ss_size = ALT_SIZE, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) < 0) fx_die("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h2;
  sigaction(SIGUSR2, &sa, NULL);
  sa.sa_handler = h1;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  FX_CHECK(usr1 == 1 && usr2 == 1, "SIGUSR1 x%d, SIGUSR2 x%d, want 1 and 1", (int)usr1, (int)usr2);
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  FX_CHECK(sigisemptyset(&cur), "signals still blocked after the handler returned");
  sigaltstack(NULL, &ss);
  FX_CHECK(ss.ss_flags == 0, "after the handler: sigaltstack flags %d, want 0", ss.ss_flags);
  fx_finish(NULL);
}
