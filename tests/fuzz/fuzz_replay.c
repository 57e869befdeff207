/* A plain driver for the fuzz targets, for when clang's libFuzzer is not
 * there: links with a target's LLVMFuzzerTestOneInput and feeds it every
 * file given (or every file in a directory given), then N deterministic
 * mutations of each: bit flips, byte overwrites, truncations, insertions
 * and deletions, with a fixed PRNG seed, so a run is the same everywhere.
 * A broken property aborts as under libFuzzer; a SIGABRT handler then
 * writes the input to ./replay-crash so it can be replayed (run the
 * sanitizers with abort_on_error=1 for their reports to get there too).
 *
 *     fuzz_<target>-replay [-mutations=N] [-seed=S] FILE|DIR...  */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX ((size_t)1 << 20)

/* splitmix64 */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint8_t *work;
static unsigned long long execs;

static const uint8_t *cur;
static size_t cur_size;

static void on_abort(int sig)
{
    int fd = open("replay-crash", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        size_t off = 0;
        while (off < cur_size) {
            ssize_t w = write(fd, cur + off, cur_size - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(fd);
    }
    static const char msg[] = "fuzz replay: failing input written to ./replay-crash\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        /* nothing more to do */
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run_one(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so ASan sees over-reads past the end. */
    uint8_t *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    cur = data;
    cur_size = size;
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
    execs++;
}

/* One to four edits of seed into work; returns the new size. */
static size_t mutate(const uint8_t *seed, size_t size, uint64_t *rng)
{
    memcpy(work, seed, size);
    size_t n = size;
    unsigned edits = 1 + (unsigned)(rng_next(rng) % 4);
    for (unsigned e = 0; e < edits; e++) {
        uint64_t r = rng_next(rng);
        size_t at = n > 0 ? (size_t)(rng_next(rng) % n) : 0;
        switch (r % 6) {
        case 0: /* bit flip */
            if (n > 0)
                work[at] ^= (uint8_t)(1u << ((r >> 8) % 8));
            break;
        case 1: /* byte overwrite, often with a boundary value */
            if (n > 0) {
                static const uint8_t special[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x40};
                work[at] = (r >> 8) % 2 ? special[(r >> 16) % sizeof(special)] : (uint8_t)(r >> 24);
            }
            break;
        case 2: /* truncation */
            n = at;
            break;
        case 3: /* insertion of 1..8 bytes */
        {
            size_t k = 1 + (size_t)((r >> 8) % 8);
            if (n + k <= INPUT_MAX) {
                memmove(work + at + k, work + at, n - at);
                for (size_t i = 0; i < k; i++)
                    work[at + i] = (uint8_t)(rng_next(rng));
                n += k;
            }
            break;
        }
        case 4: /* deletion of 1..8 bytes */
        {
            size_t k = 1 + (size_t)((r >> 8) % 8);
            if (at + k <= n) {
                memmove(work + at, work + at + k, n - at - k);
                n -= k;
            }
            break;
        }
        default: /* a little-endian length field set to a boundary */
            if (n >= 4 && at + 4 <= n) {
                static const uint32_t lens[] = {0, 1, 0xffff, 0x10000, 0xffffffffu, 0x7fffffff};
                uint32_t v = lens[(r >> 8) % (sizeof(lens) / sizeof(lens[0]))];
                for (size_t i = 0; i < 4; i++)
                    work[at + i] = (uint8_t)(v >> (8 * i));
            }
            break;
        }
    }
    return n;
}

static unsigned long mutations = 1000;
static uint64_t seed = 13;
static unsigned files;

static void run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    uint8_t *data = malloc(INPUT_MAX);
    if (data == NULL)
        abort();
    size_t size = fread(data, 1, INPUT_MAX, f);
    fclose(f);
    files++;
    run_one(data, size);
    /* Each file's mutations depend only on the seed and its contents. */
    uint64_t rng = seed;
    for (size_t i = 0; i < size; i++)
        rng = rng * 31 + data[i];
    for (unsigned long m = 0; m < mutations; m++) {
        size_t n = mutate(data, size, &rng);
        run_one(work, n);
    }
    free(data);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        perror(path);
        exit(1);
    }
    if (!S_ISDIR(sb.st_mode)) {
        run_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        perror(path);
        exit(1);
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char **nn = realloc(names, (n + 1) * sizeof(*names));
        if (nn == NULL)
            abort();
        names = nn;
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        if ((names[n] = malloc(len)) == NULL)
            abort();
        snprintf(names[n], len, "%s/%s", path, de->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name); /* the same order everywhere */
    for (size_t i = 0; i < n; i++) {
        run_file(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    work = malloc(INPUT_MAX + 16);
    if (work == NULL)
        return 1;
    signal(SIGABRT, on_abort);
    int paths = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-mutations=", 11) == 0)
            mutations = strtoul(argv[i] + 11, NULL, 10);
        else if (strncmp(argv[i], "-seed=", 6) == 0)
            seed = strtoull(argv[i] + 6, NULL, 10);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [-mutations=N] [-seed=S] FILE|DIR...\n", argv[0]);
            return 2;
        } else {
            run_path(argv[i]);
            paths++;
        }
    }
    if (paths == 0) {
        fprintf(stderr, "usage: %s [-mutations=N] [-seed=S] FILE|DIR...\n", argv[0]);
        return 2;
    }
    printf("%s: %u seeds, %lu mutations each, %llu runs, no failure\n", argv[0], files, mutations,
           execs);
    free(work);
    return 0;
}
