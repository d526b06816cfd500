// A host that runs HALP over two (or more) workers with the installed edgeband library, and
// checks that the distributed answer equals the local one bit for bit.
//   halp_host IMAGE MODEL HOST:PORT HOST:PORT...
// Start the workers first, e.g. `edgeband worker --listen 127.0.0.1:7001` (twice, two ports).
#include <edgeband/edgeband.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s IMAGE MODEL HOST:PORT HOST:PORT...\n", argv[0]);
    return 2;
  }
  try {
    const std::string image = argv[1];
    const edgeband::Model model = edgeband::Model::load(argv[2]);
    const std::vector<std::string> workers(argv + 3, argv + argc);

    const edgeband::PlanSummary plan =
        edgeband::plan(model, {int(workers.size()) + 1, "1gbit,0.2ms"}, edgeband::Scheme::halp);
    std::printf("%s on %d devices: HALP plan of %d blocks, predicted %.2f ms, %.1f KB per image\n",
                model.name().c_str(), plan.devices, plan.blocks, plan.predicted_ms,
                double(plan.bytes) / 1024.0);

    edgeband::Host host(model, workers);
    std::printf("%d of %zu workers connected\n", host.workers_alive(), workers.size());
    const edgeband::DistributedResult r = host.classify(image, edgeband::Scheme::halp, 5);
    std::printf("distributed: %.2f ms (predicted %.2f ms), %.1f KB moved, %d faults\n", r.ms,
                r.predicted_ms, double(r.bytes) / 1024.0, r.faults);

    const std::vector<edgeband::Prediction> local = model.classify(image, 5);
    bool equal = local.size() == r.top.size();
    for (size_t i = 0; equal && i < local.size(); ++i)
      equal = local[i].index == r.top[i].index && local[i].probability == r.top[i].probability;
    for (const edgeband::Prediction& p : r.top)
      std::printf("  %4d  %.5f  %s\n", p.index, double(p.probability), p.label.c_str());
    std::printf("distributed output %s the local output\n", equal ? "equals" : "DIFFERS FROM");
    return equal && r.faults == 0 && host.workers_alive() == int(workers.size()) ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "halp_host: error: %s\n", e.what());
    return 1;
  }
}
