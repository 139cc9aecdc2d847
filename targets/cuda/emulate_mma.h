// The emulator's ldmatrix and mma.sync (included by emulate.h): the two warp-wide
// instructions the code generator's tensor-core helpers (targets/cuda/wmma.py,
// MMA_HELPERS) are built on, modelled lane by lane as PTX defines them, so that the
// helpers' lane arithmetic runs here as it runs on a GPU and is checked with the rest.
//
// Each lane puts what it brings (a row address; its fragment registers) in a slot of its
// warp, all 32 lanes meet (a lane missing, exited or elsewhere, is an error: both
// instructions are .sync.aligned), each takes what PTX gives it, and they meet again
// before any may bring something new.
//   ldmatrix.x4: lanes 8i..8i+7 give the rows (16 bytes) of matrix i; lane l receives
//     in register i the elements 2(l%4), 2(l%4)+1 of row l/4 of matrix i (.trans: of
//     column l/4, i.e. rows 2(l%4), 2(l%4)+1 at column l/4).
//   mma.sync m16n8k16 (row.col): lane l holds A[g][2t, 2t+1] (a0), A[g+8][..] (a1),
//     A[g][2t+8, 2t+9] (a2), A[g+8][2t+8, ..] (a3); B[2t, 2t+1][g] (b0), B[2t+8, ..][g]
//     (b1); and C, D at [g][2t, 2t+1] and [g+8][2t, 2t+1]; g = l/4, t = l%4.
// Shared reads are bounds-checked and race-tracked per element; with bank counting on,
// each 8x8 matrix is a request of its 8 rows (emulate_banks.h).
#pragma once

namespace td_emu {

struct MmaSlot {
  const void* row;        // ldmatrix: this lane's row
  unsigned regs[6];       // mma.sync: a0-a3, b0, b1
};
inline std::vector<MmaSlot> mma_slots;   // per thread of the block

// All 32 lanes of the caller's warp at the same warp-wide instruction `what`.
inline bool whole_warp(const char* what) {
  int t = current, w = t / 32;
  char text[96];
  if (lanes_of_warp(w) != 32) {
    fail(ERROR_WARP, "%s needs a whole warp of 32 lanes; %s is in a warp of %d", what,
         who(t, text, sizeof text), lanes_of_warp(w));
    return false;
  }
  // (a ballot of all lanes: the lanes that had exited are the ones missing from it)
  unsigned arrived = (unsigned)warp_call(BALLOT, 0xffffffffu, 1);
  if (arrived != 0xffffffffu) {
    fail(ERROR_WARP, "%s in %s: lane %d of its warp has exited (all 32 lanes must "
         "execute it)", what, who(t, text, sizeof text), __builtin_ctz(~arrived));
    return false;
  }
  return !error;
}

inline const SharedArray* shared_array_of(const void* p) {
  for (auto& s : shared_arrays)
    if ((const char*)p >= s.base && (const char*)p < s.base + s.nbytes) return &s;
  return nullptr;
}

template <bool Trans, class T>
inline void ldmatrix_x4(unsigned (&r)[4], const T* row) {
  static_assert(sizeof(T) == 2, "ldmatrix reads 16-bit elements");
  int t = current, lane = t % 32, base = t - lane;
  if ((int)mma_slots.size() < nthreads) mma_slots.resize(nthreads);
  for (auto& reg : r) reg = 0;
  const SharedArray* shared = nullptr;
  char text[96];
  if (!check_tile(row, 1, 8, 8, "ldmatrix", &shared)) return;
  if (!shared)
    fail(ERROR_BOUNDS, "ldmatrix in %s: row %p is not in a shared array", who(t, text, sizeof text),
         (const void*)row);
  else if ((std::uintptr_t)row % 16)
    fail(ERROR_ALIGNMENT, "ldmatrix in %s: row of %s at byte %lld, not on 16 bytes",
         who(t, text, sizeof text), shared->name, (long long)((const char*)row - shared->base));
  mma_slots[t].row = row;
  if (error || !whole_warp("ldmatrix")) return;
  if (bank_counting && lane == 0)
    for (int i = 0; i < 4; ++i) {
      BankAccess rows[8];
      for (int k = 0; k < 8; ++k)
        rows[k] = {0, 0, (std::uintptr_t)mma_slots[base + 8 * i + k].row, 16};
      ++matrix_requests;
      matrix_wavefronts += wavefronts(rows, rows + 8);
    }
  for (int i = 0; i < 4; ++i) {
    unsigned short half[2];
    for (int e = 0; e < 2; ++e) {
      int giver = Trans ? 8 * i + 2 * (lane % 4) + e : 8 * i + lane / 4;
      int column = Trans ? lane / 4 : 2 * (lane % 4) + e;
      const T* at = (const T*)mma_slots[base + giver].row + column;
      track_tile(shared_array_of(at), at, READ);
      std::memcpy(&half[e], at, 2);
    }
    r[i] = half[0] | (unsigned)half[1] << 16;
  }
  whole_warp("ldmatrix");
}

inline float element_of(unsigned reg, int which, bool bf16) {
  unsigned short bits = (unsigned short)(reg >> (16 * which));
  return bf16 ? bits_to_float((unsigned)bits << 16) : half_to_float(bits);
}

template <class T>
inline void mma_16816(float* d, const unsigned (&a)[4], unsigned b0, unsigned b1) {
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  int t = current, lane = t % 32, base = t - lane;
  if ((int)mma_slots.size() < nthreads) mma_slots.resize(nthreads);
  MmaSlot& mine = mma_slots[t];
  for (int k = 0; k < 4; ++k) mine.regs[k] = a[k];
  mine.regs[4] = b0;
  mine.regs[5] = b1;
  if (!whole_warp("mma.sync")) return;
  auto A = [&](int row, int k) {   // who holds A[row][k], in which register and half
    const MmaSlot& s = mma_slots[base + 4 * (row % 8) + (k % 8) / 2];
    return element_of(s.regs[(row >= 8) + 2 * (k >= 8)], k % 2, bf16);
  };
  auto B = [&](int k, int col) {
    const MmaSlot& s = mma_slots[base + 4 * col + (k % 8) / 2];
    return element_of(s.regs[4 + (k >= 8)], k % 2, bf16);
  };
  int g = lane / 4, c0 = 2 * (lane % 4);
  float out[4];
  for (int e = 0; e < 4; ++e) {
    int row = g + 8 * (e / 2), col = c0 + e % 2;
    float acc = d[e];
    for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    out[e] = acc;
  }
  whole_warp("mma.sync");
  for (int e = 0; e < 4; ++e) d[e] = out[e];
}

// One element of an accumulator tile stored by its lane: checked and tracked as any
// store (a global buffer or a shared array).
template <class T> inline void mma_put(T* at, float v) {
  const SharedArray* shared;
  if (!check_tile(at, 1, 1, 1, "td_mma_store", &shared)) return;
  const T value = (T)v;
  if (shared) track_tile(shared, at, WRITE, &value);
  *at = value;
}

// ---------------------------------------------------------------- wgmma (sm_90a)
// A warpgroup (4 warps) multiplies a 64 x 16 tile of A by a 16 x n tile of B, both in
// shared memory, given by matrix descriptors (PTX: start address >> 4 in bits 0-13,
// leading byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, layout in
// 62-63), into the accumulators of its 128 threads: warp w holds rows 16w..16w+15 as
// mma.sync's m16n8 accumulators, one per 8 columns (register i: columns 8(i/4) + 2t +
// i%2 of rows g + 8((i%4)/2), g = lane/4, t = lane%4). Only the 128-byte swizzle layout
// is modelled: A K-major (row m at (m%8)*128 + (m/8)*SBO, k at 2k), B MN-major (column c
// at 2(c%64) + (c/64)*LBO, row k at (k%8)*128 + (k/8)*SBO), each address then swizzled
// (bits 4-6 ^= bits 7-9), as the hardware does on shared addresses.
//
// Shared addresses: the block's shared arrays laid out one after another in a window,
// each on 1024 bytes (where the code generator puts a swizzled array on a GPU), so that
// a descriptor holds window addresses and the swizzle sees the same bits.
inline unsigned shared_window(const void* p) {
  unsigned long long at = 0;
  for (auto& s : shared_arrays) {
    at = (at + 1023) / 1024 * 1024;
    if ((const char*)p >= s.base && (const char*)p < s.base + s.nbytes)
      return (unsigned)(at + ((const char*)p - s.base));
    at += s.nbytes;
  }
  char text[96];
  fail(ERROR_BOUNDS, "a shared address of %p, not in a shared array, in %s", p,
       who(current, text, sizeof text));
  return 0;
}

inline const char* window_pointer(unsigned address, const SharedArray** in) {
  unsigned long long at = 0;
  for (auto& s : shared_arrays) {
    at = (at + 1023) / 1024 * 1024;
    if (address >= at && address < at + s.nbytes) {
      *in = &s;
      return s.base + (address - at);
    }
    at += s.nbytes;
  }
  return nullptr;
}

struct WgmmaSlot { float* d; unsigned long long a, b; };
inline std::vector<WgmmaSlot> wgmma_slots;     // per thread of the block

inline unsigned descriptor_field(unsigned long long d, int shift) {
  return (unsigned)((d >> shift) & 0x3FFFu) << 4;
}

template <class T>
inline void wgmma_m64k16(float* d, int n, unsigned long long da, unsigned long long db) {
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  int t = current;
  if ((int)wgmma_slots.size() < nthreads) wgmma_slots.resize(nthreads);
  wgmma_slots[t] = {d, da, db};
  if (!whole_warpgroup("wgmma.mma_async")) return;
  int base = t - t % 128;
  char text[96];
  for (int u = base; u < base + 128; ++u)
    if (wgmma_slots[u].a != da || wgmma_slots[u].b != db)
      return fail(ERROR_WARP, "wgmma.mma_async in %s: thread %d of its warpgroup gives other "
                  "descriptors (the 4 warps multiply one 64-row tile of A by one tile of B)",
                  who(u, text, sizeof text), t - base);
  for (unsigned long long desc : {da, db})
    if (desc >> 62 != 1)
      return fail(ERROR_WARP, "wgmma.mma_async in %s: layout %llu; only the 128-byte "
                  "swizzle (1) is modelled", who(t, text, sizeof text), desc >> 62);
  auto element = [&](unsigned address) -> float {
    address ^= ((address >> 7) & 7u) << 4;
    const SharedArray* s = nullptr;
    const char* p = window_pointer(address, &s);
    if (!p || p + 2 > s->base + s->nbytes) {
      fail(ERROR_BOUNDS, "wgmma.mma_async in %s reads shared address %u, outside every "
           "shared array", who(t, text, sizeof text), address);
      return 0.0f;
    }
    track_tile(s, (const T*)p, READ);
    unsigned short bits;
    std::memcpy(&bits, p, 2);
    return bf16 ? bits_to_float((unsigned)bits << 16) : half_to_float(bits);
  };
  const unsigned a0 = descriptor_field(da, 0), a_sbo = descriptor_field(da, 32);
  const unsigned b0 = descriptor_field(db, 0), b_lbo = descriptor_field(db, 16),
                 b_sbo = descriptor_field(db, 32);
  std::vector<float> A(64 * 16), B(16 * n);
  for (int m = 0; m < 64 && !error; ++m)
    for (int k = 0; k < 16; ++k)
      A[m * 16 + k] = element(a0 + (m % 8) * 128 + (m / 8) * a_sbo + 2 * k);
  for (int k = 0; k < 16 && !error; ++k)
    for (int c = 0; c < n; ++c)
      B[k * n + c] = element(b0 + 2 * (c % 64) + (c / 64) * b_lbo + (k % 8) * 128 +
                             (k / 8) * b_sbo);
  if (error) return;
  for (int u = 0; u < 128; ++u) {
    int w = u / 32, g = (u % 32) / 4, q = u % 4;
    float* out = wgmma_slots[base + u].d;
    for (int i = 0; i < n / 2; ++i) {
      int row = 16 * w + g + 8 * ((i % 4) / 2), col = 8 * (i / 4) + 2 * q + i % 2;
      float acc = out[i];
      for (int k = 0; k < 16; ++k) acc += A[row * 16 + k] * B[k * n + col];
      out[i] = acc;
    }
  }
}

}  // namespace td_emu

template <class T>
inline void td_wgmma_m64n64k16(float* d, unsigned long long a, unsigned long long b) {
  td_emu::wgmma_m64k16<T>(d, 64, a, b);
}
inline unsigned td_shared_address(const void* p) { return td_emu::shared_window(p); }

template <bool Trans, class T> inline void td_ldmatrix_x4(unsigned (&r)[4], const T* row) {
  td_emu::ldmatrix_x4<Trans>(r, row);
}
template <class T>
inline void td_mma_16816(float* d, const unsigned (&a)[4], unsigned b0, unsigned b1) {
  td_emu::mma_16816<T>(d, a, b0, b1);
}
template <class T> inline void td_mma_put(T* at, float v) { td_emu::mma_put(at, v); }
