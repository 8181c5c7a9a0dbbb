/* config_doc.c - the documents the settings table drives.  See config_doc.h.
 *
 * Two writers read the same rows (config_table.h): the Markdown table that
 * `orproxy --settings` prints, and the man page orproxy.conf(5) that
 * `orproxy --settings-man` prints and doc/orproxy.conf.5 holds.  The man
 * page is hand-written prose around three generated parts: one entry per
 * setting, grouped as the file groups them; the list of settings a reload
 * cannot change (the F_RESTART rows); and the upper bound of a budget.  So
 * a new row, a new range or a new help text reaches the page with no edit
 * here, and the test that compares doc/orproxy.conf.5 with this output
 * fails until the committed copy is regenerated.
 *
 * Roff: every byte that comes from the table goes through roff_text(),
 * which writes '-' as "\-" (a name or value must not be hyphenated or turned
 * into a typographic hyphen), '\' as "\e", and guards a '.' or '\'' at the
 * start of a line.  The prose below is roff already and says "\-" itself.
 * The output is plain ASCII and has no date that changes by itself, so it
 * is the same on every machine. */
#include "config_doc.h"

#include "config.h"
#include "config_table.h"
#include "pricing.h"

#include <string.h>

/* ---- Markdown ---- */

/* Writes s into a Markdown table cell: '|' would end the cell, even in a
 * code span. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

/* A dollar setting's default as the config file would write it: 0, or a
 * decimal string ("1.00": quoted, as libconfig reads it exactly). */
static const char *usd_default(const struct config_row *r, char *buf, size_t n)
{
    char v[48];
    if (r->def_num == 0)
        return "0";
    pricing_format_usd(r->def_num, v, sizeof v);
    snprintf(buf, n, "\"%s\"", v);
    return buf;
}

void config_doc_markdown(FILE *out)
{
    char d[64];
    struct config_row r;

    fputs("| Setting | Type | Default | Range / values | Meaning |\n"
          "|---|---|---|---|---|\n",
          out);
    for (int i = 0; config_table_row(i, &r) == 0; i++) {
        fprintf(out, "| `%s` | ", r.name);
        switch (r.type) {
        case CONFIG_ROW_STRING:
        case CONFIG_ROW_ENUM:
            fputs("string | `\"", out);
            md_cell(out, r.def_str);
            fputs("\"` | ", out);
            for (const char *p = r.values; p != NULL && *p;) {
                size_t tok = strcspn(p, "|");
                fprintf(out, "%s`%.*s`", p == r.values ? "" : ", ", (int)tok, p);
                p += tok + (p[tok] == '|');
            }
            break;
        case CONFIG_ROW_INTEGER:
            fprintf(out, "integer | `%lld` | %lld … %lld", r.def_num, r.min, r.max);
            break;
        case CONFIG_ROW_USD:
            fprintf(out, "USD (number or decimal string) | `%s` | 0 … %d", usd_default(&r, d, sizeof d),
                    PRICING_MAX_COST_USD);
            break;
        case CONFIG_ROW_INT_LIST:
            fprintf(out, "list of integers | `%s` | each %lld … %lld, ascending", r.def_str, r.min,
                    r.max);
            break;
        }
        fputs(" | ", out);
        md_cell(out, r.help);
        fputs(" |\n", out);
    }
}

/* ---- roff ---- */

/* Writes n bytes of s as roff text.  at_line_start says whether s begins a
 * line, where '.' and '\'' would start a request. */
static void roff_textn(FILE *out, const char *s, size_t n, int at_line_start)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (at_line_start && (ch == '.' || ch == '\''))
            fputs("\\&", out);
        at_line_start = ch == '\n';
        if (ch == '-')
            fputs("\\-", out);
        else if (ch == '\\')
            fputs("\\e", out);
        else
            fputc(ch, out);
    }
}

static void roff_text(FILE *out, const char *s, int at_line_start)
{
    roff_textn(out, s, strlen(s), at_line_start);
}

/* " (64 MiB)" for a byte count that is a whole number of KiB or more. */
static void roff_size(FILE *out, const char *name, long long v)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = -1;
    size_t n = strlen(name);

    if (n < 6 || strcmp(name + n - 6, "_bytes") != 0 || v < 1024)
        return;
    while (u < 3 && v % 1024 == 0 && v >= 1024) {
        v /= 1024;
        u++;
    }
    if (u >= 0)
        fprintf(out, " (%lld\\ %s)", v, unit[u]);
}

/* The second line of an entry: type, allowed values, default. */
static void man_type_line(FILE *out, const struct config_row *r)
{
    char d[64];
    switch (r->type) {
    case CONFIG_ROW_STRING:
        fputs("String; default \\fB\"", out);
        roff_text(out, r->def_str, 0);
        fputs(r->def_str[0] == '\0' ? "\"\\fR (empty).\n" : "\"\\fR.\n", out);
        break;
    case CONFIG_ROW_ENUM:
        fputs("One of", out);
        for (const char *p = r->values; *p;) {
            size_t tok = strcspn(p, "|");
            fputs(p == r->values ? " \\fB" : ", \\fB", out);
            roff_textn(out, p, tok, 0);
            fputs("\\fR", out);
            p += tok + (p[tok] == '|');
        }
        fputs("; default \\fB", out);
        roff_text(out, r->def_str, 0);
        fputs("\\fR.\n", out);
        break;
    case CONFIG_ROW_INTEGER:
        fprintf(out, "Integer from %lld", r->min);
        roff_size(out, r->name, r->min);
        fprintf(out, " to %lld", r->max);
        roff_size(out, r->name, r->max);
        fprintf(out, "; default \\fB%lld\\fR", r->def_num);
        roff_size(out, r->name, r->def_num);
        fputs(".\n", out);
        break;
    case CONFIG_ROW_USD:
        fprintf(out, "US dollars, a number or a decimal string such as \\fB\"50.00\"\\fR, "
                     "from 0 to %d; default \\fB%s\\fR.\n",
                PRICING_MAX_COST_USD, usd_default(r, d, sizeof d));
        break;
    case CONFIG_ROW_INT_LIST:
        fprintf(out, "A list of integers, each from %lld to %lld, ascending with no repeats; "
                     "default \\fB",
                r->min, r->max);
        roff_text(out, r->def_str, 0);
        fputs("\\fR.\n", out);
        break;
    }
}

static void man_entry(FILE *out, const struct config_row *r)
{
    size_t n = strlen(r->help);
    int cap = r->help[0] >= 'a' && r->help[0] <= 'z';

    fputs(".TP\n.B ", out);
    roff_text(out, r->name, 0);
    fputc('\n', out);
    /* The help is a phrase ("seconds to ..."); here it opens a sentence. */
    if (cap)
        fputc(r->help[0] - 'a' + 'A', out);
    roff_text(out, r->help + cap, !cap);
    fputs(n > 0 && r->help[n - 1] == '.' ? "\n.br\n" : ".\n.br\n", out);
    man_type_line(out, r);
    if (r->restart_only)
        fputs(".br\nNeeds a restart: a reload keeps the running value.\n", out);
}

/* The group of a dotted name: "listen" for "listen.port", "" for a
 * setting at the top of the file. */
static size_t group_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot != NULL ? (size_t)(dot - name) : 0;
}

/* Every setting, one subsection per group in the order each group first
 * appears in the table, the settings of the top level under their own. */
static void man_settings(FILE *out)
{
    int n = config_table_count();
    struct config_row r, first;

    for (int i = 0; i < n; i++) {
        config_table_row(i, &first);
        size_t g = group_len(first.name);
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) {
            config_table_row(k, &r);
            seen = group_len(r.name) == g && strncmp(r.name, first.name, g) == 0;
        }
        if (seen)
            continue;
        if (g == 0)
            fputs(".SS \"Top level\"\n", out);
        else
            fprintf(out, ".SS \"%.*s = { ... };\"\n", (int)g, first.name);
        for (int k = i; k < n; k++) {
            config_table_row(k, &r);
            if (group_len(r.name) == g && strncmp(r.name, first.name, g) == 0)
                man_entry(out, &r);
        }
    }
}

/* "a, b, c and d" of the settings a reload keeps. */
static void man_restart_list(FILE *out)
{
    struct config_row r;
    int total = 0, done = 0;

    for (int i = 0; config_table_row(i, &r) == 0; i++)
        total += r.restart_only;
    for (int i = 0; config_table_row(i, &r) == 0; i++) {
        if (!r.restart_only)
            continue;
        fputs(".BR ", out);
        roff_text(out, r.name, 0);
        done++;
        fprintf(out, " %s\n", done == total ? "." : done == total - 1 ? "\" and\"" : ",");
    }
}

/* The hand-written parts of the page, in roff. */
static const char man_head[] =
    ".\\\" orproxy.conf(5) - generated by `orproxy --settings-man` from the settings\n"
    ".\\\" table (src/config.c) and src/config_doc.c: edit those, not this file.\n"
    ".\\\" tests/test_config.c checks that this copy is current.\n"
    ".TH ORPROXY.CONF 5 2026-12-01 orproxy \"File Formats Manual\"\n"
    ".nh\n"
    ".SH NAME\n"
    "orproxy.conf \\- configuration file of orproxy\n"
    ".SH SYNOPSIS\n"
    ".I /etc/orproxy/orproxy.conf\n"
    ".SH DESCRIPTION\n"
    ".BR orproxy (8)\n"
    "reads this file at start and again on\n"
    ".BR SIGHUP ;\n"
    ".B \\-c\n"
    ".I file\n"
    "names another one.\n"
    "The file uses libconfig syntax:\n"
    ".PP\n"
    ".RS\n"
    ".EX\n"
    "# the address and port orproxy listens on\n"
    "listen = { address = \"127.0.0.1\"; port = 8080; };\n"
    "upstream = {\n"
    "  idle_timeout_s = 120;    // seconds of upstream silence\n"
    "};\n"
    "shutdown_timeout_s = 30;\n"
    ".EE\n"
    ".RE\n"
    ".PP\n"
    "A setting is written\n"
    ".IR name \" = \" value ;\n"
    "with strings in double quotes.\n"
    "Related settings sit in a group,\n"
    ".IR group \" = { ... };\" ,\n"
    "and a setting's full name is its dotted path:\n"
    ".B port\n"
    "in the group\n"
    ".B listen\n"
    "is\n"
    ".BR listen.port .\n"
    "Comments start with\n"
    ".B #\n"
    "or\n"
    ".BR // ,\n"
    "or sit between\n"
    ".B /*\n"
    "and\n"
    ".BR */ .\n"
    "A large integer may carry libconfig's\n"
    ".B L\n"
    "suffix, as in\n"
    ".BR 67108864L .\n"
    "A setting left out has its default.\n"
    ".PP\n"
    "A line\n"
    ".BI \"@include \\(dq\" file \\(dq\n"
    "reads\n"
    ".I file\n"
    "in its place; it must name a regular file.\n"
    "The container's configuration reads its list of clients this way.\n"
    ".PP\n"
    "Any problem stops\n"
    ".B orproxy\n"
    "at start with\n"
    ".IB file : line :\n"
    ".I message\n"
    "and exit status 2: an unknown name (a misspelt name is an error, never\n"
    "ignored), a wrong type, a value out of range or not among the allowed ones, a\n"
    "key file that cannot be read, or a rule that joins settings:\n"
    ".IP \\(bu 2\n"
    ".B auth.mode\n"
    "\\(dqnone\\(dq is refused unless orproxy listens on a loopback address, since\n"
    "anyone who can connect spends the account's money;\n"
    ".IP \\(bu 2\n"
    ".B auth.mode\n"
    "\\(dqkeys\\(dq needs at least one client;\n"
    ".IP \\(bu 2\n"
    ".B retry.max_delay_ms\n"
    "must be at least\n"
    ".BR retry.base_delay_ms .\n"
    ".PP\n"
    ".B orproxy \\-t \\-c\n"
    ".I file\n"
    "checks a file without starting the daemon.\n"
    ".B orproxy \\-\\-settings\n"
    "prints the settings below as a Markdown table and\n"
    ".B orproxy \\-\\-settings\\-man\n"
    "prints this page.\n"
    "Both are written from the table the program parses with, so they cannot\n"
    "drift from it.\n"
    ".SH \"THE UPSTREAM KEY\"\n"
    "The OpenRouter key is never written in this file.\n"
    ".B orproxy\n"
    "takes it from the first of these that gives one:\n"
    ".IP 1. 4\n"
    "the first line of the file named by\n"
    ".BR upstream.api_key_file ;\n"
    ".IP 2. 4\n"
    ".I $CREDENTIALS_DIRECTORY/openrouter\\-api\\-key\n"
    "(systemd\n"
    ".BR LoadCredential= );\n"
    ".IP 3. 4\n"
    "the environment variable named by\n"
    ".B upstream.api_key_env\n"
    "(default\n"
    ".BR OPENROUTER_API_KEY ).\n"
    ".PP\n"
    "Without a key\n"
    ".B orproxy\n"
    "still starts: it answers\n"
    ".I /healthz\n"
    "and API calls get 500 with the code\n"
    ".BR no_upstream_key .\n"
    "A client may bring its own key (see\n"
    ".BR CLIENTS ).\n"
    ".SH SETTINGS\n"
    "Each entry says what the setting does, then its type, its values and its\n"
    "default.\n";

static const char man_clients[] =
    ".SH CLIENTS\n"
    "With\n"
    ".B auth.mode\n"
    "= \\(dqkeys\\(dq every API request needs\n"
    ".BI \"Authorization: Bearer \" key\n"
    "with the key of a client listed in\n"
    ".BR clients .\n"
    ".B orproxy key new\n"
    ".I name\n"
    "makes a key, prints it once and prints the line to add here; the file keeps\n"
    "only the key's SHA\\-256, which is compared in constant time.\n"
    ".PP\n"
    ".RS\n"
    ".EX\n"
    "auth = { mode = \"keys\"; };\n"
    "clients = (\n"
    "  { name = \"alice\"; key_sha256 = \"5f1c...\"; models = [\"openai/*\"]; rpm = 60; },\n"
    "  { name = \"ops\"; key_sha256 = \"...\"; admin = true; }\n"
    ");\n"
    ".EE\n"
    ".RE\n"
    ".PP\n"
    "Each client is a group with these settings:\n"
    ".TP\n"
    ".B name\n"
    "Required: 1 to 63 letters, digits,\n"
    ".BR . ,\n"
    ".B _\n"
    "or\n"
    ".BR \\- ,\n"
    "different for each client.\n"
    "It is the ledger's\n"
    ".B client\n"
    "column, and a client's counters and spend are kept by name across reloads.\n"
    ".TP\n"
    ".B key_sha256\n"
    "Required: the SHA\\-256 of the client's key, 64 hex digits.\n"
    "Two clients cannot have the same key.\n"
    ".TP\n"
    ".B admin\n"
    ".BR true ,\n"
    "or\n"
    ".B false\n"
    "(the default): an admin client may read everyone's\n"
    ".I /v1/usage\n"
    "and\n"
    ".IR /metrics .\n"
    ".TP\n"
    ".BR upstream_key_env \", \" upstream_key_file\n"
    "This client's own OpenRouter key, used instead of the shared one: from an\n"
    "environment variable, or from the first line of a file (the file wins).\n"
    "A variable that is not set or a file that cannot be read is an error.\n"
    ".TP\n"
    ".B pass_through_keys\n"
    ".BR true ,\n"
    "or\n"
    ".B false\n"
    "(the default): a request carrying\n"
    ".BI \"X\\-OpenRouter\\-Key: \" key\n"
    "goes upstream with that key (the header itself is not forwarded), still\n"
    "recorded under the client.\n"
    ".TP\n"
    ".B models\n"
    "A list of allowed model patterns such as\n"
    ".BR \"[\\(dqopenai/*\\(dq, \\(dq*:free\\(dq]\" ,\n"
    "where\n"
    ".B *\n"
    "matches anything; without it every model is allowed.\n"
    "Every model a request may be served by (its\n"
    ".B model\n"
    "and each of its\n"
    ".B models\n"
    "fallbacks) must match, or it gets 403 naming the model.\n"
    ".TP\n"
    ".B aliases\n"
    ".RI [ name \", \" \"OpenRouter id\" ]\n"
    "pairs, tried before the global\n"
    ".BR aliases .\n"
    ".TP\n"
    ".B defaults\n"
    "A group of request fields applied only where the request leaves them out:\n"
    ".B model\n"
    "(a string),\n"
    ".B temperature\n"
    "(0 to 2),\n"
    ".B top_p\n"
    "(0 to 1),\n"
    ".B max_tokens\n"
    "(up to 10000000),\n"
    ".B frequency_penalty\n"
    "and\n"
    ".B presence_penalty\n"
    "(\\-2 to 2),\n"
    ".BR system_prompt ,\n"
    "which is added only when the messages have no system message, and\n"
    ".BR context ,\n"
    "added as a second system message \"Context:\\en...\" after it, unless a system\n"
    "message starting \"Context:\" is there already.\n"
    ".TP\n"
    ".BR rpm \", \" tpm\n"
    "Requests and tokens per minute, over a sliding 60\\-second window (0 = no\n"
    "limit).\n"
    "Over a limit the request gets 429 with a\n"
    ".B Retry\\-After\n"
    "saying when it frees up.\n"
    ".TP\n"
    ".B max_concurrent\n"
    "Requests in progress at once (0 = no limit); over it: 429.\n"
    ".TP\n"
    ".BR budget_usd_day \", \" budget_usd_month\n"
    "Spend per UTC day and per UTC month, in US dollars as a number or a decimal\n"
    "string, with the same bounds as\n"
    ".BR limits.budget_usd_day .\n"
    "Over budget the request gets 402 naming the budget and when it resets (also\n"
    "as\n"
    ".BR Retry\\-After ).\n"
    ".PP\n"
    "The same\n"
    ".BR rpm ,\n"
    ".BR tpm ,\n"
    ".BR max_concurrent ,\n"
    ".B budget_usd_day\n"
    "and\n"
    ".B budget_usd_month\n"
    "in the group\n"
    ".B limits\n"
    "apply to all traffic together.\n"
    "Before it is forwarded a request reserves its worst case: the prompt at about\n"
    "4 bytes a token plus\n"
    ".B max_tokens\n"
    "(4096 when unset), at the price of the dearest model it may be served by.\n"
    "It settles on the real cost when it ends, so concurrent requests cannot\n"
    "overspend a budget.\n"
    "Spend is seeded from the usage ledger at start, so a restart does not reset\n"
    "it.\n"
    ".SH ALIASES\n"
    ".RS\n"
    ".EX\n"
    "aliases = ( [\"gpt\\-4o\", \"openai/gpt\\-4o\"], [\"fast\", \"openai/gpt\\-4o\\-mini\"] );\n"
    ".EE\n"
    ".RE\n"
    ".PP\n"
    "Maps model names that applications use to OpenRouter ids, for every client; a\n"
    "client's own\n"
    ".B aliases\n"
    "are tried first.\n"
    "Aliases and a client's\n"
    ".B defaults\n"
    "are the only edits\n"
    ".B orproxy\n"
    "makes to a request body: when none applies, the body goes upstream byte for\n"
    "byte.\n";

static const char man_reload[] =
    ".SH RELOAD\n"
    "On\n"
    ".B SIGHUP\n"
    ".RB ( \"systemctl reload orproxy\" )\n"
    ".B orproxy\n"
    "reads the file again.\n"
    "New requests use the new settings; requests and streams in flight finish with\n"
    "the configuration they started with.\n"
    "A file with an error is logged with its\n"
    ".IB file : line\n"
    "message and changes nothing, and so is one that fails a rule joining\n"
    "settings checked against what really runs (such as\n"
    ".B auth.mode\n"
    "\\(dqnone\\(dq while the running listener is not on a loopback address).\n"
    "Clients, keys, limits, budgets and aliases are read again; counters and spend\n"
    "carry over.\n"
    "These settings need a restart: a reload keeps their running values and logs\n"
    "their names:\n";

static const char man_tail[] =
    ".SH FILES\n"
    ".TP\n"
    ".I /etc/orproxy/orproxy.conf\n"
    "The default configuration file.\n"
    ".B make install\n"
    "puts the documented example there unless a file already exists.\n"
    ".TP\n"
    ".I /etc/orproxy/openrouter\\-api\\-key\n"
    "The upstream key for the systemd service, passed to it as a credential; owned\n"
    "by root, mode 0600.\n"
    ".SH EXAMPLES\n"
    "A shared gateway with client keys, aliases, one budget for all traffic and\n"
    "limits per client:\n"
    ".PP\n"
    ".RS\n"
    ".EX\n"
    "listen = { address = \"0.0.0.0\"; port = 8080; };\n"
    "auth = { mode = \"keys\"; };\n"
    "\n"
    "# names apps use \\-> OpenRouter ids, for everyone\n"
    "aliases = ( [\"gpt\\-4o\", \"openai/gpt\\-4o\"], [\"fast\", \"openai/gpt\\-4o\\-mini\"] );\n"
    "\n"
    "# all traffic together\n"
    "limits = { rpm = 600; budget_usd_month = 200; };\n"
    "\n"
    "clients = (\n"
    "  { name = \"alice\"; key_sha256 = \"5f1c...\";\n"
    "    models = [\"openai/*\", \"*:free\"];    # anything else: 403\n"
    "    aliases = ( [\"claude\", \"anthropic/claude\\-3.5\\-haiku\"] );\n"
    "    defaults = { model = \"openai/gpt\\-4o\\-mini\"; temperature = 0.2;\n"
    "                 max_tokens = 1024; system_prompt = \"Answer briefly.\"; };\n"
    "    rpm = 60; tpm = 200000; max_concurrent = 4;\n"
    "    budget_usd_day = 5; budget_usd_month = \"50.00\"; },\n"
    "  { name = \"batch\\-job\"; key_sha256 = \"...\";\n"
    "    upstream_key_env = \"BATCH_OPENROUTER_KEY\"; },  # its own account\n"
    "  { name = \"bob\"; key_sha256 = \"...\"; pass_through_keys = true; },\n"
    "  { name = \"ops\"; key_sha256 = \"...\"; admin = true; }\n"
    ");\n"
    ".EE\n"
    ".RE\n"
    ".SH \"SEE ALSO\"\n"
    ".BR orproxy (8)\n"
    ".PP\n"
    ".UR https://hyperrealm.github.io/libconfig/\n"
    "libconfig\n"
    ".UE\n";

void config_doc_man(FILE *out)
{
    fputs(man_head, out);
    man_settings(out);
    fputs(man_clients, out);
    fputs(man_reload, out);
    man_restart_list(out);
    fputs(man_tail, out);
}
