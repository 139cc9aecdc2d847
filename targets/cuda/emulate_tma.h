// The emulator's tensor memory accelerator and mbarriers (included by emulate.h), for
// the TMA version of a pipelined loop (targets/cuda/tma.py).
//
// A tensor map here is what the launch would encode with cuTensorMapEncodeTiled: the
// tensor's address, rank, element size, sizes and byte strides (innermost first), the
// box and the swizzle. td_tma_load_<r>d reads the box when issued (inputs do not change
// during a kernel; zeros outside the tensor) and lands it in shared memory only when a
// thread waits on its mbarrier and nothing else holds the phase back: the latest a GPU
// may land it. Until then every element it writes is in flight (Shadow::pending): any
// access to one is a race. Issuing is a write by the issuing thread, so a thread still
// reading the stage in that barrier phase races with it; landing is a write by the
// issuing thread again (as a cp.async's), so the others must pass a __syncthreads() after
// the wait before reading it (stricter than the GPU, where the wait alone shows it; what
// the generated code does).
//
// An mbarrier counts arrivals (init's count) and transaction bytes: expect_tx adds bytes
// and arrives; a landed copy takes its bytes off. When both reach zero the phase
// completes and the next begins. mbarrier_wait(bar, parity) returns once the phase of
// that parity has completed; a thread waits (state AT_MBARRIER) while arrivals are
// missing, and a wait that can never complete is reported when the block can go no
// further. Each block starts with no barrier valid (init on a valid one is an error).
#pragma once

struct td_tensor_map {     // (the GPU's is 128 opaque bytes; this one is read by the host)
  long long base, rank, element, swizzle;
  long long dims[5], strides[5], box[5];   // innermost first; strides in bytes
};
#define __grid_constant__

namespace td_emu {

struct TmaWrite {
  char* at;
  Shadow* shadow;
  long long i;
  const char* name;         // the shared array's
  int issuer;               // the thread that started the copy
  int element;              // bytes
  unsigned char bytes[8];
};

struct MBarrier {
  const void* at;
  bool valid;
  int count, pending;
  long long tx;
  unsigned phase;                 // phases completed
  const char* array;              // for messages: array[slot]
  long long slot;
  std::vector<TmaWrite> in_flight;
};

inline std::vector<MBarrier> mbarriers;
inline long long mbarrier_block = 0;
inline std::vector<const void*> mbarrier_waits;    // per thread: the barrier it waits on

inline MBarrier& mbarrier_at(const void* p) {
  if (mbarrier_block != block_serial) {
    for (auto& b : mbarriers)
      for (auto& w : b.in_flight) --w.shadow->pending;
    mbarriers.clear();
    mbarrier_waits.assign(nthreads, nullptr);
    mbarrier_block = block_serial;
  }
  for (auto& b : mbarriers)
    if (b.at == p) return b;
  const SharedArray* s = shared_array_of(p);
  mbarriers.push_back({p, false, 0, 0, 0, 0, s ? s->name : "an mbarrier",
                       s ? ((const char*)p - s->base) / 8 : 0, {}});
  return mbarriers.back();
}

inline bool check_valid(const MBarrier& b, const char* what) {
  char text[96];
  if (!b.valid)
    fail(ERROR_BARRIER, "%s on mbarrier %s[%lld] in %s: it is not initialized "
         "(mbarrier.init)", what, b.array, b.slot, who(current, text, sizeof text));
  return b.valid;
}

inline void complete_if_done(MBarrier& b) {
  if (b.pending || b.tx) return;
  ++b.phase;
  b.pending = b.count;
  for (int t = 0; t < nthreads; ++t)
    if (state[t] == AT_MBARRIER && mbarrier_waits[t] == b.at) state[t] = READY;
}

}  // namespace td_emu

inline void td_mbarrier_init(void* bar, unsigned count) {
  td_emu::MBarrier& b = td_emu::mbarrier_at(bar);
  char text[96];
  if (b.valid)
    return td_emu::fail(td_emu::ERROR_BARRIER, "mbarrier.init of %s[%lld] in %s while it "
                        "is valid (mbarrier.inval it first)", b.array, b.slot,
                        td_emu::who(td_emu::current, text, sizeof text));
  if (count < 1)
    return td_emu::fail(td_emu::ERROR_BARRIER, "mbarrier.init of %s[%lld] with count %u",
                        b.array, b.slot, count);
  b.valid = true;
  b.count = b.pending = (int)count;
  b.tx = 0;
  b.phase = 0;
}

inline void td_mbarrier_fence_init() {}

inline void td_mbarrier_expect_tx(void* bar, unsigned bytes) {
  td_emu::MBarrier& b = td_emu::mbarrier_at(bar);
  if (!td_emu::check_valid(b, "mbarrier.arrive.expect_tx")) return;
  b.tx += bytes;
  --b.pending;
  td_emu::complete_if_done(b);
}

// Land every copy in flight to `b` (the latest moment a GPU could).
inline void td_emu_land(td_emu::MBarrier& b) {
  for (auto& w : b.in_flight) {
    --w.shadow->pending;
    const int element = w.element;
    bool same = !std::memcmp(w.at, w.bytes, element);
    const int waiting = td_emu::current;
    td_emu::current = w.issuer;          // (the write is its issuer's, as a cp.async's)
    td_emu::track(*w.shadow, td_emu::WRITE, same, w.name, w.i);
    td_emu::current = waiting;
    std::memcpy(w.at, w.bytes, element);
    b.tx -= element;
  }
  b.in_flight.clear();
}

inline void td_mbarrier_wait(void* bar, unsigned parity) {
  using namespace td_emu;
  MBarrier& b = mbarrier_at(bar);
  if (!check_valid(b, "mbarrier.try_wait")) return;
  for (;;) {
    // the phase of this parity has completed once the current one has the other parity
    if ((b.phase & 1u) != (parity & 1u)) return;
    if (b.pending == 0 && !b.in_flight.empty()) {
      td_emu_land(b);
      complete_if_done(b);
      continue;
    }
    state[current] = AT_MBARRIER;
    mbarrier_waits[current] = bar;
    yield();
    if (error) return;
    MBarrier& again = mbarrier_at(bar);
    if (&again != &b) return;   // (a new block: never, while this thread waits)
  }
}

inline void td_mbarrier_inval(void* bar) {
  td_emu::MBarrier& b = td_emu::mbarrier_at(bar);
  if (!td_emu::check_valid(b, "mbarrier.inval")) return;
  if (!b.in_flight.empty())
    return td_emu::fail(td_emu::ERROR_BARRIER, "mbarrier.inval of %s[%lld] with %zu TMA "
                        "writes still in flight", b.array, b.slot, b.in_flight.size());
  b.valid = false;
}

// Issue the TMA copy of the box at `coords` (innermost first) into `dst`.
inline void td_emu_tma_load(void* dst, const td_tensor_map& map, void* bar, const int* coords,
                            int rank) {
  using namespace td_emu;
  MBarrier& b = mbarrier_at(bar);
  char text[96];
  if (!check_valid(b, "cp.async.bulk.tensor")) return;
  if (rank != map.rank)
    return fail(ERROR_BOUNDS, "cp.async.bulk.tensor.%dd with a tensor map of rank %lld", rank,
                map.rank);
  std::uintptr_t need = map.swizzle ? 1024 : 128;
  if ((std::uintptr_t)dst % need)
    return fail(ERROR_ALIGNMENT, "misaligned TMA destination in %s: %s shared memory must "
                "start on %zu bytes", who(current, text, sizeof text),
                map.swizzle ? "a 128-byte swizzled box in" : "a box in", (std::size_t)need);
  const SharedArray* s = shared_array_of(dst);
  long long count = 1;
  for (int d = 0; d < rank; ++d) count *= map.box[d];
  const long long nbytes = count * map.element;
  if (!s || s->element != map.element || (const char*)dst + nbytes > s->base + s->nbytes)
    return fail(ERROR_BOUNDS, "out-of-bounds TMA copy of %lld bytes to %s in %s", nbytes,
                s ? s->name : "memory that is no shared array", who(current, text, sizeof text));
  const Region* r = region_of((const void*)map.base);
  long long index[5] = {0, 0, 0, 0, 0};
  for (long long e = 0; e < count; ++e) {
    TmaWrite w{};
    bool inside = true;
    long long from = 0;
    for (int d = 0; d < rank; ++d) {
      long long c = (long long)coords[d] + index[d];
      inside = inside && c >= 0 && c < map.dims[d];
      from += c * map.strides[d];
    }
    if (inside) {
      if (!r || from < 0 || from + map.element > r->nbytes)
        return fail(ERROR_BOUNDS, "out-of-bounds TMA read at byte %lld of %s (its tensor map "
                    "describes more than the buffer holds) in %s", from,
                    r ? r->name : "an unknown buffer", who(current, text, sizeof text));
      std::memcpy(w.bytes, (const char*)map.base + from, map.element);
    }
    std::uintptr_t at = (std::uintptr_t)dst + e * map.element;
    if (map.swizzle) at ^= ((at >> 7) & 7u) << 4;   // chunk ^= line % 8, by address
    w.at = (char*)at;
    w.i = (long long)(w.at - s->base) / s->element;
    w.shadow = &s->shadow[w.i];
    w.name = s->name;
    w.issuer = current;
    w.element = (int)map.element;
    track(*w.shadow, WRITE, false, s->name, w.i);
    ++w.shadow->pending;
    b.in_flight.push_back(w);
    for (int d = 0; d < rank && ++index[d] == map.box[d]; ++d) index[d] = 0;
  }
  step();
}

#define TD_TMA_LOAD(rank)                                                                \
  template <class... C>                                                                  \
  inline void td_tma_load_##rank##d(void* dst, const td_tensor_map& map, void* bar,      \
                                    C... coords) {                                       \
    static_assert(sizeof...(C) == rank, "one coordinate per dimension");                 \
    const int c[] = {(int)coords...};                                                    \
    td_emu_tma_load(dst, map, bar, c, rank);                                             \
  }
TD_TMA_LOAD(1)
TD_TMA_LOAD(2)
TD_TMA_LOAD(3)
TD_TMA_LOAD(4)
TD_TMA_LOAD(5)
#undef TD_TMA_LOAD
