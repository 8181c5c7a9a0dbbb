/* lease.h - budgets shared by several instances through PostgreSQL: each
 * instance leases headroom from a budget row, spends it locally, settles
 * what it spent and returns the rest (issue 14; src/bshare.c uses it).
 *
 * Table budgets (pgledger.c, migration 2): one row per scope (a client name,
 * or "" for all traffic), period ("day" | "month") and period key
 * ("2026-12-01" | "2026-12", UTC), with limit_pusd, spent_pusd and
 * leased_pusd.  Table budget_leases: one row per budget row and instance,
 * with the amount it holds and when the hold expires.
 *
 * The invariant: spent + leased <= limit, except for spend settled beyond
 * what was leased (upstream charged more than the reservation).  lease_take
 * is one statement, UPDATE ... SET leased = leased + want WHERE spent +
 * leased + want <= limit: PostgreSQL re-evaluates the WHERE on the newest
 * row version when it waited for a concurrent update (READ COMMITTED), so
 * no two takes can both pass on the same headroom.  budgets.leased_pusd is
 * always the sum of the budget's lease rows: every statement here changes
 * both in one statement.
 *
 * Periods are never reset: a new UTC day or month is a new row (a new
 * period key), so a rollover cannot lose or double spend, and a request that
 * started in the old period settles into the old row.
 *
 * A lease expires lease timeout after it was last taken or renewed, by the
 * database's clock; lease_expire (any instance's housekeeping) returns
 * expired holds to the pool, so a crashed instance's lease comes back.  An
 * instance must stop spending a lease locally before that (it renews, or
 * gives up the headroom when it cannot).
 *
 * Each call is one autocommit statement; a deadlock or serialization
 * failure is retried.  One instance uses its leases from one connection. */
#ifndef ORP_LEASE_H
#define ORP_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "pgconn.h"

/* Budgets are per UTC day and month.  With limits.shared the rate limits
 * use the same rows and leases, their amounts counted in requests or
 * tokens instead of picodollars: rpm and tpm per UTC minute (a fixed
 * window, key "2026-12-01T05:19"), max_concurrent in one row that never
 * rolls over (key "-"), whose requests settle nothing: each returns its
 * slot when it ends. */
enum lease_period { LEASE_DAY, LEASE_MONTH, LEASE_RPM, LEASE_TPM, LEASE_CONCURRENT };

/* One budget row. */
struct lease_id {
    char scope[64]; /* client name, "" = all traffic */
    enum lease_period period;
    char period_key[20]; /* lease_id_set fills it */
};

/* The budget row (and this instance's hold) after a call. */
struct lease_state {
    int64_t limit_pusd, spent_pusd, leased_pusd;
    int64_t held_pusd; /* what this instance holds of leased_pusd */
};

/* Fills id for scope and the UTC day or month of now_ms (unix ms). */
void lease_id_set(struct lease_id *id, const char *scope, enum lease_period p, int64_t now_ms);

/* Creates the budget row with this limit, or sets the limit of the existing
 * one (the last instance to start with a new limit wins).  A pgconn_rc. */
int lease_budget_ensure(struct pgconn *c, const struct lease_id *id, int64_t limit_pusd, char *err,
                        size_t errlen);

/* Leases want more pusd for instance, renewing its hold for timeout_ms.
 * 1 granted, 0 refused (not enough headroom, or no such budget row),
 * or a pgconn_rc (< 0).  st (may be NULL) is filled when granted. */
int lease_take(struct pgconn *c, const char *instance, const struct lease_id *id, int64_t want,
               int timeout_ms, struct lease_state *st, char *err, size_t errlen);

/* Records spent pusd as spent and releases as much of the hold (never more
 * than is held: the rest was beyond the reservation).  Spend is recorded
 * even when the hold has expired.  A pgconn_rc. */
int lease_settle(struct pgconn *c, const char *instance, const struct lease_id *id, int64_t spent,
                 struct lease_state *st, char *err, size_t errlen);

/* Gives back unused pusd of the hold.  A pgconn_rc. */
int lease_return(struct pgconn *c, const char *instance, const struct lease_id *id, int64_t unused,
                 struct lease_state *st, char *err, size_t errlen);

/* Extends this instance's hold by timeout_ms from now (the database's
 * clock) without taking more.  1 renewed (st->held_pusd filled; the other
 * fields 0), 0 no hold (it expired and went back to the pool), or a
 * pgconn_rc (< 0). */
int lease_renew(struct pgconn *c, const char *instance, const struct lease_id *id, int timeout_ms,
                struct lease_state *st, char *err, size_t errlen);

/* One day or month budget row's spend (lease_spent_read). */
struct lease_spent {
    char scope[64];
    enum lease_period period; /* LEASE_DAY or LEASE_MONTH */
    int64_t spent_pusd;
};

/* The spent_pusd of every day row of the UTC day and every month row of
 * the UTC month holding now_ms: the spend the instances have settled into
 * them.  Not what is leased (held headroom is not spend), nor what an
 * instance has settled locally and not yet recorded (its budgets thread
 * records that within about 100 ms).  *out is a malloc'd array of *n
 * (NULL when 0).  A pgconn_rc. */
int lease_spent_read(struct pgconn *c, int64_t now_ms, struct lease_spent **out, size_t *n,
                     char *err, size_t errlen);

/* Returns every hold past its expiry to its budget.  *returned_pusd and
 * *leases (may be NULL): what came back.  A pgconn_rc. */
int lease_expire(struct pgconn *c, int64_t *returned_pusd, int *leases, char *err, size_t errlen);

/* Deletes the rpm and tpm rows of minutes before the one holding
 * before_ms that no instance holds anything of (their windows are over).
 * *deleted (may be NULL): how many.  A pgconn_rc. */
int lease_prune(struct pgconn *c, int64_t before_ms, int *deleted, char *err, size_t errlen);

#endif
