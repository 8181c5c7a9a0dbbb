/* config_err.c - the loader's messages.  See config_int.h.
 *
 * Every error names the file and, when it has one, the line: the file is
 * the one being read when the error was found (an @include'd file, not
 * always the one config_load() was given). */
#include "config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_fail_at(struct loader *ld, int line, const char *fmt, ...)
{
    const char *file = ld->cur_file != NULL ? ld->cur_file : ld->file;
    va_list ap;
    int n;

    if (ld->errlen == 0)
        return -1;
    if (line > 0)
        n = snprintf(ld->err, ld->errlen, "%s:%d: ", file, line);
    else
        n = snprintf(ld->err, ld->errlen, "%s: ", file);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < ld->errlen)
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int config_line_of(struct loader *ld, const char *name)
{
    for (int i = 0; i < ld->n_set_at; i++) {
        if (strcmp(ld->set_at[i].name, name) == 0) {
            ld->cur_file = ld->set_at[i].file;
            return ld->set_at[i].line;
        }
    }
    abort(); /* a name in the loader that is not in the table: a programming error */
}
