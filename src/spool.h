/* spool.h - ledger rows kept on local disk while PostgreSQL is unreachable,
 * replayed in order when it is back (issue 14; not wired in yet).
 *
 * One append-only file in the state directory.  Each record is
 *   magic "ORPS" | payload length (u32 LE) | CRC-32 of the payload (u32 LE) | payload
 * and the payload is a JSON object: the row's key and every ledger field by
 * name, so a spool written by one build is read by the next.
 *
 * Durability: spool_append writes a whole batch with one write(2) and then
 * fdatasync(2)s it before returning, so a row the caller was told is spooled
 * survives a crash or power loss.  A crash in the middle of an append leaves
 * a torn last record: spool_open detects it (short header, length past the
 * end, or a bad checksum on the last record) and cuts it off; those rows
 * were never acknowledged.  A bad record in the middle (disk damage) is
 * skipped, counted and the scan goes on at the next magic.
 *
 * Replay hands the rows, in file order, in batches, to a sink that commits
 * them (pgledger_insert); rows carry their original keys, so rows replayed
 * twice (a crash after the commit, before the truncation) are written once.
 * The file is truncated only after every record was committed.  A failed
 * sink leaves the file alone; the next replay in this process goes on after
 * the last committed batch (a new process starts over from the beginning).
 *
 * A spool is used by one thread (the ledger writer); spool_bytes may be
 * read from any thread (for a metric). */
#ifndef ORP_SPOOL_H
#define ORP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "pgledger.h"

struct spool;

/* What spool_open found. */
struct spool_scan {
    uint64_t records;    /* good records kept */
    uint64_t torn_bytes; /* cut off the end (a torn last append) */
    uint64_t corrupt;    /* bad records skipped in the middle */
};

/* Opens or creates path (mode 0600), checks every record and cuts a torn
 * tail.  scan may be NULL.  NULL with err on an I/O error. */
struct spool *spool_open(const char *path, struct spool_scan *scan, char *err, size_t errlen);
void spool_close(struct spool *sp);

/* Appends n rows and syncs them to disk.  0, or -1 with err (nothing of
 * this batch is counted as spooled; a partial write is cut off again). */
int spool_append(struct spool *sp, const struct pgl_row *rows, size_t n, char *err, size_t errlen);

/* The file's size in bytes (0 = nothing waiting).  Any thread. */
uint64_t spool_bytes(const struct spool *sp);

/* Commits rows[0..n) for good: 0 on success, anything else = not now. */
typedef int (*spool_sink_fn)(const struct pgl_row *rows, size_t n, void *arg);

/* Replays every record in order, batch rows at a time, then truncates the
 * file.  Returns 0 when the spool is empty afterwards, 1 when the sink
 * failed (the rest stays spooled), -1 with err on an I/O error. */
int spool_replay(struct spool *sp, spool_sink_fn sink, void *arg, size_t batch, char *err,
                 size_t errlen);

#endif
