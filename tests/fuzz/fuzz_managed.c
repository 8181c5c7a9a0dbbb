/* fuzz_managed.c - the admin API's client body checks (managed_edit.c) on
 * arbitrary bodies.
 *
 * The first byte picks the route: create (0), patch (1) or rotate (2, the
 * others); the rest is the body, parsed with cJSON as admin.c does (an
 * empty body is no body).  admin.c refuses bodies with a NUL, raw or
 * escaped, or bytes that are not UTF-8 before this parser sees them; the
 * parser must still be safe on those, so they are run too, but the rules
 * below that depend on it (messages in UTF-8) are checked only without.
 *
 * An accepted body satisfies the documented rules, checked here against
 * the body itself: every member gave exactly one column (or the name of a
 * create), the name is 1-63 of [A-Za-z0-9._-], limits are whole and in
 * range, budgets above 0 (null: 0 = none), expires_at parses to the
 * column, models and defaults are stored as JSON that parses back, admin
 * is a boolean; a rotate's grace_s is 0 .. 30 days.  A refused body gets a
 * 400 with a code and a message.  Nothing leaks either way. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "managed_int.h"
#include "pricing.h"
#include "report.h"
#include "utf8.h"

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

static void check_refused(const struct managed_result *res, int utf8)
{
    FUZZ_CHECK(res->status == 400);
    FUZZ_CHECK(res->code != NULL && res->code[0] != '\0');
    FUZZ_CHECK(res->msg[0] != '\0' && memchr(res->msg, '\0', sizeof res->msg) != NULL);
    FUZZ_CHECK(!utf8 || utf8_valid(res->msg, strlen(res->msg)));
}

/* The stored JSON text of models: an array of 1-200 byte clean names. */
static void check_models(const char *text)
{
    cJSON *a = cJSON_Parse(text), *m;
    FUZZ_CHECK(cJSON_IsArray(a));
    cJSON_ArrayForEach(m, a) {
        FUZZ_CHECK(cJSON_IsString(m));
        size_t n = strlen(m->valuestring);
        FUZZ_CHECK(n >= 1 && n <= 200 && utf8_is_clean_name(m->valuestring, n));
    }
    cJSON_Delete(a);
}

static void check_defaults(const char *text)
{
    static const char *const known[] = {"model", "system_prompt", "context", "temperature",
                                        "top_p", "frequency_penalty", "presence_penalty",
                                        "max_tokens"};
    cJSON *o = cJSON_Parse(text), *f;
    FUZZ_CHECK(cJSON_IsObject(o));
    cJSON_ArrayForEach(f, o) {
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(f->string, known[k]) != 0)
            k++;
        FUZZ_CHECK(k < sizeof known / sizeof known[0]);
        FUZZ_CHECK(k < 3 ? cJSON_IsString(f) : cJSON_IsNumber(f));
        if (k == 7)
            FUZZ_CHECK(f->valuedouble >= 1 && f->valuedouble <= 1e7);
    }
    cJSON_Delete(o);
}

/* The column a body member set (NULL for "name"). */
static const struct managed_col *col_of(const struct managed_change *e, const char *member)
{
    static const char *const map[][2] = {
        {"rpm", "rpm"}, {"tpm", "tpm"}, {"max_concurrent", "max_concurrent"},
        {"budget_usd_day", "budget_day_pusd"}, {"budget_usd_month", "budget_month_pusd"},
        {"expires_at", "expires_ms"}, {"models", "models"}, {"defaults", "defaults"},
        {"admin", "admin"}};
    for (size_t m = 0; m < sizeof map / sizeof map[0]; m++)
        if (strcmp(member, map[m][0]) == 0)
            for (int i = 0; i < e->n; i++)
                if (strcmp(e->v[i].name, map[m][1]) == 0)
                    return &e->v[i];
    return NULL;
}

static void check_member(const cJSON *f, const struct managed_col *c)
{
    const char *k = f->string;
    int64_t t;

    FUZZ_CHECK(c != NULL);
    if (strcmp(k, "rpm") == 0 || strcmp(k, "tpm") == 0 || strcmp(k, "max_concurrent") == 0) {
        double hi = k[0] == 'r' ? 1e9 : k[0] == 't' ? 1e12 : 1e6;
        FUZZ_CHECK(c->kind == 'i' && c->i >= 0 && (double)c->i <= hi);
        FUZZ_CHECK(cJSON_IsNumber(f) && (double)c->i == f->valuedouble);
    } else if (strncmp(k, "budget_usd_", 11) == 0) {
        FUZZ_CHECK(c->kind == 'i' && (c->i == 0) == cJSON_IsNull(f));
        FUZZ_CHECK(c->i >= 0 && c->i <= (int64_t)PRICING_MAX_COST_USD * 1000000000000LL);
    } else if (strcmp(k, "expires_at") == 0) {
        FUZZ_CHECK(c->kind == (cJSON_IsNull(f) ? 'n' : 'i'));
        if (c->kind == 'i') {
            FUZZ_CHECK(cJSON_IsString(f) && report_parse_time(f->valuestring, 0, &t) == 0);
            FUZZ_CHECK(c->i == (t > 0 ? t : 1));
        }
    } else if (strcmp(k, "models") == 0) {
        FUZZ_CHECK(c->kind == 't' && c->text != NULL);
        check_models(c->text);
    } else if (strcmp(k, "defaults") == 0) {
        FUZZ_CHECK(c->kind == 't' && c->text != NULL);
        check_defaults(c->text);
    } else {
        FUZZ_CHECK(strcmp(k, "admin") == 0 && cJSON_IsBool(f));
        FUZZ_CHECK(c->kind == 'i' && c->i == cJSON_IsTrue(f));
    }
}

static void check_change(const cJSON *body, int creating, const struct managed_change *e)
{
    const cJSON *f;
    int members = 0;

    FUZZ_CHECK(cJSON_IsObject(body));
    FUZZ_CHECK(e->n >= 0 && e->n <= MANAGED_MAX_COLS);
    for (int i = 0; i < e->n; i++)
        for (int j = i + 1; j < e->n; j++)
            FUZZ_CHECK(strcmp(e->v[i].name, e->v[j].name) != 0);
    FUZZ_CHECK(creating ? e->name != NULL && name_ok(e->name) && managed_valid_name(e->name)
                        : e->name == NULL);
    cJSON_ArrayForEach(f, body) {
        members++;
        if (creating && strcmp(f->string, "name") == 0)
            FUZZ_CHECK(cJSON_IsString(f) && f->valuestring == e->name);
        else
            check_member(f, col_of(e, f->string));
    }
    FUZZ_CHECK(members == e->n + (creating ? 1 : 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned route = fuzz_byte(&in);
    size_t len;
    char *text = fuzz_rest(&in, &len, 0);
    int utf8 = memchr(text, '\0', len) == NULL && utf8_valid(text, len);
    cJSON *body = NULL;
    struct managed_result res;

    if (len > 0) {
        body = cJSON_ParseWithLength(text, len);
        if (body == NULL) {
            free(text);
            return 0; /* admin.c answers invalid_json */
        }
    }
    memset(&res, 0, sizeof res);
    if (route < 2) {
        struct managed_change e;
        memset(&e, 0, sizeof e);
        if (managed_parse_change(body, route == 0, &e, &res) == 0) {
            FUZZ_CHECK(res.status == 0 && res.msg[0] == '\0');
            check_change(body, route == 0, &e);
        } else {
            check_refused(&res, utf8);
        }
        managed_change_free(&e);
    } else {
        int64_t grace = -1;
        if (managed_parse_grace(body, &grace, &res) == 0) {
            FUZZ_CHECK(res.status == 0 && grace >= 0 && grace <= 30LL * 86400);
            FUZZ_CHECK(body == NULL || cJSON_IsObject(body));
            if (body != NULL && body->child != NULL) /* one member: grace_s */
                FUZZ_CHECK(body->child->next == NULL && (double)grace == body->child->valuedouble);
        } else {
            check_refused(&res, utf8);
        }
    }
    cJSON_Delete(body);
    free(text);
    return 0;
}
