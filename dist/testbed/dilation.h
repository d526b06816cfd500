// Slow-device emulation by time dilation: every section of CPU work on the data path (one
// layer, one channel slice, and encoding, decoding, sealing and opening frames, planning; see
// core/compute_hook.h) is stretched to `factor` times the CPU time it used, by sleeping after it.
// A board spends its CPU on all of these, not only on layers.
//
// Why not a CPU quota: a quota'd process that has been idle runs at full speed until its quota
// is spent, and three quota'd devices on two cores queue for the CPU at every hand-off. A
// sleeping device leaves its core free, so up to cores * factor emulated devices run side by side
// without queueing for the CPU, each `factor` times slower than one core here (README: F = 9
// gives VGG-16 the speed ncnn's published benchmark reports for a whole Raspberry Pi 4). Requires
// one compute thread per process: only the calling thread's CPU time is counted.
#pragma once
#include <cstdint>
#include <string>

#include "core/compute_hook.h"

namespace eb {

// 1 = off; throws std::invalid_argument outside [1, 100]. Above 1 it attaches a DilatedSection
// to every compute section of graph execution (core/compute_hook.h); at 1 it detaches.
void set_compute_dilation(double factor);
double compute_dilation();

// Emulated devices sharing one machine take turns to compute: a section holds an exclusive
// flock on `lock_file` while it computes a layer or plans (not while it sleeps; a frame's
// checksum, encryption, encoding and decoding, small and partly on a core of their own on a
// board, never wait for a turn). Without turns, devices whose
// sections coincide (every device of a HALP block starts together) share this machine's caches
// and memory bus, which separate boards do not: a fully connected layer's channel slices,
// streamed by two devices at once, took 1.5x their CPU time alone. Waiting for the turn counts
// as part of the stretch, so the emulation stays exact while the sections of all devices fit:
// devices <= factor (each computes 1/factor of the time). Every thread opens the file itself,
// so threads take turns too; the lock dies with its process. "" = off (the default). Throws
// std::runtime_error if the file cannot be opened.
void set_dilation_turns(const std::string& lock_file);
std::string dilation_turns();

// What this process's stretched sections used, per kind of work (index: int(Work)): CPU time;
// the CPU time the stretch was computed from (`charged`: the least seen for named work, see
// DilatedSection); and wall time from entering a section to the end of its stretch.
// wall / charged is the factor a board pays for that kind of work.
struct DilationTotals {
  int64_t cpu_ns[kWorkKinds] = {}, charged_ns[kWorkKinds] = {}, wall_ns[kWorkKinds] = {};
  long sections[kWorkKinds] = {};
};
DilationTotals dilation_totals();
void reset_dilation_totals();

// Stretches the code between its construction and destruction (on this thread) to factor x its
// CPU time. Sleeps shorter than ~0.1 ms are deferred to the next section of the same kind of
// work, so many tiny layers (or frames) still add up to the right total; oversleeping is paid
// back by the next sections of that kind.
// Sections that name their work (a layer and the rows or channels of its output) are
// stretched from the least CPU time this process has measured for that work: a board computes
// a layer in the same time every run, while a shared machine adds noise (a vCPU the hypervisor
// stole, a neighbour thrashing the cache) that a stretch would multiply by the factor. Work is
// keyed by the layer's address, so the record lives as long as the model.
class DilatedSection {
 public:
  DilatedSection() : DilatedSection(ComputeSection{}) {}
  explicit DilatedSection(const ComputeSection& work);
  ~DilatedSection();
  DilatedSection(const DilatedSection&) = delete;
  DilatedSection& operator=(const DilatedSection&) = delete;

 private:
  double factor_;
  ComputeSection work_;
  int turn_fd_ = -1;  // holds the turn (set_dilation_turns) until destroyed
  int64_t cpu0_ns_ = 0, wall0_ns_ = 0;
};

}  // namespace eb
