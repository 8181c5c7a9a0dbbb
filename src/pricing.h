/* pricing.h - model prices and exact cost arithmetic.
 *
 * OpenRouter publishes prices (GET /models) as decimal strings in USD per
 * token, some as small as "0.0000000001".  Doubles would turn those into
 * near-misses that drift in sums, so prices are parsed exactly into
 * attodollars (1e-18 USD) held in int64 (up to ~9.2 USD per token), costs
 * are products of int64 token counts and int64 prices taken in 128-bit
 * integers, and only the final total is rounded, half up, to picodollars
 * (1e-12 USD, "pusd"), the ledger's unit.  Nothing here does I/O except
 * pricing_table_save/_load; everything else is pure and unit tested.
 *
 * A price table (built from a /models answer or from the cache file that
 * pricing_table_save wrote) is immutable once built.  The daemon keeps one
 * "current" table: worker threads look prices up in it while a background
 * thread swaps in a fresh one; a rwlock guarantees that a lookup never sees
 * a table that is being freed (lookups copy the price out). */
#ifndef ORP_PRICING_H
#define ORP_PRICING_H

#include <stddef.h>
#include <stdint.h>

/* Bits of struct price.has: which prices /models gave for a model. */
#define PRICE_PROMPT      (1u << 0) /* "prompt" */
#define PRICE_COMPLETION  (1u << 1) /* "completion" */
#define PRICE_REQUEST     (1u << 2) /* "request" */
#define PRICE_CACHE_READ  (1u << 3) /* "input_cache_read" */
#define PRICE_CACHE_WRITE (1u << 4) /* "input_cache_write" */
#define PRICE_REASONING   (1u << 5) /* "internal_reasoning" */

/* One model's prices in attodollars per token (request: per request).  A
 * field whose bit is not in `has` is 0.  Plain value, no ownership. */
struct price {
    int64_t prompt, completion, request, cache_read, cache_write, reasoning;
    unsigned has;
};

/* Large enough for any pricing_format_usd() result ("-9223372.036854775807"). */
#define PRICING_USD_BUFSZ 32

/* Parses a non-negative decimal ("0.0000003", "12.5", "1e-7", "3E+2") into
 * attodollars.  Grammar: digits, optionally '.' and digits, optionally
 * e/E, an optional sign and digits; nothing else, no blanks.  Digits past
 * the 18th decimal are rounded half up ("0.0000000000000000005" -> 1).
 * Returns 0, or -1 for an empty, negative (OpenRouter's "-1" means variable
 * pricing), malformed or too large (> INT64_MAX atto) value. */
int pricing_parse_decimal(const char *s, int64_t *atto_out);

/* Cost of one request in picodollars, rounded half up:
 *   (prompt_tokens - cached_tokens) * prompt
 *   + cached_tokens * (cache_read if PRICE_CACHE_READ is set, else prompt)
 *   + completion_tokens * completion + request.
 * Negative counts and prices count as 0; cached_tokens is capped at
 * prompt_tokens; a total beyond INT64_MAX saturates to INT64_MAX.
 * reasoning_tokens is not added: OpenRouter already counts reasoning tokens
 * inside completion_tokens (it is kept for a future separate price).  Cache
 * writes are charged at the prompt price (the usage counts them in
 * prompt_tokens).  At most PRICING_MAX_COST_PUSD. */
int64_t pricing_cost_pusd(const struct price *p, int64_t prompt_tokens, int64_t completion_tokens,
                          int64_t cached_tokens, int64_t reasoning_tokens);

/* Writes pusd as USD: up to 12 decimals, trailing zeros trimmed down to 2
 * ("0.000123", "1.50", "0.00", "-2.25").  Truncates to n bytes like
 * snprintf (PRICING_USD_BUFSZ always suffices).  Returns buf. */
char *pricing_format_usd(int64_t pusd, char *buf, size_t n);

/* The most one request is taken to cost, and the most a budget may be:
 * $1,000,000 (1e18 pusd; int64 pusd end at $9,223,372.036854775807).  A
 * larger upstream cost is absurd (a fault or a hostile upstream), so it is
 * clamped here and the caller logs it; with every single amount at most
 * this, sums are far from the int64 limit, and pricing_add_pusd saturates
 * them anyway. */
#define PRICING_MAX_COST_PUSD 1000000000000000000LL
#define PRICING_MAX_COST_USD 1000000

/* OpenRouter's usage.cost (a JSON number, already a double) in pusd: the
 * shortest decimal that reads back as the same double (what the JSON said)
 * is rounded half up exactly, so 0.000123 -> 123000000.  NaN, infinities,
 * negatives -> 0; above PRICING_MAX_COST_PUSD -> PRICING_MAX_COST_PUSD. */
int64_t pricing_usd_to_pusd(double usd);

/* a + b, saturated at INT64_MIN and INT64_MAX: every sum of money goes
 * through this, so no amount wraps (a wrapped spend would turn negative
 * and stop a budget from refusing anything). */
int64_t pricing_add_pusd(int64_t a, int64_t b);

/* An immutable set of model prices, sorted by id.  Whoever gets one from
 * the functions below owns it and frees it with pricing_table_free(), or
 * hands it to pricing_set_current(). */
struct price_table;

/* Builds a table from GET /models' answer {"data":[{"id","pricing":{...}}]}.
 * Per model, each price that parses is kept (a "-1" or malformed one is
 * left out of `has`); models without a string id are skipped; a repeated
 * id keeps its first entry.  Returns NULL with a message in err when the
 * text is not JSON or has no "data" array (or memory runs out). */
struct price_table *pricing_table_from_models_json(const char *json, size_t len, char *err,
                                                   size_t errlen);

/* Prices of `model`: the exact id, or, when that id is absent and ends in a
 * ":variant" ("openai/gpt-4o:nitro"), the id before the last ':'.  Returns
 * 0 with *out filled only when the entry found has both a prompt and a
 * completion price; -1 when there is no entry, or when it has no usable
 * price (variable pricing): a cost computed from it would be a guess. */
int pricing_lookup(const struct price_table *t, const char *model, struct price *out);

size_t pricing_table_size(const struct price_table *t);
void pricing_table_free(struct price_table *t);

/* Writes the table as compact JSON in /models' shape, prices re-formatted
 * exactly from attodollars, atomically: path.tmp, fsync, rename.  Returns 0
 * or -1 (errno set; the old file, if any, is untouched). */
int pricing_table_save(const struct price_table *t, const char *path);

/* Reads a file written by pricing_table_save (or any /models answer).
 * NULL with a message in err when it cannot be read or parsed. */
struct price_table *pricing_table_load(const char *path, char *err, size_t errlen);

/* The daemon's current table.  pricing_set_current takes ownership of t (may
 * be NULL) and frees the table it replaces once no lookup uses it. */
void pricing_set_current(struct price_table *t);

/* pricing_lookup on the current table; -1 when there is none. */
int pricing_current_lookup(const char *model, struct price *out);

/* Entries in the current table, 0 when there is none. */
size_t pricing_current_size(void);
/* Calls fn for every model of the current table, in id order, under the
 * read lock (fn must not call back into pricing; NULL: none); returns the unix ms the
 * table was set (fetched, or loaded from the cache at start), 0 if none. */
int64_t pricing_current_each(void (*fn)(const char *model, const struct price *p, void *arg),
                             void *arg);

/* Frees the current table (lookups afterwards find nothing). */
void pricing_shutdown(void);

#endif
