// Vector math of the native kernels: exp (ablation-kernels.cc, text-tower.cc), erf and the GELUs
// (text-tower.cc).
#pragma once

#include "ablation-kernels.h"

#ifdef CLIPN_HAVE_X86
#include <immintrin.h>

namespace clipn {

/**
 * exp of eight floats: Cephes' expf (a two-part ln 2 reduction, then a degree-5 polynomial),
 * ~1e-7 relative, as onnxruntime's. Inputs are clamped to [-87, 88], float32's normal range:
 * below it 1 + e is 1 anyway, above it the result would overflow the exponent's bits.
 */
__attribute__((target("avx2,fma"))) inline __m256 exp256(__m256 x) {
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 c1 = _mm256_set1_ps(0.693359375f);
  const __m256 c2 = _mm256_set1_ps(-2.12194440e-4f);
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, c1, x);
  r = _mm256_fnmadd_ps(n, c2, r);
  __m256 q = _mm256_set1_ps(1.9875691500e-4f);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.3981999507e-3f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(8.3334519073e-3f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.1665795894e-2f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.6666665459e-1f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e, _mm256_castsi256_ps(pow2));
}

// erf(z) = 1 - erfc(z) for z >= 0, with erfc(z) = t exp(-z^2 + poly(t)), t = 1 / (1 + z / 2)
// (Press et al., Numerical Recipes, erfcc: fractional error under 1.2e-7); odd in z. At z near 0
// its absolute error of ~1e-7 is relative to 1 + erf in GELU, so GELU keeps float32's precision.
__attribute__((target("avx2,fma"))) inline __m256 erf256(__m256 z) {
  const __m256 sign = _mm256_and_ps(z, _mm256_set1_ps(-0.0f));
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
  // t = 1 / (1 + a / 2) by the reciprocal estimate and one Newton step (~1e-7 relative): a
  // division here made GELU a third of its GEMM's time.
  const __m256 den = _mm256_fmadd_ps(_mm256_set1_ps(0.5f), a, _mm256_set1_ps(1.0f));
  const __m256 r0 = _mm256_rcp_ps(den);
  const __m256 t = _mm256_mul_ps(r0, _mm256_fnmadd_ps(den, r0, _mm256_set1_ps(2.0f)));
  __m256 p = _mm256_set1_ps(0.17087277f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
  const __m256 erfc = _mm256_mul_ps(t, exp256(_mm256_fnmadd_ps(a, a, p)));
  return _mm256_or_ps(sign, _mm256_sub_ps(_mm256_set1_ps(1.0f), erfc));
}

// torch's exact GELU as exported: x * (erf(x / sqrt 2) + 1) * 0.5 (the division as a product).
__attribute__((target("avx2,fma"))) inline __m256 gelu256(__m256 x) {
  const __m256 e = erf256(_mm256_mul_ps(x, _mm256_set1_ps(0.707106781186547524f)));
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_add_ps(e, _mm256_set1_ps(1.0f))), _mm256_set1_ps(0.5f));
}

// QuickGELU as exported: x * sigmoid(1.702 x).
__attribute__((target("avx2,fma"))) inline __m256 quickGelu256(__m256 x) {
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(x, _mm256_set1_ps(1.702f))));
  return _mm256_mul_ps(x, _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}

}  // namespace clipn
#endif
