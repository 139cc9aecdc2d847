// The emulator's shared-memory bank model (included by emulate.h), on request
// (td_bank_reset(1)): how many wavefronts each warp-wide shared-memory access takes.
//
// A warp's request is the k-th shared access of each of its lanes (uniform control flow
// makes that one instruction). Shared memory has 32 banks of 4-byte words; a wavefront
// serves at most one word per bank (lanes reading the same word share it: a broadcast)
// and at most 128 bytes, so a request takes max(the most distinct words in one bank,
// ceil(distinct bytes / 128)) wavefronts: 1 for 32 lanes reading consecutive floats, 4
// for 32 consecutive float4s (as the hardware splits LDS.128), 32 for a column of a
// 32x32 float tile. Not counted: cp.async's writes.
//
// A tensor-core tile of 16-bit elements read from shared memory (wmma::load_matrix_sync)
// is what sm_80 and later load it with, ldmatrix: 8x8 matrices, each a request of its 8
// rows' 16 bytes, counted apart (matrix_requests, matrix_wavefronts): 1 wavefront each
// when the 8 rows fall in distinct 16-byte bank groups (a row stride of an odd number
// of 16 bytes), 8 when every row starts at the same bank (a stride of 128 bytes).
#pragma once

namespace td_emu {

struct BankAccess {
  int warp;
  long long k;              // the lane's k-th shared access in the block
  std::uintptr_t address;
  int bytes;
};

inline bool bank_counting = false;
inline std::vector<long long> bank_counter;   // per thread of the block
inline std::vector<BankAccess> bank_log;      // the block's accesses, not yet counted
inline long long bank_block = -1, bank_requests = 0, bank_wavefronts = 0;
inline long long matrix_requests = 0, matrix_wavefronts = 0;

inline long long wavefronts(const BankAccess* first, const BankAccess* last) {
  std::vector<std::uintptr_t> words;
  for (const BankAccess* a = first; a != last; ++a)
    for (int b = 0; b < a->bytes; b += 4) words.push_back((a->address + b) / 4);
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  long long per_bank[32] = {}, most = 0;
  for (auto w : words) most = std::max(most, ++per_bank[w % 32]);
  return std::max(most, (long long)(words.size() * 4 + 127) / 128);
}

// Count the logged accesses: one request per (warp, k).
inline void bank_flush() {
  std::sort(bank_log.begin(), bank_log.end(), [](const BankAccess& a, const BankAccess& b) {
    return a.warp != b.warp ? a.warp < b.warp : a.k < b.k;
  });
  for (std::size_t i = 0; i < bank_log.size();) {
    std::size_t j = i;
    while (j < bank_log.size() && bank_log[j].warp == bank_log[i].warp &&
           bank_log[j].k == bank_log[i].k)
      ++j;
    ++bank_requests;
    bank_wavefronts += wavefronts(&bank_log[i], &bank_log[0] + j);
    i = j;
  }
  bank_log.clear();
}

inline void bank_access(const void* p, std::size_t bytes) {
  if (!bank_counting) return;
  if (bank_block != block_serial) {
    bank_flush();
    bank_counter.assign(nthreads, 0);
    bank_block = block_serial;
  }
  bank_log.push_back({current / 32, bank_counter[current]++, (std::uintptr_t)p, (int)bytes});
}

// ldmatrix's requests for a rows x cols tile of 16-bit elements at p (ldm elements a row);
// every lane of the warp makes the call, the first lane's is counted.
inline void bank_matrix_tile(const void* p, int rows, int cols, unsigned ldm) {
  if (!bank_counting || current % 32 != 0) return;
  for (int r0 = 0; r0 < rows; r0 += 8)
    for (int c0 = 0; c0 < cols; c0 += 8) {
      BankAccess row_reads[8];
      for (int r = 0; r < 8; ++r)
        row_reads[r] = {0, 0, (std::uintptr_t)p + 2 * ((std::uintptr_t)(r0 + r) * ldm + c0),
                        16};
      ++matrix_requests;
      matrix_wavefronts += wavefronts(row_reads, row_reads + 8);
    }
}

}  // namespace td_emu

extern "C" __attribute__((visibility("default"))) void td_bank_reset(int enable) {
  td_emu::bank_log.clear();
  td_emu::bank_block = -1;
  td_emu::bank_requests = td_emu::bank_wavefronts = 0;
  td_emu::matrix_requests = td_emu::matrix_wavefronts = 0;
  td_emu::bank_counting = enable != 0;
}

extern "C" __attribute__((visibility("default"))) void td_bank_counts(long long* out) {
  td_emu::bank_flush();
  out[0] = td_emu::bank_requests;
  out[1] = td_emu::bank_wavefronts;
  out[2] = td_emu::matrix_requests;
  out[3] = td_emu::matrix_wavefronts;
}
