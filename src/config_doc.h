/* config_doc.h - the documents written from the settings table: the
 * Markdown table of `orproxy --settings` and the man page orproxy.conf(5)
 * of `orproxy --settings-man` (committed as doc/orproxy.conf.5).  Both are
 * a pure function of the table, so tests/test_config.c can check that the
 * committed copies are current. */
#ifndef ORP_CONFIG_DOC_H
#define ORP_CONFIG_DOC_H

#include <stdio.h>

/* The settings table in Markdown: name, type, default, range, meaning. */
void config_doc_markdown(FILE *out);

/* The whole orproxy.conf(5) page in roff (man macros). */
void config_doc_man(FILE *out);

#endif
