// Converters from other frameworks' files to an engine Graph (then saved as .ebw).
//   TFLite (flatbuffer), TensorFlow frozen GraphDef (protobuf), ONNX (protobuf).
// Each importer appends to a NetBuilder, reading its input from node `in` (-1: the file's own
// input becomes the network input), and returns the node holding the file's output; so two
// files in a row (a feature extractor and a head) join into one model.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "models/import/builder.h"

namespace eb::import {

enum class Format { tflite, graphdef, onnx };
// By content where it is decisive (TFLite's "TFL3"), else by extension (.pb, .onnx).
Format detect_format(const std::string& path, std::string_view bytes);

int import_tflite(NetBuilder& b, std::string_view file, int in);
int import_graphdef(NetBuilder& b, std::string_view file, int in);
int import_onnx(NetBuilder& b, std::string_view file, int in);

// Reads, joins and converts `paths`; never returns a partial graph (throws ImportError).
Graph import_model(const std::vector<std::string>& paths, const ImportOptions& opt);

}  // namespace eb::import
