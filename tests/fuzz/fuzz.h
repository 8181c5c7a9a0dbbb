/* fuzz.h - what the libFuzzer targets share: an input reader that splits
 * the fuzzer's bytes into the pieces a target needs, and a hard check that
 * aborts (so libFuzzer saves the input) when an invariant breaks.
 *
 * Targets are built with clang -fsanitize=fuzzer,address,undefined against
 * the project's objects (make fuzz).  Every target is deterministic and
 * frees everything it allocates: LeakSanitizer runs after every input. */
#ifndef ORP_FUZZ_H
#define ORP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* The unread rest of the input.  Borrowed: points into libFuzzer's buffer. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline unsigned fuzz_byte(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fuzz_byte(in);
    return v;
}

/* The next line (up to '\n', which is consumed) as a malloc'd string with
 * a NUL appended; NULL-free: an exhausted input gives "".  The caller frees. */
static inline char *fuzz_line(struct fuzz_in *in)
{
    const uint8_t *nl = memchr(in->p, '\n', in->n);
    size_t len = nl != NULL ? (size_t)(nl - in->p) : in->n;
    char *s = malloc(len + 1);

    if (s == NULL)
        abort();
    memcpy(s, in->p, len);
    s[len] = '\0';
    in->p += len;
    in->n -= len;
    if (nl != NULL) {
        in->p++;
        in->n--;
    }
    return s;
}

/* The rest as a malloc'd copy of exactly n bytes (no terminator: ASan sees
 * any read past the end), or with a NUL appended when nul != 0. */
static inline char *fuzz_rest(struct fuzz_in *in, size_t *len, int nul)
{
    size_t sz = in->n + (nul ? 1 : 0);
    char *s = malloc(sz > 0 ? sz : 1);

    if (s == NULL)
        abort();
    if (in->n > 0)
        memcpy(s, in->p, in->n);
    if (nul)
        s[in->n] = '\0';
    *len = in->n;
    in->p += in->n;
    in->n = 0;
    return s;
}

/* A scratch directory for targets that must go through files, made once
 * per process (mkdtemp under /dev/shm when it is there, else TMPDIR or
 * /tmp) and removed with what is in it at exit. */
const char *fuzz_scratch_dir(void);

#endif
