/*
 * lading's optional binding to Intel ISA-L's igzip deflate, for AdaptiveGzip
 * (src/compress/adaptive-gzip.ts, engine 'isal').
 *
 * Why a binding of our own: on a layer of real files (binaries, libraries, text) Node's zlib
 * deflates at ~60 MiB/s per core at its fastest levels, and no npm package binds a faster
 * deflate that can do what a parallel gzip needs (a preset dictionary per block, a sync
 * flush that leaves the block non-final and byte-aligned). igzip does both, at ~400 MiB/s
 * per core at its level 3 with a ratio between zlib's levels 1 and 2 (measured on the bench's
 * real-files layer). The library is the system's (libisal, from the OS packages); this file
 * only adapts it to Node-API, so one build serves every Node.js version.
 *
 * One call, `deflate(block, dictionary, level)`, compresses a whole block on the libuv thread
 * pool and resolves to { data, crc }: the block as raw deflate, primed with the dictionary,
 * ended by a sync flush, and the block's CRC-32 (gzip's), so the main thread neither deflates
 * nor checksums.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

/* On a pool thread: no JavaScript here. */
static void execute(napi_env env, void *data) {
  (void)env;
  Job *j = (Job *)data;
  j->crc = crc32_gzip_refl(0, j->in, j->in_len);
  /* Deflate's worst case is a few bytes per 16 KiB over the input; this bound is generous. */
  size_t cap = j->in_len + (j->in_len >> 10) + 1024;
  size_t lb = level_buf_size(j->level);
  struct isal_zstream *s = malloc(sizeof *s);
  uint8_t *level_buf = lb ? malloc(lb) : NULL;
  j->out = malloc(cap);
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
  free(level_buf);
  free(s);
}

static void complete(napi_env env, napi_status st, void *data) {
  Job *j = (Job *)data;
  napi_value result = NULL;
  if (st == napi_ok && j->status == 0) {
    /* A copy into a Buffer V8 accounts for (~40 ms over a 200 MB layer), then the malloc'd
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
  free(j->out);
  if (result) {
    napi_resolve_deferred(env, j->deferred, result);
  } else {
    char text[96];
    if (st != napi_ok) snprintf(text, sizeof text, "igzip deflate: cancelled (%d)", (int)st);
    else if (j->status == ERR_NOMEM) snprintf(text, sizeof text, "igzip deflate: out of memory");
    else if (j->status == ERR_LEFTOVER) snprintf(text, sizeof text, "igzip deflate: block not consumed in one call");
    else snprintf(text, sizeof text, "igzip deflate failed with status %d", j->status);
    napi_value msg, code, err;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "ISAL_DEFLATE", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
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
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "lading:igzip-deflate", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "deflate", NAPI_AUTO_LENGTH, Deflate, NULL, &fn);
  napi_set_named_property(env, exports, "deflate", fn);
  return exports;
}
