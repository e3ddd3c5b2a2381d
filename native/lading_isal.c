/*
 * lading's optional binding to Intel ISA-L's igzip deflate, for AdaptiveGzip
 * (src/compress/adaptive-gzip.ts, engine 'isal').
 *
 * Why a binding of our own: on a layer of real files (binaries, libraries, text) Node's zlib
 * deflates at ~60 MiB/s per core at its fastest levels, and no npm package binds a faster
 * deflate that can do what a parallel gzip needs (a preset dictionary per block, a sync
 * flush that leaves the block non-final and byte-aligned). igzip does both, at ~400 MiB/s
 * per core at its level 2 with a ratio close to zlib's level 1 (measured on the bench's
 * real-files layer). The library is the system's (libisal, from the OS packages); this file
 * only adapts it to Node-API, so one build serves every Node.js version.
 *
 * One call, `deflate(block, dictionary, level)`, compresses a whole block on the libuv thread
 * pool and resolves to { data, crc }: the block as raw deflate, primed with the dictionary,
 * ended by a sync flush, and the block's CRC-32 (gzip's), so the main thread neither deflates
 * nor checksums.
 *
 * With igzip's deflate five times cheaper than zlib's, a push's main thread became its
 * bottleneck, a third of it hashing (the layer's digest as read, the compressed digest as
 * sent). `hashCreate` / `hashUpdate` / `hashDigest` move that to the pool too: SHA-256 and
 * SHA-512 from the OpenSSL that Node.js itself carries (its exported EVP functions, looked up
 * at load time, so nothing is linked and no OpenSSL headers are needed; where they cannot be
 * found, `hashCreate` is absent and hashing stays on the main thread). Updates of one context
 * are serialized by the caller.
 */
#define _GNU_SOURCE /* sched_setscheduler's SCHED_BATCH */
#define NAPI_VERSION 8
#include <node_api.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <dlfcn.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  /* The input and the dictionary stay referenced (so not collected) until the work is done. */
  napi_ref input_ref;
  napi_ref dict_ref;
  uint8_t *in;
  size_t in_len;
  uint8_t *dict;
  size_t dict_len;
  uint32_t level;
  uint8_t *out;
  size_t out_cap;
  size_t out_len;
  uint32_t crc;
  /* 0, or what went wrong: an igzip status (< 0) or one of ours below. */
  int status;
} Job;

enum { ERR_NOMEM = 1, ERR_LEFTOVER = 2 };

static size_t level_buf_size(uint32_t level) {
  switch (level) {
  case 1: return ISAL_DEF_LVL1_DEFAULT;
  case 2: return ISAL_DEF_LVL2_DEFAULT;
  case 3: return ISAL_DEF_LVL3_DEFAULT;
  default: return 0;
  }
}

/*
 * A pool thread that runs lading's jobs becomes SCHED_BATCH (Linux; allowed without privilege,
 * same nice value, same share of the CPU): the kernel then treats it as the CPU-bound worker it
 * is and does not let it preempt the thread that woke it. Without this, each job handed to the
 * pool cost the event loop ~0.2 ms on two cores (the woken worker took its core): ~1 s of a
 * 3.4 s push in a main-thread profile, in the calls that queue work (deflate, hash, file
 * reads); with it, ~0.3 s. Once per thread, never undone: the pool's threads are workers
 * whatever job they run next.
 */
static __thread int batch_policy_set;
static void batch_policy(void) {
#ifdef __linux__
  if (batch_policy_set) return;
  batch_policy_set = 1;
  struct sched_param sp = {0};
  sched_setscheduler(0, SCHED_BATCH, &sp);
#endif
}

/*
 * The block's output and igzip's level buffer (~1.4 MiB a job) are mapped and unmapped per
 * job rather than malloc'd: glibc keeps freed blocks of that size in each pool thread's arena
 * (its mmap threshold rises after the first free), which held ~6 MiB of RSS for nothing; a
 * job's page faults cost ~0.1 ms against its ~2.5 ms of deflate.
 */
static void *map(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* On a pool thread: no JavaScript here. */
static void execute(napi_env env, void *data) {
  (void)env;
  batch_policy();
  Job *j = (Job *)data;
  j->crc = crc32_gzip_refl(0, j->in, j->in_len);
  /* Deflate's worst case is a few bytes per 16 KiB over the input; this bound is generous. */
  size_t cap = j->in_len + (j->in_len >> 10) + 1024;
  size_t lb = level_buf_size(j->level);
  struct isal_zstream *s = malloc(sizeof *s);
  uint8_t *level_buf = lb ? map(lb) : NULL;
  j->out = map(cap);
  j->out_cap = cap;
  if (!s || (lb && !level_buf) || !j->out) {
    j->status = ERR_NOMEM;
    goto done;
  }
  isal_deflate_init(s);
  s->level = j->level;
  s->level_buf = level_buf;
  s->level_buf_size = (uint32_t)lb;
  s->gzip_flag = IGZIP_DEFLATE;
  s->flush = SYNC_FLUSH;
  s->end_of_stream = 0;
  if (j->dict_len) {
    int r = isal_deflate_set_dict(s, j->dict, (uint32_t)j->dict_len);
    if (r != COMP_OK) {
      j->status = r;
      goto done;
    }
  }
  s->next_in = j->in;
  s->avail_in = (uint32_t)j->in_len;
  s->next_out = j->out;
  s->avail_out = (uint32_t)cap;
  int r = isal_deflate(s);
  if (r != COMP_OK) {
    j->status = r;
    goto done;
  }
  /* One call must take the whole block and flush it into the room given. */
  if (s->avail_in != 0 || s->avail_out == 0) {
    j->status = ERR_LEFTOVER;
    goto done;
  }
  j->out_len = s->total_out;
done:
  if (level_buf) munmap(level_buf, lb);
  free(s);
}

/* Queues `exec` on the pool, `done` after it on the main thread; the promise they settle. */
static napi_value queue_work(napi_env env, const char *name, napi_async_execute_callback exec,
                             napi_async_complete_callback done, void *data, napi_deferred *deferred,
                             napi_async_work *work) {
  napi_value promise, resource;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, NULL, resource, exec, done, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

/* Rejects with an Error whose `code` is `code`. */
static void reject(napi_env env, napi_deferred deferred, const char *code, const char *text) {
  napi_value msg, c, err;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, msg, &err);
  napi_reject_deferred(env, deferred, err);
}

static void complete(napi_env env, napi_status st, void *data) {
  Job *j = (Job *)data;
  napi_value result = NULL;
  if (st == napi_ok && j->status == 0) {
    /* A copy into a Buffer V8 accounts for (~40 ms over a 200 MB layer), then the mapped
     * output goes at once: memory held is what the stream holds, never what the GC has yet
     * to find. */
    napi_value buf, crc;
    if (napi_create_buffer_copy(env, j->out_len, j->out, NULL, &buf) == napi_ok &&
        napi_create_uint32(env, j->crc, &crc) == napi_ok && napi_create_object(env, &result) == napi_ok) {
      napi_set_named_property(env, result, "data", buf);
      napi_set_named_property(env, result, "crc", crc);
    } else {
      result = NULL;
    }
  }
  if (j->out) munmap(j->out, j->out_cap);
  if (result) {
    napi_resolve_deferred(env, j->deferred, result);
  } else {
    char text[96];
    if (st != napi_ok) snprintf(text, sizeof text, "igzip deflate: cancelled (%d)", (int)st);
    else if (j->status == ERR_NOMEM) snprintf(text, sizeof text, "igzip deflate: out of memory");
    else if (j->status == ERR_LEFTOVER) snprintf(text, sizeof text, "igzip deflate: block not consumed in one call");
    else snprintf(text, sizeof text, "igzip deflate failed with status %d", j->status);
    reject(env, j->deferred, "ISAL_DEFLATE", text);
  }
  napi_delete_reference(env, j->input_ref);
  if (j->dict_ref) napi_delete_reference(env, j->dict_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value type_error(napi_env env, const char *text) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", text);
  return NULL;
}

static int is_buffer(napi_env env, napi_value v) {
  bool b = false;
  return napi_is_buffer(env, v, &b) == napi_ok && b;
}

/* deflate(input: Buffer, dict: Buffer | null, level: 1 | 2 | 3): Promise<{ data: Buffer; crc: number }> */
static napi_value Deflate(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3)
    return type_error(env, "deflate(input, dictionary, level): three arguments");
  if (!is_buffer(env, argv[0])) return type_error(env, "deflate: input must be a Buffer");
  napi_valuetype dt;
  napi_typeof(env, argv[1], &dt);
  int has_dict = dt != napi_null && dt != napi_undefined;
  if (has_dict && !is_buffer(env, argv[1])) return type_error(env, "deflate: dictionary must be a Buffer or null");
  double lv;
  if (napi_get_value_double(env, argv[2], &lv) != napi_ok || !(lv == 1 || lv == 2 || lv == 3))
    return type_error(env, "deflate: level must be 1, 2 or 3");
  uint32_t level = (uint32_t)lv;

  void *p;
  size_t n;
  napi_get_buffer_info(env, argv[0], &p, &n);
  /* igzip counts in 32 bits; blocks are a few MiB at most. */
  if (n > (1u << 30)) return type_error(env, "deflate: input over 1 GiB");
  Job *j = calloc(1, sizeof(Job));
  if (!j) {
    napi_throw_error(env, "ISAL_DEFLATE", "igzip deflate: out of memory");
    return NULL;
  }
  j->in = p;
  j->in_len = n;
  j->level = level;
  napi_create_reference(env, argv[0], 1, &j->input_ref);
  if (has_dict) {
    napi_get_buffer_info(env, argv[1], &p, &n);
    j->dict = p;
    j->dict_len = n;
    napi_create_reference(env, argv[1], 1, &j->dict_ref);
  }
  return queue_work(env, "lading:igzip-deflate", execute, complete, j, &j->deferred, &j->work);
}

/* ---- hashing with Node's OpenSSL ---- */

typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
static struct {
  EVP_MD_CTX *(*ctx_new)(void);
  void (*ctx_free)(EVP_MD_CTX *);
  const EVP_MD *(*sha256)(void);
  const EVP_MD *(*sha512)(void);
  int (*init)(EVP_MD_CTX *, const EVP_MD *, void *);
  int (*update)(EVP_MD_CTX *, const void *, size_t);
  int (*final)(EVP_MD_CTX *, unsigned char *, unsigned int *);
} evp;

static int resolve_evp(void) {
  evp.ctx_new = (EVP_MD_CTX * (*)(void)) dlsym(RTLD_DEFAULT, "EVP_MD_CTX_new");
  evp.ctx_free = (void (*)(EVP_MD_CTX *))dlsym(RTLD_DEFAULT, "EVP_MD_CTX_free");
  evp.sha256 = (const EVP_MD *(*)(void))dlsym(RTLD_DEFAULT, "EVP_sha256");
  evp.sha512 = (const EVP_MD *(*)(void))dlsym(RTLD_DEFAULT, "EVP_sha512");
  evp.init = (int (*)(EVP_MD_CTX *, const EVP_MD *, void *))dlsym(RTLD_DEFAULT, "EVP_DigestInit_ex");
  evp.update = (int (*)(EVP_MD_CTX *, const void *, size_t))dlsym(RTLD_DEFAULT, "EVP_DigestUpdate");
  evp.final = (int (*)(EVP_MD_CTX *, unsigned char *, unsigned int *))dlsym(RTLD_DEFAULT, "EVP_DigestFinal_ex");
  return evp.ctx_new && evp.ctx_free && evp.sha256 && evp.sha512 && evp.init && evp.update && evp.final;
}

typedef struct {
  EVP_MD_CTX *ctx;
  /* An update is running on the pool: a second one, or the digest, would race it. */
  int busy;
  int finished;
} HashCtx;

static void hash_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  HashCtx *h = (HashCtx *)data;
  evp.ctx_free(h->ctx);
  free(h);
}

static HashCtx *hash_arg(napi_env env, napi_value v) {
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok)
    return NULL;
  return (HashCtx *)p;
}

/* A hash call's arguments, the first a context; NULL (a TypeError thrown) when they are not. */
static HashCtx *hash_call(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage,
                          const char *fn) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    type_error(env, usage);
    return NULL;
  }
  HashCtx *h = hash_arg(env, argv[0]);
  if (!h) {
    char text[64];
    snprintf(text, sizeof text, "%s: not a hash context", fn);
    type_error(env, text);
  }
  return h;
}

/* hashCreate('sha256' | 'sha512'): External */
static napi_value HashCreate(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char alg[8] = {0};
  size_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], alg, sizeof alg, &n) != napi_ok)
    return type_error(env, "hashCreate(algorithm): 'sha256' or 'sha512'");
  const EVP_MD *md = strcmp(alg, "sha256") == 0 ? evp.sha256() : strcmp(alg, "sha512") == 0 ? evp.sha512() : NULL;
  if (!md) return type_error(env, "hashCreate(algorithm): 'sha256' or 'sha512'");
  HashCtx *h = calloc(1, sizeof *h);
  if (h) h->ctx = evp.ctx_new();
  if (!h || !h->ctx || evp.init(h->ctx, md, NULL) != 1) {
    if (h && h->ctx) evp.ctx_free(h->ctx);
    free(h);
    napi_throw_error(env, "NATIVE_HASH", "hash context: out of memory");
    return NULL;
  }
  napi_value ext;
  napi_create_external(env, h, hash_finalize, NULL, &ext);
  return ext;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref ctx_ref;
  /* The array of Buffers (a fresh one per call, so it keeps exactly them alive). */
  napi_ref input_ref;
  HashCtx *h;
  uint32_t count;
  uint8_t **in;
  size_t *in_len;
  int ok;
} HashJob;

static void hash_execute(napi_env env, void *data) {
  (void)env;
  batch_policy();
  HashJob *j = (HashJob *)data;
  j->ok = 1;
  for (uint32_t i = 0; i < j->count && j->ok; i++) j->ok = evp.update(j->h->ctx, j->in[i], j->in_len[i]) == 1;
}

static void hash_complete(napi_env env, napi_status st, void *data) {
  HashJob *j = (HashJob *)data;
  j->h->busy = 0;
  if (st == napi_ok && j->ok) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, j->deferred, undef);
  } else {
    reject(env, j->deferred, "NATIVE_HASH", "hash update failed");
  }
  napi_delete_reference(env, j->input_ref);
  napi_delete_reference(env, j->ctx_ref);
  napi_delete_async_work(env, j->work);
  free(j->in);
  free(j->in_len);
  free(j);
}

/*
 * hashUpdate(ctx, data: Buffer[]): Promise<void>, on the pool; one at a time per context. An
 * array, so a caller whose chunks queued up while the pool was busy hashes them in one trip.
 */
static napi_value HashUpdate(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  HashCtx *h = hash_call(env, info, 2, argv, "hashUpdate(context, data): two arguments", "hashUpdate");
  if (!h) return NULL;
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[1], &count) != napi_ok)
    return type_error(env, "hashUpdate: data must be an array of Buffers");
  if (h->busy || h->finished) {
    napi_throw_error(env, "NATIVE_HASH", h->finished ? "hashUpdate after hashDigest" : "hashUpdate while another runs");
    return NULL;
  }
  HashJob *j = calloc(1, sizeof *j);
  if (j) {
    j->in = calloc(count ? count : 1, sizeof *j->in);
    j->in_len = calloc(count ? count : 1, sizeof *j->in_len);
  }
  if (!j || !j->in || !j->in_len) {
    if (j) {
      free(j->in);
      free(j->in_len);
    }
    free(j);
    napi_throw_error(env, "NATIVE_HASH", "hash update: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    void *p = NULL;
    size_t n = 0;
    if (napi_get_element(env, argv[1], i, &el) != napi_ok || !is_buffer(env, el) ||
        napi_get_buffer_info(env, el, &p, &n) != napi_ok) {
      free(j->in);
      free(j->in_len);
      free(j);
      return type_error(env, "hashUpdate: data must be an array of Buffers");
    }
    j->in[i] = p;
    j->in_len[i] = n;
  }
  j->count = count;
  j->h = h;
  h->busy = 1;
  napi_create_reference(env, argv[0], 1, &j->ctx_ref);
  napi_create_reference(env, argv[1], 1, &j->input_ref);
  return queue_work(env, "lading:hash-update", hash_execute, hash_complete, j, &j->deferred, &j->work);
}

/* hashDigest(ctx): Buffer, the digest; the context is spent. */
static napi_value HashDigest(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  HashCtx *h = hash_call(env, info, 1, argv, "hashDigest(context): one argument", "hashDigest");
  if (!h) return NULL;
  if (h->busy || h->finished) {
    napi_throw_error(env, "NATIVE_HASH", h->finished ? "hashDigest twice" : "hashDigest while an update runs");
    return NULL;
  }
  unsigned char md[64];
  unsigned int len = 0;
  h->finished = 1;
  if (evp.final(h->ctx, md, &len) != 1) {
    napi_throw_error(env, "NATIVE_HASH", "hash digest failed");
    return NULL;
  }
  napi_value out;
  napi_create_buffer_copy(env, len, md, NULL, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "deflate", NAPI_AUTO_LENGTH, Deflate, NULL, &fn);
  napi_set_named_property(env, exports, "deflate", fn);
  if (resolve_evp()) {
    napi_create_function(env, "hashCreate", NAPI_AUTO_LENGTH, HashCreate, NULL, &fn);
    napi_set_named_property(env, exports, "hashCreate", fn);
    napi_create_function(env, "hashUpdate", NAPI_AUTO_LENGTH, HashUpdate, NULL, &fn);
    napi_set_named_property(env, exports, "hashUpdate", fn);
    napi_create_function(env, "hashDigest", NAPI_AUTO_LENGTH, HashDigest, NULL, &fn);
    napi_set_named_property(env, exports, "hashDigest", fn);
  }
  return exports;
}
