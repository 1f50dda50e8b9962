/* The C test program for capsa-shim's tests, built with clang-14 --target=wasm32-wasi at test
 * time. One mode per behaviour: `prog MODE [ARG]`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(mode, "echo")) {
        for (int i = 0; i < argc; i++) printf("arg %s\n", argv[i]);
        for (char **e = environ; *e; e++) printf("env %s\n", *e);
        return 0;
    }
    if (!strcmp(mode, "read")) {
        FILE *f = fopen(arg, "r");
        if (!f) { printf("open %s: %s\n", arg, strerror(errno)); return 1; }
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf, f);
        fwrite(buf, 1, n, stdout);
        return 0;
    }
    if (!strcmp(mode, "write")) {
        FILE *f = fopen(arg, "w");
        if (!f) { printf("open %s: %s\n", arg, strerror(errno)); return 1; }
        fputs("written by wasm\n", f);
        return fclose(f) == 0 ? 0 : 1;
    }
    if (!strcmp(mode, "sleep")) {
        printf("sleeping\n");
        fflush(stdout);
        sleep(60);
        return 0;
    }
    if (!strcmp(mode, "malloc")) {
        /* Each block is kept in a list and touched, so the compiler cannot elide the calls
         * (LLVM removes allocations whose result is only compared with NULL). */
        void **head = NULL;
        for (size_t total = 0;; total += 1 << 20) {
            void **block = malloc(1 << 20);
            if (!block) { printf("malloc failed after %zu MiB\n", total >> 20); return head ? 1 : 3; }
            memset(block, 1, 1 << 20);
            *block = head;
            head = block;
        }
    }
    if (!strcmp(mode, "hello")) {
        printf("hello from wasm\n");
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
