/* Unit tests for src/runtime/storage*.c: round trips through a real data
 * directory under /tmp, truncation within and across segments, snapshots,
 * torn tails cut at every byte, and corruption, foreign and newer files
 * refused without a byte on disk changing. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corral.h"
#include "runtime/storage.h"
#include "runtime/storage_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rbuf.h"

#define FILES_MAX 256

static const struct corral_storage_ident ident = {.node_id = 7, .cluster_id = 0xc0ffee};

struct fixture {
    char dir[64];
    char err[256];
    struct corral_storage *s;
    struct corral_storage_state st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/corral-storage-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    corral_storage_set_segment_bytes_for_test(0);
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    corral_storage_close(f->s);
    corral_storage_state_free(&f->st);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    corral_storage_set_segment_bytes_for_test(0);
    corral_storage_set_prealloc_bytes_for_test(0);
    free(f);
    return 0;
}

static int try_open(struct fixture *f, const struct corral_storage_ident *id)
{
    corral_storage_close(f->s);
    f->s = NULL;
    corral_storage_state_free(&f->st);
    return corral_storage_open(f->dir, id, &f->s, &f->st, f->err, sizeof(f->err));
}

static void reopen(struct fixture *f)
{
    int rv = try_open(f, &ident);
    if (rv != 0)
        fail_msg("open: %s: %s", corral_strerror(rv), f->err);
}

static void path_of(const struct fixture *f, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", f->dir, name);
}

/* The entry (term, index): a payload of 0 to 60 bytes that depends on
 * both, so that a rewritten entry differs from the one it replaced. */
static struct corral_raft_entry entry(uint64_t term, uint64_t index)
{
    struct corral_raft_entry e = {.term = term, .index = index, .type = (uint8_t)(index % 3)};
    uint32_t len = (uint32_t)((index * 7 + term) % 61);
    if (len > 0) {
        e.data = corral_rbuf_new(NULL, len);
        assert_non_null(e.data);
        for (uint32_t i = 0; i < len; i++)
            e.data->data[i] = (uint8_t)(index + term + i);
    }
    return e;
}

/* Appends [from, to] in term through one call. */
static void append(struct fixture *f, uint64_t term, uint64_t from, uint64_t to)
{
    uint32_t n = (uint32_t)(to - from + 1);
    struct corral_raft_entry *es = calloc(n, sizeof(*es));
    assert_non_null(es);
    for (uint32_t i = 0; i < n; i++)
        es[i] = entry(term, from + i);
    assert_int_equal(corral_storage_append(f->s, es, n), 0);
    for (uint32_t i = 0; i < n; i++)
        corral_rbuf_unref(es[i].data);
    free(es);
}

static void check_entry(const struct corral_raft_entry *got, uint64_t term, uint64_t index)
{
    struct corral_raft_entry want = entry(term, index);
    assert_int_equal(got->index, index);
    assert_int_equal(got->term, term);
    assert_int_equal(got->type, want.type);
    uint32_t glen = got->data ? got->data->len : 0, wlen = want.data ? want.data->len : 0;
    assert_int_equal(glen, wlen);
    if (wlen > 0)
        assert_memory_equal(got->data->data, want.data->data, wlen);
    corral_rbuf_unref(want.data);
}

/* The loaded entries are [from, to]: term t1 up to split, t2 after it. */
static void check_log(const struct fixture *f, uint64_t from, uint64_t to, uint64_t t1,
                      uint64_t split, uint64_t t2)
{
    assert_int_equal(f->st.n_entries, to + 1 - from);
    for (uint64_t i = from; i <= to; i++)
        check_entry(&f->st.entries[i - from], i <= split ? t1 : t2, i);
}

static void set_hs(struct fixture *f, uint64_t term, uint64_t vote, uint64_t commit)
{
    struct corral_raft_hard_state hs = {term, vote, commit};
    assert_int_equal(corral_storage_set_hard_state(f->s, &hs), 0);
}

static void check_hs(const struct fixture *f, uint64_t term, uint64_t vote, uint64_t commit)
{
    assert_int_equal(f->st.hs.term, term);
    assert_int_equal(f->st.hs.vote, vote);
    assert_int_equal(f->st.hs.commit, commit);
}

static void sync_ok(struct fixture *f)
{
    assert_int_equal(corral_storage_sync(f->s), 0);
}

static int count_files(const struct fixture *f, const char *prefix)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static bool exists(const struct fixture *f, const char *name)
{
    char p[256];
    path_of(f, name, p, sizeof(p));
    return access(p, F_OK) == 0;
}

static off_t file_size(const struct fixture *f, const char *name)
{
    char p[256];
    struct stat st;
    path_of(f, name, p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

static void flip_byte(const struct fixture *f, const char *name, off_t off)
{
    char p[256];
    path_of(f, name, p, sizeof(p));
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void write_file(const struct fixture *f, const char *name, const void *data, size_t len)
{
    char p[256];
    path_of(f, name, p, sizeof(p));
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void close_storage(struct fixture *f)
{
    corral_storage_close(f->s);
    f->s = NULL;
    corral_storage_state_free(&f->st);
}

/* Every file in the directory, by name, with its bytes. */
struct dir_image {
    int n;
    char names[FILES_MAX][64];
    uint8_t *data[FILES_MAX];
    size_t len[FILES_MAX];
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void take_image(const struct fixture *f, struct dir_image *img)
{
    memset(img, 0, sizeof(*img));
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        assert_true(img->n < FILES_MAX);
        size_t len = strlen(e->d_name);
        assert_true(len < 64);
        memcpy(img->names[img->n++], e->d_name, len + 1);
    }
    closedir(d);
    qsort(img->names, (size_t)img->n, 64, cmp_name);
    for (int i = 0; i < img->n; i++) {
        char p[256];
        path_of(f, img->names[i], p, sizeof(p));
        FILE *fp = fopen(p, "rb");
        assert_non_null(fp);
        img->len[i] = (size_t)file_size(f, img->names[i]);
        img->data[i] = malloc(img->len[i] + 1);
        assert_int_equal(fread(img->data[i], 1, img->len[i], fp), img->len[i]);
        fclose(fp);
    }
}

static void free_image(struct dir_image *img)
{
    for (int i = 0; i < img->n; i++)
        free(img->data[i]);
}

static int find_file(const struct dir_image *img, const char *name)
{
    for (int i = 0; i < img->n; i++) {
        if (strcmp(img->names[i], name) == 0)
            return i;
    }
    fail_msg("no file %s", name);
    return -1;
}

static void assert_same_image(const struct dir_image *a, const struct dir_image *b)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_string_equal(a->names[i], b->names[i]);
        assert_int_equal(a->len[i], b->len[i]);
        assert_memory_equal(a->data[i], b->data[i], a->len[i]);
    }
}

/* Opening must fail with want, and change nothing. */
static void refused(struct fixture *f, const struct corral_storage_ident *id, int want,
                    const char *in_err)
{
    close_storage(f);
    struct dir_image before, after;
    take_image(f, &before);
    int rv = try_open(f, id);
    if (rv != want)
        fail_msg("open: got %d (%s), want %d", rv, f->err, want);
    assert_null(f->s);
    assert_non_null(strstr(f->err, in_err));
    take_image(f, &after);
    assert_same_image(&before, &after);
    free_image(&before);
    free_image(&after);
}

static void wal(char *out, uint64_t first)
{
    storage_wal_name(out, first);
}

/* Tests. */

static void fresh_open(void **state)
{
    struct fixture *f = *state;
    strcat(f->dir, "/data/node"); /* missing: created */
    reopen(f);
    assert_true(f->st.fresh);
    assert_int_equal(f->st.n_entries, 0);
    assert_null(f->st.entries);
    assert_null(f->st.snap_data);
    assert_int_equal(f->st.snap.index, 0);
    assert_int_equal(f->st.torn_bytes, 0);
    assert_true(exists(f, "meta"));
    assert_int_equal(file_size(f, "meta"), META_V1_BYTES + 2); /* version 2, no names */
    reopen(f);
    assert_true(f->st.fresh);
    struct corral_storage_stats st;
    corral_storage_stats(f->s, &st);
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.last_index, 0);
    close_storage(f);
    *strrchr(f->dir, '/') = '\0';
    *strrchr(f->dir, '/') = '\0';
}

static void append_sync_reopen(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 3);
    append(f, 2, 4, 100);
    set_hs(f, 1, 7, 0);
    set_hs(f, 2, 3, 50);
    sync_ok(f);
    struct corral_storage_stats st;
    corral_storage_stats(f->s, &st);
    assert_int_equal(st.syncs, 1);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.first_index, 1);
    assert_int_equal(st.last_index, 100);
    assert_true(st.bytes_written > 100 * REC_OVERHEAD);
    reopen(f);
    assert_false(f->st.fresh);
    check_log(f, 1, 100, 1, 3, 2);
    check_hs(f, 2, 3, 50);
    assert_int_equal(f->st.torn_bytes, 0);
    /* And it continues where it was. */
    append(f, 2, 101, 101);
    set_hs(f, 3, 0, 60);
    close_storage(f); /* close syncs */
    reopen(f);
    check_log(f, 1, 101, 1, 3, 2);
    check_hs(f, 3, 0, 60);
}

static void append_rejects_gaps(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    struct corral_raft_entry e = entry(1, 2);
    assert_int_equal(corral_storage_append(f->s, &e, 1), CORRAL_EINVAL);
    corral_rbuf_unref(e.data);
    append(f, 1, 1, 2);
    struct corral_raft_entry two[2] = {entry(1, 3), entry(1, 5)};
    assert_int_equal(corral_storage_append(f->s, two, 2), CORRAL_EINVAL);
    corral_rbuf_unref(two[0].data);
    corral_rbuf_unref(two[1].data);
    struct corral_raft_entry big = {.term = 1, .index = 3};
    big.data = corral_rbuf_new(NULL, CORRAL_RAFT_ENTRY_BYTES_MAX + 1);
    assert_non_null(big.data);
    assert_int_equal(corral_storage_append(f->s, &big, 1), CORRAL_ETOOBIG);
    corral_rbuf_unref(big.data);
    struct corral_raft_entry bad = {.term = 1, .index = 3, .type = CORRAL_RAFT_ENTRY_TYPE_MAX + 1};
    assert_int_equal(corral_storage_append(f->s, &bad, 1), CORRAL_EINVAL);
    assert_int_equal(corral_storage_append(f->s, NULL, 0), 0);
    reopen(f);
    check_log(f, 1, 2, 1, 2, 1);
}

static void truncate_within_segment(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 10);
    set_hs(f, 2, 9, 4); /* its record is after entry 6: cut away below */
    sync_ok(f);
    append(f, 2, 6, 8);
    sync_ok(f);
    reopen(f);
    check_log(f, 1, 8, 1, 5, 2);
    check_hs(f, 2, 9, 4);
    assert_true(exists(f, "hardstate"));
    /* Again, at the first entry of the segment. */
    append(f, 3, 1, 2);
    set_hs(f, 3, 0, 0);
    close_storage(f);
    reopen(f);
    check_log(f, 1, 2, 3, 2, 3);
    check_hs(f, 3, 0, 0);
}

static void truncate_across_segments(void **state)
{
    struct fixture *f = *state;
    corral_storage_set_segment_bytes_for_test(300);
    reopen(f);
    for (uint64_t i = 1; i <= 60; i += 3)
        append(f, 1, i, i + 2);
    set_hs(f, 1, 7, 30);
    sync_ok(f);
    int segs = count_files(f, "wal-");
    assert_true(segs >= 5);
    struct corral_storage_stats st;
    corral_storage_stats(f->s, &st);
    assert_int_equal((int)st.segments, segs);
    /* Cut at entry 12, in an earlier segment: the later ones go. */
    append(f, 2, 12, 14);
    set_hs(f, 2, 0, 30);
    sync_ok(f);
    assert_true(count_files(f, "wal-") < segs);
    reopen(f);
    check_log(f, 1, 14, 1, 11, 2);
    check_hs(f, 2, 0, 30);
    /* A cut at a segment's first entry. */
    char name[NAME_BYTES];
    uint64_t first = 0;
    for (uint64_t i = 2; i <= 14 && first == 0; i++) {
        wal(name, i);
        if (exists(f, name))
            first = i;
    }
    assert_true(first > 0);
    append(f, 3, first, first + 20);
    close_storage(f);
    reopen(f);
    check_log(f, 1, first + 20, 1, first - 1, 3);
    check_hs(f, 2, 0, 30);
}

static struct corral_raft_snapshot_meta snap_meta(uint64_t index, uint64_t term)
{
    struct corral_raft_snapshot_meta m = {.index = index, .term = term};
    m.conf.n_voters = 3;
    m.conf.voters[0] = 7;
    m.conf.voters[1] = 8;
    m.conf.voters[2] = 9;
    return m;
}

static void check_snapshot(const struct fixture *f, uint64_t index, const char *data)
{
    assert_int_equal(f->st.snap.index, index);
    assert_int_equal(f->st.snap.term, 1);
    assert_int_equal(f->st.snap.conf.n_voters, 3);
    assert_int_equal(f->st.snap.conf.voters[2], 9);
    assert_non_null(f->st.snap_data);
    assert_int_equal(f->st.snap_data->len, strlen(data));
    assert_memory_equal(f->st.snap_data->data, data, strlen(data));
}

static void save_snapshot(struct fixture *f, uint64_t index, const char *data)
{
    struct corral_raft_snapshot_meta m = snap_meta(index, 1);
    struct corral_rbuf *b = corral_rbuf_new(data, (uint32_t)strlen(data));
    assert_non_null(b);
    assert_int_equal(corral_storage_save_snapshot(f->s, &m, b), 0);
    corral_rbuf_unref(b);
}

static void snapshot_reopen(void **state)
{
    struct fixture *f = *state;
    corral_storage_set_segment_bytes_for_test(400);
    reopen(f);
    set_hs(f, 1, 7, 0); /* in the first segment, deleted below */
    append(f, 1, 1, 60);
    sync_ok(f);
    int segs = count_files(f, "wal-");
    save_snapshot(f, 40, "state at 40");
    assert_true(count_files(f, "wal-") < segs);
    assert_true(exists(f, "snap-0000000000000028.snap"));
    /* No segment left that holds only entries at or below 40. */
    struct corral_storage_stats st;
    corral_storage_stats(f->s, &st);
    assert_true(st.first_index > 1 && st.first_index <= 41);
    save_snapshot(f, 50, "state at 50");
    assert_int_equal(count_files(f, "snap-"), 1);
    reopen(f);
    check_snapshot(f, 50, "state at 50");
    check_log(f, 51, 60, 1, 60, 1);
    check_hs(f, 1, 7, 0);
    assert_false(f->st.fresh);
    /* And appending continues after it. */
    append(f, 1, 61, 62);
    close_storage(f);
    reopen(f);
    check_log(f, 51, 62, 1, 62, 1);
}

static void snapshot_beyond_log(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 10);
    set_hs(f, 4, 2, 9);
    sync_ok(f);
    save_snapshot(f, 20, "from the leader");
    assert_int_equal(count_files(f, "wal-"), 0);
    struct corral_raft_entry e = entry(1, 20);
    assert_int_equal(corral_storage_append(f->s, &e, 1), CORRAL_EINVAL);
    corral_rbuf_unref(e.data);
    reopen(f);
    check_snapshot(f, 20, "from the leader");
    assert_int_equal(f->st.n_entries, 0);
    check_hs(f, 4, 2, 9);
    append(f, 4, 21, 25);
    close_storage(f);
    reopen(f);
    check_log(f, 21, 25, 4, 25, 4);
    check_hs(f, 4, 2, 9);
    struct corral_storage_stats st;
    corral_storage_stats(f->s, &st);
    assert_int_equal(st.first_index, 21);
    assert_int_equal(st.last_index, 25);
}

/* A crash between writing a snapshot and deleting what it covers leaves
 * older segments and a gap the snapshot covers: still a valid log. */
static void snapshot_gap_is_allowed(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 10);
    close_storage(f);
    struct dir_image img;
    take_image(f, &img);
    reopen(f);
    save_snapshot(f, 20, "x");
    append(f, 1, 21, 22);
    close_storage(f);
    char name[NAME_BYTES];
    wal(name, 1);
    assert_false(exists(f, name));
    int w = find_file(&img, name);
    write_file(f, name, img.data[w], img.len[w]); /* back as if never deleted */
    free_image(&img);
    reopen(f);
    check_log(f, 21, 22, 1, 22, 1);
}

static void torn_tail_every_byte(void **state)
{
    struct fixture *f = *state;
    char name[NAME_BYTES];
    wal(name, 1);
    reopen(f);
    append(f, 1, 1, 4);
    set_hs(f, 1, 7, 2);
    sync_ok(f);
    off_t good = (off_t)f->s->file_off; /* the file has preallocated zeros after it */
    append(f, 1, 5, 5);
    sync_ok(f);
    size_t full = f->s->file_off;
    close_storage(f);
    struct dir_image img;
    take_image(f, &img);
    int w = find_file(&img, name);
    assert_true((size_t)good < full && full < img.len[w]);
    for (size_t cut = (size_t)good; cut < full; cut++) {
        write_file(f, name, img.data[w], cut);
        reopen(f);
        check_log(f, 1, 4, 1, 4, 1);
        check_hs(f, 1, 7, 2);
        assert_int_equal(f->st.torn_bytes, cut - (size_t)good);
        assert_int_equal(file_size(f, name), good);
        reopen(f);
        assert_int_equal(f->st.torn_bytes, 0);
        check_log(f, 1, 4, 1, 4, 1);
    }
    /* A checksum failure in the last record is torn too. */
    write_file(f, name, img.data[w], full);
    flip_byte(f, name, (off_t)full - 3);
    reopen(f);
    assert_int_equal(f->st.torn_bytes, full - (size_t)good);
    check_log(f, 1, 4, 1, 4, 1);
    /* The log goes on after the cut. */
    append(f, 2, 5, 6);
    close_storage(f);
    reopen(f);
    check_log(f, 1, 6, 1, 4, 2);
    free_image(&img);
}

/* A segment cut inside its header, and an empty one: only as the last. */
static void torn_segment_header(void **state)
{
    struct fixture *f = *state;
    corral_storage_set_segment_bytes_for_test(200);
    reopen(f);
    append(f, 1, 1, 12);
    close_storage(f);
    int segs = count_files(f, "wal-");
    assert_true(segs >= 2);
    /* A new last segment that holds only part of its header. */
    char name[NAME_BYTES];
    wal(name, 13);
    write_file(f, name, "\x10\0\0\0\x01", 5);
    reopen(f);
    assert_int_equal(f->st.torn_bytes, 5);
    assert_false(exists(f, name));
    check_log(f, 1, 12, 1, 12, 1);
    write_file(f, name, "", 0);
    reopen(f);
    assert_int_equal(f->st.torn_bytes, 0);
    assert_false(exists(f, name));
    check_log(f, 1, 12, 1, 12, 1);
}

/* The test hook's smaller preallocation step (the WAL fuzzer's): the file
 * grows by steps of it, and a reopen finds the records and the zeros. */
static void prealloc_step(void **state)
{
    struct fixture *f = *state;
    char name[NAME_BYTES];
    wal(name, 1);
    corral_storage_set_prealloc_bytes_for_test(4096);
    reopen(f);
    append(f, 1, 1, 5);
    sync_ok(f);
    close_storage(f);
    assert_int_equal(file_size(f, name), 4096);
    reopen(f);
    assert_int_equal(f->st.torn_bytes, 0);
    check_log(f, 1, 5, 1, 5, 1);
    /* Past one step: the next one. */
    struct corral_raft_entry e = {.term = 1, .index = 6, .type = CORRAL_RAFT_ENTRY_NORMAL};
    static uint8_t big[6000];
    e.data = corral_rbuf_new(big, sizeof(big));
    assert_int_equal(corral_storage_append(f->s, &e, 1), 0);
    corral_rbuf_unref(e.data);
    sync_ok(f);
    close_storage(f);
    assert_int_equal(file_size(f, name), 2 * 4096); /* the step past the records */
    reopen(f);
    assert_int_equal(f->st.torn_bytes, 0);
    assert_int_equal(f->st.n_entries, 6);
    close_storage(f);
    corral_storage_set_prealloc_bytes_for_test(0);
}

/* The last segment is preallocated: its zero tail is no torn tail, stays
 * for the next records, and a torn record inside it is cut with it. A
 * segment closed by roll-over holds its records only. */
static void preallocated_tail(void **state)
{
    struct fixture *f = *state;
    char name[NAME_BYTES];
    wal(name, 1);
    reopen(f);
    append(f, 1, 1, 5);
    sync_ok(f);
    off_t data = (off_t)f->s->file_off;
    close_storage(f);
    assert_int_equal(file_size(f, name), PREALLOC_BYTES);
    reopen(f);
    assert_int_equal(f->st.torn_bytes, 0);
    assert_int_equal(file_size(f, name), PREALLOC_BYTES);
    check_log(f, 1, 5, 1, 5, 1);
    assert_int_equal(f->s->file_off, data);
    /* New records land in the zeros, in place. */
    append(f, 1, 6, 7);
    sync_ok(f);
    off_t data2 = (off_t)f->s->file_off;
    assert_true(data2 > data);
    close_storage(f);
    assert_int_equal(file_size(f, name), PREALLOC_BYTES);
    reopen(f);
    check_log(f, 1, 7, 1, 7, 1);
    close_storage(f);
    /* A record cut short inside the zeros (its first half written): torn,
     * and the file is cut where it starts. */
    struct dir_image img;
    take_image(f, &img);
    int w = find_file(&img, name);
    uint8_t *bytes = malloc(img.len[w]);
    assert_non_null(bytes);
    memcpy(bytes, img.data[w], img.len[w]);
    size_t rec = (size_t)(data2 - data) / 2; /* entries 6 and 7: about one each */
    memcpy(bytes + data2, bytes + data, rec / 2);
    write_file(f, name, bytes, img.len[w]);
    reopen(f);
    check_log(f, 1, 7, 1, 7, 1);
    assert_int_equal(f->st.torn_bytes, img.len[w] - (size_t)data2);
    assert_int_equal(file_size(f, name), data2);
    /* ...and the log goes on from there, preallocating again. */
    append(f, 2, 8, 8);
    sync_ok(f);
    assert_int_equal(file_size(f, name), PREALLOC_BYTES);
    reopen(f);
    check_log(f, 1, 8, 1, 7, 2);
    free(bytes);
    free_image(&img);
    /* Roll-over cuts the closed segment to its records. */
    corral_storage_set_segment_bytes_for_test(200);
    reopen(f);
    append(f, 2, 9, 30);
    sync_ok(f);
    close_storage(f);
    assert_true(file_size(f, name) < 4096);
    reopen(f);
    check_log(f, 1, 30, 1, 7, 2);
}

/* One non-zero byte anywhere in the preallocated zeros, at either side of
 * the 4 KiB blocks the recovery compares them in: not unused space but a
 * torn tail from the last record on, cut away. */
static void nonzero_byte_in_preallocated_tail(void **state)
{
    struct fixture *f = *state;
    char name[NAME_BYTES];
    wal(name, 1);
    reopen(f);
    append(f, 1, 1, 5);
    sync_ok(f);
    size_t data = (size_t)f->s->file_off;
    close_storage(f);
    assert_true(data < 4095);
    struct dir_image img;
    take_image(f, &img);
    int w = find_file(&img, name);
    assert_int_equal(img.len[w], PREALLOC_BYTES);
    const size_t at[] = {data,
                         data + 1,
                         4095,
                         4096,
                         4097,
                         PREALLOC_BYTES / 2,
                         PREALLOC_BYTES - 4097,
                         PREALLOC_BYTES - 4096,
                         PREALLOC_BYTES - 1};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        uint8_t *bytes = malloc(img.len[w]);
        assert_non_null(bytes);
        memcpy(bytes, img.data[w], img.len[w]);
        bytes[at[i]] = 0x5a;
        write_file(f, name, bytes, img.len[w]);
        free(bytes);
        reopen(f);
        check_log(f, 1, 5, 1, 5, 1);
        assert_int_equal(f->st.torn_bytes, img.len[w] - data);
        close_storage(f);
        assert_int_equal(file_size(f, name), data);
    }
    free_image(&img);
}

/* The write buffer comes with the first write: a storage that is only
 * opened has none, and when it cannot be had the write fails with
 * ENOMEM before anything changes, and the next one succeeds. */
static void write_buffer_on_first_write(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    assert_null(f->s->buf);
    struct corral_raft_entry e = entry(1, 1);
    corral_mem_fail_after(1);
    assert_int_equal(corral_storage_append(f->s, &e, 1), CORRAL_ENOMEM);
    corral_mem_fail_after(0);
    struct corral_raft_hard_state hs = {1, 7, 0};
    corral_mem_fail_after(1);
    assert_int_equal(corral_storage_set_hard_state(f->s, &hs), CORRAL_ENOMEM);
    corral_mem_fail_after(0);
    corral_rbuf_unref(e.data);
    assert_int_equal(count_files(f, "wal-"), 0);
    assert_int_equal(corral_storage_errno(f->s), 0);
    set_hs(f, 1, 7, 0);
    append(f, 1, 1, 3);
    sync_ok(f);
    assert_non_null(f->s->buf);
    reopen(f);
    check_log(f, 1, 3, 1, 3, 1);
    check_hs(f, 1, 7, 0);
}

static void corruption_in_the_middle(void **state)
{
    struct fixture *f = *state;
    char name[NAME_BYTES];
    wal(name, 1);
    reopen(f);
    append(f, 1, 1, 5);
    close_storage(f);
    /* The second record is entry 1; its payload starts 12 bytes in. */
    off_t off = REC_OVERHEAD + REC_SEGMENT_BYTES + REC_HEADER_BYTES + 4;
    flip_byte(f, name, off);
    refused(f, &ident, CORRAL_ECORRUPT, "wal-0000000000000001.log: bad record at offset 32");
    flip_byte(f, name, off);
    /* A bad header of a record followed by good ones. */
    flip_byte(f, name, REC_OVERHEAD + REC_SEGMENT_BYTES + 1);
    refused(f, &ident, CORRAL_ECORRUPT, "offset 32");
    flip_byte(f, name, REC_OVERHEAD + REC_SEGMENT_BYTES + 1);
    reopen(f);
    check_log(f, 1, 5, 1, 5, 1);
}

static void corruption_in_older_segment(void **state)
{
    struct fixture *f = *state;
    corral_storage_set_segment_bytes_for_test(200);
    reopen(f);
    append(f, 1, 1, 20);
    close_storage(f);
    char name[NAME_BYTES];
    wal(name, 1);
    /* Its last byte: the last record's CRC, torn if it were the last. */
    off_t last = file_size(f, name) - 1;
    flip_byte(f, name, last);
    refused(f, &ident, CORRAL_ECORRUPT, "wal-0000000000000001.log");
    flip_byte(f, name, last);
    /* A missing middle segment is a gap. */
    uint64_t second = 0;
    for (uint64_t i = 2; i <= 20 && second == 0; i++) {
        wal(name, i);
        if (exists(f, name))
            second = i;
    }
    char p[256];
    path_of(f, name, p, sizeof(p));
    char q[300];
    snprintf(q, sizeof(q), "%s.away", p);
    assert_int_equal(rename(p, q), 0);
    refused(f, &ident, CORRAL_ECORRUPT, "does not continue the log");
    assert_int_equal(rename(q, p), 0);
    reopen(f);
    check_log(f, 1, 20, 1, 20, 1);
}

static void bad_meta(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 3);
    close_storage(f);
    flip_byte(f, "meta", 12);
    refused(f, &ident, CORRAL_ECORRUPT, "meta");
    flip_byte(f, "meta", 12);
    /* Missing meta next to a log. */
    char p[256], q[300];
    path_of(f, "meta", p, sizeof(p));
    snprintf(q, sizeof(q), "%s.away", p);
    assert_int_equal(rename(p, q), 0);
    refused(f, &ident, CORRAL_ECORRUPT, "meta: missing");
    assert_int_equal(rename(q, p), 0);
    reopen(f);
    check_log(f, 1, 3, 1, 3, 1);
}

static void bad_snapshot(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 3);
    save_snapshot(f, 2, "snapshot data");
    close_storage(f);
    const char *name = "snap-0000000000000002.snap";
    off_t size = file_size(f, name);
    for (off_t off = 0; off < size; off += 5) {
        flip_byte(f, name, off);
        int rv = try_open(f, &ident);
        assert_true(rv == CORRAL_ECORRUPT || rv == CORRAL_EVERSION);
        assert_non_null(strstr(f->err, name));
        flip_byte(f, name, off);
    }
    reopen(f); /* untouched: opens again */
    check_snapshot(f, 2, "snapshot data");
    close_storage(f);
    flip_byte(f, name, size - 1);
    refused(f, &ident, CORRAL_ECORRUPT, "snap-0000000000000002.snap: checksum");
}

static void wrong_ident(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 3);
    close_storage(f);
    struct corral_storage_ident other_cluster = {.node_id = 7, .cluster_id = 1};
    refused(f, &other_cluster, CORRAL_EINVAL, "cluster");
    struct corral_storage_ident other_node = {.node_id = 8, .cluster_id = 0xc0ffee};
    refused(f, &other_node, CORRAL_EINVAL, "node 7");
    struct corral_storage_ident zero = {0};
    refused(f, &zero, CORRAL_EINVAL, "node id 0");
}

static void locked(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    struct corral_storage *s2 = NULL;
    struct corral_storage_state st2;
    char err[256];
    int rv = corral_storage_open(f->dir, &ident, &s2, &st2, err, sizeof(err));
    assert_int_equal(rv, CORRAL_EIO);
    assert_null(s2);
    assert_non_null(strstr(err, "lock"));
    close_storage(f);
    rv = corral_storage_open(f->dir, &ident, &s2, &st2, err, sizeof(err));
    assert_int_equal(rv, 0);
    corral_storage_close(s2);
    corral_storage_state_free(&st2);
}

/* Names: a meta file names its node and cluster; another name is refused;
 * adopt_ids takes the ids on disk; a version-1 meta file (ids only) is
 * upgraded with the wanted names, keeping its ids; peek reads it all. */
static void meta_names(void **state)
{
    struct fixture *f = *state;
    struct corral_storage_ident a = ident;
    snprintf(a.name, sizeof(a.name), "alpha");
    snprintf(a.cluster_name, sizeof(a.cluster_name), "blue");
    char err[256];
    struct corral_storage_ident got;
    assert_int_equal(corral_storage_peek_ident(f->dir, &got, err, sizeof(err)), CORRAL_ENOTFOUND);
    assert_int_equal(try_open(f, &a), 0);
    assert_string_equal(f->st.ident.name, "alpha");
    close_storage(f);
    assert_int_equal(corral_storage_peek_ident(f->dir, &got, err, sizeof(err)), 0);
    assert_int_equal(got.node_id, ident.node_id);
    assert_int_equal(got.cluster_id, ident.cluster_id);
    assert_string_equal(got.name, "alpha");
    assert_string_equal(got.cluster_name, "blue");
    struct corral_storage_ident b = a;
    snprintf(b.name, sizeof(b.name), "beta");
    refused(f, &b, CORRAL_EINVAL, "named 'alpha', not 'beta'");
    b = a;
    snprintf(b.cluster_name, sizeof(b.cluster_name), "green");
    refused(f, &b, CORRAL_EINVAL, "cluster named 'blue', not 'green'");
    /* Other ids: refused, unless adopted. */
    b = a;
    b.node_id = 9;
    b.cluster_id = 1;
    refused(f, &b, CORRAL_EINVAL, "belongs to node 7");
    b.adopt_ids = true;
    assert_int_equal(try_open(f, &b), 0);
    assert_int_equal(f->st.ident.node_id, 7);
    assert_int_equal(f->st.ident.cluster_id, 0xc0ffee);
    close_storage(f);
    /* Version 1: upgraded in place with the names, the ids kept. */
    uint8_t m[META_V1_BYTES];
    corral_put_le32(m, META_MAGIC);
    corral_put_le32(m + 4, 1);
    corral_put_le64(m + 8, ident.node_id);
    corral_put_le64(m + 16, ident.cluster_id);
    corral_put_le32(m + 24, corral_crc32c(0, m, 24));
    write_file(f, "meta", m, sizeof(m));
    assert_int_equal(corral_storage_peek_ident(f->dir, &got, err, sizeof(err)), 0);
    assert_string_equal(got.name, "");
    assert_int_equal(try_open(f, &a), 0);
    assert_true(f->st.meta_upgraded);
    assert_string_equal(f->st.ident.name, "alpha");
    close_storage(f);
    assert_int_equal(corral_storage_peek_ident(f->dir, &got, err, sizeof(err)), 0);
    assert_string_equal(got.name, "alpha");
    assert_string_equal(got.cluster_name, "blue");
    assert_int_equal(got.node_id, 7);
    /* A bad name in the file is corruption. */
    uint8_t bad[META_V1_BYTES + 2 + 3];
    memcpy(bad, m, 24);
    corral_put_le32(bad + 4, META_VERSION);
    bad[24] = 2;
    memcpy(bad + 25, "AB", 2);
    bad[27] = 0;
    corral_put_le32(bad + 28, corral_crc32c(0, bad, 28));
    write_file(f, "meta", bad, 32);
    refused(f, &a, CORRAL_ECORRUPT, "bad node or cluster name");
    assert_int_equal(corral_storage_peek_ident(f->dir, &got, err, sizeof(err)), CORRAL_ECORRUPT);
}

static void newer_version(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    close_storage(f);
    uint8_t m[META_V1_BYTES];
    corral_put_le32(m, META_MAGIC);
    corral_put_le32(m + 4, META_VERSION + 1);
    corral_put_le64(m + 8, ident.node_id);
    corral_put_le64(m + 16, ident.cluster_id);
    corral_put_le32(m + 24, corral_crc32c(0, m, 24));
    write_file(f, "meta", m, sizeof(m));
    refused(f, &ident, CORRAL_EVERSION, "format version 3");
    /* A newer segment is refused as well. */
    corral_put_le32(m + 4, CORRAL_STORAGE_FORMAT_VERSION);
    corral_put_le32(m + 24, corral_crc32c(0, m, 24));
    write_file(f, "meta", m, sizeof(m));
    uint8_t seg[REC_OVERHEAD + REC_SEGMENT_BYTES];
    corral_put_le32(seg + REC_HEADER_BYTES, WAL_MAGIC);
    corral_put_le32(seg + REC_HEADER_BYTES + 4, 9);
    corral_put_le64(seg + REC_HEADER_BYTES + 8, 1);
    storage_rec_seal(seg, REC_SEGMENT, REC_SEGMENT_BYTES);
    write_file(f, "wal-0000000000000001.log", seg, sizeof(seg));
    refused(f, &ident, CORRAL_EVERSION, "wal-0000000000000001.log: format version 9");
}

/* A failed write fails the storage, which keeps the system call's errno
 * for the log (EBADF here: the segment swapped for a read-only
 * descriptor); what was synced before is still there after a reopen. */
static void write_error_keeps_errno(void **state)
{
    struct fixture *f = *state;
    reopen(f);
    append(f, 1, 1, 10);
    sync_ok(f);
    assert_int_equal(corral_storage_errno(f->s), 0);
    char name[NAME_BYTES], path[256];
    storage_wal_name(name, 1);
    path_of(f, name, path, sizeof(path));
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(ro >= 0);
    close(f->s->fd);
    f->s->fd = ro;
    append(f, 1, 11, 12); /* buffered: nothing written yet */
    assert_int_equal(corral_storage_sync(f->s), CORRAL_EIO);
    assert_int_equal(corral_storage_errno(f->s), EBADF);
    struct corral_raft_hard_state hs = {2, 0, 5};
    assert_int_equal(corral_storage_set_hard_state(f->s, &hs), CORRAL_EIO);
    assert_int_equal(corral_storage_sync(f->s), CORRAL_EIO);
    assert_int_equal(corral_storage_errno(f->s), EBADF); /* the first failure's */
    reopen(f);
    check_log(f, 1, 10, 1, 10, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(fresh_open),
        T(append_sync_reopen),
        T(append_rejects_gaps),
        T(truncate_within_segment),
        T(truncate_across_segments),
        T(snapshot_reopen),
        T(snapshot_beyond_log),
        T(snapshot_gap_is_allowed),
        T(torn_tail_every_byte),
        T(torn_segment_header),
        T(prealloc_step),
        T(preallocated_tail),
        T(nonzero_byte_in_preallocated_tail),
        T(write_buffer_on_first_write),
        T(corruption_in_the_middle),
        T(corruption_in_older_segment),
        T(bad_meta),
        T(bad_snapshot),
        T(wrong_ident),
        T(locked),
        T(meta_names),
        T(newer_version),
        T(write_error_keeps_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
