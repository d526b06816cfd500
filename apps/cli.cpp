#include "apps/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <stdexcept>

namespace eb::cli {

namespace {
std::string option_names(const std::string& name) {
  return name == "o" ? "-o,--output" : "--" + name;
}
std::string long_name(const std::string& name) {
  return name == "o" ? "--output" : "--" + name;
}
// A check as a CLI11 validator: the check's exception message becomes the error.
CLI::Validator validator(Check check) {
  return CLI::Validator(
      [check](std::string& s) {
        try {
          check(s);
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
        return std::string();
      },
      "");  // the option's type name already says what it takes
}
}  // namespace

Args& Args::flag(const std::string& name, const std::string& help) {
  cmd_->add_flag(option_names(name), help);
  return *this;
}

Args& Args::text(const std::string& name, const std::string& value, const std::string& help,
                 Check check) {
  CLI::Option* o = cmd_->add_option(option_names(name), help)->type_name(value);
  if (check) o->check(validator(check));
  return *this;
}

namespace {
// A check that s is all one number of type T (std::stol or std::stod) within [lo, hi].
template <class T>
Check in_range(T (*parse)(const std::string&, size_t*), T lo, T hi, const char* kind) {
  return [=](const std::string& s) {
    size_t end = 0;
    T v{};
    try {
      v = parse(s, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    if (end == 0 || end != s.size() || !(v >= lo && v <= hi)) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "must be %s in [%.10g, %.10g], not '%.60s'", kind, double(lo),
                    double(hi), s.c_str());
      throw std::invalid_argument(msg);
    }
  };
}
long parse_long(const std::string& s, size_t* end) { return std::stol(s, end); }
double parse_double(const std::string& s, size_t* end) { return std::stod(s, end); }
}  // namespace

Args& Args::integer(const std::string& name, const std::string& help, long lo, long hi) {
  return text(name, "INT", help, in_range<long>(parse_long, lo, hi, "an integer"));
}

Args& Args::number(const std::string& name, const std::string& help, double lo, double hi) {
  return text(name, "NUM", help, in_range<double>(parse_double, lo, hi, "a number"));
}

Args& Args::choice(const std::string& name, const std::string& help,
                   const std::vector<std::string>& choices) {
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
  cmd_->add_option(option_names(name), help)
      ->type_name(list)
      ->check(CLI::IsMember(choices).description(""));
  return *this;
}

Args& Args::files(const std::string& name, const std::string& help, int min, int max) {
  cmd_->add_option(name, positional_, help)->required()->expected(min, max)->type_name("FILE");
  return *this;
}

// An option the command does not declare is simply absent.
bool Args::has(const std::string& name) const {
  const CLI::Option* o = cmd_->get_option_no_throw(long_name(name));
  return o && o->count() > 0;
}

std::string Args::str(const std::string& name, const std::string& def) const {
  if (!has(name)) return def;
  return cmd_->get_option(long_name(name))->as<std::string>();
}

int Args::integer(const std::string& name, int def) const {
  return has(name) ? std::stoi(str(name)) : def;
}

double Args::number(const std::string& name, double def) const {
  return has(name) ? std::stod(str(name)) : def;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(sep, start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace {
using Clock = std::chrono::steady_clock;
bool g_quiet = false;
bool g_open_line = false;
Clock::time_point g_start = Clock::now(), g_last;
// EDGEBAND_PROGRESS_AFTER=S moves the 2 s (the tests set 0 to see progress without waiting).
Clock::duration progress_after() {
  const char* s = std::getenv("EDGEBAND_PROGRESS_AFTER");
  const double v = s ? std::atof(s) : 2.0;
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(v >= 0 && v < 1e6 ? v : 2.0));
}
}  // namespace

void set_quiet(bool quiet) {
  g_quiet = quiet;
}

// Silent for the first 2 s (short commands print nothing); then a counter rewritten in place on
// a terminal (at most 10 updates a second), or at most one plain line a second otherwise.
void progress(const std::string& what) {
  if (g_quiet) return;
  const auto now = Clock::now();
  static const Clock::duration after = progress_after();
  if (now - g_start < after) return;
  const bool tty = isatty(2);
  if (now - g_last < (tty ? std::chrono::milliseconds(100) : std::chrono::milliseconds(1000)))
    return;
  g_last = now;
  if (tty) {
    std::fprintf(stderr, "\r\033[K%s", what.c_str());
    g_open_line = true;
  } else {
    std::fprintf(stderr, "%s\n", what.c_str());
  }
  std::fflush(stderr);
}

void progress_done() {
  if (g_open_line) std::fprintf(stderr, "\r\033[K");
  g_open_line = false;
}

}  // namespace eb::cli
