// What the three importers share: a constant tensor type, weight layout conversions, TF SAME
// padding, and NetBuilder, which appends engine layers while tracking shapes so that each
// importer only maps its operators.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/graph.h"
#include "models/import/wire.h"

namespace eb::import {

struct ConstTensor {
  std::vector<long> dims;
  std::vector<float> data;
  long numel() const;
  std::string dims_str() const;
};

// Element count of `dims`; throws on negative or absurd sizes (hostile files).
long checked_numel(const std::vector<long>& dims, const std::string& what);

// Weight layouts -> OHWI ([cout][kh][kw][cin]); depthwise -> [c][kh][kw][1].
std::vector<float> hwio_to_ohwi(const ConstTensor& w);  // TensorFlow Conv2D
std::vector<float> oihw_to_ohwi(const ConstTensor& w);  // ONNX Conv
std::vector<float> hwc1_to_dw(const ConstTensor& w);    // TF depthwise [kh][kw][c][1]
std::vector<float> transpose2d(const std::vector<float>& a, long rows, long cols);

struct Pads {
  long t = 0, l = 0, b = 0, r = 0;
};
Pads same_pads(const Shape& in, long kh, long kw, long sh, long sw);

struct ImportOptions {
  std::string name;         // model name recorded in the weights file
  std::string labels_path;  // one class name per line (optional)
};

class NetBuilder {
 public:
  Graph graph;
  // Appends a layer reading `inputs` (node ids, -1 = network input); returns its id.
  int add(const std::string& name, std::unique_ptr<Layer> layer, std::vector<int> inputs);
  Shape shape(int id) const { return graph.shape_of(id); }
  // Weights OHWI (depthwise [c][kh][kw][1], grouped [cout][kh][kw][cin/groups]). A dense 1x1
  // convolution of a 1x1 map becomes a fully connected layer, so classifier heads stay in the
  // host-only tail.
  int conv(const std::string& name, int in, std::vector<float> w, std::vector<float> bias,
           long cout, long kh, long kw, long sh, long sw, Pads pads, bool depthwise,
           Activation act, long groups = 1);
  int fully_connected(const std::string& name, int in, std::vector<float> w,
                      std::vector<float> bias, long out, Activation act);
  // Max/average pooling; a VALID average pool over the whole map becomes global pooling.
  int pool(const std::string& name, int in, bool max, long kh, long kw, long sh, long sw,
           Pads pads);
  int activation(const std::string& name, int in, Activation act);
  // y = x * scale + shift per channel (BN, or TF's unfolded BN arithmetic); folded later.
  int affine(const std::string& name, int in, std::vector<float> scale, std::vector<float> shift);
  // Sets name and labels, fuses, and returns the finished graph.
  Graph finish(const ImportOptions& opt);
};

// Reads the file whole (size-capped); throws ImportError naming it.
std::string read_file(const std::string& path);

// Class names, one per line (a trailing '\r' dropped), exactly `classes` of them.
std::vector<std::string> parse_labels(const std::string& text, long classes,
                                      const std::string& what = "labels");

}  // namespace eb::import
