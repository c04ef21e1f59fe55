// The ablation scoring workers' hot loops in native code (node-module.cc makes them, with
// text-tower.cc's text tower, a Node-API module), where npm run build compiled it
// (scripts/build-native.mjs) and the CPU has AVX2 and FMA (`simd`; callers fall back to
// onnxruntime and WebAssembly elsewhere). Node-API only, so one build serves every Node version.
// The kernels are compiled for AVX2 (+ FMA) by target attributes, so loading the module is safe
// on any x86-64. Hand-written because no library does these: a GEMM fused with its reduction,
// and dot products whose every rounding must be JavaScript's.
//
// atdSums (extension/engine/analysis/atd-native.ts): for k variants' (Gno - G) class rows and a
// worker's images, per variant and image the sums over classes of p sigmoid(d) and p sigmoid(-d),
// where -d = SCALE (Gno - G) . x. onnxruntime's graph for the same (atd-graph.ts) writes the GEMM's
// [k C, R] output and then makes seven passes over it (Clip, Exp, Add, Div, Mul, two ReduceSum);
// here each 6-class x 16-image block of the GEMM (micro-kernel.h, the text tower's too) is reduced
// to the sums while it is still in L1, classes in order, with Cephes' expf (simd-math.h, ~1e-7
// relative, as onnxruntime's). It agrees with the graph to ~3e-7 relative and with float64 to the
// ~1e-5 of any float32 GEMM. On the 2-core AVX2 machine, 16 variants x 5,000 images x 100 classes:
// 0.77-0.88 of the graph's time with 4-class blocks in registers, alternating runs; the six-row
// micro-kernel (twelve accumulators where four rows had eight, too few to hide the FMA latency)
// took another ~13% off and gives the same bits (bench/README.md, Ablation).
//
// sortScores (score-sort.ts): the metrics' ascending sort of a score set, that module's radix
// sort on 32-bit keys in C++; being a sort, its output is the JavaScript sorter's to the bit.
// metricsOfSorted (variant-math.ts): metrics.ts detectionMetricsOfSorted, operation for operation.
//
// dots (margins-wasm.ts, the exact CTW margins and yes logits): the WebAssembly kernel's contract,
// four image rows against four variants' float64 features, each lane one dot product summed in
// index order from +0 with a separate multiply and add (no fused multiply-add: the build passes
// -ffp-contract=off and this kernel's target has no FMA), so its bits are JavaScript's
// `s += x[t] * g[t]`, four lanes wide instead of WebAssembly's two.
#include "ablation-kernels.h"
#include "micro-kernel.h"
#include "simd-math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef CLIPN_HAVE_X86
#include <immintrin.h>
#endif

namespace clipn {

#ifdef CLIPN_HAVE_X86
namespace {

/** 20 panels: 320 images, as onnxruntime's graph tiles them (atd-graph.ts). */
constexpr int PANELS_PER_CHUNK = 20;

// One image lane's terms for one class: e = exp(min(scale * acc, hi)), y = p / (1 + e); yes += y,
// no += y e.
__attribute__((target("avx2,fma"))) inline void addTerms(__m256 acc, const float* p, __m256 scale, __m256 hi, __m256& yes, __m256& no) {
  const __m256 e = exp256(_mm256_min_ps(_mm256_mul_ps(acc, scale), hi));
  const __m256 y = _mm256_div_ps(_mm256_loadu_ps(p), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  yes = _mm256_add_ps(yes, y);
  no = _mm256_fmadd_ps(y, e, no);
}

}  // namespace

/**
 * a: [k][c4][d] class rows (c4 a multiple of 4; padded rows are zero), panels: [np][d][16] the
 * images 16 at a time (padded images zero), p: [c4][np * 16] off-j* softmax (zero at j*, on
 * padded classes and images), out: [2k][rows] yes sums then no sums.
 */
__attribute__((target("avx2,fma"))) void atdSums(const float* a, int k, int c4, int d, const float* panels, int np, int rows,
                                               const float* p, float scale, float hi, float* out) {
  const __m256 vs = _mm256_set1_ps(scale), vhi = _mm256_set1_ps(hi);
  const int stride = np * 16;
  // Images in chunks of PANELS_PER_CHUNK panels, every variant over one chunk before the next: a
  // chunk's panels and softmax (~230 kB at 100 classes) stay in L2 while the variants' class rows
  // pass through. Over all 5,000 images at once (each variant streaming ~4.5 MB of them) it ran
  // 0.92-1.04 of the graph's time.
  thread_local std::vector<float> last;
  const int full = c4 - c4 % MR;  // classes in whole six-row blocks; the rest through a zero-padded block
  for (int chunk = 0; chunk < np; chunk += PANELS_PER_CHUNK) {
    const int chunkEnd = chunk + PANELS_PER_CHUNK < np ? chunk + PANELS_PER_CHUNK : np;
    for (int v = 0; v < k; v++) {
      const float* av = a + static_cast<size_t>(v) * c4 * d;
      if (full < c4) {
        last.assign(static_cast<size_t>(MR) * d, 0.0f);
        std::memcpy(last.data(), av + static_cast<size_t>(full) * d, sizeof(float) * (c4 - full) * d);
      }
      float* yesOut = out + static_cast<size_t>(v) * rows;
      float* noOut = out + static_cast<size_t>(k + v) * rows;
      for (int pn = chunk; pn < chunkEnd; pn++) {
        const float* b = panels + static_cast<size_t>(pn) * d * 16;
        __m256 y0 = _mm256_setzero_ps(), y1 = y0, n0 = y0, n1 = y0;
        alignas(32) float tile[MR][NR];
        for (int c = 0; c < c4; c += MR) {
          microKernel(c < full ? av + static_cast<size_t>(c) * d : last.data(), d, b, d, tile);
          // Classes in order into each image lane's sums, as the four-class kernel before it did.
          const float* pc = p + static_cast<size_t>(c) * stride + pn * 16;
          for (int r = 0; r < MR && c + r < c4; r++) {
            addTerms(_mm256_load_ps(tile[r]), pc + static_cast<size_t>(r) * stride, vs, vhi, y0, n0);
            addTerms(_mm256_load_ps(tile[r] + 8), pc + static_cast<size_t>(r) * stride + 8, vs, vhi, y1, n1);
          }
        }
        alignas(32) float lanes[2][16];
        _mm256_store_ps(lanes[0], y0);
        _mm256_store_ps(lanes[0] + 8, y1);
        _mm256_store_ps(lanes[1], n0);
        _mm256_store_ps(lanes[1] + 8, n1);
        const int count = rows - pn * 16 < 16 ? rows - pn * 16 : 16;
        std::memcpy(yesOut + pn * 16, lanes[0], sizeof(float) * count);
        std::memcpy(noOut + pn * 16, lanes[1], sizeof(float) * count);
      }
    }
  }
}

/**
 * The WebAssembly kernel's dots at byte offsets x, g, out of one buffer: for q < quads, rows
 * 4q..4q+3 of x ([rows][d] float64) against g ([d][4] float64) into out[16q + 4r + u].
 */
__attribute__((target("avx2"))) void dots(const double* x, const double* g, double* out, int quads, int d) {
  for (int q = 0; q < quads; q++, x += 4 * static_cast<size_t>(d), out += 16) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int t = 0; t < d; t++) {
      const __m256d gt = _mm256_loadu_pd(g + 4 * t);
      a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_broadcast_sd(x + t), gt));
      a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_broadcast_sd(x + d + t), gt));
      a2 = _mm256_add_pd(a2, _mm256_mul_pd(_mm256_broadcast_sd(x + 2 * d + t), gt));
      a3 = _mm256_add_pd(a3, _mm256_mul_pd(_mm256_broadcast_sd(x + 3 * d + t), gt));
    }
    _mm256_storeu_pd(out, a0);
    _mm256_storeu_pd(out + 4, a1);
    _mm256_storeu_pd(out + 8, a2);
    _mm256_storeu_pd(out + 12, a3);
  }
}
#endif

/**
 * out = src sorted ascending, -0 as +0; returns the index of the first non-finite score, or -1.
 * score-sort.ts's algorithm: scores in [0, 1] keyed by 32 bits that keep their digits where they
 * crowd (the float32 of x up to 0.5, of 1 - x above, reversed), an LSD radix sort of the keys in
 * three 11-bit digits (a digit every key shares skipped), then an insertion pass by the doubles
 * inside the ties that the keys leave; std::sort where a score lies outside [0, 1] or the
 * insertion pass runs past 4 moves a score. Whoever sorts, the output is the same.
 */
int64_t sortScores(const double* src, size_t n, double* out) {
  thread_local std::vector<double> valuesA, valuesB;
  thread_local std::vector<uint32_t> keysA, keysB;
  if (valuesA.size() < n) valuesA.resize(n), valuesB.resize(n), keysA.resize(n), keysB.resize(n);
  constexpr int BITS = 11, BUCKETS = 1 << BITS, MASK = BUCKETS - 1;
  size_t counts[3][BUCKETS] = {};
  bool inUnit = true;
  for (size_t i = 0; i < n; i++) {
    const double v = src[i];
    if (!std::isfinite(v)) return static_cast<int64_t>(i);
    const double u = v == 0 ? 0.0 : v;
    valuesA[i] = u;
    if (!(u >= 0 && u <= 1)) inUnit = false;
  }
  double* vs = valuesA.data();
  if (inUnit) {
    for (size_t i = 0; i < n; i++) {
      const float projected = static_cast<float>(vs[i] <= 0.5 ? vs[i] : 1 - vs[i]);
      uint32_t bits;
      std::memcpy(&bits, &projected, sizeof bits);
      const uint32_t key = vs[i] <= 0.5 ? bits : 0xffffffffu - bits;
      keysA[i] = key;
      counts[0][key & MASK]++;
      counts[1][(key >> BITS) & MASK]++;
      counts[2][key >> (2 * BITS)]++;
    }
    uint32_t *kFrom = keysA.data(), *kTo = keysB.data();
    double *vFrom = valuesA.data(), *vTo = valuesB.data();
    for (int p = 0; p < 3; p++) {
      size_t* c = counts[p];
      const int shift = p * BITS;
      if (n == 0 || c[(kFrom[0] >> shift) & MASK] == n) continue;
      size_t sum = 0;
      for (int b = 0; b < BUCKETS; b++) {
        const size_t k = c[b];
        c[b] = sum;
        sum += k;
      }
      for (size_t i = 0; i < n; i++) {
        const size_t at = c[(kFrom[i] >> shift) & MASK]++;
        kTo[at] = kFrom[i];
        vTo[at] = vFrom[i];
      }
      std::swap(kFrom, kTo);
      std::swap(vFrom, vTo);
    }
    vs = vFrom;
    // The insertion pass, with the JavaScript sorter's budget.
    int64_t budget = 4 * static_cast<int64_t>(n);
    for (size_t i = 1; i < n && budget >= 0; i++) {
      const double v = vs[i];
      size_t j = i;
      while (j > 0 && vs[j - 1] > v) {
        vs[j] = vs[j - 1];
        j--;
      }
      vs[j] = v;
      budget -= static_cast<int64_t>(i - j);
    }
    std::memcpy(out, vs, n * sizeof(double));
    if (budget >= 0) return -1;
  } else {
    std::memcpy(out, vs, n * sizeof(double));
  }
  std::sort(out, out + n);
  return -1;
}

/**
 * metrics.ts detectionMetricsOfSorted on ascending, finite, non-empty score sets, the same double
 * operations in the same order (the build allows no fused multiply-add), so the same bits:
 * out = {AUROC, FPR95 (interpolated), AUPR-In, AUPR-Out}. outTp / outFp: nOod doubles each of scratch.
 */
void metricsOfSorted(const double* id, size_t nIdCount, const double* ood, size_t nOodCount, double* outTp, double* outFp, double* out) {
  constexpr double TPR_LEVEL = 0.95;
  const double nId = static_cast<double>(nIdCount), nOod = static_cast<double>(nOodCount);
  size_t outGroups = 0;
  const double nearCrossing = 0.9 * nId;
  int64_t i = static_cast<int64_t>(nIdCount) - 1, o = static_cast<int64_t>(nOodCount) - 1;
  double tps = 0, fps = 0, twiceArea = 0, apIn = 0, prevRecall = 0, fpr95 = 0;
  bool haveFpr95 = false;
  while (i >= 0 || o >= 0) {
    const double t = i < 0 ? ood[o] : o < 0 ? id[i] : std::max(id[i], ood[o]);
    double ci = 0, co = 0;
    while (i >= 0 && id[i] == t) ci++, i--;
    while (o >= 0 && ood[o] == t) co++, o--;
    const double next = tps + ci;
    if (co > 0) {
      twiceArea += co * (tps + next);
      outTp[outGroups] = nOod - fps;
      outFp[outGroups] = nId - tps;
      outGroups++;
    }
    if (ci > 0 && tps < nId) {
      const double recall = next / nId;
      apIn += (recall - prevRecall) * (next / (next + fps + co));
      prevRecall = recall;
    }
    if (!haveFpr95 && next > nearCrossing) {
      const double tpr = next / nId;
      if (tpr > TPR_LEVEL) {
        const double prevTpr = tps / nId, prevFpr = fps / nOod, fpr = (fps + co) / nOod;
        fpr95 = prevTpr == TPR_LEVEL ? prevFpr : ((fpr - prevFpr) / (tpr - prevTpr)) * (TPR_LEVEL - prevTpr) + prevFpr;
        haveFpr95 = true;
      }
    }
    tps = next;
    fps += co;
  }
  double apOut = 0;
  prevRecall = 0;
  double tp = 0;
  for (int64_t g = static_cast<int64_t>(outGroups) - 1; g >= 0 && tp < nOod; g--) {
    tp = outTp[g];
    const double recall = tp / nOod;
    apOut += (recall - prevRecall) * (tp / (tp + outFp[g]));
    prevRecall = recall;
  }
  out[0] = twiceArea / (2 * nId * nOod);
  out[1] = fpr95;
  out[2] = apIn;
  out[3] = apOut;
}

bool cpuHasKernel() {
#ifdef CLIPN_HAVE_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace clipn
