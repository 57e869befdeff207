/* Strict parsing of untrusted text (flags, config values, query
 * parameters). */
#ifndef CORRAL_UTIL_PARSE_H
#define CORRAL_UTIL_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* An unsigned decimal: one or more digits and nothing else (no sign, no
 * spaces, no base prefix), at most UINT64_MAX. false otherwise. */
bool corral_parse_u64(const char *s, uint64_t *out);

/* A "host:port" as peers announce their HTTP address: 1..260 bytes of
 * printable ASCII without spaces (it ends up in Location headers and
 * logs: no CR, LF, NUL or other control byte may pass), with a ':'. */
bool corral_parse_hostport_safe(const char *s);

#endif
