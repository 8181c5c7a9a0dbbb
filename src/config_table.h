/* config_table.h - a read-only view of the settings table in config.c.
 *
 * The documents the table drives (the Markdown table of `orproxy
 * --settings`, the man page doc/orproxy.conf.5) are written by
 * config_doc.c from this view, so config.c keeps only parsing and
 * validation and the rows stay private to it.  Rows come in table order;
 * every string points into the table (static, never freed). */
#ifndef ORP_CONFIG_TABLE_H
#define ORP_CONFIG_TABLE_H

enum config_row_type {
    CONFIG_ROW_STRING,  /* any string (def_str) */
    CONFIG_ROW_INTEGER, /* def_num within min ... max */
    CONFIG_ROW_ENUM,    /* def_str, one of values ("a|b|c") */
    CONFIG_ROW_USD,     /* a dollar amount: number or decimal string, default 0 */
    CONFIG_ROW_INT_LIST /* integers within min ... max, ascending; def_str "[50, 80, 100]" */
};

struct config_row {
    const char *name; /* dotted: "listen.port" */
    enum config_row_type type;
    const char *def_str;         /* STRING, ENUM, INT_LIST */
    long long def_num, min, max; /* INTEGER; INT_LIST: each element */
    const char *values;          /* ENUM: "a|b|c" */
    const char *help;            /* one line */
    int restart_only;            /* a reload keeps the running value */
};

/* Row i (0 ... config_table_count() - 1) into *row.  0, or -1 when i is out
 * of range. */
int config_table_row(int i, struct config_row *row);

#endif
