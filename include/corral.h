/* corral: public C API.
 *
 * Today this header holds the error codes shared by every layer; the member
 * library (acquire/release callbacks) arrives with the node work. */
#ifndef CORRAL_H
#define CORRAL_H

#define CORRAL_VERSION "0.1.0"

/* Every function that can fail returns 0 or one of these. */
enum {
    CORRAL_OK = 0,
    CORRAL_ENOMEM = 1,     /* an allocation failed */
    CORRAL_EINVAL = 2,     /* an argument or input is invalid */
    CORRAL_ETOOBIG = 3,    /* a length exceeds its documented limit */
    CORRAL_ECORRUPT = 4,   /* bytes failed a checksum or are malformed */
    CORRAL_EVERSION = 5,   /* unknown format version */
    CORRAL_ENOTLEADER = 6, /* the operation needs the Raft leader */
    CORRAL_EBUSY = 7,      /* a conflicting operation is in progress */
    CORRAL_ENOTFOUND = 8,  /* no such node, key or object */
    CORRAL_ECOMPACTED = 9, /* the log entry was compacted into a snapshot */
    CORRAL_EFULL = 10,     /* a bounded queue is full */
    CORRAL_EIO = 11,       /* an I/O error */
    CORRAL_ESHUTDOWN = 12, /* the object is closing */
    CORRAL_ETIMEDOUT = 13, /* a deadline passed before the outcome was known */
    CORRAL_ELOST = 14,     /* a proposal was overwritten by another leader's entry */
};
#define CORRAL_ERRNO_MAX 14

/* A static, human-readable message for a CORRAL_E* code. */
const char *corral_strerror(int err);

#endif
