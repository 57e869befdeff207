/* The corral API client: libcurl easy handle, endpoint failover with
 * retries until a deadline, and manual 307 following so that the hop count
 * is bounded and a write's body is sent again, unchanged, to the leader. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "cli/curl_load.h"

#include "cli/client.h"
#include "corral.h"

/* An endpoint longer than this is not a host:port. */
#define ENDPOINT_BYTES_MAX 1024

struct sink {
    char *buf;
    size_t len, cap;
    int over;  /* the body passed CORRAL_CLIENT_BODY_BYTES_MAX */
    int nomem; /* growing the buffer failed */
};

static int grow(struct sink *s, size_t need)
{
    size_t cap = s->cap != 0 ? s->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *bigger = realloc(s->buf, cap);
    if (bigger == NULL)
        return -1;
    s->buf = bigger;
    s->cap = cap;
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    if (n > CORRAL_CLIENT_BODY_BYTES_MAX - s->len) {
        s->over = 1;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap && grow(s, s->len + n + 1) != 0) {
        s->nomem = 1;
        return 0;
    }
    memcpy(s->buf + s->len, ptr, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

/* Picks Retry-After out of the headers; a new status line (an interim
 * response) resets it. */
static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    long *retry_after_s = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        *retry_after_s = -1;
    } else if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        char *end;
        long v = strtol(buf + sizeof(name) - 1, &end, 10);
        if (end != buf + sizeof(name) - 1 && v >= 0)
            *retry_after_s = v;
    }
    return n;
}

static int add_endpoint(struct corral_client *c, const char *s, size_t len)
{
    while (len > 0 && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '/'))
        len--;
    if (len == 0 || len > ENDPOINT_BYTES_MAX) {
        snprintf(c->err, sizeof(c->err), "bad endpoint list: an empty or overlong entry");
        return CORRAL_EINVAL;
    }
    if (c->n_endpoints == CORRAL_CLIENT_ENDPOINTS_MAX) {
        snprintf(c->err, sizeof(c->err), "more than %d endpoints", CORRAL_CLIENT_ENDPOINTS_MAX);
        return CORRAL_EINVAL;
    }
    int has_scheme = 0;
    for (size_t i = 0; i + 3 <= len && !has_scheme; i++)
        has_scheme = memcmp(s + i, "://", 3) == 0;
    const char *scheme = has_scheme ? "" : c->tls.https_default ? "https://" : "http://";
    size_t n = strlen(scheme) + len + 1;
    char *e = malloc(n);
    if (e == NULL) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        return CORRAL_ENOMEM;
    }
    snprintf(e, n, "%s%.*s", scheme, (int)len, s);
    c->endpoints[c->n_endpoints++] = e;
    return 0;
}

static struct corral_client_tls default_tls;

void corral_client_set_tls(const struct corral_client_tls *tls)
{
    default_tls = *tls;
}

int corral_client_set_token_file(struct corral_client *c, const char *path)
{
    struct corral_tokens t;
    char why[400];
    if (corral_tokens_load(path, &t, NULL, why, sizeof(why)) != 0) {
        snprintf(c->err, sizeof(c->err), "--token-file: %s", why);
        return CORRAL_EINVAL;
    }
    snprintf(c->auth_header, sizeof(c->auth_header), "Authorization: Bearer %s", t.tok[0]);
    memset(&t, 0, sizeof(t));
    return 0;
}

const char *corral_client_token_file(const char *flag)
{
    if (flag != NULL)
        return flag;
    const char *env = getenv("CORRAL_TOKEN_FILE");
    return env != NULL && env[0] != '\0' ? env : NULL;
}

int corral_client_init(struct corral_client *c, const char *endpoints, long timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->timeout_ms = timeout_ms;
    c->tls = default_tls;
    const char *p = endpoints;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        int rv = add_endpoint(c, p, len);
        if (rv != 0) {
            corral_client_close(c);
            return rv;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    c->cu = corral_curl_load(c->err, sizeof(c->err));
    if (c->cu == NULL) {
        corral_client_close(c);
        return CORRAL_EIO;
    }
    if (c->cu->global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        (c->curl = c->cu->easy_init()) == NULL) {
        corral_client_close(c);
        snprintf(c->err, sizeof(c->err), "cannot initialize libcurl");
        return CORRAL_ENOMEM;
    }
    return 0;
}

void corral_client_close(struct corral_client *c)
{
    for (size_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    c->n_endpoints = 0;
    if (c->curl != NULL)
        c->cu->easy_cleanup(c->curl);
    c->curl = NULL;
}

void corral_client_next_endpoint(struct corral_client *c)
{
    c->leader[0] = '\0';
    if (c->n_endpoints > 0)
        c->current = (c->current + 1) % c->n_endpoints;
}

void corral_client_response_free(struct corral_client_response *resp)
{
    free(resp->body);
    json_decref(resp->json);
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_s = -1;
}

char *corral_client_escape(const char *s, size_t len, int keep_slash, size_t out_max)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char unreserved[] = "-._~";
    size_t need = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || (ch != 0 && strchr(unreserved, ch) != NULL) ||
                    (keep_slash && ch == '/');
        need += plain ? 1 : 3;
    }
    if (need > out_max)
        return NULL;
    char *out = malloc(need), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || (ch != 0 && strchr(unreserved, ch) != NULL) ||
                    (keep_slash && ch == '/');
        if (plain) {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is left of the request's deadline, in ms (may be negative). */
static long left_ms(const struct corral_client *c)
{
    return (long)(c->deadline_ms - now_ms());
}

/* Sleeps ms, in slices so that *c->cancel is seen; returns nonzero when it
 * was set. */
static int pause_ms(const struct corral_client *c, long ms)
{
    int64_t until = now_ms() + ms;
    for (;;) {
        if (c->cancel != NULL && *c->cancel != 0)
            return 1;
        int64_t left = until - now_ms();
        if (left <= 0)
            return 0;
        if (left > 100)
            left = 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && (c->cancel == NULL || !*c->cancel))
            ;
    }
}

/* libcurl's progress callback, called about once a second even while
 * nothing arrives: nonzero ends the transfer (CURLE_ABORTED_BY_CALLBACK). */
static int cancel_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                     curl_off_t ulnow)
{
    const struct corral_client *c = clientp;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return *c->cancel != 0;
}

/* One HTTP exchange, no redirects followed. */
static CURLcode perform(struct corral_client *c, const char *method, const char *url,
                        const char *body, size_t body_len, struct curl_slist *headers,
                        struct sink *sink, long *retry_after_s)
{
    CURL *h = c->curl;
    long timeout_ms = left_ms(c);
    if (timeout_ms < 1)
        timeout_ms = 1;
    long connect_ms = timeout_ms < CORRAL_CLIENT_CONNECT_TIMEOUT_MS
                          ? timeout_ms
                          : CORRAL_CLIENT_CONNECT_TIMEOUT_MS;
    c->cu->easy_reset(h);
    c->cu->easy_setopt(h, CURLOPT_URL, url);
    c->cu->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    c->cu->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    c->cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    c->cu->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    c->cu->easy_setopt(h, CURLOPT_USERAGENT, "corral/" CORRAL_VERSION);
    c->cu->easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    c->cu->easy_setopt(h, CURLOPT_WRITEDATA, sink);
    c->cu->easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    c->cu->easy_setopt(h, CURLOPT_HEADERDATA, retry_after_s);
    c->cu->easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (c->tls.cacert != NULL)
        c->cu->easy_setopt(h, CURLOPT_CAINFO, c->tls.cacert);
    if (c->tls.cert != NULL) {
        c->cu->easy_setopt(h, CURLOPT_SSLCERT, c->tls.cert);
        c->cu->easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (c->tls.key != NULL) {
        c->cu->easy_setopt(h, CURLOPT_SSLKEY, c->tls.key);
        c->cu->easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->cancel != NULL) {
        c->cu->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cancel_cb);
        c->cu->easy_setopt(h, CURLOPT_XFERINFODATA, c);
        c->cu->easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    if (strcmp(method, "GET") == 0) {
        c->cu->easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        c->cu->easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            c->cu->easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            c->cu->easy_setopt(h, CURLOPT_POSTFIELDS, body);
        }
    }
    return c->cu->easy_perform(h);
}

/* What a transport failure means for a retry. */
enum verdict {
    V_FAIL,    /* not retried: our own limit, memory, a bad URL */
    V_RETRY,   /* the request surely did not reach a server, or is a read */
    V_UNKNOWN, /* a write that may have been received: its outcome is unknown */
};

static enum verdict classify(struct corral_client *c, CURLcode rc, const char *method,
                             const struct sink *sink)
{
    if (sink->over || sink->nomem || rc == CURLE_WRITE_ERROR || rc == CURLE_URL_MALFORMAT ||
        rc == CURLE_UNSUPPORTED_PROTOCOL)
        return V_FAIL;
    /* A certificate that does not verify, or files that do not load, will
     * not do better on a retry (nor on the next endpoint: they share the
     * CA). Nothing was sent. */
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
        rc == CURLE_SSL_CERTPROBLEM)
        return V_FAIL;
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_COULDNT_RESOLVE_PROXY)
        return V_RETRY;
    if (strcmp(method, "GET") == 0)
        return V_RETRY;
    /* A timeout before the connection was made (and before libcurl began
     * the transfer on a reused one) sent nothing. */
    curl_off_t connect_us = 0, pretransfer_us = 0;
    c->cu->easy_getinfo(c->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
    c->cu->easy_getinfo(c->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
    if (rc == CURLE_OPERATION_TIMEDOUT && connect_us == 0 && pretransfer_us == 0)
        return V_RETRY;
    return V_UNKNOWN;
}

/* Where a 307 points: its Location, else the error body's leader. */
static int redirect_target(struct corral_client *c, const struct sink *sink, const char *path,
                           const char *query, char *url, size_t url_len)
{
    char *location = NULL;
    if (c->cu->easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
        location != NULL)
        return snprintf(url, url_len, "%s", location) < (int)url_len ? 0 : -1;
    json_t *j = sink->buf != NULL ? json_loadb(sink->buf, sink->len, 0, NULL) : NULL;
    const char *leader = json_string_value(json_object_get(json_object_get(j, "error"), "leader"));
    int n = leader == NULL ? -1
                           : snprintf(url, url_len, "%s%s%s%s", leader, path,
                                      query != NULL ? "?" : "", query != NULL ? query : "");
    json_decref(j);
    return n >= 0 && n < (int)url_len ? 0 : -1;
}

static void fill_response(struct corral_client *c, struct sink *sink, long retry_after_s,
                          struct corral_client_response *resp)
{
    char *effective = NULL;
    c->cu->easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    c->cu->easy_getinfo(c->curl, CURLINFO_EFFECTIVE_URL, &effective);
    snprintf(resp->url, sizeof(resp->url), "%s", effective != NULL ? effective : "");
    if (sink->buf == NULL && grow(sink, 1) == 0)
        sink->buf[0] = '\0';
    resp->body = sink->buf;
    resp->body_len = sink->len;
    resp->retry_after_s = retry_after_s;
    resp->json =
        resp->body != NULL ? json_loadb(resp->body, resp->body_len, JSON_ALLOW_NUL, NULL) : NULL;
    json_t *error = json_object_get(resp->json, "error");
    resp->code = json_string_value(json_object_get(error, "code"));
    resp->message = json_string_value(json_object_get(error, "message"));
}

/* Keeps "scheme://authority" of url, where a redirect led, as the leader. */
static void remember_leader(struct corral_client *c, const char *url)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return;
    size_t len = strcspn(sep + 3, "/?#") + (size_t)(sep + 3 - url);
    if (len >= sizeof(c->leader))
        return;
    memcpy(c->leader, url, len);
    c->leader[len] = '\0';
}

static int transport_error(struct corral_client *c, const char *url, CURLcode rc,
                           const struct sink *sink)
{
    if (sink->over)
        snprintf(c->err, sizeof(c->err), "%.400s: response body over %u bytes", url,
                 CORRAL_CLIENT_BODY_BYTES_MAX);
    else if (sink->nomem)
        snprintf(c->err, sizeof(c->err), "%.400s: out of memory", url);
    else if (rc == CURLE_PEER_FAILED_VERIFICATION)
        snprintf(c->err, sizeof(c->err),
                 "%.400s: the server's TLS certificate did not verify (%s); give its CA with "
                 "--cacert or $CORRAL_CACERT",
                 url, c->cu->easy_strerror(rc));
    else if (rc == CURLE_GOT_NOTHING && strncmp(url, "http://", 7) == 0)
        snprintf(c->err, sizeof(c->err),
                 "%.400s: %s (a server run with --tls-cert answers https:// only)", url,
                 c->cu->easy_strerror(rc));
    else
        snprintf(c->err, sizeof(c->err), "%.400s: %s", url, c->cu->easy_strerror(rc));
    return sink->nomem ? CORRAL_ENOMEM : CORRAL_EIO;
}

static void prefix_error(struct corral_client *c, const char *prefix)
{
    char msg[sizeof(c->err)];
    snprintf(msg, sizeof(msg), "%s", c->err);
    snprintf(c->err, sizeof(c->err), "%.100s%.*s", prefix, (int)(sizeof(c->err) - 101), msg);
}

/* The request against one endpoint, following 307s. *v says what a
 * failure means for a retry. */
static int exchange(struct corral_client *c, const char *endpoint, const char *method,
                    const char *path, const char *query, const char *body, size_t body_len,
                    struct curl_slist *headers, struct corral_client_response *resp,
                    enum verdict *v)
{
    char url[CORRAL_CLIENT_URL_BYTES_MAX];
    int n = snprintf(url, sizeof(url), "%s%s%s%s", endpoint, path, query != NULL ? "?" : "",
                     query != NULL ? query : "");
    *v = V_FAIL;
    if (n < 0 || (size_t)n >= sizeof(url)) {
        snprintf(c->err, sizeof(c->err), "URL longer than %d bytes", CORRAL_CLIENT_URL_BYTES_MAX);
        return CORRAL_EINVAL;
    }
    for (int hop = 0;; hop++) {
        struct sink sink = {0};
        long retry_after_s = -1;
        CURLcode rc = perform(c, method, url, body, body_len, headers, &sink, &retry_after_s);
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
            snprintf(c->err, sizeof(c->err), "interrupted");
            free(sink.buf);
            return CORRAL_ESHUTDOWN;
        }
        if (rc != CURLE_OK) {
            /* A 307 that led to a dead leader counts like a dead endpoint. */
            *v = classify(c, rc, method, &sink);
            int rv = transport_error(c, url, rc, &sink);
            free(sink.buf);
            return rv;
        }
        long status = 0;
        c->cu->easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status == 307 && hop < CORRAL_CLIENT_REDIRECTS_MAX &&
            redirect_target(c, &sink, path, query, url, sizeof(url)) == 0) {
            free(sink.buf);
            continue;
        }
        if (hop > 0)
            remember_leader(c, url);
        fill_response(c, &sink, retry_after_s, resp);
        return 0;
    }
}

/* Whether an answer says the request was not served and may be sent
 * again: 503 no_leader or busy (a write was not applied), and for a read
 * also shutting_down and timeout. A write's 503 shutting_down may come
 * after it was proposed (docs/api.md: outcome unknown), so it is not
 * repeated. */
static int retry_answer(const struct corral_client_response *r, const char *method)
{
    if (r->status != 503 || r->code == NULL)
        return 0;
    if (strcmp(r->code, "no_leader") == 0 || strcmp(r->code, "busy") == 0)
        return 1;
    return strcmp(method, "GET") == 0 &&
           (strcmp(r->code, "shutting_down") == 0 || strcmp(r->code, "timeout") == 0);
}

static int request(struct corral_client *c, const char *method, const char *path, const char *query,
                   const char *body, size_t body_len, const char *content_type,
                   struct corral_client_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_s = -1;
    if (c->cancel != NULL && *c->cancel != 0) {
        snprintf(c->err, sizeof(c->err), "interrupted");
        return CORRAL_ESHUTDOWN;
    }
    /* "Expect:" stops libcurl from waiting for 100-continue on big bodies. */
    struct curl_slist *headers = c->cu->slist_append(NULL, "Expect:");
    struct curl_slist *more = headers != NULL ? c->cu->slist_append(headers, content_type) : NULL;
    if (more != NULL && c->auth_header[0] != '\0')
        more = c->cu->slist_append(more, c->auth_header);
    if (more == NULL) {
        c->cu->slist_free_all(headers);
        snprintf(c->err, sizeof(c->err), "out of memory");
        return CORRAL_ENOMEM;
    }
    c->deadline_ms = now_ms() + c->timeout_ms;
    long backoff_ms = CORRAL_CLIENT_BACKOFF_MIN_MS;
    int rv = CORRAL_EIO, tries = 0;
    enum verdict last = V_FAIL;
    /* Connection failures since the last pause: the endpoints are tried
     * once each without waiting, then the client waits. */
    size_t failed = 0;
    for (;;) {
        int to_leader = c->leader[0] != '\0';
        char base[CORRAL_CLIENT_BASE_BYTES_MAX];
        snprintf(base, sizeof(base), "%s", to_leader ? c->leader : c->endpoints[c->current]);
        enum verdict v;
        corral_client_response_free(resp);
        rv = exchange(c, base, method, path, query, body, body_len, more, resp, &v);
        last = rv == 0 ? V_FAIL : v;
        tries++;
        resp->tries = tries;
        int again = rv == 0 ? retry_answer(resp, method) : v == V_RETRY;
        if (!again)
            break;
        /* Not served here: the next endpoint, after a pause. */
        if (to_leader)
            c->leader[0] = '\0';
        else
            c->current = (c->current + 1) % c->n_endpoints;
        long wait_ms = 0;
        if (rv == 0) {
            long ra_ms = resp->retry_after_s < 0 ? 0
                         : resp->retry_after_s > CORRAL_CLIENT_BACKOFF_MAX_MS / 1000
                             ? CORRAL_CLIENT_BACKOFF_MAX_MS
                             : resp->retry_after_s * 1000;
            wait_ms = ra_ms > backoff_ms ? ra_ms : backoff_ms;
            /* The server asked for more time than is left: its answer
             * stands. */
            if (ra_ms >= left_ms(c))
                break;
            failed = 0;
        } else if (++failed >= c->n_endpoints + (to_leader ? 1 : 0)) {
            wait_ms = backoff_ms;
            failed = 0;
        }
        if (wait_ms > 0) {
            long left = left_ms(c);
            if (pause_ms(c, wait_ms < left ? wait_ms : left)) {
                corral_client_response_free(resp);
                snprintf(c->err, sizeof(c->err), "interrupted");
                rv = CORRAL_ESHUTDOWN;
                break;
            }
            backoff_ms = backoff_ms * 2 > CORRAL_CLIENT_BACKOFF_MAX_MS
                             ? CORRAL_CLIENT_BACKOFF_MAX_MS
                             : backoff_ms * 2;
        }
        if (left_ms(c) <= 0)
            break;
    }
    c->cu->slist_free_all(more);
    if (rv == 0)
        return 0;
    corral_client_response_free(resp);
    if (last == V_UNKNOWN) {
        size_t len = strlen(c->err);
        snprintf(c->err + len, sizeof(c->err) - len,
                 " after the %s was sent: its outcome is unknown (it may have been applied; "
                 "not retried)",
                 method);
    } else if (last == V_RETRY) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix),
                 "no endpoint answered within %ld ms (%d %s); the last: ", c->timeout_ms, tries,
                 tries == 1 ? "try" : "tries");
        prefix_error(c, prefix);
    }
    return rv;
}

int corral_client_request(struct corral_client *c, const char *method, const char *path,
                          const char *query, const char *body, size_t body_len,
                          struct corral_client_response *resp)
{
    return request(c, method, path, query, body, body_len, "Content-Type: application/octet-stream",
                   resp);
}

int corral_client_request_json(struct corral_client *c, const char *method, const char *path,
                               const char *query, const json_t *body,
                               struct corral_client_response *resp)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body != NULL && text == NULL) {
        memset(resp, 0, sizeof(*resp));
        resp->retry_after_s = -1;
        snprintf(c->err, sizeof(c->err), "out of memory");
        return CORRAL_ENOMEM;
    }
    int rv = request(c, method, path, query, text, text != NULL ? strlen(text) : 0,
                     "Content-Type: application/json", resp);
    free(text);
    return rv;
}
