// The kernels of ablation-kernels.cc (see there), for node-module.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#if defined(__x86_64__)
#define CLIPN_HAVE_X86 1
#endif

namespace clipn {

/** Whether this CPU runs atdSums and dots (AVX2 and FMA); the other kernels run on any x86-64. */
bool cpuHasKernel();

#ifdef CLIPN_HAVE_X86
void atdSums(const float* a, int k, int c4, int d, const float* panels, int np, int rows, const float* p, float scale, float hi, float* out);
void dots(const double* x, const double* g, double* out, int quads, int d);

/** Weights packed for text-tower.cc's GEMM. */
struct Packed;

/** The text_no_kv tower's sizes (text-tower.cc); width, hidden and embedDim multiples of 16. */
struct KvTowerConfig {
  int layers, width, heads, hidden, vocab, context, prompts, embedDim;
  bool quickGelu;
};

/** The "no" tower after a shared past, as the model's text_no_kv graph computes it (text-tower.cc). */
class KvTower {
 public:
  /** weights: weightCount(config) floats in native-kv-tower.ts's order, every matrix [in][out]. */
  KvTower(const KvTowerConfig& config, const float* weights);
  ~KvTower();
  static size_t weightCount(const KvTowerConfig& config);
  const KvTowerConfig& config() const { return config_; }
  /**
   * The graph's outputs for `batch` rows of `length` ids after pasts of `pastLength` tokens:
   * mix [batch][prompts], past keys/values [layers][pasts][heads][pastLength][width / heads],
   * pastIndex [batch]; embeds [batch][embedDim] (null: not wanted), presents
   * [layers][batch][heads][length][width / heads] (null: not wanted). Sizes are the caller's to check.
   */
  void run(const int64_t* ids, int batch, int length, const float* mix, const float* pastKeys, const float* pastValues, int pasts, int pastLength,
           const int64_t* pastIndex, float* embeds, float* presentKeys, float* presentValues) const;

 private:
  struct Layer;
  KvTowerConfig config_;
  std::vector<float> tokens_, positions_, prompts_, lnfw_, lnfb_, zeroBias_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<Packed> projection_;
};
#endif

int64_t sortScores(const double* src, size_t n, double* out);
void metricsOfSorted(const double* id, size_t nIdCount, const double* ood, size_t nOodCount, double* outTp, double* outFp, double* out);

}  // namespace clipn
