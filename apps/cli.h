// Command-line declarations on CLI11. Each command declares every option once: its name, value,
// help, and a range, a list of choices or a check that parses the value. CLI11 then gives each
// command its --help, refuses unknown options, and validates every value before any work starts.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace eb::cli {

using Check = std::function<void(const std::string&)>;  // throws std::invalid_argument

class Args {
 public:
  explicit Args(CLI::App* cmd) : cmd_(cmd) {}
  // Declarations. `name` is the long option without dashes; "o" is -o,--output.
  Args& flag(const std::string& name, const std::string& help);
  Args& text(const std::string& name, const std::string& value, const std::string& help,
             Check check = {});
  Args& integer(const std::string& name, const std::string& help, long lo, long hi);
  Args& number(const std::string& name, const std::string& help, double lo, double hi);
  Args& choice(const std::string& name, const std::string& help,
               const std::vector<std::string>& choices);
  Args& files(const std::string& name, const std::string& help, int min, int max);
  // Reads, after parsing.
  bool has(const std::string& name) const;
  std::string str(const std::string& name, const std::string& def = "") const;
  int integer(const std::string& name, int def) const;
  double number(const std::string& name, double def) const;
  const std::vector<std::string>& positional() const { return positional_; }
  CLI::App* app() const { return cmd_; }

 private:
  CLI::App* cmd_;
  std::vector<std::string> positional_;
};

// "a,b,c" -> {"a", "b", "c"} (empty items kept, so callers can reject them); sep ';' for lists
// whose items hold commas (plot-speedup's links).
std::vector<std::string> split_list(const std::string& s, char sep = ',');

// Progress on stderr for work longer than about 2 s: a counter rewritten in place when stderr is a
// terminal, plain lines otherwise; nothing with --quiet.
void set_quiet(bool quiet);
void progress(const std::string& what);  // one step's description, e.g. "run 3/10"
void progress_done();                    // ends an in-place counter's line

}  // namespace eb::cli
