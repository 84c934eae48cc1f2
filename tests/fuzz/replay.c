/* SPDX-License-Identifier: MIT */
/* Replays a corpus directory through a libFuzzer target without libFuzzer,
 * so every build (gcc, valgrind, ASan) checks the seeds and past crashes. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return -1;
        size_t cap = 1 << 16, n = 0;
        uint8_t *buf = malloc(cap);
        size_t k;
        while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
                n += k;
                if (n == cap) {
                        uint8_t *nb = realloc(buf, cap *= 2);
                        if (!nb) {
                                free(buf);
                                buf = NULL;
                        }
                        buf = nb;
                }
        }
        fclose(f);
        if (!buf)
                return -1;
        /* a copy of exactly n bytes, so ASan/valgrind see reads past the end */
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        free(buf);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        return 0;
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
                return 2;
        }
        DIR *d = opendir(argv[1]);
        if (!d) {
                perror(argv[1]);
                return 1;
        }
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[1], de->d_name);
                if (run_file(p) < 0) {
                        fprintf(stderr, "cannot read %s\n", p);
                        closedir(d);
                        return 1;
                }
                n++;
        }
        closedir(d);
        printf("%d inputs replayed\n", n);
        return n > 0 ? 0 : 1;
}
