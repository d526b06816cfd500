// libFuzzer target: the three model readers. The first byte picks the format, so one corpus
// covers TFLite (flatbuffer), GraphDef and ONNX (protobuf). Any exception is a clean reject.
#include <cstdint>
#include <string_view>

#include "models/import/importers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
    b.graph.finalize();
  } catch (const std::exception&) {
  }
  return 0;
}
