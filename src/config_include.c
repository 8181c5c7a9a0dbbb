/* config_include.c - the @include pre-scan run before libconfig.  See
 * config_int.h and the comment below. */
#include "config_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* libconfig 1.5 reads an @include'd file through flex, which calls exit()
 * when the read fails ("input in flex scanner failed" for a directory) and
 * blocks on a FIFO or a terminal: a reload (SIGHUP) would take the daemon
 * down instead of keeping the running configuration.  So every @include
 * line, matched as libconfig's scanner matches it (line start, blanks,
 * "@include", blanks, a quoted path whose only escapes are \\ and \"), in
 * the file and in what it includes, must name a regular file before
 * libconfig runs.  A path that does not exist is left to libconfig, which
 * reports it as before.  An @include inside a block comment is checked too. */
int config_check_includes(struct loader *ld, const char *file, int depth)
{
    char *line = NULL, path[PATH_MAX];
    size_t cap = 0;
    int lineno = 0, rc = 0;
    struct stat st;
    FILE *f;

    if (depth > 10 || (f = ld->open(file)) == NULL) /* libconfig reports both */
        return 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        const char *p = line + strspn(line, " \t");
        size_t n = 0;

        lineno++;
        if (strncmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
            continue;
        p += 8 + strspn(p + 8, " \t");
        if (*p++ != '"')
            continue;
        for (; *p != '\0' && *p != '"' && n < sizeof path - 1; p++) {
            if (*p == '\\' && (p[1] == '\\' || p[1] == '"'))
                p++;
            path[n++] = *p;
        }
        path[n] = '\0';
        if (*p != '"' || stat(path, &st) < 0)
            continue;
        if (!S_ISREG(st.st_mode)) {
            ld->cur_file = file;
            rc = config_fail_at(ld, lineno, "@include \"%s\" is not a regular file", path);
        } else {
            rc = config_check_includes(ld, path, depth + 1);
        }
    }
    free(line);
    fclose(f);
    return rc;
}
