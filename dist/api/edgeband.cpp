// The public API (include/edgeband/edgeband.h) over the layers: models and core for a model and
// local inference, dist/plan for plans, dist/runtime for the host. Nothing here is new logic:
// each call is what the matching `edgeband` subcommand does.
#include "edgeband/edgeband.h"

#include <chrono>

#include "core/image.h"
#include "dist/plan/planner.h"
#include "dist/runtime/handshake.h"
#include "dist/runtime/host.h"
#include "dist/runtime/palette_wire.h"
#include "models/classify.h"
#include "models/zoo.h"

namespace edgeband {

struct Model::Impl {
  std::shared_ptr<const eb::Graph> graph;
  uint64_t hash = 0;  // the model's identity, which workers check
};

namespace {

std::vector<Prediction> predictions(const eb::Graph& g, const eb::Tensor& out, int top) {
  std::vector<Prediction> r;
  for (const eb::Prediction& p : eb::top_k(out, top)) {
    const std::string label = size_t(p.index) < g.labels.size() ? g.labels[size_t(p.index)] : "";
    r.push_back({p.index, p.prob, label});
  }
  return r;
}

eb::Tensor input_of(const eb::Graph& g, const std::string& image_path) {
  return eb::preprocess(eb::load_image(image_path), g.input.h, g.norm);
}

eb::dist::Scheme internal(Scheme s) {
  switch (s) {
    case Scheme::local: return eb::dist::Scheme::local;
    case Scheme::modnn: return eb::dist::Scheme::modnn;
    case Scheme::dpfp: return eb::dist::Scheme::dpfp;
    case Scheme::halp: return eb::dist::Scheme::halp;
  }
  return eb::dist::Scheme::local;
}

eb::dist::Cluster cluster_like_this_machine(const eb::Graph& g, int devices, const std::string& link) {
  if (devices < 1) throw std::invalid_argument("a cluster needs at least one device");
  eb::dist::Cluster c;
  c.link = eb::dist::parse_link(link);
  c.devices.assign(size_t(devices), eb::dist::measure_profile(g, "this-machine", 3));
  return c;
}

}  // namespace

Model Model::load(const std::string& name, const std::string& weights_path) {
  auto impl = std::make_shared<Impl>();
  impl->graph = std::make_shared<const eb::Graph>(eb::models::load_model(name, weights_path, &impl->hash));
  Model m;
  m.impl_ = std::move(impl);
  return m;
}

std::string Model::name() const { return impl_->graph->model; }
int Model::input_size() const { return impl_->graph->input.h; }

std::vector<Prediction> Model::classify(const std::string& image_path, int top) const {
  const eb::Graph& g = *impl_->graph;
  return predictions(g, g.forward(input_of(g, image_path)), top);
}

Scheme parse_scheme(const std::string& name) {
  switch (eb::dist::parse_scheme(name)) {
    case eb::dist::Scheme::local: return Scheme::local;
    case eb::dist::Scheme::modnn: return Scheme::modnn;
    case eb::dist::Scheme::dpfp: return Scheme::dpfp;
    case eb::dist::Scheme::halp: return Scheme::halp;
  }
  return Scheme::local;
}

PlanSummary plan(const Model& model, const ClusterSpec& cluster, Scheme scheme) {
  const eb::Graph& g = *model.impl().graph;
  const eb::dist::Plan p =
      eb::dist::make_plan(g, cluster_like_this_machine(g, cluster.devices, cluster.link), internal(scheme));
  return {scheme, p.devices, int(p.blocks.size()), p.predicted_ms, p.bytes, p.to_json(g).dump(2)};
}

struct Host::Impl {
  std::shared_ptr<const eb::Graph> graph;
  HostOptions options;
  eb::dist::HostRuntime runtime;
  eb::dist::DeviceProfile profile;  // this machine, assumed for every device
};

namespace {
eb::dist::RuntimeOptions runtime_options(const HostOptions& o) {
  eb::dist::RuntimeOptions ro;
  ro.timeout_ms = o.timeout_ms;
  if (!o.secret_file.empty()) ro.creds.psk = eb::dist::load_psk_file(o.secret_file);
  if (!o.key_file.empty()) ro.creds.key = eb::dist::load_key_file(o.key_file);
  if (!o.worker_keys_file.empty()) ro.creds.trusted = eb::dist::load_public_keys(o.worker_keys_file);
  ro.insecure = o.insecure;
  return ro;
}
}  // namespace

Host::Host(const Model& model, const std::vector<std::string>& workers, HostOptions options)
    : impl_(new Impl{model.impl().graph, options,
                     eb::dist::HostRuntime(model.impl().graph, model.impl().hash, workers,
                                           runtime_options(options)),
                     eb::dist::measure_profile(*model.impl().graph, "this-machine", 3)}) {}

Host::~Host() = default;

int Host::workers_alive() const { return impl_->runtime.alive(); }

DistributedResult Host::classify(const std::string& image_path, Scheme scheme, int top) {
  const eb::Graph& g = *impl_->graph;
  eb::dist::Cluster c;
  c.link = eb::dist::parse_link(impl_->options.link);
  c.devices.assign(size_t(impl_->runtime.alive() + 1), impl_->profile);
  const std::vector<eb::Tensor> in{input_of(g, image_path)};
  c.input_levels = eb::dist::images_palette_levels(in);  // an image at the model's size: palettes
  const eb::dist::Plan p = eb::dist::make_plan(g, c, internal(scheme));
  eb::dist::InferStats st;
  const std::vector<eb::Tensor> out = impl_->runtime.infer(in, p, &st);
  DistributedResult r;
  r.top = predictions(g, out.at(0), top);
  r.ms = st.ms;
  r.predicted_ms = p.predicted_ms;
  r.bytes = st.bytes_sent + st.bytes_received;
  r.faults = st.faults;
  return r;
}

}  // namespace edgeband
