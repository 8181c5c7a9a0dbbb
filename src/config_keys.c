/* config_keys.c - where the upstream keys come from: a key file, systemd
 * credentials, or the environment; and where the PostgreSQL ledger's
 * password file is (a setting, or the credential).  See config_int.h.  A key is a secret:
 * buffers that held one are wiped, and no message quotes one. */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A copy of the first non-blank line of s without its surrounding
 * whitespace, or NULL when there is none (or no memory). */
void config_free_secret(char **p)
{
    if (*p != NULL) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

char *config_trimmed_dup(const char *s)
{
    size_t n;
    while (isspace((unsigned char)*s))
        s++;
    n = strcspn(s, "\r\n");
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return n ? strndup(s, n) : NULL;
}

/* Reads a key: the first line of path.  0 with *key set (NULL for a blank
 * file) and errno 0, or -1 with errno (EISDIR for a directory). */
int config_read_key_file(struct loader *ld, const char *path, char **key)
{
    char buf[4096];
    size_t n;
    int e;
    FILE *f = ld->open(path);

    *key = NULL;
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    e = ferror(f) ? errno : 0;
    fclose(f);
    buf[n] = '\0';
    if (e == 0)
        *key = config_trimmed_dup(buf);
    explicit_bzero(buf, sizeof buf);
    errno = e;
    return e ? -1 : 0;
}

/* The upstream key: api_key_file, then systemd credentials, then the
 * environment.  Only a configured key file that cannot be read, or is
 * blank, is an error: without a key orproxy still starts (and says so). */
int config_resolve_key(struct loader *ld, struct orp_config *cfg)
{
    const char *cred = getenv("CREDENTIALS_DIRECTORY");

    config_free_secret(&cfg->upstream_key);
    if (cfg->upstream_api_key_file[0] != '\0') {
        if (config_read_key_file(ld, cfg->upstream_api_key_file, &cfg->upstream_key) < 0)
            return config_fail_at(ld, config_line_of(ld, "upstream.api_key_file"),
                           "upstream.api_key_file: cannot read '%s': %s",
                           cfg->upstream_api_key_file, strerror(errno));
        if (cfg->upstream_key == NULL)
            return config_fail_at(ld, config_line_of(ld, "upstream.api_key_file"),
                           "upstream.api_key_file: '%s' is empty", cfg->upstream_api_key_file);
        return 0;
    }
    if (cred != NULL && cred[0] != '\0') {
        char *path;
        int rc;
        if (asprintf(&path, "%s/openrouter-api-key", cred) < 0)
            return config_fail_at(ld, 0, "out of memory");
        rc = config_read_key_file(ld, path, &cfg->upstream_key);
        if (rc < 0 && errno != ENOENT) {
            ld->cur_file = NULL;
            config_fail_at(ld, 0, "cannot read credential '%s': %s", path, strerror(errno));
            free(path);
            return -1;
        }
        free(path);
        if (cfg->upstream_key != NULL)
            return 0;
    }
    if (cfg->upstream_api_key_env[0] != '\0') {
        const char *v = getenv(cfg->upstream_api_key_env);
        if (v != NULL)
            cfg->upstream_key = config_trimmed_dup(v);
    }
    return 0;
}

/* The PostgreSQL ledger's settings together: a URL when the backend needs
 * one, systemd's credential as the password file when none is named.
 * (instance.name's default is made where it is used, ledger_pg.c: a reload
 * that changes listen.port must not look like a change of instance.name.) */
int config_resolve_postgresql(struct loader *ld, struct orp_config *cfg)
{
    const char *cred = getenv("CREDENTIALS_DIRECTORY");

    if (strcmp(cfg->ledger_backend, "postgresql") != 0)
        return 0;
    if (cfg->ledger_postgresql_url[0] == '\0')
        return config_fail_at(ld, config_line_of(ld, "ledger.backend"),
                              "ledger.backend = \"postgresql\" needs ledger.postgresql_url");
    if (cfg->ledger_postgresql_password_file[0] != '\0') {
        if (access(cfg->ledger_postgresql_password_file, R_OK) != 0)
            return config_fail_at(ld, config_line_of(ld, "ledger.postgresql_password_file"),
                                  "ledger.postgresql_password_file: cannot read '%s': %s",
                                  cfg->ledger_postgresql_password_file, strerror(errno));
        return 0;
    }
    if (cred != NULL && cred[0] != '\0') {
        char *p;
        if (asprintf(&p, "%s/postgresql-password", cred) < 0)
            return config_fail_at(ld, 0, "out of memory");
        if (access(p, F_OK) == 0) {
            free(cfg->ledger_postgresql_password_file);
            cfg->ledger_postgresql_password_file = p;
        } else {
            free(p);
        }
    }
    return 0;
}
