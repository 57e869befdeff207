/* Unit tests for src/util: CRC32C test vectors, reference counting,
 * base64 (RFC 4648 vectors) and UTF-8 validity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "corral.h"
#include "util/base64.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/parse.h"
#include "util/rbuf.h"
#include "util/sha256.h"
#include "util/token.h"
#include "util/utf8.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

static void test_parse_hostport_safe(void **state)
{
    (void)state;
    assert_true(corral_parse_hostport_safe("127.0.0.1:8140"));
    assert_true(corral_parse_hostport_safe("[::1]:8140"));
    assert_true(corral_parse_hostport_safe("node-1.example:80"));
    assert_false(corral_parse_hostport_safe(""));
    assert_false(corral_parse_hostport_safe("nocolon"));
    assert_false(corral_parse_hostport_safe("h:1\r\nSet-Cookie: x=y"));
    assert_false(corral_parse_hostport_safe("h :1"));
    assert_false(corral_parse_hostport_safe("h:1\x7f"));
    assert_false(corral_parse_hostport_safe("h:\x01"));
    char long_addr[300];
    memset(long_addr, 'a', sizeof(long_addr) - 1);
    long_addr[sizeof(long_addr) - 1] = '\0';
    long_addr[5] = ':';
    assert_false(corral_parse_hostport_safe(long_addr));
    long_addr[260] = '\0';
    assert_true(corral_parse_hostport_safe(long_addr));
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

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    /* FIPS 180-4 examples (the NIST CSRC example values). */
    static const struct {
        const char *in, *out;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    uint8_t d[32];
    char h[65];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        corral_sha256(v[i].in, strlen(v[i].in), d);
        hex(d, 32, h);
        assert_string_equal(h, v[i].out);
    }
    /* One million 'a', fed in uneven pieces. */
    struct corral_sha256 s;
    corral_sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof(a));
    size_t left = 1000000;
    while (left > 0) {
        size_t n = left < sizeof(a) ? left : sizeof(a);
        corral_sha256_update(&s, a, n);
        left -= n;
    }
    corral_sha256_final(&s, d);
    hex(d, 32, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t k20[20], kaa20[20], dd50[50], k25[25], cd50[50], kaa131[131];
    memset(k20, 0x0b, sizeof(k20));
    memset(kaa20, 0xaa, sizeof(kaa20));
    memset(dd50, 0xdd, sizeof(dd50));
    for (int i = 0; i < 25; i++)
        k25[i] = (uint8_t)(i + 1);
    memset(cd50, 0xcd, sizeof(cd50));
    memset(kaa131, 0xaa, sizeof(kaa131));
    static const char t6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char t7[] = "This is a test using a larger than block-size key and a larger "
                             "than block-size data. The key needs to be hashed before being used "
                             "by the HMAC algorithm.";
    const struct {
        const void *key;
        size_t klen;
        const void *data;
        size_t dlen;
        const char *out;
    } v[] = {
        {k20, 20, "Hi There", 8,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", 4, "what do ya want for nothing?", 28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {kaa20, 20, dd50, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {k25, 25, cd50, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {kaa131, 131, t6, strlen(t6),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {kaa131, 131, t7, strlen(t7),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    uint8_t d[32];
    char h[65];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        const void *parts[] = {v[i].data};
        size_t lens[] = {v[i].dlen};
        corral_hmac_sha256(v[i].key, v[i].klen, parts, lens, 1, d);
        hex(d, 32, h);
        assert_string_equal(h, v[i].out);
    }
    /* RFC 4231 test case 5 is truncated to 128 bits. */
    uint8_t k5[20], d5[] = "Test With Truncation";
    memset(k5, 0x0c, sizeof(k5));
    const void *p5[] = {d5, d5 + 4};
    size_t l5[] = {4, sizeof(d5) - 1 - 4}; /* in two parts */
    corral_hmac_sha256(k5, sizeof(k5), p5, l5, 2, d);
    hex(d, 16, h);
    assert_string_equal(h, "a3b6167473100ee06e0c796c2955552b");
    assert_true(corral_ct_equal("abc", "abc", 3));
    assert_false(corral_ct_equal("abc", "abd", 3));
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    fclose(f);
    return chmod(path, mode);
}

static void test_token_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/corral-token-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t", dir);
    struct corral_tokens t;
    bool loose = true;
    assert_int_equal(write_file(path, "  0123456789abcdef \r\n\n", 0600), 0);
    assert_int_equal(corral_tokens_load(path, &t, &loose, err, sizeof(err)), 0);
    assert_false(loose);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.tok[0], "0123456789abcdef");
    assert_true(corral_tokens_match(&t, "0123456789abcdef", 16));
    assert_false(corral_tokens_match(&t, "0123456789abcdeX", 16));
    assert_false(corral_tokens_match(&t, "0123456789abcde", 15));
    assert_int_equal(write_file(path, "current-0123456789\nnext-0123456789ab\n", 0644), 0);
    assert_int_equal(corral_tokens_load(path, &t, &loose, err, sizeof(err)), 0);
    assert_true(loose);
    assert_int_equal(t.n, 2);
    assert_true(corral_tokens_match(&t, "next-0123456789ab", 17));
    assert_true(corral_tokens_match(&t, "current-0123456789", 18));
    static const char *const bad[] = {"short\n", "", "\n \n",
                                      "aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\ncccccccccccccccc\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(write_file(path, bad[i], 0600), 0);
        assert_int_equal(corral_tokens_load(path, &t, NULL, err, sizeof(err)), -1);
        assert_int_equal(t.n, 0);
    }
    unlink(path);
    assert_int_equal(corral_tokens_load(path, &t, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));
    rmdir(dir);
}

/* RFC 4648 section 10, and bytes that use '+' and '/'. */
static const struct {
    const char *plain;
    size_t len;
    const char *enc;
} b64_vectors[] = {
    {"", 0, ""},
    {"f", 1, "Zg=="},
    {"fo", 2, "Zm8="},
    {"foo", 3, "Zm9v"},
    {"foob", 4, "Zm9vYg=="},
    {"fooba", 5, "Zm9vYmE="},
    {"foobar", 6, "Zm9vYmFy"},
    {"\0\xff", 2, "AP8="},
    {"\xfb\xff\xbf", 3, "+/+/"},
    {"a\0b\xff\xfe", 5, "YQBi//4="},
};

static void test_base64_rfc4648(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]); i++) {
        const uint8_t *in = (const uint8_t *)b64_vectors[i].plain;
        size_t n = b64_vectors[i].len, want = strlen(b64_vectors[i].enc);
        char enc[16];
        memset(enc, 'X', sizeof(enc));
        assert_int_equal(corral_base64_encoded_len(n), want);
        assert_int_equal(corral_base64_encode(in, n, enc), want);
        assert_string_equal(enc, b64_vectors[i].enc);
        uint8_t dec[16];
        size_t dec_len = 99;
        assert_true(corral_base64_decoded_max(want) >= n);
        assert_int_equal(corral_base64_decode(enc, want, dec, &dec_len), 0);
        assert_int_equal(dec_len, n);
        assert_memory_equal(dec, in, n);
    }
}

static void test_base64_round_trip(void **state)
{
    (void)state;
    uint8_t in[256], dec[256];
    char enc[4 * 86 + 1];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t len = corral_base64_encode(in, n, enc), dec_len = 0;
        assert_int_equal(len % 4, 0);
        assert_int_equal(corral_base64_decode(enc, len, dec, &dec_len), 0);
        assert_int_equal(dec_len, n);
        assert_memory_equal(dec, in, n);
    }
}

static void test_base64_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg",       /* not a multiple of 4 */
        "Zg=",      /* not a multiple of 4 */
        "Zm9vY",    /* not a multiple of 4 */
        "Zh==",     /* unused bits set: not the canonical "Zg==" */
        "Zm9=",     /* unused bits set: not the canonical "Zm8=" */
        "Z===",     /* three pads */
        "====",     /* only pads */
        "Zg==Zm8=", /* padding before the end */
        "Zm=v",     /* '=' inside a group */
        "Zm9v\n",   /* a newline */
        "Zm 9",     /* a space */
        "Zm-_",     /* the URL-safe alphabet */
        "Zm9\x80",  /* a byte outside ASCII */
    };
    uint8_t out[16];
    size_t len;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(corral_base64_decode(bad[i], strlen(bad[i]), out, &len), CORRAL_EINVAL);
    assert_int_equal(corral_base64_decode("Zm9v\0", 5, out, &len), CORRAL_EINVAL);
    assert_int_equal(corral_base64_decode("Zm\0v", 4, out, &len), CORRAL_EINVAL);
}

/* Strictness as a property: every 4-character string over the alphabet
 * and '=' (65^4 of them) decodes exactly when it is the encoding of what
 * it decodes to, so no value has a second accepted spelling. */
static void test_base64_canonical(void **state)
{
    (void)state;
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    const size_t k = sizeof(chars) - 1;
    size_t accepted = 0;
    for (size_t i = 0; i < k * k * k * k; i++) {
        char in[4] = {chars[i / (k * k * k)], chars[i / (k * k) % k], chars[i / k % k],
                      chars[i % k]};
        uint8_t out[3];
        size_t len = 0;
        if (corral_base64_decode(in, 4, out, &len) != 0)
            continue;
        char again[5];
        assert_int_equal(corral_base64_encode(out, len, again), 4);
        assert_memory_equal(again, in, 4);
        accepted++;
    }
    /* Exactly the encodings of the 2^24 + 2^16 + 2^8 values of 1-3 bytes. */
    assert_int_equal(accepted, (1u << 24) + (1u << 16) + (1u << 8));
}

static bool valid(const char *s)
{
    return corral_utf8_valid((const uint8_t *)s, strlen(s));
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(valid(""));
    assert_true(valid("plain ascii"));
    assert_true(valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")); /* 2, 3, 4 bytes */
    assert_true(valid("\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf"));  /* U+D7FF U+E000 U+10FFFF */
    assert_true(corral_utf8_valid((const uint8_t *)"a\0b", 3));
    static const char *const bad[] = {
        "\xff",
        "\xfe",
        "\x80",
        "a\xbf",
        "\xc0\x80",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xf0\x8f\xbf\xbf", /* overlong */
        "\xed\xa0\x80",
        "\xed\xbf\xbf", /* surrogates */
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80", /* > U+10FFFF */
        "\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98", /* cut short */
        "\xc3(",
        "\xe2(\xa1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(valid(bad[i]));
    assert_int_equal(corral_utf8_seq((const uint8_t *)"\xe2\x82\xac!", 4), 3);
    assert_int_equal(corral_utf8_seq((const uint8_t *)"\xe2\x82\xac", 2), 0);
    assert_int_equal(corral_utf8_seq((const uint8_t *)"\xff", 1), 0);
    assert_int_equal(corral_utf8_seq((const uint8_t *)"", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_crc32c_incremental),
        cmocka_unit_test(test_rbuf_refs),
        cmocka_unit_test(test_mem_fail_injection),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_hostport_safe),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_token_file),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_base64_strict),
        cmocka_unit_test(test_base64_canonical),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
