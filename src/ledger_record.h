/* ledger_record.h - one ledger row as the writer receives it, on its own
 * so the modules below the writer that store rows (pgledger, spool,
 * ledger_pg) need only this header, not the writer (ledger.h). */
#ifndef ORP_LEDGER_RECORD_H
#define ORP_LEDGER_RECORD_H

#include <stdint.h>

enum cost_source { COST_NONE = 0, COST_UPSTREAM, COST_PRICING, COST_ESTIMATE };

struct ledger_record {
    char request_id[65];
    int64_t started_ms;             /* unix ms */
    char client[64];                /* key name or "anonymous" */
    char user[128];                 /* the request's "user" field */
    char route[32];
    char model[128];
    char served_model[128];
    char provider[64];
    int stream;
    int status;
    int attempts;
    int64_t prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens;
    int64_t cost_pusd;
    enum cost_source cost_source;
    char generation_id[96];
    char finish_reason[32];
    double latency_ms, ttfb_ms;     /* ttfb < 0: none */
    char error_class[48];
    char outcome[24];
};

/* 'upstream' | 'pricing' | 'estimate' | 'none'. */
static inline const char *ledger_cost_source_name(enum cost_source s)
{
    switch (s) {
    case COST_UPSTREAM:
        return "upstream";
    case COST_PRICING:
        return "pricing";
    case COST_ESTIMATE:
        return "estimate";
    default:
        return "none";
    }
}

#endif
