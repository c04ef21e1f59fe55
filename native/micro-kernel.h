// The register-blocked GEMM step of the native kernels (text-tower.cc's GEMMs, ablation-kernels.cc's
// ATD sums): six rows of A against a packed 16-column panel of B, the result left in an L1 tile
// for the caller's epilogue.
#pragma once

#include "ablation-kernels.h"

#ifdef CLIPN_HAVE_X86
#include <immintrin.h>

namespace clipn {

constexpr int MR = 6;   // rows per register block
constexpr int NR = 16;  // columns per packed panel

/**
 * tile = rows ap[0..6) (stride la) times one panel ([k][16], 16 columns of B) over k, each
 * element a float32 dot product in index order with fused multiply-adds. Its own function, not
 * inlined: beside an epilogue's constants GCC ran out of registers and kept two accumulators on
 * the stack. Unaligned loads: the ATD kernel's panels are a JavaScript array's.
 */
inline __attribute__((target("avx2,fma"), noinline)) void microKernel(const float* ap, int la, const float* panel, int k, float (*tile)[NR]) {
  // Twelve named accumulators: GCC keeps an array of them on the stack, reloading each per step.
  const float *a0 = ap, *a1 = a0 + la, *a2 = a1 + la, *a3 = a2 + la, *a4 = a3 + la, *a5 = a4 + la;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int t = 0; t < k; t++) {
    const __m256 b0 = _mm256_loadu_ps(panel + t * NR), b1 = _mm256_loadu_ps(panel + t * NR + 8);
    __m256 w = _mm256_broadcast_ss(a0 + t);
    c00 = _mm256_fmadd_ps(w, b0, c00);
    c01 = _mm256_fmadd_ps(w, b1, c01);
    w = _mm256_broadcast_ss(a1 + t);
    c10 = _mm256_fmadd_ps(w, b0, c10);
    c11 = _mm256_fmadd_ps(w, b1, c11);
    w = _mm256_broadcast_ss(a2 + t);
    c20 = _mm256_fmadd_ps(w, b0, c20);
    c21 = _mm256_fmadd_ps(w, b1, c21);
    w = _mm256_broadcast_ss(a3 + t);
    c30 = _mm256_fmadd_ps(w, b0, c30);
    c31 = _mm256_fmadd_ps(w, b1, c31);
    w = _mm256_broadcast_ss(a4 + t);
    c40 = _mm256_fmadd_ps(w, b0, c40);
    c41 = _mm256_fmadd_ps(w, b1, c41);
    w = _mm256_broadcast_ss(a5 + t);
    c50 = _mm256_fmadd_ps(w, b0, c50);
    c51 = _mm256_fmadd_ps(w, b1, c51);
  }
  _mm256_store_ps(tile[0], c00);
  _mm256_store_ps(tile[0] + 8, c01);
  _mm256_store_ps(tile[1], c10);
  _mm256_store_ps(tile[1] + 8, c11);
  _mm256_store_ps(tile[2], c20);
  _mm256_store_ps(tile[2] + 8, c21);
  _mm256_store_ps(tile[3], c30);
  _mm256_store_ps(tile[3] + 8, c31);
  _mm256_store_ps(tile[4], c40);
  _mm256_store_ps(tile[4] + 8, c41);
  _mm256_store_ps(tile[5], c50);
  _mm256_store_ps(tile[5] + 8, c51);
}

}  // namespace clipn
#endif
