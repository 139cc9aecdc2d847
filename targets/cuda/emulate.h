// Runs tensordsl's generated CUDA C on the host, for testing without a GPU.
//
// The blocks of a grid run one after another. The threads of a block are fibers
// (ucontext) on one OS thread: each runs until it reaches __syncthreads() or finishes,
// then the next one runs; when every thread waits at the barrier, all continue. A
// barrier that some threads of a block reach while others have finished is reported
// (on a GPU it is undefined behaviour). __shared__ variables are static: one copy,
// reused by each block in turn. Every buffer access goes through TD_AT, which checks
// the index against the buffer's size (kernel arguments are registered per launch).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <ucontext.h>
#include <vector>

struct td_dim3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

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


namespace td_emu {

// a global buffer of the launch; its size in bytes (tiles may be of another type than
// the buffer's elements: a float accumulator tile beside bfloat16 inputs)
struct Region { const void* base; long long nbytes; const char* name; };

inline td_dim3 thread_idx, block_idx, block_dim, grid_dim;
inline int current = 0, nthreads = 1;
inline std::vector<ucontext_t> contexts;
inline std::vector<int> state;                 // 0 running, 1 at barrier, 2 done
inline ucontext_t scheduler;
inline std::vector<Region> regions;            // the launch's global buffers
inline int error = 0;                          // 1 divergent barrier, 2 out of bounds
inline char message[512];
inline std::vector<unsigned char> exchange;    // shuffle scratch, 8 bytes per thread
inline void (*entry)() = nullptr;

inline void fail(int code, const char* text) {
  if (!error) { error = code; std::snprintf(message, sizeof message, "%s", text); }
}

inline void set_thread(int t) {
  current = t;
  thread_idx.x = t % block_dim.x;
  thread_idx.y = (t / block_dim.x) % block_dim.y;
  thread_idx.z = t / (block_dim.x * block_dim.y);
}

inline void syncthreads() {
  state[current] = 1;
  swapcontext(&contexts[current], &scheduler);
}

template <class T> T shfl_xor(T v, int lane_mask, int width) {
  // every thread of the block calls this together (tensordsl's reductions are uniform)
  std::memcpy(&exchange[8 * current], &v, sizeof(T));
  syncthreads();
  int lane = current % 32, base = current - lane;
  int src_lane = (lane ^ lane_mask);
  if ((src_lane / width) != (lane / width)) src_lane = lane;
  T out;
  int src = base + src_lane;
  if (src >= nthreads) src = current;
  std::memcpy(&out, &exchange[8 * src], sizeof(T));
  syncthreads();
  return out;
}

template <class T> inline long long check(const T* base, long long i, const char* expr,
                                          long long count_hint = -1) {
  long long count = count_hint;
  const char* name = expr;
  if (count < 0) {
    for (auto& r : regions) if (r.base == (const void*)base) {
      count = r.nbytes / (long long)sizeof(T);
      name = r.name;
    }
  }
  if (count >= 0 && (i < 0 || i >= count)) {
    char text[256];
    std::snprintf(text, sizeof text, "out-of-bounds access %s[%lld] (size %lld) in block "
                  "(%u,%u,%u) thread (%u,%u,%u)", name, i, count, block_idx.x, block_idx.y,
                  block_idx.z, thread_idx.x, thread_idx.y, thread_idx.z);
    fail(2, text);
    return 0;   // keep running on a valid element; the launch reports the error
  }
  return i;
}

// A tile that starts inside a registered (global) buffer must end inside it; shared
// arrays are not registered, their tiles are checked by the first element's index.
template <class P> inline bool check_tile(const P* p, long long last, const char* what) {
  for (auto& r : regions) {
    const char* base = (const char*)r.base;
    const char* at = (const char*)p;
    if (at >= base && at < base + r.nbytes) {
      long long first = (at - base) / (long long)sizeof(P);
      long long count = r.nbytes / (long long)sizeof(P);
      if (first + last >= count) {
        char text[256];
        std::snprintf(text, sizeof text, "out-of-bounds %s of %s: elements %lld..%lld "
                      "(size %lld)", what, r.name, first, first + last, count);
        fail(2, text);
        return false;
      }
      return true;
    }
  }
  return true;
}

template <class T, std::size_t N> inline long long check_array(T (&)[N], long long i,
                                                              const char* expr) {
  const T* none = nullptr;
  return check(none, i, expr, (long long)N);
}

inline void trampoline() {
  entry();
  state[current] = 2;
}

// Run entry() for every thread of every block; returns 0 or the error code.
inline int launch(long long gx, long long gy, long long gz, int bx, int by, int bz,
                  void (*fn)()) {
  const std::size_t stack_size = 64 * 1024;
  block_dim = {(unsigned)bx, (unsigned)by, (unsigned)bz};
  grid_dim = {(unsigned)gx, (unsigned)gy, (unsigned)gz};
  nthreads = bx * by * bz;
  entry = fn;
  contexts.assign(nthreads, ucontext_t{});
  state.assign(nthreads, 0);
  exchange.assign(8 * nthreads, 0);
  std::vector<std::unique_ptr<char[]>> stacks;
  for (int t = 0; t < nthreads; ++t) stacks.emplace_back(new char[stack_size]);
  error = 0;
  for (long long z = 0; z < gz && !error; ++z)
  for (long long y = 0; y < gy && !error; ++y)
  for (long long x = 0; x < gx && !error; ++x) {
    block_idx = {(unsigned)x, (unsigned)y, (unsigned)z};
    for (int t = 0; t < nthreads; ++t) {
      getcontext(&contexts[t]);
      contexts[t].uc_stack.ss_sp = stacks[t].get();
      contexts[t].uc_stack.ss_size = stack_size;
      contexts[t].uc_link = &scheduler;
      makecontext(&contexts[t], trampoline, 0);
      state[t] = 0;
    }
    for (;;) {
      for (int t = 0; t < nthreads; ++t) {
        if (state[t] != 0) continue;
        set_thread(t);
        swapcontext(&scheduler, &contexts[t]);
      }
      int waiting = 0, done = 0;
      for (int t = 0; t < nthreads; ++t) { waiting += state[t] == 1; done += state[t] == 2; }
      if (done == nthreads) break;
      if (done > 0) {
        char text[200];
        std::snprintf(text, sizeof text, "__syncthreads() reached by %d of %d threads of "
                      "block (%lld,%lld,%lld); the others had finished", waiting, nthreads,
                      x, y, z);
        fail(1, text);
        break;
      }
      for (int t = 0; t < nthreads; ++t) state[t] = 0;   // everyone arrived: release
    }
  }
  return error;
}

}  // namespace td_emu

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
  if (!td_emu::check_tile(p, (long long)(F::rows - 1) * ldm + F::cols - 1, "load_matrix_sync")) {
    fill_fragment(f, 0.0f);   // reported; never read past the buffer
    return;
  }
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = p[(long long)r * ldm + c];
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
  if (!td_emu::check_tile(p, (long long)(F::rows - 1) * ldm + F::cols - 1, "store_matrix_sync"))
    return;   // reported; never written past the buffer
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) p[(long long)r * ldm + c] = f.x[r * F::cols + c];
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
#define __shfl_xor_sync(mask, v, lane_mask, width) td_emu::shfl_xor((v), (lane_mask), (width))
#define __stcs(ptr, value) (void)(*(ptr) = (value))
#define TD_AT(buf, i) buf[td_emu::check(buf, (i), #buf)]
#define TD_AT_ARRAY(buf, i) buf[td_emu::check_array(buf, (i), #buf)]

inline float __int_as_float(unsigned bits) { float f; std::memcpy(&f, &bits, 4); return f; }
inline double __longlong_as_double(long long bits) {
  double d; std::memcpy(&d, &bits, 8); return d;
}
using std::exp; using std::log; using std::sqrt; using std::tanh; using std::fabs;
using std::pow; using std::floor; using std::ceil; using std::round; using std::erf;
