/* The race helper of `cargo xtask vm-test` (xtask/src/vm_race.rs) and of
 * tests/evasion.rs.
 *
 * A second thread keeps rewriting the destination name of a rename: mostly
 * a benign name, now and then, briefly, a guardrail path. The syscall
 * entry copies the name first and the kernel copies it again later, so
 * some renames are judged on the benign name while the kernel moves the
 * file to the guardrail path. Each try renames a fresh file `p`.
 *
 * usage: race TARGET TRIES
 * prints: RACE tries=N planted=N refused=N other=N
 * planted: 1 when a rename succeeded and TARGET exists (the effect
 * landed), which ends the run at that try (TARGET must not exist before).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char name[256] __attribute__((aligned(64)));
static const char *benign = "q";
static const char *target;
static volatile int stop;

/* xorshift: the spins vary, so the two threads' loops never lock in phase
 * (under emulation a fixed rhythm can keep the rewrite away from the
 * kernel's copy for a whole run). */
static unsigned next(unsigned *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void spin(unsigned n) {
  for (volatile unsigned i = 0; i < n; i++) {
  }
}

static void *flip(void *unused) {
  size_t bl = strlen(benign) + 1, tl = strlen(target) + 1;
  unsigned s = 2463534242u;
  (void)unused;
  while (!stop) {
    memcpy(name, target, tl);
    spin(next(&s) % 64);
    memcpy(name, benign, bl);
    spin(next(&s) % 1024);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: race TARGET TRIES\n");
    return 2;
  }
  target = argv[1];
  int tries = atoi(argv[2]);
  struct stat before;
  if (stat(target, &before) == 0) {
    fprintf(stderr, "%s exists already\n", target);
    return 2;
  }
  int planted = 0, refused = 0, other = 0;
  strcpy(name, benign);
  pthread_t t;
  if (pthread_create(&t, NULL, flip, NULL) != 0)
    return 1;
  unsigned seed = 88172645u;
  for (int i = 0; i < tries; i++) {
    spin(next(&seed) % 256);
    int fd = open("p", O_CREAT | O_WRONLY | O_TRUNC, 0755);
    if (fd < 0)
      return 1;
    if (write(fd, "#!/bin/sh\necho planted\n", 23) != 23)
      return 1;
    close(fd);
    struct stat st;
    if (rename("p", name) == 0) {
      /* The effect landed: that is the finding. Nothing more to count (an
       * enforcer would refuse the unlink, and later tries would see it). */
      if (stat(target, &st) == 0) {
        planted++;
        tries = i + 1;
        break;
      }
    } else if (errno == EPERM) {
      refused++;
    } else {
      other++;
    }
  }
  stop = 1;
  pthread_join(t, NULL);
  printf("RACE tries=%d planted=%d refused=%d other=%d\n", tries, planted, refused,
         other);
  return 0;
}
