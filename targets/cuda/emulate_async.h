// The emulator's cp.async (included by emulate.h): asynchronous copies from global to
// shared memory, grouped by cp.async.commit_group and awaited by cp.async.wait_group.
//
// A copy reads its source when issued (inputs do not change during a kernel) but lands
// in shared memory only when its thread waits for its group: the latest a GPU may land
// it. So code that reads a tile without waiting sees the old contents (poison, at first),
// and any access to an element while a copy to it is in flight is reported as a race
// (Shadow::pending); once landed, the copy is its thread's write in that barrier phase,
// so another thread must still pass a __syncthreads() before reading it. Issuing is a
// write too: a thread still reading the element in that phase races with it.
#pragma once

namespace td_emu {

struct AsyncCopy {
  char* at;                 // the destination's first element
  Shadow* shadow;           // and its shadow
  long long i;              // its index, for messages
  int lanes, element;
  const char* name;
  unsigned char bytes[16];  // the source, read at issue; zeros where src-size was 0
};

struct AsyncGroups {
  std::vector<AsyncCopy> open;                  // issued, not yet committed
  std::vector<std::vector<AsyncCopy>> groups;   // committed, oldest first
};

inline std::vector<AsyncGroups> async_threads;
inline long long async_block = 0;

// A new block starts with no copies in flight: drop what an earlier block left.
inline AsyncGroups& async_state() {
  if (async_block != block_serial) {
    for (auto& th : async_threads) {
      for (auto& c : th.open)
        for (int k = 0; k < c.lanes; ++k) --c.shadow[k].pending;
      for (auto& g : th.groups)
        for (auto& c : g)
          for (int k = 0; k < c.lanes; ++k) --c.shadow[k].pending;
    }
    async_threads.assign(nthreads, AsyncGroups{});
    async_block = block_serial;
  }
  return async_threads[current];
}

template <class T, std::size_t N>
inline void cp_async(T (&a)[N], SharedState<N>& st, long long i, std::size_t declared,
                     const char* name, const T* src, long long j, int lanes, bool valid) {
  AsyncGroups& mine = async_state();
  const std::size_t nbytes = sizeof(T) * (std::size_t)lanes;
  char text[96];
  if (nbytes != 4 && nbytes != 8 && nbytes != 16)
    return fail(ERROR_ALIGNMENT, "cp.async of %zu bytes to %s[%lld]: it copies 4, 8 or 16",
                nbytes, name, i);
  if (i < 0 || i + lanes > (long long)N)
    return fail(ERROR_BOUNDS, "out-of-bounds cp.async to %s[%lld..%lld] (size %zu) in %s",
                name, i, i + lanes - 1, N, who(current, text, sizeof text));
  if (declared % nbytes || (std::uintptr_t)(&a[i]) % nbytes)
    return fail(ERROR_ALIGNMENT, "misaligned cp.async of %zu bytes to %s[%lld] in %s", nbytes,
                name, i, who(current, text, sizeof text));
  AsyncCopy c{(char*)&a[i], &st.shadow[i], i, lanes, (int)sizeof(T), name, {}};
  if (valid) {
    const Region* r = region_of(src);
    long long count = r ? r->nbytes / (long long)sizeof(T)
                        : std::numeric_limits<long long>::max() / 2;
    if (j < 0 || j + lanes > count)
      return fail(ERROR_BOUNDS, "out-of-bounds cp.async from %s[%lld..%lld] (size %lld) in %s",
                  r ? r->name : "a global buffer", j, j + lanes - 1, count,
                  who(current, text, sizeof text));
    if ((std::uintptr_t)(src + j) % nbytes)
      return fail(ERROR_ALIGNMENT, "misaligned cp.async of %zu bytes from %s[%lld] in %s",
                  nbytes, r ? r->name : "a global buffer", j, who(current, text, sizeof text));
    std::memcpy(c.bytes, src + j, nbytes);
  }
  for (int k = 0; k < lanes; ++k) {
    track(c.shadow[k], WRITE, false, name, i + k);
    ++c.shadow[k].pending;
  }
  step();
  mine.open.push_back(c);
}

inline void cp_async_commit() {
  AsyncGroups& mine = async_state();
  mine.groups.push_back(std::move(mine.open));
  mine.open.clear();
}

// Land this thread's committed groups until at most `pending` are left in flight.
inline void cp_async_wait(int pending) {
  AsyncGroups& mine = async_state();
  while ((int)mine.groups.size() > pending) {
    for (auto& c : mine.groups.front())
      for (int k = 0; k < c.lanes; ++k) {
        char* at = c.at + (std::size_t)k * c.element;
        --c.shadow[k].pending;
        bool same = !std::memcmp(at, c.bytes + (std::size_t)k * c.element, c.element);
        track(c.shadow[k], WRITE, same, c.name, c.i + k);
        std::memcpy(at, c.bytes + (std::size_t)k * c.element, c.element);
      }
    mine.groups.erase(mine.groups.begin());
  }
}

}  // namespace td_emu
