// The emulator's execution model (included by emulate.h): the threads of a block as
// fibers, their order, __syncthreads(), the warp intrinsics, and the launch of a grid.
//
// A fiber runs until it has to wait — at __syncthreads(); at a warp intrinsic, until
// every lane its mask names has arrived at the same intrinsic or exited; in lock-step
// mode at every shared-memory access (step()) — and then the scheduler runs another.
// A barrier phase ends when no thread can go on: then all must wait at the barrier
// (or all be done). In random order the scheduler draws the order of the blocks, and of
// the threads (in lock-step: of the warps, and of the lanes in each) for every phase,
// from the launch's seed.
#pragma once

namespace td_emu {

enum Error { ERROR_BARRIER = 1, ERROR_BOUNDS, ERROR_ALIGNMENT, ERROR_RACE, ERROR_WARP };
enum State { READY, AT_BARRIER, DONE, AT_WARP, AT_GROUP, AT_MBARRIER };   // of each thread
enum Access { READ, WRITE };

inline td_dim3 thread_idx, block_idx, block_dim, grid_dim;
inline int current = 0, nthreads = 1;
inline std::vector<ucontext_t> contexts;
inline std::vector<int> state;
inline ucontext_t scheduler;
inline int error = 0;
inline char message[512];
inline void (*entry)() = nullptr;
inline bool shuffled = false, lockstep = false;
inline unsigned long long rng = 0;
// Barrier phases and blocks so far, counted over every launch, so that neither repeats:
// a race needs two accesses in one phase; shared memory is poisoned once per block.
inline long long epoch = 0, block_serial = 0;
inline std::vector<int> warp_syncs;            // the __syncwarp()s each warp completed

inline unsigned long long next_random() {     // splitmix64
  unsigned long long z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline void shuffle(std::vector<int>& v) {
  if (!shuffled) return;
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[next_random() % i]);
}

// "thread (x,y,z) of block (x,y,z)" for thread t of the running block
inline const char* who(int t, char* out, std::size_t size) {
  unsigned x = t % block_dim.x, y = (t / block_dim.x) % block_dim.y;
  unsigned z = t / (block_dim.x * block_dim.y);
  std::snprintf(out, size, "thread (%u,%u,%u) of block (%u,%u,%u)", x, y, z, block_idx.x,
                block_idx.y, block_idx.z);
  return out;
}

inline void fail(int code, const char* format, ...) {
  if (error) return;
  error = code;
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
}

// ---------------------------------------------------------------- scheduling

inline void set_thread(int t) {
  current = t;
  thread_idx.x = t % block_dim.x;
  thread_idx.y = (t / block_dim.x) % block_dim.y;
  thread_idx.z = t / (block_dim.x * block_dim.y);
}

inline void resume(int t) {
  set_thread(t);
  swapcontext(&scheduler, &contexts[t]);
}

inline void yield() { swapcontext(&contexts[current], &scheduler); }

inline void syncthreads() {
  state[current] = AT_BARRIER;
  yield();
}

// In lock-step mode the other lanes of the warp catch up here.
inline void step() {
  if (lockstep) yield();
}

// Runs the block's threads until none can go on: each waits at a barrier, at a warp
// intrinsic, or is done. In lock-step mode a warp's lanes take turns, warp after warp.
inline void run_phase(std::vector<int>& order) {
  shuffle(order);
  if (!lockstep) {
    for (bool ran = true; ran;) {
      ran = false;
      for (int t : order)
        if (state[t] == READY) { resume(t); ran = true; }
    }
    return;
  }
  int nwarps = (nthreads + 31) / 32;
  std::vector<std::vector<int>> lanes(nwarps);
  for (int t : order) lanes[t / 32].push_back(t);
  std::vector<int> warps(nwarps);
  for (int w = 0; w < nwarps; ++w) warps[w] = w;
  shuffle(warps);
  for (int w : warps)
    for (bool ran = true; ran;) {
      ran = false;
      for (int t : lanes[w])
        if (state[t] == READY) { resume(t); ran = true; }
    }
}

// ---------------------------------------------------------------- warp intrinsics

enum WarpOp { SYNCWARP, SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL };
inline const char* const warp_op_name[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync",
    "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync"};

// what a thread brought to a warp intrinsic, and what it takes away
struct WarpCall { int op; unsigned mask; int arg, width; unsigned long long value, result; };
inline std::vector<WarpCall> calls;

inline int lanes_of_warp(int w) { return std::min(32, nthreads - 32 * w); }

// The lane a shuffle reads (PTX shfl: width splits the warp into segments; a lane
// outside the caller's segment, or past its end for xor, means the caller's own value).
inline int shuffle_source(const WarpCall& c, int lane) {
  int first = lane & ~(c.width - 1), last = first + c.width - 1;
  switch (c.op) {
    case SHFL_IDX: return first + (c.arg & (c.width - 1));
    case SHFL_UP: return lane - c.arg >= first ? lane - c.arg : lane;
    case SHFL_DOWN: return lane + c.arg <= last ? lane + c.arg : lane;
    default: return (lane ^ c.arg) <= last ? (lane ^ c.arg) : lane;   // SHFL_XOR
  }
}

// Lane u of warp w (at a warp intrinsic) is done when every lane its mask names has
// arrived at the same intrinsic or exited: then all of them get their results and go on.
inline bool try_complete(int u) {
  const WarpCall c = calls[u];
  int w = u / 32, base = 32 * w, size = lanes_of_warp(w);
  unsigned present = 0, ballot = 0;
  for (int lane = 0; lane < size; ++lane) {
    if (!(c.mask >> lane & 1u) || state[base + lane] == DONE) continue;
    if (state[base + lane] != AT_WARP) return false;
    present |= 1u << lane;
    if (calls[base + lane].value) ballot |= 1u << lane;
  }
  char text[96];
  for (int lane = 0; lane < size; ++lane) {
    if (!(present >> lane & 1u)) continue;
    WarpCall& mine = calls[base + lane];
    if (c.op == BALLOT) mine.result = ballot;
    else if (c.op == ANY) mine.result = ballot != 0;
    else if (c.op == ALL) mine.result = ballot == present;
    else if (c.op != SYNCWARP) {
      int src = shuffle_source(mine, lane);
      const char* why = src < 0 || src >= size ? "does not exist"
          : !(c.mask >> src & 1u) ? "is not in the mask"
          : !(present >> src & 1u) ? "has exited" : nullptr;
      if (why)
        fail(ERROR_WARP, "%s(mask 0x%08x) in %s: lane %d reads lane %d, which %s",
             warp_op_name[c.op], c.mask, who(base + lane, text, sizeof text), lane, src, why);
      else
        mine.result = calls[base + src].value;
    }
    state[base + lane] = READY;
  }
  if (c.op == SYNCWARP) ++warp_syncs[w];
  return true;
}

inline unsigned long long warp_call(int op, unsigned mask, unsigned long long value,
                                    int arg = 0, int width = 32) {
  int t = current, lane = t % 32, base = t - lane;
  calls[t] = {op, mask, arg, width, value, value};
  char text[96];
  if (!(mask >> lane & 1u)) {
    fail(ERROR_WARP, "%s(mask 0x%08x) called by lane %d, which the mask leaves out, in %s",
         warp_op_name[op], mask, lane, who(t, text, sizeof text));
    return value;
  }
  if (width < 1 || width > 32 || (width & (width - 1))) {
    fail(ERROR_WARP, "%s with width %d (a power of two up to 32) in %s", warp_op_name[op],
         width, who(t, text, sizeof text));
    return value;
  }
  for (int other = 0; other < lanes_of_warp(t / 32); ++other) {
    const WarpCall& c = calls[base + other];
    if ((mask >> other & 1u) && state[base + other] == AT_WARP && (c.mask != mask || c.op != op)) {
      fail(ERROR_WARP, "%s(mask 0x%08x) by lane %d while lane %d waits in %s(mask 0x%08x), "
           "in %s", warp_op_name[op], mask, lane, other, warp_op_name[c.op], c.mask,
           who(t, text, sizeof text));
      return value;
    }
  }
  state[t] = AT_WARP;
  if (!try_complete(t)) yield();          // resumed by the lane that completes the call
  return calls[t].result;
}

template <class T> inline T shuffle_call(int op, unsigned mask, T v, int arg, int width) {
  static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_call(op, mask, bits, arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// A thread exited: calls waiting only for it may now complete.
inline void exited(int t) {
  int base = t - t % 32;
  for (int lane = 0; lane < lanes_of_warp(t / 32); ++lane)
    if (state[base + lane] == AT_WARP) try_complete(base + lane);
}

// ---------------------------------------------------------------- warpgroups

// The caller's warpgroup (4 warps, threads 128g..128g+127 of the block) meets at a
// warpgroup-wide instruction `what`: the last to arrive returns true (and does the work
// for all while the others wait), the others false once it has. A thread of the group
// that exited, or a block without whole warpgroups, is an error.
inline const char* group_what = "";
inline bool whole_warpgroup(const char* what) {
  int t = current, base = t - t % 128;
  char text[96];
  if (base + 128 > nthreads) {
    fail(ERROR_WARP, "%s needs a warpgroup of 128 threads; %s is in a block of %d", what,
         who(t, text, sizeof text), nthreads);
    return false;
  }
  state[t] = AT_GROUP;
  group_what = what;
  for (int u = base; u < base + 128; ++u) {
    if (state[u] == DONE) {
      fail(ERROR_WARP, "%s in %s: thread %d of its warpgroup has exited (all 128 must "
           "execute it)", what, who(t, text, sizeof text), u - base);
      return false;
    }
    if (state[u] != AT_GROUP) {
      yield();                      // resumed once the last of the group has arrived
      return false;
    }
  }
  for (int u = base; u < base + 128; ++u) state[u] = READY;
  return true;
}

// ---------------------------------------------------------------- launch

inline void trampoline() {
  entry();
  state[current] = DONE;
  exited(current);
}

inline void report_stuck(int t) {
  const WarpCall& c = calls[t];
  int base = t - t % 32;
  char text[96];
  for (int lane = 0; lane < lanes_of_warp(t / 32); ++lane) {
    if (!(c.mask >> lane & 1u) || state[base + lane] != AT_BARRIER) continue;
    fail(ERROR_WARP, "%s(mask 0x%08x) in %s waits for lane %d, which waits at "
         "__syncthreads()", warp_op_name[c.op], c.mask, who(t, text, sizeof text), lane);
    return;
  }
  fail(ERROR_WARP, "%s(mask 0x%08x) in %s never completes", warp_op_name[c.op], c.mask,
       who(t, text, sizeof text));
}

inline void run_block(std::vector<std::unique_ptr<char[]>>& stacks, std::size_t stack_size) {
  ++block_serial;
  ++epoch;
  for (int t = 0; t < nthreads; ++t) {
    getcontext(&contexts[t]);
    contexts[t].uc_stack.ss_sp = stacks[t].get();
    contexts[t].uc_stack.ss_size = stack_size;
    contexts[t].uc_link = &scheduler;
    makecontext(&contexts[t], trampoline, 0);
    state[t] = READY;
  }
  std::fill(warp_syncs.begin(), warp_syncs.end(), 0);
  std::vector<int> order(nthreads);
  for (int t = 0; t < nthreads; ++t) order[t] = t;
  for (;;) {
    run_phase(order);
    int waiting = 0, done = 0, stuck = -1;
    for (int t = 0; t < nthreads; ++t) {
      waiting += state[t] == AT_BARRIER;
      done += state[t] == DONE;
      if (state[t] == AT_WARP && stuck < 0) stuck = t;
      if (state[t] == AT_MBARRIER && !error) {
        char text[96];
        fail(ERROR_BARRIER, "an mbarrier wait in %s never completes: arrivals or TMA bytes "
             "it expects are missing, or their thread waits elsewhere",
             who(t, text, sizeof text));
      }
      if (state[t] == AT_GROUP && !error) {
        char text[96];
        fail(ERROR_WARP, "%s in %s never completes: its warpgroup's other threads wait at "
             "__syncthreads() or elsewhere", group_what, who(t, text, sizeof text));
      }
    }
    if (error) return;
    if (done == nthreads) return;
    if (stuck >= 0) return report_stuck(stuck);
    if (done > 0)
      return fail(ERROR_BARRIER, "__syncthreads() reached by %d of %d threads of block "
                  "(%u,%u,%u); the others had finished", waiting, nthreads, block_idx.x,
                  block_idx.y, block_idx.z);
    for (int t = 0; t < nthreads; ++t) state[t] = READY;   // everyone arrived: release
    ++epoch;
  }
}

// Runs entry() for every thread of every block; returns 0 or the error code. flags: 1
// random order (drawn from seed), 2 warp lock-step.
inline int launch(long long gx, long long gy, long long gz, int bx, int by, int bz,
                  void (*fn)(), unsigned long long seed, int flags) {
  const std::size_t stack_size = 64 * 1024;
  block_dim = {(unsigned)bx, (unsigned)by, (unsigned)bz};
  grid_dim = {(unsigned)gx, (unsigned)gy, (unsigned)gz};
  nthreads = bx * by * bz;
  entry = fn;
  rng = seed;
  shuffled = flags & 1;
  lockstep = flags & 2;
  contexts.assign(nthreads, ucontext_t{});
  state.assign(nthreads, READY);
  calls.assign(nthreads, WarpCall{});
  warp_syncs.assign((nthreads + 31) / 32, 0);
  std::vector<std::unique_ptr<char[]>> stacks;
  for (int t = 0; t < nthreads; ++t) stacks.emplace_back(new char[stack_size]);
  error = 0;
  // blocks in the order i -> (a*i + b) mod count, a coprime with count: shuffled if random
  using u64 = unsigned long long;
  const u64 count = (u64)gx * (u64)gy * (u64)gz;
  u64 a = 1, b = 0;
  if (shuffled && count > 1) {
    do a = 1 + next_random() % (count - 1);
    while (std::gcd(a, count) != 1);
    b = next_random() % count;
  }
  for (u64 i = 0; i < count && !error; ++i) {
    u64 id = (u64)(((unsigned __int128)a * i + b) % count);
    block_idx = {(unsigned)(id % (u64)gx), (unsigned)(id / (u64)gx % (u64)gy),
                 (unsigned)(id / ((u64)gx * (u64)gy))};
    run_block(stacks, stack_size);
  }
  return error;
}

}  // namespace td_emu
