#include "models/import/importers.h"

namespace eb::import {

Format detect_format(const std::string& path, std::string_view bytes) {
  if (bytes.size() >= 8 && bytes.substr(4, 4) == "TFL3") return Format::tflite;
  auto ends = [&](const char* e) {
    const size_t n = std::strlen(e);
    return path.size() >= n && path.compare(path.size() - n, n, e) == 0;
  };
  if (ends(".onnx")) return Format::onnx;
  if (ends(".pb")) return Format::graphdef;
  if (ends(".tflite"))
    throw ImportError("'" + path + "' is named .tflite but has no TFL3 identifier");
  throw ImportError("'" + path + "': unknown model format (expected .tflite, .pb or .onnx)");
}

Graph import_model(const std::vector<std::string>& paths, const ImportOptions& opt) {
  if (paths.empty()) throw ImportError("no input files");
  NetBuilder b;
  int out = -1;
  for (const std::string& p : paths) {
    const std::string bytes = read_file(p);
    try {
      switch (detect_format(p, bytes)) {
        case Format::tflite:
          out = import_tflite(b, bytes, out);
          break;
        case Format::graphdef:
          out = import_graphdef(b, bytes, out);
          break;
        case Format::onnx:
          out = import_onnx(b, bytes, out);
          break;
      }
    } catch (const ImportError& e) {
      throw ImportError("'" + p + "': " + e.what());
    }
  }
  if (out != b.graph.size() - 1)
    throw ImportError("the output is not the last converted layer (dead branches in the model)");
  return b.finish(opt);
}

}  // namespace eb::import
