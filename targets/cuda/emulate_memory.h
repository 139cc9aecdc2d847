// The emulator's memory checks (included by emulate.h): bounds and alignment of every
// access, poison for uninitialized memory, and the race detector of shared memory.
#pragma once

namespace td_emu {

// a global buffer of the launch; its size in bytes (tiles may be of another type than
// the buffer's elements: a float accumulator tile beside bfloat16 inputs)
struct Region { const void* base; long long nbytes; const char* name; };

inline std::vector<Region> regions;            // the launch's global buffers

// ---------------------------------------------------------------- poison

template <class T> inline T poison_value() {
  T v;
  if constexpr (std::is_floating_point<T>::value) v = std::numeric_limits<T>::quiet_NaN();
  else if constexpr (std::is_same<T, half>::value || std::is_same<T, __nv_bfloat16>::value)
    v.bits = 0x7fff;
  else if constexpr (std::is_same<T, bool>::value) v = true;
  else std::memset(&v, 0xcd, sizeof v);
  return v;
}

template <class T, std::size_t N> inline void poison(T (&a)[N]) {
  const T p = poison_value<T>();
  for (auto& x : a) x = p;
}

// ---------------------------------------------------------------- bounds and alignment

inline const Region* region_of(const void* base) {
  for (auto& r : regions)
    if (r.base == base) return &r;
  return nullptr;
}

template <class T> inline long long check(const T* base, long long i, const char* expr,
                                          long long count_hint = -1) {
  long long count = count_hint;
  const char* name = expr;
  if (count < 0)
    if (const Region* r = region_of(base)) {
      count = r->nbytes / (long long)sizeof(T);
      name = r->name;
    }
  if (count >= 0 && (i < 0 || i >= count)) {
    char text[96];
    fail(ERROR_BOUNDS, "out-of-bounds access %s[%lld] (size %lld) in %s", name, i, count,
         who(current, text, sizeof text));
    return 0;   // keep running on a valid element; the launch reports the error
  }
  return i;
}

template <class T, std::size_t N> inline long long check_array(T (&)[N], long long i,
                                                              const char* expr) {
  const T* none = nullptr;
  return check(none, i, expr, (long long)N);
}

// A vector access of V at element i of a buffer of `count` T's whose start is aligned to
// `declared` bytes: every element within, the address a multiple of sizeof(V).
template <class V, class T>
inline bool vector_ok(const T* base, long long count, long long i, std::size_t declared,
                      const char* name, const char* vtype) {
  constexpr long long lanes = sizeof(V) / sizeof(T);
  char text[96];
  if (i < 0 || i + lanes > count) {
    fail(ERROR_BOUNDS, "out-of-bounds %s access %s[%lld..%lld] (size %lld) in %s", vtype,
         name, i, i + lanes - 1, count, who(current, text, sizeof text));
    return false;
  }
  std::uintptr_t address = (std::uintptr_t)(base + i);
  if (declared % sizeof(V)) {
    fail(ERROR_ALIGNMENT, "misaligned %s access %s[%lld] in %s: %s is declared %zu-byte "
         "aligned, a %s needs %zu", vtype, name, i, who(current, text, sizeof text), name,
         declared, vtype, sizeof(V));
    return false;
  }
  if (address % sizeof(V)) {
    fail(ERROR_ALIGNMENT, "misaligned %s access %s[%lld] in %s: address 0x%llx is not a "
         "multiple of %zu", vtype, name, i, who(current, text, sizeof text),
         (unsigned long long)address, sizeof(V));
    return false;
  }
  return true;
}

template <class V> inline V* vector_scratch() {   // where a refused access goes
  static V scratch;
  std::memset(&scratch, 0, sizeof scratch);
  return &scratch;
}

template <class V, class T>
inline V* vector_at(T* base, long long i, const char* expr, const char* vtype) {
  const Region* r = region_of(base);
  long long count = r ? r->nbytes / (long long)sizeof(T)
                      : std::numeric_limits<long long>::max() / 2;   // not a buffer
  if (!vector_ok<V>(base, count, i, sizeof(V), r ? r->name : expr, vtype))
    return vector_scratch<V>();
  return (V*)(base + i);
}

template <class V, class T, std::size_t N>
inline V* vector_at_array(T (&a)[N], long long i, std::size_t declared, const char* name,
                          const char* vtype) {
  if (!vector_ok<V>(&a[0], (long long)N, i, declared, name, vtype)) return vector_scratch<V>();
  return (V*)(&a[i]);
}

// ---------------------------------------------------------------- shared memory

// What one element of shared memory saw in the current barrier phase. wrote, read: the
// phase (epoch) of its last write and of its reads; writer and reader the threads
// (reader -1: several), reader_warp their warp (-1: several), *_syncs the __syncwarp
// count of their warp then; changed: a write in phase `wrote` changed its bits; pending:
// cp.async copies to it issued and not yet landed (emulate_async.h).
struct Shadow {
  long long wrote, read;
  int writer, writer_syncs, reader, reader_warp, reader_syncs;
  bool changed;
  int pending;
};

// Beside each __shared__ array (static, so zeroed): its elements' shadows and the block
// that last poisoned it.
template <std::size_t N> struct SharedState { Shadow shadow[N]; long long block; };

struct SharedArray {
  const char* base;
  long long nbytes, element;
  Shadow* shadow;
  const char* name;
};
inline std::vector<SharedArray> shared_arrays;  // for tiles given by address

template <class T, std::size_t N>
inline void shared_begin(T (&a)[N], SharedState<N>& st, const char* name) {
  if (st.block == block_serial) return;
  st.block = block_serial;
  poison(a);
  for (auto& s : shared_arrays)
    if (s.base == (const char*)a) return;
  shared_arrays.push_back({(const char*)a, (long long)sizeof a, (long long)sizeof(T),
                           st.shadow, name});
}

// Did an access by `u` (or several threads: -1) in warp `u_warp` at its warp's
// __syncwarp count `u_syncs` happen before thread t's access now, in the same phase?
inline bool ordered(int u, int u_warp, int u_syncs, int t) {
  if (u == t) return true;
  if (u_warp != t / 32) return false;
  return lockstep || u_syncs < warp_syncs[u_warp];
}

// Thread `current` reads or writes name[i], which thread u (-1: several) `did` ("wrote",
// "read") in this barrier phase.
inline void race(int access, const char* did, const char* name, long long i, int u) {
  char mine[96], theirs[96];
  who(current, mine, sizeof mine);
  if (u >= 0) who(u, theirs, sizeof theirs);
  else std::snprintf(theirs, sizeof theirs, "other threads");
  fail(ERROR_RACE, "race on shared memory: %s %s %s[%lld], which %s %s since the last "
       "__syncthreads()", mine, access == READ ? "reads" : "writes", name, i, theirs, did);
}

// The current thread accesses element i of a shared array. A write that leaves the
// element's bits as they are (`same`: threads redundantly storing one value) changes
// nothing any reader sees, so it conflicts with no one.
inline void track(Shadow& s, int access, bool same, const char* name, long long i) {
  int t = current, w = t / 32, syncs = warp_syncs[w];
  if (s.pending) {
    char mine[96];
    fail(ERROR_RACE, "race on shared memory: %s %s %s[%lld] while a cp.async or TMA copy "
         "to it is in flight (it lands when awaited: its thread's cp.async.wait_group, or "
         "the copy's mbarrier; then a __syncthreads() shows it to the others)",
         who(t, mine, sizeof mine),
         access == READ ? "reads" : "writes", name, i);
    return;
  }
  bool written = s.wrote == epoch && !ordered(s.writer, s.writer / 32, s.writer_syncs, t);
  if (access == READ) {
    if (written && s.changed) race(READ, "wrote", name, i, s.writer);
    if (s.read != epoch || (s.reader_warp == w && syncs > s.reader_syncs)) {
      s.read = epoch;
      s.reader = t;
      s.reader_warp = w;
      s.reader_syncs = syncs;
    } else {
      if (s.reader != t) s.reader = -1;
      if (s.reader_warp != w) s.reader_warp = -1;
      s.reader_syncs = std::max(s.reader_syncs, syncs);
    }
    return;
  }
  if (same && s.wrote == epoch) return;      // the phase's writer stays the one to blame
  if (written && !same) race(WRITE, "wrote", name, i, s.writer);
  if (!same && s.read == epoch && !ordered(s.reader, s.reader_warp, s.reader_syncs, t))
    race(WRITE, "read", name, i, s.reader);
  s.changed = (s.wrote == epoch && s.changed) || !same;
  s.wrote = epoch;
  s.writer = t;
  s.writer_syncs = syncs;
}

// A store of V (a T, or a vector of them) to shared memory, tracked once its value is
// known: `TD_SHARED_STORE(buf, i) = value`.
template <class T, class V = T> struct SharedStore {
  T* at;
  Shadow* shadow;          // null: an access already refused, nothing to track
  long long i;
  const char* name;
  void operator=(const V value) const {   // a copy: the source may be shared memory
    if (shadow)
      for (std::size_t k = 0; k < sizeof(V) / sizeof(T); ++k) {
        bool same = !std::memcmp((const char*)&value + k * sizeof(T), at + k, sizeof(T));
        track(shadow[k], WRITE, same, name, i + (long long)k);
      }
    if (shadow) bank_access(at, sizeof(V));
    step();   // in lock-step, after every lane's loads of the turn before
    std::memcpy((void*)at, &value, sizeof(V));
  }
};

template <class T, std::size_t N>
inline T& shared_load(T (&a)[N], SharedState<N>& st, long long i, const char* name) {
  i = check_array(a, i, name);
  track(st.shadow[i], READ, false, name, i);
  bank_access(&a[i], sizeof(T));
  step();
  return a[i];
}

template <class T, std::size_t N>
inline SharedStore<T> shared_store(T (&a)[N], SharedState<N>& st, long long i,
                                   const char* name) {
  i = check_array(a, i, name);
  return {&a[i], &st.shadow[i], i, name};
}

template <class V, class T, std::size_t N>
inline V& shared_vector_load(T (&a)[N], SharedState<N>& st, long long i,
                             std::size_t declared, const char* name, const char* vtype) {
  if (!vector_ok<V>(&a[0], (long long)N, i, declared, name, vtype)) return *vector_scratch<V>();
  for (long long k = 0; k < (long long)(sizeof(V) / sizeof(T)); ++k)
    track(st.shadow[i + k], READ, false, name, i + k);
  bank_access(&a[i], sizeof(V));
  step();
  return *(V*)(&a[i]);
}

template <class V, class T, std::size_t N>
inline SharedStore<T, V> shared_vector_store(T (&a)[N], SharedState<N>& st, long long i,
                                             std::size_t declared, const char* name,
                                             const char* vtype) {
  if (!vector_ok<V>(&a[0], (long long)N, i, declared, name, vtype))
    return {(T*)vector_scratch<V>(), nullptr, i, name};
  return {&a[i], &st.shadow[i], i, name};
}

// The global buffer or shared array a tile at p lies in must hold all of it (rows x
// cols elements, rows ldm apart); returns the shared array, or null.
template <class P>
inline bool check_tile(const P* p, int rows, int cols, long long ldm, const char* what,
                       const SharedArray** shared) {
  const char* at = (const char*)p;
  long long last = (long long)(rows - 1) * ldm + cols - 1;
  *shared = nullptr;
  auto within = [&](const char* base, long long nbytes, const char* name) {
    long long first = (at - base) / (long long)sizeof(P), count = nbytes / (long long)sizeof(P);
    if (first + last < count) return true;
    fail(ERROR_BOUNDS, "out-of-bounds %s of %s: elements %lld..%lld (size %lld)", what, name,
         first, first + last, count);
    return false;
  };
  for (auto& r : regions) {
    const char* base = (const char*)r.base;
    if (at >= base && at < base + r.nbytes) return within(base, r.nbytes, r.name);
  }
  for (auto& s : shared_arrays)
    if (at >= s.base && at < s.base + s.nbytes) {
      *shared = &s;
      return within(s.base, s.nbytes, s.name);
    }
  return true;
}

// An element of a tile in a shared array, read or written (with the value `value`).
template <class P>
inline void track_tile(const SharedArray* s, const P* p, int access, const P* value = nullptr) {
  long long i = ((const char*)p - s->base) / s->element;
  bool same = value && !std::memcmp(value, p, sizeof(P));
  track(s->shadow[i], access, same, s->name, i);
}

}  // namespace td_emu
