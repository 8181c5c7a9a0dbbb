/* fuzz_pricing.c - exact decimals and /models price tables.
 *
 * The input is read three ways.  As one NUL-terminated string it goes to
 * pricing_parse_decimal; a value that parses must come back unchanged
 * after it is put in a /models table as both prices, written out by
 * pricing_table_save and read back by pricing_table_load (which prints
 * attodollars and parses them again), and dividing it by 10^6 must match
 * pricing_format_usd's reading of the same picodollars.  Its first 8 bytes
 * as a double go to pricing_usd_to_pusd (never negative, close to the
 * value).  As a /models answer it goes to pricing_table_from_models_json;
 * the table saved and loaded again must answer pricing_lookup for every id
 * in the answer exactly as the original does. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "pricing.h"

static char path[512];

static struct price_table *round_trip(const struct price_table *t)
{
    char err[256];
    struct price_table *t2;

    if (path[0] == '\0')
        snprintf(path, sizeof path, "%s/prices.json", fuzz_scratch_dir());
    FUZZ_CHECK(pricing_table_save(t, path) == 0);
    t2 = pricing_table_load(path, err, sizeof err);
    FUZZ_CHECK(t2 != NULL);
    FUZZ_CHECK(pricing_table_size(t2) == pricing_table_size(t));
    return t2;
}

static void same_lookup(const struct price_table *t, const struct price_table *t2, const char *id)
{
    struct price p1, p2;
    int r1 = pricing_lookup(t, id, &p1), r2 = pricing_lookup(t2, id, &p2);

    FUZZ_CHECK(r1 == r2);
    if (r1 == 0)
        FUZZ_CHECK(memcmp(&p1, &p2, sizeof p1) == 0);
}

static void check_decimal(const char *s)
{
    int64_t atto, pusd;
    char json[512], usd[PRICING_USD_BUFSZ];
    struct price_table *t, *t2;
    struct price p;

    if (pricing_parse_decimal(s, &atto) < 0)
        return;
    FUZZ_CHECK(atto >= 0);
    if (strlen(s) < 128) { /* digits, '.', 'e', sign only: safe inside a JSON string */
        snprintf(json, sizeof json,
                 "{\"data\":[{\"id\":\"m\",\"pricing\":{\"prompt\":\"%s\",\"completion\":\"%s\"}}]}",
                 s, s);
        t = pricing_table_from_models_json(json, strlen(json), NULL, 0);
        FUZZ_CHECK(t != NULL);
        FUZZ_CHECK(pricing_lookup(t, "m", &p) == 0 && p.prompt == atto && p.completion == atto);
        t2 = round_trip(t);
        FUZZ_CHECK(pricing_lookup(t2, "m:free", &p) == 0 && p.prompt == atto);
        pricing_table_free(t);
        pricing_table_free(t2);
    }
    /* atto / 10^6 as picodollars, printed as USD and parsed back. */
    pusd = atto / 1000000;
    pricing_format_usd(pusd, usd, sizeof usd);
    FUZZ_CHECK(pricing_parse_decimal(usd, &atto) == 0 && atto == pusd * 1000000);
}

static void check_double(const uint8_t *data, size_t size)
{
    double x;
    int64_t pusd;

    if (size < sizeof x)
        return;
    memcpy(&x, data, sizeof x);
    pusd = pricing_usd_to_pusd(x);
    FUZZ_CHECK(pusd >= 0);
    if (isfinite(x) && x > 0 && x < 1e6)
        FUZZ_CHECK(fabs((double)pusd - x * 1e12) <= 1.0 + x * 1e12 * 1e-12);
}

static void check_table(const char *json, size_t len)
{
    char err[256];
    struct price_table *t = pricing_table_from_models_json(json, len, err, sizeof err), *t2;
    cJSON *root, *m;

    if (t == NULL)
        return;
    t2 = round_trip(t);
    root = cJSON_ParseWithLength(json, len);
    FUZZ_CHECK(root != NULL);
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(root, "data"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (cJSON_IsString(id) && id->valuestring != NULL)
            same_lookup(t, t2, id->valuestring);
    }
    same_lookup(t, t2, "");
    same_lookup(t, t2, ":");
    cJSON_Delete(root);
    pricing_table_free(t);
    pricing_table_free(t2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t len;
    char *text = fuzz_rest(&in, &len, 1);

    if (strlen(text) == len)
        check_decimal(text);
    check_double(data, size);
    check_table(text, len);
    free(text);
    return 0;
}
