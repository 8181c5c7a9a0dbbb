/* fuzz_config.c - the config loader on arbitrary files.
 *
 * config_load reads a path, so the input is written to a file in the
 * scratch directory and loaded; errors are expected and fine, crashes,
 * leaks and aborts are not.  A successful load must leave a config whose
 * invariants hold, and loading it into a heap config and releasing it must
 * free everything.
 *
 * The loader may open other files: libconfig's @include and the key files
 * (upstream.api_key_file, a client's upstream_key_file).  Those could name
 * /dev/stdin or a FIFO and hang the fuzzer, and would make results depend
 * on the machine, so '@' is turned into '#' (a comment) before writing,
 * and this target links a copy of config.o whose fopen calls are renamed
 * to fuzz_fopen (objcopy --redefine-sym, see the Makefile): they reach
 * only the config file itself; any other path fails with ENOENT.  The
 * other config_*.c files open files only through the loader's open hook,
 * which is config.o's one fopen (see config_int.h).
 * The environment variables the loader reads are cleared once at start. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

static char conf_path[512];

FILE *fuzz_fopen(const char *path, const char *mode);

FILE *fuzz_fopen(const char *path, const char *mode)
{
    if (conf_path[0] != '\0' && strcmp(path, conf_path) == 0 && strcmp(mode, "r") == 0)
        return fopen(path, mode);
    errno = ENOENT;
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsetenv("STATE_DIRECTORY");
    unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("OPENROUTER_API_KEY");
    snprintf(conf_path, sizeof conf_path, "%s/orproxy.conf", fuzz_scratch_dir());
    return 0;
}

static void check_loaded(const struct orp_config *cfg)
{
    FUZZ_CHECK(cfg->listen_address != NULL && cfg->upstream_base_url != NULL);
    FUZZ_CHECK(cfg->listen_port >= 0 && cfg->listen_port <= 65535);
    FUZZ_CHECK(cfg->retry_max_delay_ms >= cfg->retry_base_delay_ms);
    FUZZ_CHECK(cfg->ledger_path != NULL && cfg->ledger_path[0] != '\0');
    FUZZ_CHECK(strcmp(cfg->auth_mode, "keys") != 0 || cfg->n_clients > 0);
    for (int i = 0; i < cfg->n_clients; i++) {
        FUZZ_CHECK(cfg->clients[i].name != NULL);
        for (int k = 0; k < cfg->clients[i].n_models; k++)
            FUZZ_CHECK(cfg->clients[i].models[k] != NULL);
        for (int k = 0; k < cfg->clients[i].n_aliases; k++)
            FUZZ_CHECK(cfg->clients[i].aliases[k].from && cfg->clients[i].aliases[k].to);
    }
    for (int k = 0; k < cfg->n_aliases; k++)
        FUZZ_CHECK(cfg->aliases[k].from != NULL && cfg->aliases[k].to != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct orp_config cfg, *heap;
    char err[512];
    FILE *f = fopen(conf_path, "w");
    int rc;

    FUZZ_CHECK(f != NULL);
    for (size_t i = 0; i < size; i++)
        FUZZ_CHECK(fputc(data[i] == '@' ? '#' : data[i], f) != EOF);
    FUZZ_CHECK(fclose(f) == 0);

    memset(&cfg, 0, sizeof cfg);
    rc = config_load(conf_path, &cfg, err, sizeof err);
    if (rc == 0)
        check_loaded(&cfg);
    else
        FUZZ_CHECK(strncmp(err, conf_path, strlen(conf_path)) == 0); /* "FILE:LINE: ..." */
    config_free(&cfg);

    heap = config_load_new(conf_path, err, sizeof err);
    FUZZ_CHECK((heap != NULL) == (rc == 0));
    if (heap != NULL)
        config_release(heap);
    return 0;
}
