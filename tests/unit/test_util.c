/* Unit tests for src/util: CRC32C test vectors, reference counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "corral.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/parse.h"
#include "util/rbuf.h"

static void test_crc32c_vectors(void **state)
{
    (void)state;
    /* RFC 3720 appendix B.4 and the common "123456789" check value. */
    assert_int_equal(corral_crc32c(0, "123456789", 9), 0xe3069283u);
    uint8_t zeros[32] = {0};
    assert_int_equal(corral_crc32c(0, zeros, sizeof(zeros)), 0x8a9136aau);
    uint8_t ones[32];
    memset(ones, 0xff, sizeof(ones));
    assert_int_equal(corral_crc32c(0, ones, sizeof(ones)), 0x62a8ab43u);
    assert_int_equal(corral_crc32c(0, "", 0), 0);
}

static void test_crc32c_incremental(void **state)
{
    (void)state;
    const char *s = "the quick brown fox jumps over the lazy dog, twice over";
    size_t n = strlen(s);
    uint32_t whole = corral_crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++)
        assert_int_equal(corral_crc32c(corral_crc32c(0, s, cut), s + cut, n - cut), whole);
}

static void test_rbuf_refs(void **state)
{
    (void)state;
    struct corral_rbuf *b = corral_rbuf_new("abc", 3);
    assert_non_null(b);
    assert_int_equal(b->len, 3);
    assert_memory_equal(b->data, "abc", 3);
    assert_ptr_equal(corral_rbuf_ref(b), b);
    assert_int_equal(b->refs, 2);
    corral_rbuf_unref(b);
    corral_rbuf_unref(b);
    corral_rbuf_unref(NULL);
}

static void test_mem_fail_injection(void **state)
{
    (void)state;
    corral_mem_fail_after(2);
    void *a = corral_malloc(8);
    void *b = corral_malloc(8);
    void *c = corral_malloc(8);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    corral_free(a);
    corral_free(c);
}

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_true(corral_parse_u64("0", &v));
    assert_int_equal(v, 0);
    assert_true(corral_parse_u64("18446744073709551615", &v));
    assert_true(v == UINT64_MAX);
    assert_true(corral_parse_u64("000123", &v));
    assert_int_equal(v, 123);
    v = 7;
    static const char *const bad[] = {"",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "0x10",
                                      "1e3",
                                      "12a",
                                      "18446744073709551616",
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(corral_parse_u64(bad[i], &v));
    assert_false(corral_parse_u64(NULL, &v));
    assert_int_equal(v, 7); /* untouched on failure */
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(corral_strerror(CORRAL_OK), "success");
    assert_string_equal(corral_strerror(CORRAL_ECORRUPT), "corrupt or malformed data");
    assert_string_equal(corral_strerror(-1), "unknown error");
    assert_string_equal(corral_strerror(CORRAL_ERRNO_MAX + 1), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors), cmocka_unit_test(test_crc32c_incremental),
        cmocka_unit_test(test_rbuf_refs),      cmocka_unit_test(test_mem_fail_injection),
        cmocka_unit_test(test_strerror),       cmocka_unit_test(test_parse_u64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
