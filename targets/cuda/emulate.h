// Runs tensordsl's generated CUDA C on the host, for testing without a GPU.
//
// Execution (emulate_schedule.h). The blocks of a grid run one after another; the
// threads of a block are fibers (ucontext) on one OS thread. A fiber runs until it has
// to wait — at __syncthreads(); at a warp intrinsic (__shfl_*_sync, __syncwarp,
// __ballot_sync, __any_sync, __all_sync) until the lanes its mask names arrive; in warp
// lock-step mode at every shared-memory access — and then another runs. __shared__
// variables are static: one copy, reused by each block in turn.
//
// Order. In random order (the default) the blocks, and the threads of a block in each
// barrier phase (the stretch between two __syncthreads()), run in an order drawn from
// the launch's seed, so a result that depends on the order changes from seed to seed.
// Sequential order runs them by index, as a debugging aid.
//
// Warp lock-step mode, for warp-synchronous code (which assumes the lanes of a warp
// execute together): the lanes of a warp take turns at every shared-memory access, so
// each lane's k-th access comes before any lane's (k+1)-th (a store waits for the other
// lanes' loads of the turn before); shared memory passed between lanes of one warp is
// then not a race. Divergent lanes simply run ahead to their next access.
//
// Checks (emulate_memory.h and the warp intrinsics); the first failure is reported (a
// td_emu::Error and a message) and the launch stops after its block:
//   * every access to a global, shared or local buffer lies within the buffer; a vector
//     access (float4, float2, half2) in all its elements, at an address aligned to its
//     size (a local or shared array must be declared so aligned: a GPU faults otherwise);
//   * races on shared memory: each element remembers its last writer and its readers in
//     the current barrier phase; reading an element another thread wrote, or writing
//     one another thread read or wrote, in the same phase is a race (a __syncwarp both
//     took part in orders two lanes of one warp; lock-step mode orders them always). A
//     store of the value the element already holds changes nothing and races with no
//     one (threads redundantly computing one shared stage);
//   * __syncthreads() reached by some threads of a block while others have finished;
//   * warp intrinsics: the caller is in its mask; every lane named in it arrives at the
//     same intrinsic with the same mask, or has exited; a shuffle reads a lane that takes
//     part; the width is a power of two up to 32 (it splits the warp as CUDA does).
// Uninitialized memory is poisoned: shared arrays at the start of each block and local
// arrays where they are declared hold NaN (floating point) or 0xCD bytes (integers).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <type_traits>
#include <ucontext.h>
#include <vector>

struct td_dim3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

// 16-bit floats: stored as bits, converted to and from float with round-to-nearest-even
// (what __float2half and __float2bfloat16 do), arithmetic through float.
namespace td_emu {
inline float bits_to_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned float_to_bits(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline unsigned short float_to_half(float f) {
  unsigned x = float_to_bits(f), sign = (x >> 16) & 0x8000u;
  unsigned e = (x >> 23) & 0xffu, m = x & 0x7fffffu;
  if (e == 0xff) return (unsigned short)(sign | 0x7c00u | (m ? 0x200u : 0u));
  int exp = (int)e - 127 + 15;
  if (exp >= 31) return (unsigned short)(sign | 0x7c00u);
  if (exp <= 0) {                                   // subnormal or zero
    if (exp < -10) return (unsigned short)sign;
    m |= 0x800000u;
    unsigned shift = (unsigned)(14 - exp), half_m = m >> shift;
    unsigned rem = m & ((1u << shift) - 1u), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half_m & 1u))) ++half_m;
    return (unsigned short)(sign | half_m);
  }
  unsigned half_m = m >> 13, rem = m & 0x1fffu;
  unsigned out = sign | ((unsigned)exp << 10) | half_m;
  if (rem > 0x1000u || (rem == 0x1000u && (half_m & 1u))) ++out;   // may carry into exp
  return (unsigned short)out;
}
inline float half_to_float(unsigned short h) {
  unsigned sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    float f = std::ldexp((float)m, -24);
    return sign ? -f : f;
  }
  if (e == 31) return bits_to_float(sign | 0x7f800000u | (m << 13));
  return bits_to_float(sign | ((e - 15 + 127) << 23) | (m << 13));
}
inline unsigned short float_to_bf16(float f) {
  unsigned x = float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (unsigned short)(x >> 16);
}
}  // namespace td_emu

struct half {
  unsigned short bits;
  half() = default;
  half(float f) : bits(td_emu::float_to_half(f)) {}
  operator float() const { return td_emu::half_to_float(bits); }
};
struct __nv_bfloat16 {
  unsigned short bits;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : bits(td_emu::float_to_bf16(f)) {}
  operator float() const { return td_emu::bits_to_float((unsigned)bits << 16); }
};
struct alignas(4) half2 { half x, y; };


#include "emulate_schedule.h"
#include "emulate_banks.h"
#include "emulate_memory.h"
#include "emulate_async.h"
#include "emulate_mma.h"
#include "emulate_tma.h"

// Tensor cores (WMMA): a fragment holds its whole tile in every thread of the warp; each
// operation computes the whole tile (all 32 threads call it with the same arguments).
namespace nvcuda { namespace wmma {
struct matrix_a {}; struct matrix_b {}; struct accumulator {};
struct row_major {}; struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  T x[rows * cols];
};
template <class F, class T> inline void fill_fragment(F& f, T v) { for (auto& e : f.x) e = v; }
template <class F, class P> inline void load_matrix_sync(F& f, const P* p, unsigned ldm) {
  const td_emu::SharedArray* shared;
  if (!td_emu::check_tile(p, F::rows, F::cols, ldm, "load_matrix_sync", &shared)) {
    fill_fragment(f, 0.0f);   // reported; never read past the buffer
    return;
  }
  if (shared && sizeof(P) == 2) td_emu::bank_matrix_tile(p, F::rows, F::cols, ldm);
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) {
      const P* at = p + (long long)r * ldm + c;
      if (shared) td_emu::track_tile(shared, at, td_emu::READ);
      f.x[r * F::cols + c] = *at;
    }
}
template <class C, class A, class B>
inline void mma_sync(C& d, const A& a, const B& b, const C& c) {
  float out[C::rows * C::cols];
  for (int i = 0; i < C::rows; ++i)
    for (int j = 0; j < C::cols; ++j) {
      float acc = c.x[i * C::cols + j];
      for (int k = 0; k < A::cols; ++k)
        acc += (float)a.x[i * A::cols + k] * (float)b.x[k * B::cols + j];
      out[i * C::cols + j] = acc;
    }
  for (int e = 0; e < C::rows * C::cols; ++e) d.x[e] = out[e];
}
template <class P, class F>
inline void store_matrix_sync(P* p, const F& f, unsigned ldm, layout_t) {
  const td_emu::SharedArray* shared;
  if (!td_emu::check_tile(p, F::rows, F::cols, ldm, "store_matrix_sync", &shared))
    return;   // reported; never written past the buffer
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) {
      P* at = p + (long long)r * ldm + c;
      const P value = f.x[r * F::cols + c];
      if (shared) td_emu::track_tile(shared, at, td_emu::WRITE, &value);
      *at = value;
    }
}
}}  // namespace nvcuda::wmma

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define threadIdx td_emu::thread_idx
#define blockIdx td_emu::block_idx
#define blockDim td_emu::block_dim
#define gridDim td_emu::grid_dim
#define __syncthreads() td_emu::syncthreads()
#define __stcs(ptr, value) (void)(*(ptr) = (value))

// CUDA's fast single-precision intrinsics (td.call_extern("float32", "__expf", x)):
// computed here with the exact functions, within the intrinsics' documented error
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __mul24(int x, int y) { return ((x << 8) >> 8) * ((y << 8) >> 8); }

template <class T> inline T __shfl_sync(unsigned mask, T v, int lane, int width = 32) {
  return td_emu::shuffle_call(td_emu::SHFL_IDX, mask, v, lane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return td_emu::shuffle_call(td_emu::SHFL_UP, mask, v, (int)delta, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return td_emu::shuffle_call(td_emu::SHFL_DOWN, mask, v, (int)delta, width);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return td_emu::shuffle_call(td_emu::SHFL_XOR, mask, v, lane_mask, width);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  td_emu::warp_call(td_emu::SYNCWARP, mask, 0);
}
inline unsigned __ballot_sync(unsigned mask, int p) {
  return (unsigned)td_emu::warp_call(td_emu::BALLOT, mask, p != 0);
}
inline int __any_sync(unsigned mask, int p) {
  return (int)td_emu::warp_call(td_emu::ANY, mask, p != 0);
}
inline int __all_sync(unsigned mask, int p) {
  return (int)td_emu::warp_call(td_emu::ALL, mask, p != 0);
}

// Checked accesses (the code generator writes these in place of buf[i]): a global
// buffer, a local array, a shared array (a load, or a store: `TD_SHARED_STORE(b, i) =
// v;`); and vector accesses of V (float4, float2, half2) at element i.
#define TD_AT(buf, i) buf[td_emu::check(buf, (i), #buf)]
#define TD_AT_ARRAY(buf, i) buf[td_emu::check_array(buf, (i), #buf)]
#define TD_SHARED_LOAD(buf, i) td_emu::shared_load(buf, buf##_td, (i), #buf)
#define TD_SHARED_STORE(buf, i) td_emu::shared_store(buf, buf##_td, (i), #buf)
#define TD_VEC(V, buf, i) (*td_emu::vector_at<V>(buf, (i), #buf, #V))
#define TD_VEC_ARRAY(V, buf, i) \
  (*td_emu::vector_at_array<V>(buf, (i), __alignof__(buf), #buf, #V))
#define TD_VEC_SHARED_LOAD(V, buf, i) \
  td_emu::shared_vector_load<V>(buf, buf##_td, (i), __alignof__(buf), #buf, #V)
#define TD_VEC_SHARED_STORE(V, buf, i) \
  td_emu::shared_vector_store<V>(buf, buf##_td, (i), __alignof__(buf), #buf, #V)
// after each __shared__ array's declaration: its shadow, poisoned at each block's start
#define TD_SHARED_STATE(buf) \
  static td_emu::SharedState<sizeof(buf) / sizeof(buf[0])> buf##_td; \
  td_emu::shared_begin(buf, buf##_td, #buf)
// after each local array's declaration
#define TD_POISON(buf) td_emu::poison(buf)
// cp.async of `lanes` elements src[j..] -> dst[i..] (zeros where !valid), its groups
#define TD_CP_ASYNC(dst, i, src, j, lanes, valid) \
  td_emu::cp_async(dst, dst##_td, (i), __alignof__(dst), #dst, src, (j), lanes, (valid))
#define TD_CP_ASYNC_COMMIT() td_emu::cp_async_commit()
#define TD_CP_ASYNC_WAIT(n) td_emu::cp_async_wait(n)

inline float __int_as_float(unsigned bits) { float f; std::memcpy(&f, &bits, 4); return f; }
inline double __longlong_as_double(long long bits) {
  double d; std::memcpy(&d, &bits, 8); return d;
}
using std::exp; using std::log; using std::sqrt; using std::tanh; using std::fabs;
using std::pow; using std::floor; using std::ceil; using std::round; using std::erf;
