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

}  // namespace td_emu

template <bool Trans, class T> inline void td_ldmatrix_x4(unsigned (&r)[4], const T* row) {
  td_emu::ldmatrix_x4<Trans>(r, row);
}
template <class T>
inline void td_mma_16816(float* d, const unsigned (&a)[4], unsigned b0, unsigned b1) {
  td_emu::mma_16816<T>(d, a, b0, b1);
}
template <class T> inline void td_mma_put(T* at, float v) { td_emu::mma_put(at, v); }
