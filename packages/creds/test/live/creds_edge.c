/*
 * creds_edge WORKDIR (run as root): credentials the rlimits_creds fixture
 * does not cover, each one a constraint on the order of restore:
 *  - 3000 supplementary groups (more than fit in the restorer's scratch);
 *  - an inheritable capability (NET_RAW) dropped from the bounding set,
 *    which capset can only restore before the bounding set shrinks;
 *  - fsuid and fsgid different from the effective ids;
 *  - CAP_SETPCAP-guarded securebits NOROOT|NOROOT_LOCKED|KEEP_CAPS and
 *    NO_CAP_AMBIENT_RAISE set after raising ambient CHOWN;
 *  - dumpable 0.
 * Protocol of test/fixtures/fixture.h; after go it checks what /proc does
 * not show (securebits, dumpable, the ambient set) and reports PASS/FAIL.
 */
#include "fixture.h"

#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define NGROUPS 3000
#define BIT(c) (1u << (c))
#define SECBITS \
  (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS | SECBIT_NO_CAP_AMBIENT_RAISE)

static void capset_(unsigned eff, unsigned prm, unsigned inh, const char *what) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{eff, prm, inh}, {0, 0, 0}};
  if (syscall(SYS_capset, &h, d) < 0) fx_die("capset %s", what);
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  if (geteuid() != 0) fx_die("must run as root");
  if (chmod(fx_dir, 0777) < 0) fx_die("chmod workdir");
  static gid_t groups[NGROUPS];
  for (int i = 0; i < NGROUPS; i++) groups[i] = 10000 + i;
  if (setgroups(NGROUPS, groups) < 0) fx_die("setgroups");
  capset_(~0u & ~BIT(CAP_SYS_RESOURCE), ~0u & ~BIT(CAP_SYS_RESOURCE), BIT(CAP_NET_RAW), "inh");
  if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW) < 0) fx_die("PR_CAPBSET_DROP");
  if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS) < 0)
    fx_die("PR_SET_SECUREBITS");
  if (setresgid(1000, 1001, 1002) < 0 || setfsgid(1002) < 0) fx_die("gids");
  if (setresuid(1000, 1001, 1002) < 0) fx_die("setresuid");
  unsigned prm = BIT(CAP_CHOWN) | BIT(CAP_KILL) | BIT(CAP_NET_RAW) | BIT(CAP_SETPCAP);
  unsigned inh = BIT(CAP_CHOWN) | BIT(CAP_NET_RAW);
  capset_(BIT(CAP_SETPCAP), prm, inh, "setpcap");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_CHOWN, 0, 0) < 0) fx_die("ambient raise");
  if (prctl(PR_SET_SECUREBITS, SECBITS) < 0) fx_die("PR_SET_SECUREBITS 2");
  capset_(BIT(CAP_KILL), prm, inh, "final");
  setfsuid(1000);
  if (prctl(PR_SET_DUMPABLE, 0) < 0) fx_die("PR_SET_DUMPABLE");
  fx_ready();
  fx_wait_go();

  FX_CHECK(prctl(PR_GET_SECUREBITS) == SECBITS, "securebits 0x%x, want 0x%x",
           prctl(PR_GET_SECUREBITS), SECBITS);
  FX_CHECK(prctl(PR_GET_DUMPABLE) == 0, "dumpable %d, want 0", prctl(PR_GET_DUMPABLE));
  FX_CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0) == 1,
           "ambient CAP_CHOWN lost");
  fx_finish(NULL);
}
