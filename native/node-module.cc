// The Node-API face of ablation-kernels.cc and text-tower.cc: argument checks, then the kernels, with the names
// and signatures of extension/engine/analysis/native-kernels.ts. Every size is checked against
// the arrays' lengths before a kernel reads or writes them.
#include <node_api.h>

#include <cstdint>
#include <vector>

#include "ablation-kernels.h"

namespace {

using clipn::cpuHasKernel;

napi_value fail(napi_env env, const char* message) {
  napi_throw_error(env, nullptr, message);
  return nullptr;
}

/** The data of a typed array of element type T (napi type Kind), or false for anything else. */
template <typename T, napi_typedarray_type Kind>
bool typedArray(napi_env env, napi_value value, T** data, size_t* length) {
  bool is = false;
  if (napi_is_typedarray(env, value, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  void* raw = nullptr;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, nullptr, nullptr) != napi_ok || type != Kind) return false;
  *data = static_cast<T*>(raw);
  return true;
}
constexpr auto floats = typedArray<float, napi_float32_array>;
constexpr auto doubles = typedArray<double, napi_float64_array>;
constexpr auto int32s = typedArray<int32_t, napi_int32_array>;
constexpr auto int64s = typedArray<int64_t, napi_bigint64_array>;

bool isNull(napi_env env, napi_value value) {
  napi_valuetype type;
  return napi_typeof(env, value, &type) == napi_ok && type == napi_null;
}

bool integer(napi_env env, napi_value value, int* out) {
  int32_t v = 0;
  if (napi_get_value_int32(env, value, &v) != napi_ok || v < 0) return false;
  *out = v;
  return true;
}

bool number(napi_env env, napi_value value, float* out) {
  double v = 0;
  if (napi_get_value_double(env, value, &v) != napi_ok) return false;
  *out = static_cast<float>(v);
  return true;
}

// atdSums(a, k, c4, d, panels, np, rows, p, scale, hi, out): see atdSums(); sizes are checked here.
napi_value AtdSums(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 11) return fail(env, "atdSums: expected 11 arguments");
  float *a, *panels, *p, *out;
  size_t aLen, panelsLen, pLen, outLen;
  int k, c4, d, np, rows;
  float scale, hi;
  if (!floats(env, argv[0], &a, &aLen) || !floats(env, argv[4], &panels, &panelsLen) || !floats(env, argv[7], &p, &pLen) || !floats(env, argv[10], &out, &outLen)) {
    return fail(env, "atdSums: a, panels, p and out must be Float32Arrays");
  }
  if (!integer(env, argv[1], &k) || !integer(env, argv[2], &c4) || !integer(env, argv[3], &d) || !integer(env, argv[5], &np) || !integer(env, argv[6], &rows) ||
      !number(env, argv[8], &scale) || !number(env, argv[9], &hi)) {
    return fail(env, "atdSums: k, c4, d, np and rows must be non-negative integers, scale and hi numbers");
  }
  if (c4 % 4 != 0 || np != (rows + 15) / 16 || aLen != static_cast<size_t>(k) * c4 * d || panelsLen != static_cast<size_t>(np) * d * 16 ||
      pLen != static_cast<size_t>(c4) * np * 16 || outLen != static_cast<size_t>(2) * k * rows) {
    return fail(env, "atdSums: array sizes do not match k, c4, d, np (rows / 16, rounded up) and rows");
  }
#ifdef CLIPN_HAVE_X86
  if (!cpuHasKernel()) return fail(env, "atdSums: this CPU lacks AVX2/FMA (check simd first)");
  clipn::atdSums(a, k, c4, d, panels, np, rows, p, scale, hi, out);
  return nullptr;
#else
  return fail(env, "atdSums: built without the x86-64 kernel (check simd first)");
#endif
}

// dots(memory, x, g, out, quads, d): see dots(); offsets in bytes into the ArrayBuffer memory.
napi_value Dots(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 6) return fail(env, "dots: expected 6 arguments");
  bool is = false;
  void* raw = nullptr;
  size_t bytes = 0;
  if (napi_is_arraybuffer(env, argv[0], &is) != napi_ok || !is || napi_get_arraybuffer_info(env, argv[0], &raw, &bytes) != napi_ok) {
    return fail(env, "dots: memory must be an ArrayBuffer");
  }
  int x, g, out, quads, d;
  if (!integer(env, argv[1], &x) || !integer(env, argv[2], &g) || !integer(env, argv[3], &out) || !integer(env, argv[4], &quads) || !integer(env, argv[5], &d)) {
    return fail(env, "dots: offsets, quads and d must be non-negative integers");
  }
  const size_t xEnd = static_cast<size_t>(x) + static_cast<size_t>(quads) * 4 * d * 8;
  const size_t gEnd = static_cast<size_t>(g) + static_cast<size_t>(d) * 4 * 8;
  const size_t outEnd = static_cast<size_t>(out) + static_cast<size_t>(quads) * 16 * 8;
  if (x % 8 || g % 8 || out % 8 || xEnd > bytes || gEnd > bytes || outEnd > bytes) return fail(env, "dots: tables outside the memory or misaligned");
#ifdef CLIPN_HAVE_X86
  if (!cpuHasKernel()) return fail(env, "dots: this CPU lacks AVX2/FMA (check simd first)");
  char* base = static_cast<char*>(raw);
  clipn::dots(reinterpret_cast<const double*>(base + x), reinterpret_cast<const double*>(base + g), reinterpret_cast<double*>(base + out), quads, d);
  return nullptr;
#else
  return fail(env, "dots: built without the x86-64 kernel (check simd first)");
#endif
}

// sortScores(scores, out): see sortScores(); returns the first non-finite score's index or -1.
napi_value SortScores(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 2) return fail(env, "sortScores: expected 2 arguments");
  double *src, *out;
  size_t n, outLen;
  if (!doubles(env, argv[0], &src, &n) || !doubles(env, argv[1], &out, &outLen)) return fail(env, "sortScores: scores and out must be Float64Arrays");
  if (outLen != n) return fail(env, "sortScores: out must be as long as scores");
  napi_value result;
  napi_create_int64(env, clipn::sortScores(src, n, out), &result);
  return result;
}

// metricsOfSorted(id, ood, out): see metricsOfSorted(); out is a Float64Array of 4.
napi_value MetricsOfSorted(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 3) return fail(env, "metricsOfSorted: expected 3 arguments");
  double *id, *ood, *out;
  size_t nId, nOod, outLen;
  if (!doubles(env, argv[0], &id, &nId) || !doubles(env, argv[1], &ood, &nOod) || !doubles(env, argv[2], &out, &outLen)) {
    return fail(env, "metricsOfSorted: id, ood and out must be Float64Arrays");
  }
  if (nId == 0 || nOod == 0 || outLen != 4) return fail(env, "metricsOfSorted: id and ood must be non-empty, out 4 long");
  thread_local std::vector<double> outTp, outFp;
  if (outTp.size() < nOod) outTp.resize(nOod), outFp.resize(nOod);
  clipn::metricsOfSorted(id, nId, ood, nOod, outTp.data(), outFp.data(), out);
  return nullptr;
}


#ifdef CLIPN_HAVE_X86
// kvTowerCreate(config, weights): config Int32Array [layers, width, heads, hidden, vocab, context,
// prompts, embedDim, quickGelu]; weights as KvTower's constructor reads them. -> an external.
napi_value KvTowerCreate(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 2) return fail(env, "kvTowerCreate: expected 2 arguments");
  int32_t* c;
  float* w;
  size_t cLen, wLen;
  if (!int32s(env, argv[0], &c, &cLen) || cLen != 9 || !floats(env, argv[1], &w, &wLen)) return fail(env, "kvTowerCreate: config must be an Int32Array of 9, weights a Float32Array");
  const clipn::KvTowerConfig config{c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8] != 0};
  for (int i = 0; i < 8; i++) {
    if (c[i] <= 0) return fail(env, "kvTowerCreate: every size must be positive");
  }
  if (config.width % 16 || config.hidden % 16 || config.embedDim % 16 || config.width % config.heads || (config.width / config.heads) % 8) {
    return fail(env, "kvTowerCreate: width, hidden and embed dim must be multiples of 16, the head width a multiple of 8");
  }
  if (wLen != clipn::KvTower::weightCount(config)) return fail(env, "kvTowerCreate: the weights' length does not match the config");
  if (!cpuHasKernel()) return fail(env, "kvTowerCreate: this CPU lacks AVX2/FMA (check simd first)");
  auto* tower = new clipn::KvTower(config, w);
  napi_value out;
  napi_create_external(env, tower, [](napi_env, void* data, void*) { delete static_cast<clipn::KvTower*>(data); }, nullptr, &out);
  return out;
}

// kvTowerRun(tower, ids, batch, length, mix, pastKeys, pastValues, pasts, pastLength, pastIndex,
// embeds | null, presentKeys | null, presentValues | null): see KvTower::run.
napi_value KvTowerRun(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 13) return fail(env, "kvTowerRun: expected 13 arguments");
  void* raw = nullptr;
  napi_valuetype type;
  if (napi_typeof(env, argv[0], &type) != napi_ok || type != napi_external || napi_get_value_external(env, argv[0], &raw) != napi_ok) {
    return fail(env, "kvTowerRun: tower must be kvTowerCreate's result");
  }
  const auto* tower = static_cast<const clipn::KvTower*>(raw);
  const clipn::KvTowerConfig& c = tower->config();
  int64_t *ids, *pastIndex;
  float *mix, *pk, *pv, *embeds = nullptr, *presentK = nullptr, *presentV = nullptr;
  size_t idsLen, indexLen, mixLen, pkLen, pvLen, embedsLen = 0, presentKLen = 0, presentVLen = 0;
  int batch, length, pasts, pastLength;
  if (!int64s(env, argv[1], &ids, &idsLen) || !int64s(env, argv[9], &pastIndex, &indexLen)) return fail(env, "kvTowerRun: ids and pastIndex must be BigInt64Arrays");
  if (!floats(env, argv[4], &mix, &mixLen) || !floats(env, argv[5], &pk, &pkLen) || !floats(env, argv[6], &pv, &pvLen)) {
    return fail(env, "kvTowerRun: mix, pastKeys and pastValues must be Float32Arrays");
  }
  if (!integer(env, argv[2], &batch) || !integer(env, argv[3], &length) || !integer(env, argv[7], &pasts) || !integer(env, argv[8], &pastLength)) {
    return fail(env, "kvTowerRun: batch, length, pasts and pastLength must be non-negative integers");
  }
  if ((!isNull(env, argv[10]) && !floats(env, argv[10], &embeds, &embedsLen)) || (!isNull(env, argv[11]) && !floats(env, argv[11], &presentK, &presentKLen)) ||
      (!isNull(env, argv[12]) && !floats(env, argv[12], &presentV, &presentVLen)) || (presentK == nullptr) != (presentV == nullptr)) {
    return fail(env, "kvTowerRun: embeds and presents must be Float32Arrays or null (both presents or neither)");
  }
  const size_t d = c.width / c.heads, b = batch, s = length;
  const size_t past = static_cast<size_t>(c.layers) * pasts * c.heads * pastLength * d, present = c.layers * b * c.heads * s * d;
  if (length < 1 || pastLength + length > c.context || pasts < 1 || idsLen != b * s || indexLen != b || mixLen != b * c.prompts || pkLen != past || pvLen != past ||
      (embeds && embedsLen != b * c.embedDim) || (presentK && (presentKLen != present || presentVLen != present))) {
    return fail(env, "kvTowerRun: array sizes do not match batch, length, pasts, pastLength and the tower");
  }
  for (size_t i = 0; i < idsLen; i++) {
    if (ids[i] < 0 || ids[i] >= c.vocab) return fail(env, "kvTowerRun: a token id outside the vocabulary");
  }
  for (size_t i = 0; i < indexLen; i++) {
    if (pastIndex[i] < 0 || pastIndex[i] >= pasts) return fail(env, "kvTowerRun: a past index outside the pasts");
  }
  tower->run(ids, batch, length, mix, pk, pv, pasts, pastLength, pastIndex, embeds, presentK, presentV);
  return nullptr;
}
#endif

}  // namespace

NAPI_MODULE_INIT() {
  napi_value fn, simd;
  napi_create_function(env, "atdSums", NAPI_AUTO_LENGTH, AtdSums, nullptr, &fn);
  napi_set_named_property(env, exports, "atdSums", fn);
  napi_create_function(env, "dots", NAPI_AUTO_LENGTH, Dots, nullptr, &fn);
  napi_set_named_property(env, exports, "dots", fn);
  napi_create_function(env, "sortScores", NAPI_AUTO_LENGTH, SortScores, nullptr, &fn);
  napi_set_named_property(env, exports, "sortScores", fn);
  napi_create_function(env, "metricsOfSorted", NAPI_AUTO_LENGTH, MetricsOfSorted, nullptr, &fn);
  napi_set_named_property(env, exports, "metricsOfSorted", fn);
#ifdef CLIPN_HAVE_X86
  napi_create_function(env, "kvTowerCreate", NAPI_AUTO_LENGTH, KvTowerCreate, nullptr, &fn);
  napi_set_named_property(env, exports, "kvTowerCreate", fn);
  napi_create_function(env, "kvTowerRun", NAPI_AUTO_LENGTH, KvTowerRun, nullptr, &fn);
  napi_set_named_property(env, exports, "kvTowerRun", fn);
#endif
  napi_get_boolean(env, cpuHasKernel(), &simd);
  napi_set_named_property(env, exports, "simd", simd);
  return exports;
}
