// Classifies a photo on this machine with the installed edgeband library.
//   classify IMAGE [MODEL] [WEIGHTS.ebw]
// MODEL defaults to mobilenet_v1:0.25:128 (synthetic weights unless WEIGHTS is given).
#include <edgeband/edgeband.h>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s IMAGE [MODEL] [WEIGHTS.ebw]\n", argv[0]);
    return 2;
  }
  try {
    const edgeband::Model model =
        edgeband::Model::load(argc > 2 ? argv[2] : "mobilenet_v1:0.25:128", argc > 3 ? argv[3] : "");
    std::printf("%s, %dx%d input\n", model.name().c_str(), model.input_size(), model.input_size());
    for (const edgeband::Prediction& p : model.classify(argv[1], 5))
      std::printf("  %4d  %.5f  %s\n", p.index, double(p.probability), p.label.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: error: %s\n", e.what());
    return 1;
  }
}
