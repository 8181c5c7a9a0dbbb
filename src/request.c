/* request.c - the one place a request changes phase (request.h has the
 * table of allowed moves; doc/DESIGN.md the same table in prose). */
#include "request.h"

#include <stdlib.h>

#include "log.h"

#define BIT(p) (1u << (p))

/* allowed[from]: the phases `from` may move to. */
static const unsigned allowed[] = {
    [PHASE_RECEIVING] = BIT(PHASE_WAITING) | BIT(PHASE_READY) | BIT(PHASE_RESPONDING) |
                        BIT(PHASE_FINISHED),
    [PHASE_WAITING] = BIT(PHASE_READY) | BIT(PHASE_GONE) | BIT(PHASE_AWAITED) | BIT(PHASE_FINISHED),
    [PHASE_READY] = BIT(PHASE_RESPONDING) | BIT(PHASE_GONE) | BIT(PHASE_FINISHED),
    [PHASE_RESPONDING] = BIT(PHASE_FINISHED),
    [PHASE_GONE] = BIT(PHASE_FINISHED),
    [PHASE_AWAITED] = BIT(PHASE_FINISHED),
    [PHASE_FINISHED] = 0,
};

const char *request_phase_name(enum phase p)
{
    static const char *const names[] = {
        [PHASE_RECEIVING] = "receiving", [PHASE_WAITING] = "waiting",
        [PHASE_READY] = "ready",         [PHASE_RESPONDING] = "responding",
        [PHASE_GONE] = "gone",           [PHASE_AWAITED] = "awaited",
        [PHASE_FINISHED] = "finished",
    };
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "?";
}

void request_phase(struct request *r, enum phase to)
{
    enum phase from = r->phase;

    if ((unsigned)from >= sizeof allowed / sizeof allowed[0] || !(allowed[from] & BIT(to))) {
        log_error("request id=%s: bad phase change %s -> %s (a bug)", r->id,
                  request_phase_name(from), request_phase_name(to));
#ifdef ORP_STRICT_PHASES
        abort(); /* the sanitizer builds the tests run: a bug must fail them */
#endif
        /* A production daemon keeps serving: the move is logged and applied. */
    }
    r->phase = to;
}
