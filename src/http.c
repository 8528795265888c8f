/*
 * http.c: the clayer.http module, HTTP(S) through libcurl.
 *
 * Three ways to run a transfer share one struct xfer:
 *   http.request  runs it to the end on the calling thread (easy API);
 *   http.open     pulls the body chunk by chunk (multi API), from Lua and,
 *                 as a clayer_source, from clayer.tar's extractor;
 *   http.start    runs the stream's loop on a pthread that never touches
 *                 the Lua state, the body going to a file.
 * A stream or thread given `resume` survives a body that breaks midway: it
 * asks again from the first URL with a Range and goes on where it stopped,
 * unseen by its reader.
 * Redirects are followed here, not by libcurl, so that an Authorization
 * header never leaves the origin it was given for.  Proxies come from the
 * environment (HTTPS_PROXY, NO_PROXY), which libcurl reads by itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clayer.h"

#define REQUEST_MT "clayer.http.request"       /* internal: one request */
#define TRANSFER_MT "clayer.http.transfer"
#define MAX_REDIRS 10
#define POLL_MS 500                     /* wake up to notice interrupts */
#define STREAM_CHUNK (64 * 1024)        /* what a stream holds at most */

enum mode { MODE_REQUEST, MODE_STREAM, MODE_THREAD };

/* Which options each entry point takes. */
enum {
  OPT_BODY = 1,                         /* body, body_file */
  OPT_OUTPUT = 2,
  OPT_SINK = 4,
  OPT_PROGRESS = 8,
  OPT_RESUME = 16
};

struct buf {
  char *data;
  size_t len, cap;
};

/* One transfer, with every option copied so that a thread needs no Lua. */
struct xfer {
  enum mode mode;
  char *url0;                           /* the URL asked for */
  char *url;                            /* this hop's URL */
  char method[8];
  char **hdrs;                          /* "Name: value", no Authorization */
  size_t nhdrs;
  char *auth;                           /* "Authorization: ..." or NULL */
  int has_expect;
  char *body;                           /* string body, or NULL */
  size_t body_len;
  FILE *in;                             /* body_file, or NULL */
  curl_off_t in_size;
  char *output;
  int out_fd;
  char *cacert;
  int follow;
  long connect_ms, idle_s;
  double last_rx;                       /* monotonic time of the last byte */
  double deadline;                      /* monotonic seconds; 0: none */
  curl_off_t resume_from;

  CURL *easy;
  CURLM *multi;                         /* streams only */
  struct curl_slist *slist;
  char errbuf[CURL_ERROR_SIZE];
  int hops;
  int send_auth;

  long status;                          /* of the current response */
  int has_location;
  int hdr_done;                         /* its header block has ended */
  int redirecting;                      /* it is a redirect we follow */
  struct buf resp_hdrs;                 /* "name\0value\0" pairs */
  struct buf data;                      /* the body, or a stream's chunk */

  int finished, failed;
  int paused;                           /* a stream waiting for its reader */
  const char *code;
  char *msg;
  char *eff_url;
  int sink_abort, write_err, oom, lua_err, idle_hit;

  lua_State *L;                         /* set while Lua may be called */
  int sink_ref, progress_ref, verbose_ref, err_ref;
  curl_off_t last[4];                   /* progress last reported */
  struct buf lines;                     /* verbose lines kept for later */

  pthread_t tid;
  int started, joined;
  atomic_int cancel;
  _Atomic curl_off_t dlnow, dltotal;

  /* Resuming a broken body (option resume; streams and threads only). */
  int resume_max;                       /* resumes allowed; 0: none */
  int resumes;                          /* resumes so far */
  double backoff, max_backoff;          /* seconds */
  char *resume_log;                     /* prefix of the stderr line */
  int resumable;                        /* the first answer may resume */
  int resuming;                         /* this hop chain asks for a Range */
  double resume_at;                     /* when to ask again; 0: not now */
  long first_status;                    /* the first final answer's */
  struct buf first_hdrs;                /* and its headers */
  curl_off_t got;                       /* body bytes taken so far */
  curl_off_t pos;                       /* entity offset of the next one */
  curl_off_t total;                     /* entity length; -1: unknown */
  curl_off_t skip;                      /* bytes of this answer to drop */
  curl_off_t dl_base;                   /* where this answer's bytes start */
};

/* request and transfer userdata */
struct handle {
  struct xfer *x;
};

/* The stream userdata: the source comes first (clayer.h). */
struct stream {
  clayer_source src;
  struct xfer *x;
};

static const char *const request_opts[] = {
  "url", "method", "headers", "body", "body_file", "output", "sink",
  "follow", "connect_timeout", "idle_timeout", "timeout", "progress",
  "cacert", "verbose", "resume_from", "resume", NULL
};

static const char *const methods[] = {
  "GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", NULL
};


/* ---- small helpers ---------------------------------------------------- */

static int buf_add(struct buf *b, const void *p, size_t n)
{
  if(b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *d;

    while(cap < b->len + n + 1)
      cap *= 2;
    d = realloc(b->data, cap);
    if(!d)
      return -1;
    b->data = d;
    b->cap = cap;
  }
  if(n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static double now_s(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Whether a query parameter's name says its value grants access (signed
   storage URLs: X-Amz-Signature, X-Amz-Credential, sig, jwt, token...). */
static int secret_param(const char *name, size_t n)
{
  static const char *const words[] = {
    "sig", "token", "credential", "jwt", "secret", "password", "auth",
    "key", NULL
  };
  size_t i, k;

  for(i = 0; words[i]; i++) {
    size_t w = strlen(words[i]);

    for(k = 0; k + w <= n; k++)
      if(!strncasecmp(name + k, words[i], w))
        return 1;
  }
  return 0;
}

/* A copy of url without "user:password@" and with the values of secret
   query parameters replaced by "REDACTED", for messages; caller frees. */
static char *redact_url(const char *url)
{
  const char *p = strstr(url, "://");
  const char *at, *end, *q;
  struct buf b = { NULL, 0, 0 };

  if(p) {
    p += 3;
    end = p + strcspn(p, "/?#");
    at = memchr(p, '@', (size_t)(end - p));
    if(buf_add(&b, url, (size_t)(p - url)))
      goto oom;
    if(at)
      p = at + 1;
  }
  else
    p = url;
  q = strchr(p, '?');
  if(!q)
    q = p + strlen(p);
  if(buf_add(&b, p, (size_t)(q - p)))
    goto oom;
  while(*q == '?' || *q == '&') {
    size_t len = strcspn(q + 1, "&#");
    const char *eq = memchr(q + 1, '=', len);

    if(eq && secret_param(q + 1, (size_t)(eq - q - 1))) {
      if(buf_add(&b, q, (size_t)(eq - q) + 1) ||
         buf_add(&b, "REDACTED", 8))
        goto oom;
    }
    else if(buf_add(&b, q, len + 1))
      goto oom;
    q += len + 1;
  }
  if(buf_add(&b, q, strlen(q)))
    goto oom;
  if(!b.data)
    return strdup("");
  return b.data;
oom:
  free(b.data);
  return NULL;
}

/* Headers whose values verbose output never shows. */
static int secret_header(const char *line)
{
  static const char *const names[] = {
    "authorization:", "proxy-authorization:", "cookie:", NULL
  };
  size_t n = strcspn(line, ":;");
  int i;

  for(i = 0; names[i]; i++)
    if(n + 1 == strlen(names[i]) && !strncasecmp(line, names[i], n))
      return 1;
  return 0;
}

/* Whether a and b share scheme, host and port (b comes from a redirect). */
static int same_origin(const char *a, const char *b)
{
  CURLU *ua = curl_url(), *ub = curl_url();
  char *sa = NULL, *ha = NULL, *pa = NULL, *sb = NULL, *hb = NULL;
  char *pb = NULL;
  int same = 0;

  if(ua && ub &&
     !curl_url_set(ua, CURLUPART_URL, a, CURLU_GUESS_SCHEME) &&
     !curl_url_set(ub, CURLUPART_URL, b, CURLU_GUESS_SCHEME) &&
     !curl_url_get(ua, CURLUPART_SCHEME, &sa, 0) &&
     !curl_url_get(ub, CURLUPART_SCHEME, &sb, 0) &&
     !curl_url_get(ua, CURLUPART_HOST, &ha, 0) &&
     !curl_url_get(ub, CURLUPART_HOST, &hb, 0) &&
     !curl_url_get(ua, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) &&
     !curl_url_get(ub, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT))
    same = !strcasecmp(sa, sb) && !strcasecmp(ha, hb) && !strcmp(pa, pb);
  curl_free(sa);
  curl_free(sb);
  curl_free(ha);
  curl_free(hb);
  curl_free(pa);
  curl_free(pb);
  curl_url_cleanup(ua);
  curl_url_cleanup(ub);
  return same;
}

/* The value of response header `name` (lowercase) in b, or NULL. */
static const char *hdr_value(const struct buf *b, const char *name)
{
  size_t off = 0;

  while(off < b->len) {
    const char *k = b->data + off;
    const char *v = k + strlen(k) + 1;

    if(!strcmp(k, name))
      return v;
    off = (size_t)(v - b->data) + strlen(v) + 1;
  }
  return NULL;
}

/* A decimal header value as a length; -1 when absent or malformed. */
static curl_off_t hdr_length(const struct buf *b, const char *name)
{
  const char *v = hdr_value(b, name);
  char *end;
  long long n;

  if(!v || *v < '0' || *v > '9')
    return -1;
  errno = 0;
  n = strtoll(v, &end, 10);
  return errno || *end ? -1 : (curl_off_t)n;
}

/* "bytes FIRST-LAST/TOTAL" (TOTAL may be "*": -1); 0, or -1. */
static int parse_content_range(const char *v, curl_off_t *first,
                               curl_off_t *total)
{
  long long a, b, c = -1;
  int n = 0;

  if(!v || strncasecmp(v, "bytes ", 6))
    return -1;
  if(sscanf(v + 6, "%lld-%lld/%lld%n", &a, &b, &c, &n) == 3 && !v[6 + n])
    ;
  else if(sscanf(v + 6, "%lld-%lld/*%n", &a, &b, &n) == 2 && n &&
          !v[6 + n])
    c = -1;
  else
    return -1;
  if(a < 0 || b < a || (c >= 0 && b >= c))
    return -1;
  *first = a;
  *total = c;
  return 0;
}

/* Record the first failure: "http: URL: why" with a code. */
static void fail(struct xfer *x, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct xfer *x, const char *code, const char *fmt, ...)
{
  char *why = NULL, *url;
  va_list ap;

  if(x->failed)
    return;
  x->failed = 1;
  x->code = code;
  va_start(ap, fmt);
  if(vasprintf(&why, fmt, ap) < 0)
    why = NULL;
  va_end(ap);
  url = redact_url(x->url);
  if(asprintf(&x->msg, "http: %s: %s", url ? url : "?",
              why ? why : "out of memory") < 0)
    x->msg = NULL;
  free(url);
  free(why);
}

static const char *code_of(CURLcode rc)
{
  switch(rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "resolve";
  case CURLE_COULDNT_CONNECT:
    return "connect";
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
    return "tls";
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return "reset";
  case CURLE_ABORTED_BY_CALLBACK:
    return "aborted";
  case CURLE_TOO_MANY_REDIRECTS:
    return "http";
  case CURLE_WRITE_ERROR:
    return "write";
  default:
    return "other";
  }
}

/* Turn a failed perform into the message and code, callbacks first. */
static void fail_curl(struct xfer *x, CURLcode rc)
{
  if(x->lua_err)
    fail(x, "other", "error in a callback");     /* raised later */
  else if(x->sink_abort)
    fail(x, "aborted", "aborted by the sink");
  else if(x->write_err)
    fail(x, "write", "%s: %s", x->output, strerror(x->write_err));
  else if(x->oom)
    fail(x, "other", "out of memory");
  else if(x->idle_hit)
    fail(x, "timeout", "no data for %ld seconds", x->idle_s);
  else if(atomic_load(&x->cancel))
    fail(x, "aborted", "cancelled");
  else if((rc == CURLE_ABORTED_BY_CALLBACK || rc == CURLE_WRITE_ERROR) &&
          clayer_interrupted)
    fail(x, "aborted", "interrupted");
  else
    fail(x, code_of(rc), "%s",
         x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
}


/* ---- Lua callbacks ---------------------------------------------------- */

/*
 * pcall the function and nargs arguments on top of x->L.  On an error
 * keep it for after cleanup and return 0.
 */
static int call_lua(struct xfer *x, int nargs, int nres)
{
  if(lua_pcall(x->L, nargs, nres, 0) == LUA_OK)
    return 1;
  if(x->err_ref == LUA_NOREF)
    x->err_ref = luaL_ref(x->L, LUA_REGISTRYINDEX);
  else
    lua_pop(x->L, 1);
  x->lua_err = 1;
  return 0;
}

/* A verbose line: to Lua now when it may be called, else kept. */
static int emit(struct xfer *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int emit(struct xfer *x, const char *fmt, ...)
{
  char *line;
  va_list ap;
  int n, ok = 1;

  if(x->verbose_ref == LUA_NOREF || x->lua_err)
    return !x->lua_err;
  va_start(ap, fmt);
  n = vasprintf(&line, fmt, ap);
  va_end(ap);
  if(n < 0) {
    x->oom = 1;
    return 0;
  }
  if(x->L) {
    lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->verbose_ref);
    lua_pushlstring(x->L, line, n);
    ok = call_lua(x, 1, 0);
  }
  else if(buf_add(&x->lines, line, n + 1)) {
    x->oom = 1;
    ok = 0;
  }
  free(line);
  return ok;
}

/* Deliver the verbose lines kept while Lua could not be called. */
static void flush_lines(lua_State *L, struct xfer *x)
{
  size_t off = 0;

  while(off < x->lines.len) {
    const char *line = x->lines.data + off;

    off += strlen(line) + 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->verbose_ref);
    lua_pushstring(L, line);
    lua_call(L, 1, 0);
  }
  x->lines.len = 0;
}

/* The sink's verdict on a chunk: 0 to abort. */
static int call_sink(struct xfer *x, const char *p, size_t n)
{
  int go;

  lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->sink_ref);
  lua_pushlstring(x->L, p, n);
  if(!call_lua(x, 1, 1))
    return 0;
  go = !(lua_isboolean(x->L, -1) && !lua_toboolean(x->L, -1));
  lua_pop(x->L, 1);
  if(!go)
    x->sink_abort = 1;
  return go;
}


/* ---- curl callbacks --------------------------------------------------- */

/* Open output for the final response; with a 206 keep resume_from bytes. */
static int prepare_output(struct xfer *x)
{
  int keep = x->resume_from > 0 && x->status == 206;

  x->out_fd = open(x->output, O_WRONLY | O_CREAT | O_CLOEXEC |
                   (keep ? 0 : O_TRUNC), 0666);
  if(x->out_fd < 0) {
    x->write_err = errno;
    return -1;
  }
  if(keep && (ftruncate(x->out_fd, x->resume_from) ||
              lseek(x->out_fd, 0, SEEK_END) < 0)) {
    x->write_err = errno;
    return -1;
  }
  return 0;
}

/* A resumed download answered with neither 200 nor 206 (a 416 for a
   finished file, say) leaves output as it was. */
static int keep_output(struct xfer *x)
{
  return x->resume_from > 0 && x->status != 200 && x->status != 206;
}

static int is_redirect(long status)
{
  return status == 301 || status == 302 || status == 303 ||
         status == 307 || status == 308;
}

/*
 * The answer to a resume is in: a 206 must go on at x->pos (and name the
 * same total length), a 200 is the whole body again, whose first x->pos
 * bytes are dropped.  Anything else fails x; 0 then.
 */
static int resumed_ok(struct xfer *x)
{
  const char *cr = hdr_value(&x->resp_hdrs, "content-range");
  curl_off_t first, total, len;

  if(x->status == 206) {
    if(parse_content_range(cr, &first, &total) || first != x->pos ||
       (total >= 0 && x->total >= 0 && total != x->total)) {
      fail(x, "http", "resuming at byte %lld: the answer's Content-Range is "
           "'%s', not 'bytes %lld-.../%lld'", (long long)x->pos,
           cr ? cr : "(none)", (long long)x->pos, (long long)x->total);
      return 0;
    }
    x->skip = 0;
    x->dl_base = x->pos;
  }
  else if(x->status == 200) {
    len = hdr_length(&x->resp_hdrs, "content-length");
    if(len >= 0 && x->total >= 0 && len != x->total) {
      fail(x, "http", "resuming at byte %lld: the server sent the whole "
           "body again (HTTP 200), of %lld bytes instead of %lld",
           (long long)x->pos, (long long)len, (long long)x->total);
      return 0;
    }
    x->skip = x->pos;                   /* the reader has those */
    x->dl_base = 0;
  }
  else {
    fail(x, "http", "resuming at byte %lld: HTTP %ld", (long long)x->pos,
         x->status);
    return 0;
  }
  x->resuming = 0;
  return 1;
}

/* The first final answer of a transfer that may resume: keep its status
   and headers, where its body starts and how long the whole is. */
static void note_answer(struct xfer *x)
{
  curl_off_t first, total;

  x->first_status = x->status;
  x->resumable = !strcmp(x->method, "GET") &&
                 (x->status == 200 || x->status == 206);
  if(!x->resumable)
    return;
  if(x->status == 206 &&
     !parse_content_range(hdr_value(&x->resp_hdrs, "content-range"),
                          &first, &total)) {
    x->pos = first;
    x->total = total;
  }
  else if(x->status == 206)
    x->pos = x->resume_from;
  else
    x->total = hdr_length(&x->resp_hdrs, "content-length");
  x->first_hdrs.len = 0;
  if(buf_add(&x->first_hdrs, x->resp_hdrs.data ? x->resp_hdrs.data : "",
             x->resp_hdrs.len))
    x->resumable = 0;                   /* no memory for it: no resume */
}

/* A final answer's headers are in (not a redirect we follow): 0 fails. */
static int answer_ok(struct xfer *x)
{
  if(x->resuming)
    return resumed_ok(x);
  if(x->resume_max > 0 && !x->first_status)
    note_answer(x);
  return 1;
}

/* One header line: the status line, a field, or the blank line. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
  struct xfer *x = ud;
  size_t len = size * n, end = len, colon, i, k;
  char *name;

  x->last_rx = now_s();
  while(end > 0 && (p[end - 1] == '\r' || p[end - 1] == '\n'))
    end--;
  if(x->hdr_done)
    return len;                         /* trailers */
  if(end > 5 && !strncmp(p, "HTTP/", 5)) {
    const char *sp = memchr(p, ' ', end);

    x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    x->resp_hdrs.len = 0;
    x->has_location = 0;
    return len;
  }
  if(end == 0) {
    if(x->status >= 100 && x->status < 200)
      return len;                       /* 100 Continue and the like */
    x->hdr_done = 1;
    x->redirecting = x->follow && x->has_location &&
                     is_redirect(x->status);
    if(!emit(x, "< %ld", x->status))
      return 0;
    return x->redirecting || answer_ok(x) ? len : 0;
  }
  colon = 0;
  while(colon < end && p[colon] != ':')
    colon++;
  if(colon == end || colon == 0 || p[0] == ' ' || p[0] == '\t')
    return len;                         /* folded or malformed */
  i = colon + 1;
  while(i < end && (p[i] == ' ' || p[i] == '\t'))
    i++;
  while(end > i && (p[end - 1] == ' ' || p[end - 1] == '\t'))
    end--;
  if(buf_add(&x->resp_hdrs, p, colon) || buf_add(&x->resp_hdrs, "", 1) ||
     buf_add(&x->resp_hdrs, p + i, end - i) ||
     buf_add(&x->resp_hdrs, "", 1)) {
    x->oom = 1;
    return 0;
  }
  name = x->resp_hdrs.data + x->resp_hdrs.len - (end - i) - colon - 2;
  for(k = 0; k < colon; k++)
    if(name[k] >= 'A' && name[k] <= 'Z')
      name[k] = (char)(name[k] + 32);
  if(colon == 8 && !strncasecmp(p, "location", 8))
    x->has_location = 1;
  return len;
}

/* Write a chunk to the output file: len, or 0 on an error. */
static size_t write_out(struct xfer *x, const char *p, size_t len)
{
  size_t off = 0;

  if(x->out_fd < 0 && prepare_output(x))
    return 0;
  while(off < len) {
    ssize_t w = write(x->out_fd, p + off, len - off);

    if(w < 0 && errno == EINTR && !clayer_interrupted)
      continue;
    if(w < 0 && errno == EINTR)
      return 0;                         /* fails as "interrupted" */
    if(w < 0) {
      x->write_err = errno;
      return 0;
    }
    off += (size_t)w;
  }
  return len;
}

/*
 * Bytes of the body to the sink, the output or the stream's chunk: len,
 * 0 on an error, or CURL_WRITEFUNC_PAUSE.  A stream holds at most about
 * STREAM_CHUNK bytes: past that the transfer pauses until the reader
 * takes them.
 */
static size_t take_body(struct xfer *x, const char *p, size_t len)
{
  if(x->sink_ref != LUA_NOREF)
    return call_sink(x, p, len) ? len : 0;
  if(x->output)
    return keep_output(x) ? len : write_out(x, p, len);
  if(x->mode == MODE_STREAM && x->data.len > 0 &&
     x->data.len + len > STREAM_CHUNK) {
    x->paused = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  if(buf_add(&x->data, p, len)) {
    x->oom = 1;
    return 0;
  }
  return len;
}

/* A chunk of the body, less what a resume answered with 200 repeats. */
static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
  struct xfer *x = ud;
  size_t len = size * n, drop = 0, r = 0;

  if(x->redirecting || (x->mode == MODE_STREAM && x->status >= 400)) {
    x->last_rx = now_s();
    return len;                         /* the redirect's own body, or a
                                           stream that fails instead */
  }
  if(x->skip > 0)
    drop = x->skip < (curl_off_t)len ? (size_t)x->skip : len;
  if(drop < len)
    r = take_body(x, p + drop, len - drop);
  if(r == CURL_WRITEFUNC_PAUSE)
    return r;                           /* all of it comes again */
  x->last_rx = now_s();                 /* after a slow sink too */
  if(r != len - drop)
    return 0;
  x->skip -= (curl_off_t)drop;
  x->got += (curl_off_t)r;
  x->pos += (curl_off_t)r;
  return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
  struct xfer *x = ud;
  size_t got = fread(p, size, n, x->in);

  return ferror(x->in) ? CURL_READFUNC_ABORT : got;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
  struct xfer *x = ud;

  if(dltotal > 0)                       /* a resumed 206: its range */
    dltotal += x->dl_base;
  dlnow += x->dl_base;
  atomic_store(&x->dlnow, dlnow);
  atomic_store(&x->dltotal, dltotal);
  if(atomic_load(&x->cancel) || clayer_interrupted || x->lua_err)
    return 1;
  if(ulnow != x->last[2])
    x->last_rx = now_s();               /* an upload is not idle either */
  if(x->idle_s > 0 && now_s() - x->last_rx > x->idle_s) {
    x->idle_hit = 1;                    /* LOW_SPEED averages over 5 s */
    return 1;
  }
  if(x->L && x->progress_ref != LUA_NOREF &&
     (dlnow != x->last[0] || dltotal != x->last[1] ||
      ulnow != x->last[2] || ultotal != x->last[3])) {
    x->last[0] = dlnow;
    x->last[1] = dltotal;
    x->last[2] = ulnow;
    x->last[3] = ultotal;
    lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->progress_ref);
    lua_pushinteger(x->L, dlnow);
    lua_pushinteger(x->L, dltotal);
    lua_pushinteger(x->L, ulnow);
    lua_pushinteger(x->L, ultotal);
    if(!call_lua(x, 4, 0))
      return 1;
  }
  return 0;
}


/* ---- one hop ---------------------------------------------------------- */

static int set_method(struct xfer *x)
{
  CURL *e = x->easy;
  CURLcode rc = CURLE_OK;

  if(!strcmp(x->method, "HEAD"))
    return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  if(x->in) {
    rewind(x->in);
    rc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    rc |= curl_easy_setopt(e, CURLOPT_READDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, x->in_size);
  }
  else if(x->body || !strcmp(x->method, "POST")) {
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                           (curl_off_t)x->body_len);
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
  }
  if(strcmp(x->method, "GET") && strcmp(x->method, "POST"))
    rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
  return rc;
}

/* The request headers of this hop, in x->slist. */
static int set_headers(struct xfer *x)
{
  struct curl_slist *l = NULL, *t;
  size_t i;

  for(i = 0; i <= x->nhdrs; i++) {
    const char *h = i < x->nhdrs ? x->hdrs[i] :
                    x->send_auth ? x->auth : NULL;

    if(!h)
      continue;
    t = curl_slist_append(l, h);
    if(!t)
      goto oom;
    l = t;
  }
  if(!x->has_expect) {
    t = curl_slist_append(l, "Expect:");   /* no 1 s wait for 100 */
    if(!t)
      goto oom;
    l = t;
  }
  curl_slist_free_all(x->slist);
  x->slist = l;
  return curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, l);
oom:
  curl_slist_free_all(l);
  x->oom = 1;
  return -1;
}

/* Where this hop's Range starts: a resume's offset, or resume_from. */
static curl_off_t range_start(struct xfer *x)
{
  return x->resuming ? x->pos : x->resume_from;
}

/* Say what this hop sends, secrets redacted. */
static int emit_request(struct xfer *x)
{
  struct curl_slist *h;
  char *url = redact_url(x->url);
  int ok;

  ok = emit(x, "%s %s", x->method, url ? url : "?");
  free(url);
  for(h = x->slist; ok && h; h = h->next) {
    size_t n = strcspn(h->data, ":;");

    if(!h->data[n] || (h->data[n] == ':' && !h->data[n + 1]))
      continue;                          /* a removed header */
    if(secret_header(h->data))
      ok = emit(x, "> %.*s: <redacted>", (int)n, h->data);
    else
      ok = emit(x, "> %s", h->data);
  }
  if(ok && range_start(x) > 0)
    ok = emit(x, "> Range: bytes=%lld-", (long long)range_start(x));
  return ok;
}

/* Configure the easy handle for x->url; 0, or -1 with x failed. */
static int setup_hop(struct xfer *x)
{
  CURL *e = x->easy;
  CURLcode rc = CURLE_OK;
  char range[32];

  curl_easy_reset(e);
  x->status = 0;
  x->has_location = x->hdr_done = x->redirecting = 0;
  x->resp_hdrs.len = 0;
  x->data.len = 0;
  x->errbuf[0] = '\0';
  x->last_rx = now_s();
  memset(x->last, 0, sizeof(x->last));
  if(set_headers(x)) {
    fail_curl(x, CURLE_OUT_OF_MEMORY);
    return -1;
  }
  rc |= curl_easy_setopt(e, CURLOPT_URL, x->url);
  rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "clayer/" CLAYER_VERSION);
  rc |= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  rc |= curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  rc |= curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
  rc |= curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_ms);
  if(x->idle_s > 0) {
    rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, x->idle_s);
  }
  if(x->deadline > 0) {
    double left = x->deadline - now_s();

    rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                           left > 0.001 ? (long)(left * 1000) : 1L);
  }
  if(x->cacert)
    rc |= curl_easy_setopt(e, CURLOPT_CAINFO, x->cacert);
  if(range_start(x) > 0) {
    snprintf(range, sizeof(range), "%lld-", (long long)range_start(x));
    rc |= curl_easy_setopt(e, CURLOPT_RANGE, range);
  }
  rc |= set_method(x);
  if(rc) {
    fail(x, "other", "cannot set up the request: %s",
         curl_easy_strerror(rc));
    return -1;
  }
  if(!emit_request(x)) {
    fail_curl(x, CURLE_ABORTED_BY_CALLBACK);
    return -1;
  }
  return 0;
}

/* Move to the redirect target: 1, or -1 with x failed. */
static int redirect(struct xfer *x)
{
  char *loc = NULL, *next;

  curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &loc);
  if(!loc) {
    fail(x, "http", "HTTP %ld without a usable Location", x->status);
    return -1;
  }
  if(x->hops >= MAX_REDIRS) {
    fail(x, "http", "Maximum (%d) redirects followed", MAX_REDIRS);
    return -1;
  }
  next = strdup(loc);
  if(!next) {
    fail(x, "other", "out of memory");
    return -1;
  }
  x->send_auth = x->send_auth && same_origin(x->url0, next);
  if((x->status == 303 && strcmp(x->method, "HEAD")) ||
     ((x->status == 301 || x->status == 302) &&
      !strcmp(x->method, "POST"))) {
    strcpy(x->method, "GET");           /* as browsers and curl do */
    free(x->body);
    x->body = NULL;
    x->body_len = 0;
    if(x->in)
      fclose(x->in);
    x->in = NULL;
  }
  free(x->url);
  x->url = next;
  x->hops++;
  return 1;
}

/* After a perform: 1 for another hop, 0 when done, -1 when failed. */
static int finish_hop(struct xfer *x, CURLcode rc)
{
  char *eff = NULL;

  if(rc != CURLE_OK) {
    fail_curl(x, rc);
    return -1;
  }
  if(x->redirecting)
    return redirect(x);
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
  if(x->output && x->out_fd < 0 && !keep_output(x) && prepare_output(x)) {
    fail_curl(x, CURLE_WRITE_ERROR);
    return -1;
  }
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &eff);
  x->eff_url = strdup(eff ? eff : x->url);
  x->finished = 1;
  return 0;
}

/* Run every hop with the easy API. */
static void run_easy(struct xfer *x)
{
  int r;

  do {
    if(setup_hop(x))
      return;
    r = finish_hop(x, curl_easy_perform(x->easy));
  } while(r == 1);
}

/* ---- the stream's pull loop ------------------------------------------- */

/*
 * Whether hop result rc broke a body that a resume could go on with:
 * bytes of a 200 or 206 to a GET were taken, and the cause is the network
 * (a reset, a short body, a stall), not the reader, a cancel or a signal.
 */
static int broken_body(struct xfer *x, CURLcode rc)
{
  if(!x->resumable || x->got == 0 || x->failed || x->lua_err ||
     x->sink_abort || x->write_err || x->oom || atomic_load(&x->cancel) ||
     clayer_interrupted)
    return 0;
  if(x->idle_hit)
    return 1;
  switch(rc) {
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_COULDNT_CONNECT:           /* while asking again */
    return 1;
  case CURLE_OPERATION_TIMEDOUT:        /* not the total timeout's */
    return x->deadline <= 0 || now_s() < x->deadline;
  default:
    return 0;
  }
}

/* The wait before resume number x->resumes + 1: backoff doubled each
   time, at most max_backoff. */
static double resume_wait(struct xfer *x)
{
  double w = x->backoff;
  int i;

  for(i = 0; i < x->resumes && w < x->max_backoff; i++)
    w *= 2;
  return w < x->max_backoff ? w : x->max_backoff;
}

/* Say that the body broke and when it resumes: a verbose line, and with
   resume.log one line on stderr, as the CLI's log writes them (the
   extractor reads streams on a thread that may not call Lua). */
static void report_resume(struct xfer *x, const char *why, double wait)
{
  char *line;
  ssize_t w;
  int n;

  emit(x, "resume %d of %d at byte %lld in %.3g s: %s", x->resumes,
       x->resume_max, (long long)x->pos, wait, why);
  if(!x->resume_log)
    return;
  n = asprintf(&line, "clayer: %s: %s; resume %d of %d at byte %lld in "
               "%.3g s\n", x->resume_log, why, x->resumes, x->resume_max,
               (long long)x->pos, wait);
  if(n < 0)
    return;
  w = write(2, line, (size_t)n);        /* one write: lines stay whole */
  (void)w;
  free(line);
}

/*
 * Resume the broken body later, if tries are left and the wait ends
 * before the total timeout: 1, or 0 when x must fail.  The request is
 * sent again by resume_now() once x->resume_at has come.
 */
static int resume_later(struct xfer *x, CURLcode rc)
{
  double wait = resume_wait(x);
  char why[CURL_ERROR_SIZE + 32];

  if(x->resumes >= x->resume_max ||
     (x->deadline > 0 && now_s() + wait >= x->deadline))
    return 0;
  if(x->idle_hit)
    snprintf(why, sizeof(why), "no data for %ld seconds", x->idle_s);
  else
    snprintf(why, sizeof(why), "%s",
             x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
  curl_multi_remove_handle(x->multi, x->easy);
  x->resumes++;
  x->resuming = 1;
  x->idle_hit = 0;
  x->paused = 0;
  x->resume_at = now_s() + wait;
  report_resume(x, why, wait);
  return 1;
}

/* Ask again from the first URL (its redirects are followed again, with
   the same rule for Authorization), for the bytes from x->pos on. */
static int resume_now(struct xfer *x)
{
  char *url = strdup(x->url0);

  x->resume_at = 0;
  if(!url) {
    fail(x, "other", "out of memory");
    return -1;
  }
  free(x->url);
  x->url = url;
  x->hops = 0;
  x->send_auth = x->auth != NULL;
  if(setup_hop(x))
    return -1;
  if(curl_multi_add_handle(x->multi, x->easy)) {
    fail(x, "other", "cannot restart the transfer");
    return -1;
  }
  return 0;
}

/* A stream that gave up after resuming says so in its message. */
static void note_gave_up(struct xfer *x)
{
  char *msg;

  if(x->msg && asprintf(&msg, "%s (at byte %lld, after %d resume%s)",
                        x->msg, (long long)x->pos, x->resumes,
                        x->resumes == 1 ? "" : "s") >= 0) {
    free(x->msg);
    x->msg = msg;
  }
}

static void stream_done(struct xfer *x, CURLcode rc)
{
  int broken = rc != CURLE_OK && broken_body(x, rc);
  int r;

  if(broken && resume_later(x, rc))
    return;
  r = finish_hop(x, rc);
  if(r < 0 && broken && x->resumes > 0)
    note_gave_up(x);
  if(r != 1)
    return;
  curl_multi_remove_handle(x->multi, x->easy);
  if(setup_hop(x))
    return;
  if(curl_multi_add_handle(x->multi, x->easy))
    fail(x, "other", "cannot restart the transfer");
}

/* Next bytes of the body: n > 0, 0 at the end, -1 failed (x->msg). */
static ssize_t pull(struct xfer *x, const void **out)
{
  x->data.len = 0;                      /* the last chunk is consumed */
  if(x->paused) {
    x->paused = 0;
    x->last_rx = now_s();               /* the reader was slow, not us */
    curl_easy_pause(x->easy, CURLPAUSE_CONT);   /* may call on_write */
  }
  for(;;) {
    CURLMcode mc;
    CURLMsg *m;
    int running = 0, left;

    if(x->failed)
      return -1;
    if(atomic_load(&x->cancel)) {
      fail(x, "aborted", "cancelled");
      return -1;
    }
    if(x->mode == MODE_STREAM && x->hdr_done && !x->redirecting &&
       x->status >= 400) {
      fail(x, "http", "HTTP %ld", x->status);
      return -1;
    }
    if(x->data.len > 0) {
      *out = x->data.data;
      return (ssize_t)x->data.len;
    }
    if(x->finished)
      return 0;
    if(clayer_interrupted) {
      fail(x, "aborted", "interrupted");
      return -1;
    }
    if(x->resume_at > 0) {              /* a broken body waits */
      double left = x->resume_at - now_s();

      if(left <= 0 && resume_now(x))
        return -1;
      if(left > 0)                      /* xfer_free's wakeup ends it */
        curl_multi_poll(x->multi, NULL, 0,
                        left * 1000 < POLL_MS ? (int)(left * 1000) + 1 :
                        POLL_MS, NULL);
      continue;
    }
    mc = curl_multi_perform(x->multi, &running);
    if(mc != CURLM_OK) {
      fail(x, "other", "%s", curl_multi_strerror(mc));
      return -1;
    }
    while((m = curl_multi_info_read(x->multi, &left)))
      if(m->msg == CURLMSG_DONE)
        stream_done(x, m->data.result);
    if(running && !x->data.len && !x->failed && !x->finished)
      curl_multi_poll(x->multi, NULL, 0, POLL_MS, NULL);
  }
}

/* A transfer's thread: the stream loop with the body going to output. */
static void *thread_main(void *ud)
{
  struct xfer *x = ud;
  const void *p;

  while(pull(x, &p) > 0)
    ;
  return NULL;
}

static ssize_t source_read(clayer_source *src, const void **buf)
{
  struct stream *s = (struct stream *)src;

  if(!s->x)
    return -1;
  return pull(s->x, buf);
}

static const char *source_error(clayer_source *src)
{
  struct stream *s = (struct stream *)src;

  if(!s->x)
    return "http: the stream is closed";
  return s->x->msg ? s->x->msg : "http: out of memory";
}


/* ---- options ---------------------------------------------------------- */

static void check_keys(lua_State *L, int idx, int allowed)
{
  lua_pushnil(L);
  while(lua_next(L, idx)) {
    const char *k;
    int i;

    lua_pop(L, 1);
    if(lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "http: option names must be strings");
    k = lua_tostring(L, -1);
    for(i = 0; request_opts[i]; i++)
      if(!strcmp(k, request_opts[i]))
        break;
    if(!request_opts[i] ||
       (!(allowed & OPT_BODY) && !strncmp(k, "body", 4)) ||
       (!(allowed & OPT_OUTPUT) && !strcmp(k, "output")) ||
       (!(allowed & OPT_SINK) && !strcmp(k, "sink")) ||
       (!(allowed & OPT_PROGRESS) && !strcmp(k, "progress")) ||
       (!(allowed & OPT_RESUME) && !strcmp(k, "resume")))
      luaL_error(L, "http: unknown option '%s'", k);
  }
}

static int optfunction(lua_State *L, int idx, const char *field)
{
  int t = lua_getfield(L, idx, field);

  if(t == LUA_TNIL) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if(t != LUA_TFUNCTION)
    luaL_error(L, "option '%s': function expected, got %s", field,
               luaL_typename(L, -1));
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static char *xstrdup(lua_State *L, const char *s)
{
  char *d = s ? strdup(s) : NULL;

  if(s && !d)
    luaL_error(L, "http: out of memory");
  return d;
}

/* Copy headers = {name = value} into x->hdrs and x->auth. */
static void parse_headers(lua_State *L, int idx, struct xfer *x)
{
  size_t n = 0;

  if(lua_getfield(L, idx, "headers") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  luaL_argexpected(L, lua_istable(L, -1), idx, "table in option 'headers'");
  lua_pushnil(L);
  while(lua_next(L, -2))
    n++, lua_pop(L, 1);
  x->hdrs = calloc(n ? n : 1, sizeof(char *));
  if(!x->hdrs)
    luaL_error(L, "http: out of memory");
  lua_pushnil(L);
  while(lua_next(L, -2)) {
    const char *k, *v;
    char *line;
    int r;

    if(lua_type(L, -2) != LUA_TSTRING ||
       (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
      luaL_error(L, "option 'headers': string names and values expected");
    k = lua_tostring(L, -2);
    v = lua_tostring(L, -1);
    if(!*k || strpbrk(k, ":; \t\r\n") || strpbrk(v, "\r\n"))
      luaL_error(L, "option 'headers': bad header '%s'", k);
    r = *v ? asprintf(&line, "%s: %s", k, v) : asprintf(&line, "%s;", k);
    if(r < 0)
      luaL_error(L, "http: out of memory");
    if(!strcasecmp(k, "authorization")) {
      free(x->auth);
      x->auth = line;
    }
    else
      x->hdrs[x->nhdrs++] = line;
    if(!strcasecmp(k, "expect"))
      x->has_expect = 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* resume = {tries, backoff, max_backoff, log} into x (misuse raises). */
static void parse_resume(lua_State *L, int idx, struct xfer *x)
{
  static const char *const keys[] = {
    "tries", "backoff", "max_backoff", "log", NULL
  };
  int t = lua_getfield(L, idx, "resume"), top = lua_gettop(L), i;

  if(t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return;
  }
  if(t != LUA_TTABLE)
    luaL_error(L, "option 'resume': table expected, got %s",
               luaL_typename(L, -1));
  lua_pushnil(L);
  while(lua_next(L, top)) {
    lua_pop(L, 1);
    for(i = 0; keys[i]; i++)
      if(lua_type(L, -1) == LUA_TSTRING &&
         !strcmp(lua_tostring(L, -1), keys[i]))
        break;
    if(!keys[i])
      luaL_error(L, "option 'resume': unknown field '%s'",
                 luaL_tolstring(L, -1, NULL));
  }
  x->resume_max = (int)clayer_optinteger(L, top, "tries", 3);
  x->backoff = clayer_optnumber(L, top, "backoff", 1);
  x->max_backoff = clayer_optnumber(L, top, "max_backoff", 60);
  if(x->resume_max < 0 || x->resume_max > 1000 || !(x->backoff >= 0) ||
     !(x->max_backoff >= 0))
    luaL_error(L, "option 'resume': tries must be 0 to 1000, backoff and "
               "max_backoff 0 or more");
  x->resume_log = xstrdup(L, clayer_optstring(L, top, "log", NULL));
  lua_pop(L, 1);
}

/*
 * Fill x from the options table at idx (misuse raises).  Returns 0, or
 * the number of values pushed for an environmental failure.
 */
static int parse_opts(lua_State *L, int idx, struct xfer *x, int allowed)
{
  const char *s, *body_file;
  size_t len;
  double t;
  int i;

  luaL_checktype(L, idx, LUA_TTABLE);
  check_keys(L, idx, allowed);
  s = clayer_optstring(L, idx, "url", NULL);
  luaL_argcheck(L, s != NULL, idx, "option 'url' is required");
  x->url0 = xstrdup(L, s);
  x->url = xstrdup(L, s);
  s = clayer_optstring(L, idx, "method", "GET");
  for(i = 0; methods[i] && strcmp(s, methods[i]); i++)
    ;
  if(!methods[i])
    luaL_error(L, "option 'method': unknown method '%s'", s);
  strcpy(x->method, s);
  parse_headers(L, idx, x);
  x->send_auth = x->auth != NULL;
  x->follow = clayer_optboolean(L, idx, "follow", 1);
  t = clayer_optnumber(L, idx, "connect_timeout", 30);
  x->connect_ms = t > 0 ? (long)(t * 1000) : 0;
  t = clayer_optnumber(L, idx, "idle_timeout", 60);
  x->idle_s = t > 0 ? (long)(t + 0.999) : 0;
  t = clayer_optnumber(L, idx, "timeout", 0);
  x->deadline = t > 0 ? now_s() + t : 0;
  x->resume_from = clayer_optinteger(L, idx, "resume_from", 0);
  luaL_argcheck(L, x->resume_from >= 0, idx, "option 'resume_from' < 0");
  parse_resume(L, idx, x);
  s = getenv("CLAYER_CA_BUNDLE");
  s = clayer_optstring(L, idx, "cacert", s && *s ? s : NULL);
  x->cacert = xstrdup(L, s);
  x->output = xstrdup(L, clayer_optstring(L, idx, "output", NULL));
  x->sink_ref = optfunction(L, idx, "sink");
  x->progress_ref = optfunction(L, idx, "progress");
  x->verbose_ref = optfunction(L, idx, "verbose");
  if(x->output && x->sink_ref != LUA_NOREF)
    luaL_error(L, "http: options 'output' and 'sink' exclude each other");
  s = NULL;
  len = 0;
  if(lua_getfield(L, idx, "body") != LUA_TNIL) {
    if(lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "option 'body': string expected, got %s",
                 luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
  }
  body_file = clayer_optstring(L, idx, "body_file", NULL);
  if(s && body_file)
    luaL_error(L, "http: options 'body' and 'body_file' exclude each other");
  if(s) {
    x->body = malloc(len + 1);
    if(!x->body)
      luaL_error(L, "http: out of memory");
    memcpy(x->body, s, len + 1);
    x->body_len = len;
  }
  lua_pop(L, 1);
  if(body_file) {
    x->in = fopen(body_file, "rbe");
    if(!x->in || fseeko(x->in, 0, SEEK_END) ||
       (x->in_size = ftello(x->in)) < 0) {
      int err = errno;

      lua_pushfstring(L, "http: %s", body_file);
      return clayer_errno(L, lua_tostring(L, -1), err);
    }
  }
  x->easy = curl_easy_init();
  if(!x->easy)
    luaL_error(L, "http: cannot create a curl handle");
  return 0;
}


/* ---- handles ---------------------------------------------------------- */

/* Free everything x holds; joins its thread first.  L may be NULL. */
static void xfer_free(lua_State *L, struct xfer *x)
{
  size_t i;

  if(!x)
    return;
  if(x->started && !x->joined) {
    atomic_store(&x->cancel, 1);
    curl_multi_wakeup(x->multi);
    pthread_join(x->tid, NULL);
  }
  if(x->multi) {
    if(x->easy)
      curl_multi_remove_handle(x->multi, x->easy);
    curl_multi_cleanup(x->multi);
  }
  if(x->easy)
    curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->slist);
  if(x->in)
    fclose(x->in);
  if(x->out_fd >= 0)
    close(x->out_fd);
  for(i = 0; i < x->nhdrs; i++)
    free(x->hdrs[i]);
  free(x->hdrs);
  free(x->auth);
  free(x->url0);
  free(x->url);
  free(x->body);
  free(x->output);
  free(x->cacert);
  free(x->msg);
  free(x->eff_url);
  free(x->resume_log);
  free(x->first_hdrs.data);
  free(x->resp_hdrs.data);
  free(x->data.data);
  free(x->lines.data);
  if(L) {
    luaL_unref(L, LUA_REGISTRYINDEX, x->sink_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->progress_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->verbose_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->err_ref);
  }
  free(x);
}

static struct xfer *xfer_new(lua_State *L, enum mode mode)
{
  struct xfer *x = calloc(1, sizeof(*x));

  if(!x)
    luaL_error(L, "http: out of memory");
  x->mode = mode;
  x->out_fd = -1;
  x->total = -1;
  x->sink_ref = x->progress_ref = x->verbose_ref = x->err_ref = LUA_NOREF;
  atomic_init(&x->cancel, 0);
  atomic_init(&x->dlnow, 0);
  atomic_init(&x->dltotal, 0);
  return x;
}

/* The answer a caller sees: after a resume, still the first one. */
static long answer_status(struct xfer *x)
{
  return x->resumes > 0 ? x->first_status : x->status;
}

static void push_headers(lua_State *L, struct xfer *x)
{
  const struct buf *b = x->resumes > 0 ? &x->first_hdrs : &x->resp_hdrs;
  size_t off = 0;

  lua_newtable(L);
  while(off < b->len) {
    const char *name = b->data + off;
    const char *value = name + strlen(name) + 1;

    off = (size_t)(value - b->data) + strlen(value) + 1;
    if(lua_getfield(L, -1, name) == LUA_TSTRING)
      lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), value);
    else
      lua_pushstring(L, value);
    lua_setfield(L, -3, name);
    lua_pop(L, 1);
  }
}

/*
 * The outcome of a finished transfer: its result table, or nil, err,
 * code.  A callback's error is raised here, after h's transfer is freed.
 */
static int push_result(lua_State *L, struct handle *h)
{
  struct xfer *x = h->x;

  if(x->lua_err) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->err_ref);
    h->x = NULL;
    xfer_free(L, x);
    return lua_error(L);
  }
  if(x->failed)
    return clayer_fail(L, x->code, "%s", x->msg ? x->msg : "http: failed");
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, answer_status(x));
  lua_setfield(L, -2, "status");
  push_headers(L, x);
  lua_setfield(L, -2, "headers");
  if(x->mode == MODE_REQUEST && !x->output && x->sink_ref == LUA_NOREF) {
    lua_pushlstring(L, x->data.data, x->data.len);
    lua_setfield(L, -2, "body");
  }
  lua_pushstring(L, x->eff_url);
  lua_setfield(L, -2, "url");
  return 1;
}

static struct handle *check_handle(lua_State *L, const char *mt)
{
  struct handle *h = luaL_checkudata(L, 1, mt);

  if(!h->x)
    luaL_error(L, "attempt to use a closed %s", mt);
  return h;
}

static struct stream *check_stream(lua_State *L)
{
  struct stream *s = luaL_checkudata(L, 1, CLAYER_HTTP_STREAM);

  if(!s->x)
    luaL_error(L, "attempt to use a closed %s", CLAYER_HTTP_STREAM);
  return s;
}

/* Shared by close, __close and __gc of requests and transfers. */
static int handle_release(lua_State *L)
{
  struct handle *h = lua_touserdata(L, 1);

  if(h && h->x) {
    struct xfer *x = h->x;

    h->x = NULL;
    xfer_free(L, x);
  }
  return 0;
}

static struct handle *push_handle(lua_State *L, const char *mt)
{
  struct handle *h = lua_newuserdatauv(L, sizeof(*h), 0);

  h->x = NULL;
  luaL_setmetatable(L, mt);
  return h;
}


/* ---- the Lua API ------------------------------------------------------ */

/*
 * http.request(opts) → {status, headers, body, url} or nil, err, code.
 * The transfer lives in a temporary userdata so that any error frees it.
 */
static int http_request(lua_State *L)
{
  struct handle *h = push_handle(L, REQUEST_MT);
  int n;

  h->x = xfer_new(L, MODE_REQUEST);
  n = parse_opts(L, 1, h->x, OPT_BODY | OPT_OUTPUT | OPT_SINK |
                 OPT_PROGRESS);
  if(n)
    return n;
  h->x->L = L;
  run_easy(h->x);
  h->x->L = NULL;
  n = push_result(L, h);
  xfer_free(L, h->x);                   /* the results are copies */
  h->x = NULL;
  return n;
}

/*
 * http.start(opts) → a clayer.http.transfer running on its own thread, or
 * nil, err, code.  The thread owns nothing Lua: verbose lines wait for
 * t:wait(), and neither sink nor progress is accepted.
 */
static int http_start(lua_State *L)
{
  struct handle *h;
  struct xfer *x;
  int n, err;

  luaL_checktype(L, 1, LUA_TTABLE);
  h = push_handle(L, TRANSFER_MT);
  x = h->x = xfer_new(L, MODE_THREAD);
  n = parse_opts(L, 1, x, OPT_BODY | OPT_OUTPUT | OPT_RESUME);
  if(n)
    return n;
  if(!x->output)
    luaL_error(L, "http.start: option 'output' is required");
  x->multi = curl_multi_init();
  if(!x->multi)
    luaL_error(L, "http: cannot create a curl multi handle");
  if(!setup_hop(x) && curl_multi_add_handle(x->multi, x->easy))
    fail(x, "other", "cannot start the transfer");
  err = pthread_create(&x->tid, NULL, thread_main, x);
  if(err)
    return clayer_errno(L, "http: pthread_create", err);
  x->started = 1;
  return 1;
}

/* t:wait() → what http.request would have returned (body excepted). */
static int transfer_wait(lua_State *L)
{
  struct handle *h = check_handle(L, TRANSFER_MT);

  if(!h->x->joined) {
    pthread_join(h->x->tid, NULL);
    h->x->joined = 1;
  }
  flush_lines(L, h->x);
  return push_result(L, h);
}

/* t:progress() → bytes received so far, bytes expected (0: unknown). */
static int transfer_progress(lua_State *L)
{
  struct handle *h = check_handle(L, TRANSFER_MT);

  lua_pushinteger(L, atomic_load(&h->x->dlnow));
  lua_pushinteger(L, atomic_load(&h->x->dltotal));
  return 2;
}

/* http.open(opts) → a clayer.http.stream; nothing is sent before read. */
static int http_open(lua_State *L)
{
  struct stream *s;
  struct xfer *x;
  int n;

  luaL_checktype(L, 1, LUA_TTABLE);
  s = lua_newuserdatauv(L, sizeof(*s), 0);
  s->src.read = source_read;
  s->src.error = source_error;
  s->x = NULL;
  luaL_setmetatable(L, CLAYER_HTTP_STREAM);
  x = s->x = xfer_new(L, MODE_STREAM);
  n = parse_opts(L, 1, x, OPT_PROGRESS | OPT_RESUME);
  if(n)
    return n;
  x->multi = curl_multi_init();
  if(!x->multi)
    luaL_error(L, "http: cannot create a curl multi handle");
  if(setup_hop(x) || curl_multi_add_handle(x->multi, x->easy))
    fail(x, "other", "cannot start the transfer");
  return 1;
}

/*
 * s:read() → the next chunk (a string), nil at the end, or nil, err,
 * code.  Callbacks run here; an error in one is raised.
 */
static int stream_read(lua_State *L)
{
  struct stream *s = check_stream(L);
  struct xfer *x = s->x;
  const void *p;
  ssize_t n;

  flush_lines(L, x);
  x->L = L;
  n = pull(x, &p);
  x->L = NULL;
  if(x->lua_err) {
    x->lua_err = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->err_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->err_ref);
    x->err_ref = LUA_NOREF;
    return lua_error(L);
  }
  if(n > 0) {
    lua_pushlstring(L, p, (size_t)n);
    return 1;
  }
  if(n == 0) {
    lua_pushnil(L);
    return 1;
  }
  return clayer_fail(L, x->code, "%s", x->msg ? x->msg : "http: failed");
}

/* s:status() → the final status, or nil before the headers are in. */
static int stream_status(lua_State *L)
{
  struct stream *s = check_stream(L);

  if(s->x->resumes > 0)
    lua_pushinteger(L, answer_status(s->x));
  else if(!s->x->hdr_done || s->x->redirecting)
    lua_pushnil(L);
  else
    lua_pushinteger(L, s->x->status);
  return 1;
}

/* s:headers() → {lowercased name → value}, or nil before they are in. */
static int stream_headers(lua_State *L)
{
  struct stream *s = check_stream(L);

  if(s->x->resumes == 0 && (!s->x->hdr_done || s->x->redirecting))
    lua_pushnil(L);
  else
    push_headers(L, s->x);
  return 1;
}

static int stream_release(lua_State *L)
{
  struct stream *s = luaL_checkudata(L, 1, CLAYER_HTTP_STREAM);

  if(s->x) {
    struct xfer *x = s->x;

    s->x = NULL;
    xfer_free(L, x);
  }
  return 0;
}

/* http.escape(s) → s percent-encoded (all but A-Z a-z 0-9 - . _ ~). */
static int http_escape(lua_State *L)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t len, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1,
                                                                    &len);
  luaL_Buffer b;

  luaL_buffinit(L, &b);
  for(i = 0; i < len; i++) {
    unsigned char c = s[i];

    if((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
       c == '~')
      luaL_addchar(&b, (char)c);
    else {
      luaL_addchar(&b, '%');
      luaL_addchar(&b, hex[c >> 4]);
      luaL_addchar(&b, hex[c & 15]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}


static const luaL_Reg http_funcs[] = {
  {"request", http_request},
  {"open", http_open},
  {"start", http_start},
  {"escape", http_escape},
  {NULL, NULL}
};

static const luaL_Reg handle_meta[] = {
  {"__gc", handle_release},
  {"__close", handle_release},
  {NULL, NULL}
};

static const luaL_Reg stream_meta[] = {
  {"__gc", stream_release},
  {"__close", stream_release},
  {NULL, NULL}
};

static const luaL_Reg transfer_methods[] = {
  {"wait", transfer_wait},
  {"progress", transfer_progress},
  {"close", handle_release},
  {NULL, NULL}
};

static const luaL_Reg stream_methods[] = {
  {"read", stream_read},
  {"status", stream_status},
  {"headers", stream_headers},
  {"close", stream_release},
  {NULL, NULL}
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *meta,
                      const luaL_Reg *methods)
{
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  if(methods) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

int luaopen_clayer_http(lua_State *L)
{
  static int curl_ready;

  if(!curl_ready) {
    if(curl_global_init(CURL_GLOBAL_DEFAULT))
      return luaL_error(L, "http: curl_global_init failed");
    curl_ready = 1;
  }
  new_class(L, REQUEST_MT, handle_meta, NULL);
  new_class(L, TRANSFER_MT, handle_meta, transfer_methods);
  new_class(L, CLAYER_HTTP_STREAM, stream_meta, stream_methods);
  luaL_newlib(L, http_funcs);
  return 1;
}
