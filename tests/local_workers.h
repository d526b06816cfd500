// Workers in this process, on 127.0.0.1 ports of their own, for tests that run a host against
// real sockets without spawning processes.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/runtime/worker.h"

namespace eb::test {

struct LocalWorkers {
  std::vector<std::unique_ptr<dist::WorkerServer>> servers;
  std::vector<std::string> addrs;
  // weights: the file every worker serves ("": built-in models by name).
  explicit LocalWorkers(int n, const std::string& weights = "") {
    for (int i = 0; i < n; ++i) {
      dist::WorkerOptions o;
      o.weights = weights;
      o.log = [](const std::string&) {};
      servers.push_back(std::make_unique<dist::WorkerServer>(o));
      servers.back()->start_background();
      addrs.push_back("127.0.0.1:" + std::to_string(servers.back()->port()));
    }
  }
};

}  // namespace eb::test
