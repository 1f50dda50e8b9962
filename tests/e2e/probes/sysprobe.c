/* sysprobe: what a container's seccomp filter lets through, syscall by syscall.
 *
 * Tries every syscall number of the x86_64, x86 (int 0x80) and x32 ABIs with arguments that
 * make the kernel fail early (-1: a bad fd, a bad pointer, bad flags), each in a forked child,
 * and prints "ABI NR RESULT" (RESULT: ok, an errno number, sig:N, exit:N, hang or skipped).
 * Two containers with the same capabilities on the same kernel print the same lines exactly
 * when their filters agree. Then a few calls whose arguments a profile filters ("arg NAME
 * RESULT"). Built by tests/e2e/confinement.rs with `gcc -static`; x86_64 only. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

static volatile long *slot;

static long call64(long nr, long a) {
    return syscall(nr, a, a, a, a, a, a);
}

/* An i386 syscall from this 64-bit process: seccomp sees AUDIT_ARCH_I386 for int 0x80. The
 * sixth argument goes in ebp, saved around the call (built with -mno-red-zone). */
static long call32(long nr, long a) {
    long ret;
    int b = (int)a;
    __asm__ volatile("push %%rbp\n\tmov %%eax, %%ebp\n\tmov %1, %%eax\n\tint $0x80\n\tpop %%rbp"
                     : "=a"(ret)
                     : "r"((int)nr), "b"(b), "c"(b), "d"(b), "S"(b), "D"(b), "0"(b)
                     : "memory");
    return ret;
}

/* Runs one call in a child; returns the text of its result. */
static const char *probe(int abi, long nr, char *buf) {
    /* sync flushes the host's disks: slow, and says nothing about the filter's. */
    if ((abi == 64 && (nr & ~0x40000000L) == 162) || (abi == 32 && nr == 36)) return "skipped";
    *slot = -100000;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(2);
        pid_t me = getpid();
        long r;
        if (abi == 32) {
            r = call32(nr, -1);
        } else {
            r = call64(nr, -1);
            if (r == -1) r = -errno;
        }
        /* A fork-like call that worked: only the probed child reports (a late grandchild
         * writing the slot would corrupt a later call's result). */
        if (getpid() != me) _exit(0);
        if (r < 0 && r > -4096) { *slot = -r; _exit(0); }
        *slot = 0;
        _exit(0);
    }
    struct timespec step = {0, 200000};
    for (int i = 0; i < 15000; i++) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            long v = *slot;
            if (WIFSIGNALED(status) && v == -100000) { sprintf(buf, "sig:%d", WTERMSIG(status)); return buf; }
            if (v == -100000) { sprintf(buf, "exit:%d", WEXITSTATUS(status)); return buf; }
            if (v == 0) return "ok";
            sprintf(buf, "%ld", v);
            return buf;
        }
        nanosleep(&step, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return "hang";
}

static void named(const char *name, long r) {
    printf("arg %s %s\n", name, r == -1 ? (errno == EPERM ? "EPERM" : strerror(errno)) : "ok");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    slot = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char buf[32];
    int max = argc > 1 ? atoi(argv[1]) : 480;
    for (long nr = 0; nr < max; nr++) printf("x86_64 %ld %s\n", nr, probe(64, nr, buf));
    for (long nr = 512; nr < 548; nr++) printf("x32 %ld %s\n", nr, probe(64, nr | 0x40000000, buf));
    for (long nr = 0; nr < max; nr++) printf("x32 %ld %s\n", nr, probe(64, nr | 0x40000000, buf));
    for (long nr = 0; nr < max; nr++) printf("x86 %ld %s\n", nr, probe(32, nr, buf));
    /* argument filters */
    named("personality(PER_LINUX)", personality(PER_LINUX));
    named("personality(ADDR_NO_RANDOMIZE)", personality(ADDR_NO_RANDOMIZE));
    personality(PER_LINUX);
    named("socket(AF_VSOCK)", socket(40, SOCK_STREAM, 0));
    named("socket(AF_UNIX)", socket(AF_UNIX, SOCK_STREAM, 0));
    named("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
    named("unshare(CLONE_NEWNS)", unshare(CLONE_NEWNS));
    pid_t p = syscall(SYS_clone, CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0);
    if (p == 0) _exit(0);
    if (p > 0) waitpid(p, NULL, 0);
    named("clone(CLONE_NEWUTS)", p);
    p = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (p == 0) _exit(0);
    if (p > 0) waitpid(p, NULL, 0);
    named("clone(plain)", p);
    named("clone3", syscall(435, NULL, 0));
    named("mount(tmpfs)", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL));
    return 0;
}
