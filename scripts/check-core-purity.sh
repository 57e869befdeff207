#!/usr/bin/env bash
# Fails when anything under src/core includes an I/O, event-loop, thread or
# clock header, or calls the clock, randomness or a syscall. The core must
# stay pure so the simulator runs exactly the code production runs.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
headers='uv|microhttpd|curl/curl|jansson|ini|unistd|fcntl|pthread|threads|time|signal|poll|dirent|termios|sys/[a-z_]+|netinet/[a-z_]+|arpa/[a-z_]+|netdb|stdio|errno'
calls='fsync|fdatasync|open|openat|close|read|write|pread|pwrite|socket|connect|accept|bind|listen|send|recv|sendto|recvfrom|clock_gettime|gettimeofday|time|clock|rand|srand|random|srandom|rand_r|drand48|arc4random|getrandom|getpid|fork|exec[lv]p?e?|system|popen|sleep|usleep|nanosleep|printf|fprintf|puts|fopen|fread|fwrite|mmap|ioctl|syscall|exit|abort|getenv|malloc|calloc|realloc|free'

# Headers: only the C library's pure parts and our own headers.
bad=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*<($headers)\.h>" src/core/*.[ch] 2>/dev/null)
if [ -n "$bad" ]; then
  echo "check-core-purity: forbidden include in src/core:" >&2
  echo "$bad" >&2
  status=1
fi

# Calls: strip comments and strings first, then look for name( that is not
# part of a longer identifier. Allocation goes through util/mem.h.
bad=$(for f in src/core/*.[ch]; do
  [ -e "$f" ] || continue
  sed -E 's://.*$::; s:"([^"\\]|\\.)*":"":g' "$f" |
    awk -v f="$f" 'BEGIN{c=0} {
      line=$0; out="";
      while (length(line) > 0) {
        if (c) { i=index(line,"*/"); if (i==0) { line="" } else { line=substr(line,i+2); c=0 } }
        else { i=index(line,"/*"); if (i==0) { out=out line; line="" } else { out=out substr(line,1,i-1); line=substr(line,i+2); c=1 } }
      }
      print f ":" NR ": " out }'
done | grep -E "(^|[^A-Za-z0-9_.>])($calls)[[:space:]]*\(" )
if [ -n "$bad" ]; then
  echo "check-core-purity: forbidden call in src/core (I/O, clock, randomness, syscall or raw allocation):" >&2
  echo "$bad" >&2
  status=1
fi

[ $status -eq 0 ] && echo "check-core-purity: src/core is pure"
exit $status
