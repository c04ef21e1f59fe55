// The Node-API face of ablation-kernels.cc: argument checks, then the kernels, with the names
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
  napi_get_boolean(env, cpuHasKernel(), &simd);
  napi_set_named_property(env, exports, "simd", simd);
  return exports;
}
