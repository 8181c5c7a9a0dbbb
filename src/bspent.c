/* bspent.c - see bspent.h. */
#include "bspent.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

static struct {
    pthread_mutex_t mu;
    struct lease_spent *v; /* under mu */
    size_t n;
    int64_t read_ms;    /* wall ms of the read; 0 = none */
    char day[20], month[20]; /* the period keys read */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

int bspent_refresh(struct pgconn *c, int64_t now_ms)
{
    struct lease_spent *v, *old;
    struct lease_id d, m;
    size_t n;
    char err[256];

    if (lease_spent_read(c, now_ms, &v, &n, err, sizeof err) != PGC_OK)
        return -1;
    lease_id_set(&d, "", LEASE_DAY, now_ms);
    lease_id_set(&m, "", LEASE_MONTH, now_ms);
    pthread_mutex_lock(&S.mu);
    old = S.v;
    S.v = v;
    S.n = n;
    S.read_ms = now_ms;
    memcpy(S.day, d.period_key, sizeof S.day);
    memcpy(S.month, m.period_key, sizeof S.month);
    pthread_mutex_unlock(&S.mu);
    free(old);
    return 0;
}

int bspent_get(const char *scope, int64_t now_ms, int64_t *day_pusd, int64_t *month_pusd)
{
    struct lease_id d, m;
    int ok;

    lease_id_set(&d, "", LEASE_DAY, now_ms);
    lease_id_set(&m, "", LEASE_MONTH, now_ms);
    pthread_mutex_lock(&S.mu);
    ok = S.read_ms > 0 && now_ms - S.read_ms <= BSPENT_MAX_AGE_MS &&
         strcmp(S.day, d.period_key) == 0 && strcmp(S.month, m.period_key) == 0;
    if (ok) {
        *day_pusd = *month_pusd = 0;
        for (size_t i = 0; i < S.n; i++)
            if (strcmp(S.v[i].scope, scope ? scope : "") == 0)
                *(S.v[i].period == LEASE_DAY ? day_pusd : month_pusd) = S.v[i].spent_pusd;
    }
    pthread_mutex_unlock(&S.mu);
    return ok;
}

void bspent_clear(void)
{
    pthread_mutex_lock(&S.mu);
    free(S.v);
    S.v = NULL;
    S.n = 0;
    S.read_ms = 0;
    pthread_mutex_unlock(&S.mu);
}
