// The "no" text tower after a shared past (the model's text_no_kv graph, models/FORMAT.md) in
// native code, for the ablation's text (extension/engine/native-kv-tower.ts). onnxruntime runs
// that graph as ~640 small ops: at the default model's width of 128 its GEMMs are only ~54% of the
// time, the rest being elementwise passes, attention's reshapes and per-op overhead
// (bench/README.md, Ablation). Here every text runs through the whole tower in one call, with the
// bias, GELU and residual applied to each 6 x 16 GEMM block as it leaves the micro-kernel, and
// texts in chunks of ~96 tokens so that a chunk's activations stay in L2. LayerNorm's epsilon is
// nn.LayerNorm's default, as the export leaves it; the engine's probe against onnxruntime
// (native-kv-tower.ts) would refuse a graph that differs.
//
// The arithmetic is the graph's, op for op where it decides the rounding (the query scaled after
// its bias, LayerNorm as the export writes it out, the two halves of attention summed apart), so
// the features agree with onnxruntime's to ~1e-7; each row is computed on its own (a row's
// accumulations never depend on the rows beside it), so a text's feature has the same bits in
// any batch, which the text memo relies on.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ablation-kernels.h"
#include "micro-kernel.h"
#include "simd-math.h"

#ifdef CLIPN_HAVE_X86
#include <immintrin.h>

namespace clipn {

/** [k][n] row-major weights as panels [n / 16][k][16], 64-byte aligned: one panel row per cache line. */
struct Packed {
  Packed() = default;
  Packed(const Packed&) = delete;  // `data` points into `storage`: moves keep it valid, copies would not
  Packed(Packed&&) = default;
  Packed& operator=(Packed&&) = default;
  std::vector<float> storage;
  float* data = nullptr;
  int k = 0, n = 0;
};

namespace {

constexpr int CHUNK_TOKENS = 96;  // a chunk's hidden activations, 96 x 4 x 128 floats, stay in L2
constexpr float LN_EPS = 1e-5f;

enum class Epilogue { Store, Gelu, QuickGelu, AddTo };

Packed pack(const float* w, int k, int n) {
  Packed p;
  p.k = k;
  p.n = n;
  p.storage.resize(static_cast<size_t>(k) * n + 16);
  p.data = p.storage.data() + (16 - reinterpret_cast<uintptr_t>(p.storage.data()) / sizeof(float) % 16) % 16;
  for (int panel = 0; panel < n / NR; panel++) {
    for (int t = 0; t < k; t++) std::memcpy(&p.data[(static_cast<size_t>(panel) * k + t) * NR], w + static_cast<size_t>(t) * n + panel * NR, NR * sizeof(float));
  }
  return p;
}

template <Epilogue E>
__attribute__((target("avx2,fma"))) inline void finish(__m256 acc, const float* bias, float* c) {
  const __m256 v = _mm256_add_ps(acc, _mm256_loadu_ps(bias));
  if constexpr (E == Epilogue::Store) _mm256_storeu_ps(c, v);
  if constexpr (E == Epilogue::Gelu) _mm256_storeu_ps(c, gelu256(v));
  if constexpr (E == Epilogue::QuickGelu) _mm256_storeu_ps(c, quickGelu256(v));
  if constexpr (E == Epilogue::AddTo) _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), v));
}

/**
 * c[m][ldc] (columns 16 p0 .. 16 p1) = epilogue(a[m][lda] x b + bias) over b's panels p0 .. p1.
 * Rows past the last full block go through a zero-padded copy, so that every row runs the same
 * instructions whatever its position in the batch.
 */
template <Epilogue E>
__attribute__((target("avx2,fma"))) void gemm(const float* a, int lda, int m, const Packed& b, int p0, int p1, const float* bias, float* c, int ldc) {
  thread_local std::vector<float> padded;
  const int k = b.k;
  for (int p = p0; p < p1; p++) {
    const float* panel = b.data + static_cast<size_t>(p) * k * NR;
    for (int i = 0; i < m; i += MR) {
      const int rows = std::min(MR, m - i);
      const float* ap = a + static_cast<size_t>(i) * lda;
      int la = lda;
      if (rows < MR) {
        padded.assign(static_cast<size_t>(MR) * k, 0.0f);
        for (int r = 0; r < rows; r++) std::memcpy(&padded[static_cast<size_t>(r) * k], ap + static_cast<size_t>(r) * lda, k * sizeof(float));
        ap = padded.data();
        la = k;
      }
      alignas(32) float tile[MR][NR];
      microKernel(ap, la, panel, k, tile);
      for (int r = 0; r < rows; r++) {
        float* cr = c + static_cast<size_t>(i + r) * ldc + p * NR;
        finish<E>(_mm256_load_ps(tile[r]), bias + p * NR, cr);
        finish<E>(_mm256_load_ps(tile[r] + 8), bias + p * NR + 8, cr + 8);
      }
    }
  }
}

__attribute__((target("avx2,fma"))) inline float horizontalSum(__m256 s) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

/** The export's written-out LayerNorm of each of m rows of width w (a multiple of 8). */
__attribute__((target("avx2,fma"))) void layerNorm(const float* x, int m, int w, const float* gain, const float* bias, float* y) {
  const __m256 inv = _mm256_set1_ps(1.0f / static_cast<float>(w));
  for (int r = 0; r < m; r++) {
    const float* xr = x + static_cast<size_t>(r) * w;
    float* yr = y + static_cast<size_t>(r) * w;
    __m256 sum = _mm256_setzero_ps();
    for (int c = 0; c < w; c += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(xr + c));
    const __m256 mean = _mm256_mul_ps(_mm256_set1_ps(horizontalSum(sum)), inv);
    __m256 sq = _mm256_setzero_ps();
    for (int c = 0; c < w; c += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + c), mean);
      _mm256_storeu_ps(yr + c, d);
      sq = _mm256_add_ps(sq, _mm256_mul_ps(d, d));
    }
    const __m256 variance = _mm256_mul_ps(_mm256_set1_ps(horizontalSum(sq)), inv);
    const __m256 rstd = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_sqrt_ps(_mm256_add_ps(variance, _mm256_set1_ps(LN_EPS))));
    for (int c = 0; c < w; c += 8) {
      const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(yr + c), rstd), _mm256_loadu_ps(gain + c));
      _mm256_storeu_ps(yr + c, _mm256_add_ps(v, _mm256_loadu_ps(bias + c)));
    }
  }
}

__attribute__((target("avx2,fma"))) inline float dot(const float* a, const float* b, int d) {
  __m256 s = _mm256_setzero_ps();
  for (int t = 0; t < d; t += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + t), _mm256_loadu_ps(b + t), s);
  return horizontalSum(s);
}

/**
 * One query (scaled, d floats) against a past's keys/values ([np][d], stride d) and own
 * keys/values (nOwn rows at stride ld): softmax over all scores, then the past's weighted values
 * plus the own ones', into out (d floats).
 */
__attribute__((target("avx2,fma"))) void attendOne(const float* q, int d, const float* pk, const float* pv, int np, const float* ok, const float* ov, int nOwn, int ld, float* scores, float* out) {
  const int n = np + nOwn;
  for (int j = 0; j < np; j++) scores[j] = dot(q, pk + static_cast<size_t>(j) * d, d);
  for (int j = 0; j < nOwn; j++) scores[np + j] = dot(q, ok + static_cast<size_t>(j) * ld, d);
  float max = scores[0];
  for (int j = 1; j < n; j++) max = std::max(max, scores[j]);
  const int n8 = (n + 7) & ~7;
  for (int j = n; j < n8; j++) scores[j] = -100.0f;
  for (int j = 0; j < n8; j += 8) _mm256_storeu_ps(scores + j, exp256(_mm256_sub_ps(_mm256_loadu_ps(scores + j), _mm256_set1_ps(max))));
  float sum = 0;
  for (int j = 0; j < n; j++) sum += scores[j];
  for (int j = 0; j < n; j++) scores[j] /= sum;
  for (int t = 0; t < d; t += 8) {
    __m256 past = _mm256_setzero_ps(), own = _mm256_setzero_ps();
    for (int j = 0; j < np; j++) past = _mm256_fmadd_ps(_mm256_set1_ps(scores[j]), _mm256_loadu_ps(pv + static_cast<size_t>(j) * d + t), past);
    for (int j = 0; j < nOwn; j++) own = _mm256_fmadd_ps(_mm256_set1_ps(scores[np + j]), _mm256_loadu_ps(ov + static_cast<size_t>(j) * ld + t), own);
    _mm256_storeu_ps(out + t, _mm256_add_ps(past, own));
  }
}

__attribute__((target("avx2,fma"))) void scale(float* x, int n, float s) {
  for (int i = 0; i < n; i++) x[i] *= s;
}

}  // namespace

struct KvTower::Layer {
  std::vector<float> ln1w, ln1b, bqkv, bo, ln2w, ln2b, bfc, bproj;
  Packed wqkv, wo, wfc, wproj;
};

KvTower::KvTower(const KvTowerConfig& config, const float* w) : config_(config) {
  const int W = config.width, H = config.hidden, C = config.context;
  auto take = [&w](size_t count) {
    std::vector<float> v(w, w + count);
    w += count;
    return v;
  };
  tokens_ = take(static_cast<size_t>(config.vocab) * W);
  positions_ = take(static_cast<size_t>(C) * W);
  prompts_ = take(static_cast<size_t>(config.prompts) * C * W);
  for (int l = 0; l < config.layers; l++) {
    auto layer = std::make_unique<Layer>();
    layer->ln1w = take(W);
    layer->ln1b = take(W);
    // Query, key and value weights side by side ([W][3W]), so that one GEMM over panel ranges
    // gives all three, or only the keys and values (the last layer runs its query at EOT alone).
    std::vector<float> qkv(static_cast<size_t>(W) * 3 * W);
    layer->bqkv.resize(3 * W);
    for (int part = 0; part < 3; part++) {
      const std::vector<float> m = take(static_cast<size_t>(W) * W), b = take(W);
      for (int r = 0; r < W; r++) std::memcpy(&qkv[static_cast<size_t>(r) * 3 * W + part * W], &m[static_cast<size_t>(r) * W], W * sizeof(float));
      std::memcpy(&layer->bqkv[part * W], b.data(), W * sizeof(float));
    }
    layer->wqkv = pack(qkv.data(), W, 3 * W);
    layer->wo = pack(take(static_cast<size_t>(W) * W).data(), W, W);
    layer->bo = take(W);
    layer->ln2w = take(W);
    layer->ln2b = take(W);
    layer->wfc = pack(take(static_cast<size_t>(W) * H).data(), W, H);
    layer->bfc = take(H);
    layer->wproj = pack(take(static_cast<size_t>(H) * W).data(), H, W);
    layer->bproj = take(W);
    layers_.push_back(std::move(layer));
  }
  lnfw_ = take(W);
  lnfb_ = take(W);
  projection_ = std::make_unique<Packed>(pack(take(static_cast<size_t>(W) * config.embedDim).data(), W, config.embedDim));
  zeroBias_.assign(std::max(config.embedDim, 3 * W), 0.0f);
}

KvTower::~KvTower() = default;

size_t KvTower::weightCount(const KvTowerConfig& c) {
  const size_t W = c.width, H = c.hidden;
  const size_t layer = 2 * W + 3 * (W * W + W) + W * W + W + 2 * W + W * H + H + H * W + W;
  return c.vocab * W + c.context * W + static_cast<size_t>(c.prompts) * c.context * W + c.layers * layer + 2 * W + W * c.embedDim;
}

__attribute__((target("avx2,fma"))) void KvTower::run(const int64_t* ids, int batch, int length, const float* mix, const float* pastKeys, const float* pastValues, int pasts,
                                                     int pastLength, const int64_t* pastIndex, float* embeds, float* presentKeys, float* presentValues) const {
  const KvTowerConfig& cfg = config_;
  const int W = cfg.width, H = cfg.hidden, L = cfg.layers, heads = cfg.heads, d = W / heads, D = cfg.embedDim, P = pastLength, S = length;
  const float qScale = 1.0f / std::sqrt(static_cast<float>(d));
  // Texts per chunk a multiple of MR, so that neither the chunk's rows nor its EOT rows leave a
  // partial register block (but the batch's last chunk).
  const int perChunk = MR * std::max(1, CHUNK_TOKENS / (MR * S));
  thread_local std::vector<float> x, y, qkv, att, hid, xe, ye, qe, scores;
  thread_local std::vector<int> eot;
  const size_t most = static_cast<size_t>(perChunk) * S;
  x.resize(most * W), y.resize(most * W), qkv.resize(most * 3 * W), att.resize(most * W), hid.resize(most * H);
  xe.resize(static_cast<size_t>(perChunk) * W), ye.resize(static_cast<size_t>(perChunk) * W), qe.resize(static_cast<size_t>(perChunk) * W);
  scores.resize(static_cast<size_t>(P + S + 8));
  eot.resize(perChunk);
  // Head h of past g's keys or values in layer l ([layers][pasts][heads][P][d]).
  const auto pastHead = [=](const float* base, int l, int g, int h) { return base + ((static_cast<size_t>(l) * pasts + g) * heads + h) * P * d; };
  // A block after its attention, on m rows: x += out-projection; x += MLP(LayerNorm(x)).
  const auto blockRest = [&](const Layer& layer, float* xs, float* ys, int m) {
    gemm<Epilogue::AddTo>(att.data(), W, m, layer.wo, 0, W / NR, layer.bo.data(), xs, W);
    layerNorm(xs, m, W, layer.ln2w.data(), layer.ln2b.data(), ys);
    if (cfg.quickGelu) gemm<Epilogue::QuickGelu>(ys, W, m, layer.wfc, 0, H / NR, layer.bfc.data(), hid.data(), H);
    else gemm<Epilogue::Gelu>(ys, W, m, layer.wfc, 0, H / NR, layer.bfc.data(), hid.data(), H);
    gemm<Epilogue::AddTo>(hid.data(), H, m, layer.wproj, 0, W / NR, layer.bproj.data(), xs, W);
  };

  for (int t0 = 0; t0 < batch; t0 += perChunk) {
    const int T = std::min(perChunk, batch - t0), M = T * S;
    // Embeddings: (token + position) + the row's prompt mix at its positions.
    for (int t = 0; t < T; t++) {
      const float* w = mix + static_cast<size_t>(t0 + t) * cfg.prompts;
      int best = 0;
      for (int s = 0; s < S; s++) {
        const int64_t id = ids[static_cast<size_t>(t0 + t) * S + s];
        if (id > ids[static_cast<size_t>(t0 + t) * S + best]) best = s;
        float* xr = &x[(static_cast<size_t>(t) * S + s) * W];
        const float* tok = &tokens_[static_cast<size_t>(id) * W];
        const float* pos = &positions_[static_cast<size_t>(P + s) * W];
        // The mix as onnxruntime's MatMul forms it: per element, fused multiply-adds over the
        // prompts in order from zero (here eight elements at a time).
        float* off = &att[0];
        std::fill(off, off + W, 0.0f);
        for (int k = 0; k < cfg.prompts; k++) {
          const __m256 wk = _mm256_set1_ps(w[k]);
          const float* pk = &prompts_[(static_cast<size_t>(k) * cfg.context + P + s) * W];
          for (int c = 0; c < W; c += 8) _mm256_storeu_ps(off + c, _mm256_fmadd_ps(wk, _mm256_loadu_ps(pk + c), _mm256_loadu_ps(off + c)));
        }
        for (int c = 0; c < W; c += 8) {
          const __m256 base = _mm256_add_ps(_mm256_loadu_ps(tok + c), _mm256_loadu_ps(pos + c));
          _mm256_storeu_ps(xr + c, _mm256_add_ps(base, _mm256_loadu_ps(off + c)));
        }
      }
      eot[t] = best;
    }
    for (int l = 0; l < L; l++) {
      const Layer& layer = *layers_[l];
      const bool last = l == L - 1;
      layerNorm(x.data(), M, W, layer.ln1w.data(), layer.ln1b.data(), y.data());
      // The last layer needs its keys and values everywhere (the presents), its query at EOT only.
      gemm<Epilogue::Store>(y.data(), W, M, layer.wqkv, last ? W / NR : 0, 3 * W / NR, layer.bqkv.data(), qkv.data(), 3 * W);
      if (presentKeys) {
        for (int t = 0; t < T; t++)
          for (int h = 0; h < heads; h++)
            for (int s = 0; s < S; s++) {
              const size_t at = ((((static_cast<size_t>(l) * batch + t0 + t) * heads + h) * S) + s) * d;
              const float* row = &qkv[(static_cast<size_t>(t) * S + s) * 3 * W];
              std::memcpy(presentKeys + at, row + W + h * d, d * sizeof(float));
              std::memcpy(presentValues + at, row + 2 * W + h * d, d * sizeof(float));
            }
      }
      if (!last) {
        for (int r = 0; r < M; r++) scale(&qkv[static_cast<size_t>(r) * 3 * W], W, qScale);
        for (int t = 0; t < T; t++) {
          const int g = static_cast<int>(pastIndex[t0 + t]);
          for (int h = 0; h < heads; h++) {
            const float *pk = pastHead(pastKeys, l, g, h), *pv = pastHead(pastValues, l, g, h);
            const float* own = &qkv[static_cast<size_t>(t) * S * 3 * W];
            for (int s = 0; s < S; s++) {
              attendOne(own + static_cast<size_t>(s) * 3 * W + h * d, d, pk, pv, P, own + W + h * d, own + 2 * W + h * d, s + 1, 3 * W, scores.data(),
                        &att[(static_cast<size_t>(t) * S + s) * W + h * d]);
            }
          }
        }
        blockRest(layer, x.data(), y.data(), M);
        continue;
      }
      // The last block at EOT only; a beginning's run (no embeds asked) needs only its presents.
      if (!embeds) continue;
      for (int t = 0; t < T; t++) {
        std::memcpy(&ye[static_cast<size_t>(t) * W], &y[(static_cast<size_t>(t) * S + eot[t]) * W], W * sizeof(float));
        std::memcpy(&xe[static_cast<size_t>(t) * W], &x[(static_cast<size_t>(t) * S + eot[t]) * W], W * sizeof(float));
      }
      gemm<Epilogue::Store>(ye.data(), W, T, layer.wqkv, 0, W / NR, layer.bqkv.data(), qe.data(), W);
      scale(qe.data(), T * W, qScale);
      for (int t = 0; t < T; t++) {
        const int g = static_cast<int>(pastIndex[t0 + t]);
        const float* own = &qkv[static_cast<size_t>(t) * S * 3 * W];
        for (int h = 0; h < heads; h++) {
          const float *pk = pastHead(pastKeys, l, g, h), *pv = pastHead(pastValues, l, g, h);
          attendOne(&qe[static_cast<size_t>(t) * W + h * d], d, pk, pv, P, own + W + h * d, own + 2 * W + h * d, eot[t] + 1, 3 * W, scores.data(),
                    &att[static_cast<size_t>(t) * W + h * d]);
        }
      }
      blockRest(layer, xe.data(), ye.data(), T);
    }
    if (!embeds) continue;
    layerNorm(xe.data(), T, W, lnfw_.data(), lnfb_.data(), ye.data());
    float* out = embeds + static_cast<size_t>(t0) * D;
    gemm<Epilogue::Store>(ye.data(), W, T, *projection_, 0, D / NR, zeroBias_.data(), out, D);
    for (int t = 0; t < T; t++) {
      float* e = out + static_cast<size_t>(t) * D;
      float sq = 0;
      for (int c = 0; c < D; c++) sq += e[c] * e[c];
      const float norm = std::max(std::sqrt(sq), 1e-12f);
      for (int c = 0; c < D; c++) e[c] /= norm;
    }
  }
}

}  // namespace clipn
#endif
