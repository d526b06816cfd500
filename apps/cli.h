// Tiny flag parser shared by the subcommands: --name value, --flag, positional arguments.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

namespace eb::cli {

class Args {
 public:
  // `flags` lists the options that take no value; every other --option takes one.
  Args(int argc, char** argv, int first, const std::set<std::string>& known,
       const std::set<std::string>& flags);
  bool has(const std::string& k) const { return values_.count(k) != 0; }
  std::string str(const std::string& k, const std::string& def = "") const;
  int integer(const std::string& k, int def, int lo, int hi) const;
  double number(const std::string& k, double def, double lo, double hi) const;
  const std::vector<std::string>& positional() const { return pos_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> pos_;
};

// "a,b,c" -> {"a", "b", "c"} (empty items kept, so callers can reject them).
std::vector<std::string> split_list(const std::string& s);

}  // namespace eb::cli
