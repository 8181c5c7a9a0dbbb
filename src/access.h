/* access.h - who may do what, right now: client identification, model
 * rules, rate and concurrency limits, and budgets with reservations.
 *
 * The rules come from the (reloadable) config; the counters live here,
 * keyed by client name, so a reload changes limits without resetting what
 * was already used.  Counters are shared by all workers behind one mutex,
 * held for a few comparisons once when a request starts and once when it
 * ends, never per byte. */
#ifndef ORP_ACCESS_H
#define ORP_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "bshare.h"
#include "config.h"

/* What a request holds between admission and its end. */
struct access_grant {
    int client;                 /* index in cfg->clients, -1 = anonymous */
    int admitted;               /* access_release() must be called */
    long long tokens_est;       /* counted against tpm at admission */
    int64_t reserved_pusd;      /* budget reservation */
    struct bshare_hold share;   /* the same on the shared budgets (ledger.backend postgresql) */
};

/* The decision when a request is refused. */
struct access_denial {
    unsigned status;            /* 401, 402, 403, 429, 503 */
    const char *code;
    char message[256];
    long retry_after_s;         /* 429/402: when it frees up (0 = no header) */
};

/* Which client sent this Authorization header value (NULL if absent).
 * Returns the client index, -1 for anonymous (auth.mode none), or -2 when
 * the request must be refused (d is filled: 401; code key_expired for a
 * client past its expires_ms).  A client's old key (a rotation's) matches
 * only before its old_key_until_ms. */
int access_identify(const struct orp_config *cfg, const char *authorization, struct access_denial *d);

/* 1 when model matches one of the n patterns, else 0; n == 0 allows every
 * model, a NULL model none.  In a pattern '*' matches any run of characters
 * (also '/' and ':'), everything else itself, case-sensitively, and the
 * whole model must match: "*:free", "anthropic/claude-3.5-*", "*".  Pure:
 * no lock, safe from any thread. */
int access_model_allowed(const char *const *patterns, size_t n, const char *model);

/* Model rules for the client (after aliases).  0 allowed, -1 refused (403). */
int access_check_model(const struct orp_config *cfg, int client, const char *model,
                       struct access_denial *d);

/* Rate, concurrency and budget checks for one request expected to use
 * est_tokens and cost up to est_pusd.  0 admitted (g filled), -1 refused. */
int access_admit(const struct orp_config *cfg, int client, long long est_tokens, int64_t est_pusd,
                 struct access_grant *g, struct access_denial *d);

/* The request ended: free its concurrency slot, settle tokens and cost. */
void access_release(const struct orp_config *cfg, struct access_grant *g, long long tokens,
                    int64_t cost_pusd);

/* A cost learnt after the request was settled (reconciliation): adds
 * delta_pusd (upstream's cost minus what was settled; either sign) to the
 * spend of client (NULL or "": anonymous, only the global scope) and of all
 * traffic, in the day and month holding booked_ms (when it was settled),
 * if those are still current.  Saturating: never wraps, never below 0. */
void access_adjust_spend(const char *client, int64_t booked_ms, int64_t delta_pusd);

/* Start-up: spend so far this UTC day and month, from the ledger. */
void access_seed_spend(const char *client, int64_t day_pusd, int64_t month_pusd);

/* One budget scope for the alerts thread: limits (0 = none) from the config
 * in use, spend so far in the UTC day and month holding the snapshot's time. */
struct access_budget {
    char name[64];              /* client name; "" = all traffic */
    int64_t day_limit_pusd, day_spent_pusd;
    int64_t month_limit_pusd, month_spent_pusd;
};

/* All traffic's budgets (first), then each of cfg's clients', as of now_ms
 * (periods rolled over first): a malloc'd array of *n, NULL when out of
 * memory.  Takes the access mutex once, for copies only. */
struct access_budget *access_budget_snapshot(const struct orp_config *cfg, int64_t now_ms,
                                             size_t *n);

/* For GET /v1/key: the client's limits, budgets and usage so far, as a
 * malloc'd JSON text shaped like OpenRouter's /key data object. */
char *access_key_json(const struct orp_config *cfg, int client);

/* The spend settled so far in the current UTC day and month of client
 * (NULL or "": all traffic), from the live counters; with PostgreSQL, the
 * shared budget rows' (bspent.h: every instance's, read about once a
 * second) when larger.  Thread-safe, no I/O.  access_key_json does the
 * same. */
void access_spent(const char *client, int64_t *day_pusd, int64_t *month_pusd);

#endif
