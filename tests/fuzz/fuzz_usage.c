/* fuzz_usage.c - usage and cost out of arbitrary response bodies.
 *
 * The whole input is a body for usage_parse (a non-streamed answer); cut
 * at its first newline it is also two stream chunks folded into one
 * usage_info, as the relay does.  What usage_parse fills then goes the way
 * server.c's account() sends it: usage.cost through pricing_usd_to_pusd,
 * the token counts through pricing_cost_pusd.  Oracles: a non-object body
 * leaves the usage_info untouched; costs are never negative; a cost needs
 * usage; usage_text_chars never counts more characters than there are. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "pricing.h"
#include "usage.h"

static void account(const struct usage_info *ui)
{
    const struct usage *u = &ui->usage;
    struct price pr = {300000000000LL, 1200000000000LL, 0, 150000000000LL, 0, 0,
                       PRICE_PROMPT | PRICE_COMPLETION | PRICE_CACHE_READ};

    if (!u->has_usage) {
        FUZZ_CHECK(!u->has_cost);
        return;
    }
    if (u->has_cost)
        FUZZ_CHECK(pricing_usd_to_pusd(u->cost) >= 0);
    FUZZ_CHECK(pricing_cost_pusd(&pr, u->prompt_tokens, u->completion_tokens, u->cached_tokens,
                                 u->reasoning_tokens) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct usage_info one, folded, empty;
    size_t len, cut;
    char *body = fuzz_rest(&in, &len, 0);
    const char *nl = memchr(body, '\n', len);

    memset(&one, 0, sizeof one);
    memset(&folded, 0, sizeof folded);
    memset(&empty, 0, sizeof empty);
    if (usage_parse(body, len, &one) < 0)
        FUZZ_CHECK(memcmp(&one, &empty, sizeof one) == 0);
    account(&one);
    FUZZ_CHECK(usage_text_chars(body, len) <= len);

    cut = nl != NULL ? (size_t)(nl - body) : len / 2;
    usage_parse(body, cut, &folded);
    usage_parse(body + cut, len - cut, &folded);
    account(&folded);

    usage_info_free(&one);
    usage_info_free(&folded);
    free(body);
    return 0;
}
