/* Unit tests for src/cli/server_config.c, the server's config file reader:
 * what it accepts, and that every refusal names the file and the line,
 * including the two kinds of line fuzz_config found misnumbered (a NUL
 * byte, a line longer than inih's buffer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli/server_config.h"

static struct server_opts opts;

/* Reads len bytes of text as the file "t.ini". */
static bool read_text(const char *text, size_t len)
{
    memset(&opts, 0, sizeof(opts));
    FILE *f = fmemopen((void *)(uintptr_t)text, len, "r");
    assert_non_null(f);
    bool ok = server_config_read(&opts, f, "t.ini");
    fclose(f);
    return ok;
}

#define READ(lit) read_text(lit, sizeof(lit) - 1)

static void test_accepts(void **state)
{
    (void)state;
    assert_true(READ("id = 2\n[server]\n; a comment\npeers = 127.0.0.1:1,127.0.0.1:2\n"));
    assert_string_equal(opts.id, "2");
    assert_string_equal(opts.peers, "127.0.0.1:1,127.0.0.1:2");
    assert_true(READ("log-level = debug")); /* no final newline */
    assert_string_equal(opts.log_level, "debug");
}

static void test_refusals_name_the_line(void **state)
{
    (void)state;
    assert_false(READ("id = 1\n[agent]\nid = 2\n"));
    assert_string_equal(opts.err, "t.ini:3: unknown section [agent]");
    assert_false(READ("\n\nbogus = 1\n"));
    assert_string_equal(opts.err, "t.ini:3: unknown key 'bogus'");
    assert_false(READ("id = 1\nid = 2\n"));
    assert_string_equal(opts.err, "t.ini:2: duplicate key 'id' (first at t.ini:1)");
    assert_false(READ("id = 1\nnot an ini line\n"));
    assert_string_equal(opts.err, "t.ini:2: not a valid INI line");
}

/* Found by fuzz_config: strlen stopped at the NUL, the rest of the line
 * was counted as the next one. */
static void test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "id = 1\n\0\0x\n] = 1\n";
    assert_false(read_text(text, sizeof(text) - 1));
    assert_string_equal(opts.err, "t.ini:2: a NUL byte: not a text file");
}

/* Found by fuzz_config: inih read a line past its buffer in pieces and
 * numbered each piece as a line ("t.ini:4" in a file of three). */
static void test_long_line(void **state)
{
    (void)state;
    char text[512];
    int n = snprintf(text, sizeof(text), "id = 1\n[server]\ndata-dir = /");
    memset(text + n, 'd', 300);
    text[n + 300] = '\n';
    assert_false(read_text(text, (size_t)n + 301));
    assert_string_equal(opts.err, "t.ini:3: line longer than 198 bytes");
    /* 198 bytes and its newline still fit. */
    n = snprintf(text, sizeof(text), "data-dir = /");
    memset(text + n, 'd', 198 - (size_t)n);
    text[198] = '\n';
    assert_true(read_text(text, 199));
    assert_int_equal(strlen(opts.data_dir), 198 - strlen("data-dir = "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refusals_name_the_line),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_long_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
