#include "dist/testbed/local_reference.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <stdexcept>

namespace eb::dist {

std::vector<Tensor> pseudo_images(const Shape& input, int batch) {
  std::vector<Tensor> images;
  for (int i = 0; i < batch; ++i) {
    Tensor t(input);
    for (size_t k = 0; k < t.size(); ++k)
      t.data()[k] = float(int((k * 2654435761u + size_t(i) * 97) % 255) - 127) / 127.0f;
    images.push_back(t);
  }
  return images;
}

namespace {
// A line from `f` without its newline; false at end of input.
bool read_line(FILE* f, std::string& line) {
  line.clear();
  for (int c; (c = std::fgetc(f)) != EOF;) {
    if (c == '\n') return true;
    line += char(c);
  }
  return !line.empty();
}
}  // namespace

LocalReference::LocalReference(const LocalReferenceOptions& o) {
  // Arguments are built before fork: the child of a threaded process may only exec.
  std::vector<std::string> words;
  std::istringstream split(o.exe);
  for (std::string w; split >> w;) words.push_back(w);
  if (words.empty()) throw std::invalid_argument("empty local reference command");
  auto add = [&words](const char* flag, const std::string& v) {
    words.push_back(flag);
    words.push_back(v);
  };
  words.push_back("local-reference");
  if (!o.model.empty()) add("--model", o.model);
  if (!o.weights.empty()) add("--weights", o.weights);
  add("--batch", std::to_string(o.batch));
  add("--threads", std::to_string(o.threads));
  if (o.dilate > 1) add("--dilate", std::to_string(o.dilate));
  if (o.dilate > 1 && !o.turns.empty()) add("--dilate-lock", o.turns);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  int in[2], out[2];
  if (pipe(in) != 0) throw std::runtime_error("pipe failed");
  if (pipe(out) != 0) {
    close(in[0]), close(in[1]);
    throw std::runtime_error("pipe failed");
  }
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[0]), close(in[1]), close(out[0]), close(out[1]);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  pid_ = pid;
  to_ = fdopen(in[1], "w");
  from_ = fdopen(out[0], "r");
  std::string line;
  if (!to_ || !from_ || !read_line(from_, line) || line != "READY") {
    if (!to_) close(in[1]);
    if (!from_) close(out[0]);
    stop();
    throw std::runtime_error("the local reference process did not start (got '" + line + "')");
  }
}

LocalReference::~LocalReference() { stop(); }

void LocalReference::stop() {
  if (to_) std::fclose(to_);  // end of input: the child returns
  if (from_) std::fclose(from_);
  to_ = from_ = nullptr;
  if (pid_ <= 0) return;
  int status = 0;
  for (int waited = 0; waited < 10000; waited += 10) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    usleep(10000);
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

double LocalReference::time_ms() {
  std::string line;
  if (std::fputs("run\n", to_) < 0 || std::fflush(to_) != 0 || !read_line(from_, line))
    throw std::runtime_error("the local reference process is gone");
  double ms = -1;
  if (std::sscanf(line.c_str(), "MS %lf", &ms) != 1 || !(ms >= 0))
    throw std::runtime_error("the local reference process answered '" + line + "'");
  return ms;
}

int serve_local_reference(const Graph& g, const std::vector<Tensor>& images, FILE* in, FILE* out) {
  for (const Tensor& im : images) timed_forward_ms(g, im);  // first touch, least times seeded
  std::fputs("READY\n", out);
  std::fflush(out);
  for (std::string line; read_line(in, line);) {
    if (line != "run") return 1;
    double ms = 0;
    for (const Tensor& im : images) ms += timed_forward_ms(g, im);
    std::fprintf(out, "MS %.6f\n", ms);
    std::fflush(out);
  }
  return 0;
}

}  // namespace eb::dist
