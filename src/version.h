/* version.h - the version orproxy reports (--version, the start-up line,
 * orproxy_build_info in /metrics).
 *
 * The Makefile passes -DORP_VERSION from `git describe` (the Dockerfile, which
 * has no .git, passes VERSION in); a build without it says "0.1". */
#ifndef ORP_VERSION_H
#define ORP_VERSION_H

#ifndef ORP_VERSION
#define ORP_VERSION "0.1"
#endif

#endif
