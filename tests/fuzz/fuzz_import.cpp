// libFuzzer target: the three model readers. The first byte picks the format, so one corpus
// covers TFLite (flatbuffer), GraphDef and ONNX (protobuf). Any exception is a clean reject.
#include <cstdint>
#include <string_view>

#include "models/import/importers.h"
#include "tests/fuzz/target.h"

EB_FUZZ_TARGET(import) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  eb::import::NetBuilder b;
  try {
    switch (data[0] % 3) {
      case 0:
        eb::import::import_tflite(b, bytes, -1);
        break;
      case 1:
        eb::import::import_graphdef(b, bytes, -1);
        break;
      default:
        eb::import::import_onnx(b, bytes, -1);
        break;
    }
    // Structure always (folding, fusing, every layer's shapes); packing only for small models:
    // packing a real model's weights cost ~10 ms an input and capped the target at ~100
    // executions a second, and what it checks is arithmetic, not parsing.
    long params = 0;
    for (int i = 0; i < b.graph.size(); ++i)
      for (const eb::Param& p : b.graph.node(i).layer->params()) params += long(p.data->size());
    b.graph.finalize(params <= 65536);
  } catch (const std::exception&) {
  }
  return 0;
}
