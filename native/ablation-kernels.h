// The kernels of ablation-kernels.cc (see there), for node-module.cc.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__)
#define CLIPN_HAVE_X86 1
#endif

namespace clipn {

/** Whether this CPU runs atdSums and dots (AVX2 and FMA); the other kernels run on any x86-64. */
bool cpuHasKernel();

#ifdef CLIPN_HAVE_X86
void atdSums(const float* a, int k, int c4, int d, const float* panels, int np, int rows, const float* p, float scale, float hi, float* out);
void dots(const double* x, const double* g, double* out, int quads, int d);
#endif

int64_t sortScores(const double* src, size_t n, double* out);
void metricsOfSorted(const double* id, size_t nIdCount, const double* ood, size_t nOodCount, double* outTp, double* outFp, double* out);

}  // namespace clipn
