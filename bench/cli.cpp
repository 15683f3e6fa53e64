// SPDX-License-Identifier: Apache-2.0
#include "cli.hpp"

#include <algorithm>
#include <charconv>
#include <ostream>

namespace plexus::bench {

namespace {

constexpr int min_runs = 3;
constexpr int max_runs = 1000;

std::string quoted(std::string_view s) { return "'" + std::string{s} + "'"; }

std::string known_names() {
  std::string names;
  for (const auto& s : registered_scenarios()) {
    if (!names.empty()) names += ", ";
    names += s.name;
  }
  return names;
}

void add_scenarios(std::string_view list, std::vector<std::string>& out) {
  for (;;) {
    auto comma = list.find(',');
    auto name = list.substr(0, comma);
    if (name.empty()) throw usage_error("empty scenario name in --scenario");
    if (find_scenario(name) == nullptr)
      throw usage_error("unknown scenario " + quoted(name) + " (known: " + known_names() + ")");
    if (std::find(out.begin(), out.end(), name) == out.end()) out.emplace_back(name);
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

// "NAME:ARG" where NAME is a scenario that runs parts in a child process.
std::string parse_child(std::string_view text) {
  auto colon = text.find(':');
  auto name = text.substr(0, colon);
  const auto* s = find_scenario(name);
  if (colon == std::string_view::npos || s == nullptr || s->child == nullptr)
    throw usage_error("--child needs SCENARIO:ARG for a scenario with child processes, got " +
                      quoted(text));
  return std::string{text};
}

int parse_runs(std::string_view text) {
  int n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end != text.data() + text.size() || n < min_runs || n > max_runs)
    throw usage_error("--runs needs an integer from " + std::to_string(min_runs) + " to " +
                      std::to_string(max_runs) + ", got " + quoted(text));
  return n;
}

// Walks the arguments; a flag's value is either "--flag=value" or the next one.
class arg_cursor {
public:
  explicit arg_cursor(std::span<const std::string_view> args) : args_(args) {}
  [[nodiscard]] bool done() const noexcept { return i_ == args_.size(); }

  /// The next flag's name, "--runs" for both "--runs 5" and "--runs=5".
  std::string_view next_flag() {
    auto a = args_[i_++];
    auto eq = a.find('=');
    inline_value_ = eq == std::string_view::npos ? std::string_view{} : a.substr(eq + 1);
    has_inline_ = eq != std::string_view::npos;
    flag_ = a.substr(0, eq);
    return flag_;
  }

  std::string_view value() {
    if (has_inline_) {
      has_inline_ = false;
      return inline_value_;
    }
    if (done()) throw usage_error(std::string{flag_} + " needs a value");
    return args_[i_++];
  }

  /// For flags without a value: "--quick=1" is a mistake.
  void no_value() const {
    if (has_inline_) throw usage_error(std::string{flag_} + " takes no value");
  }

private:
  std::span<const std::string_view> args_;
  std::size_t i_ = 0;
  std::string_view flag_;
  std::string_view inline_value_;
  bool has_inline_ = false;
};

} // namespace

options parse_cli(std::span<const std::string_view> args) {
  options opt;
  arg_cursor cur{args};
  while (!cur.done()) {
    auto flag = cur.next_flag();
    if (flag == "--help" || flag == "-h") {
      cur.no_value();
      opt.help = true;
    } else if (flag == "--version") {
      cur.no_value();
      opt.version = true;
    } else if (flag == "--list") {
      cur.no_value();
      opt.list = true;
    } else if (flag == "--quick") {
      cur.no_value();
      opt.run.quick = true;
    } else if (flag == "--scenario") {
      add_scenarios(cur.value(), opt.scenarios);
    } else if (flag == "--runs") {
      opt.run.runs = parse_runs(cur.value());
    } else if (flag == "--json") {
      opt.json_path = std::string{cur.value()};
      if (opt.json_path.empty()) throw usage_error("--json needs a file name");
    } else if (flag == "--csv") {
      opt.csv_path = std::string{cur.value()};
      if (opt.csv_path.empty()) throw usage_error("--csv needs a file name");
    } else if (flag == "--markdown") {
      opt.markdown_path = std::string{cur.value()};
      if (opt.markdown_path.empty()) throw usage_error("--markdown needs a file name");
    } else if (flag == "--data-dir") {
      opt.run.data_dir = std::string{cur.value()};
      if (opt.run.data_dir.empty()) throw usage_error("--data-dir needs a directory");
    } else if (flag == "--compare") {
      opt.compare_a = std::string{cur.value()};
      opt.compare_b = std::string{cur.value()};
      if (opt.compare_a.empty() || opt.compare_b.empty())
        throw usage_error("--compare needs two result files, A.json B.json");
    } else if (flag == "--child") {
      opt.child = parse_child(cur.value());
    } else if (flag.starts_with("-")) {
      throw usage_error("unknown flag " + quoted(flag));
    } else {
      throw usage_error("unexpected argument " + quoted(flag));
    }
  }
  if (!opt.compare_a.empty() &&
      (!opt.scenarios.empty() || opt.run.quick || !opt.json_path.empty() || !opt.csv_path.empty() ||
       !opt.markdown_path.empty() || !opt.run.data_dir.empty() || !opt.child.empty()))
    throw usage_error("--compare runs no scenarios: it takes no other flag");
  return opt;
}

void print_help(std::ostream& out) {
  out << "usage: plexus-bench [--list] [--scenario a,b] [--quick] [--runs N] [--json FILE]\n"
         "                    [--csv FILE] [--markdown FILE] [--data-dir DIR]\n"
         "       plexus-bench --compare A.json B.json\n"
         "\n"
         "Runs plexus's benchmark scenarios: prints a header (git sha, compiler, build\n"
         "type, cpu, cores, date), then one table row per case and system with the\n"
         "median, MAD, min and max over the runs, and ratios to baselines measured in\n"
         "the same run. Progress goes to stderr. Quote numbers from release builds.\n"
         "\n"
         "  --list            list the scenarios and exit\n"
         "  --scenario a,b    run these scenarios only (default: all)\n"
         "  --quick           short runs for CI: checks the numbers are sane, not fast\n"
         "  --runs N          timed runs per case, 3 to 1000 (default 5)\n"
         "  --json FILE       also write the header and results as JSON to FILE\n"
         "  --csv FILE        also write them as CSV (\"# key: value\" header lines, then\n"
         "                    the table's columns plus runs)\n"
         "  --markdown FILE   also write them as a Markdown table\n"
         "  --data-dir DIR    scenarios with plot data (reqrep latency CDF, failover\n"
         "                    timeline) write it to DIR/<scenario>-*.dat\n"
         "  --compare A B     compare two --json files: B/A per row, each marked\n"
         "                    same, improved or REGRESSED against the noise the runs\n"
         "                    recorded (min..max apart and beyond 3 MADs and 2%)\n"
         "  --version         print the git sha and build type it was built from, exit\n"
         "  -h, --help        show this help and exit\n"
         "  --child NAME:ARG  internal: one part of scenario NAME, in the process the\n"
         "                    scenario started; prints its figures on stdout\n"
         "\n"
         "Exit status: 0 ok; 1 a scenario failed or its numbers are not sane\n"
         "(not finite, <= 0, fewer than 3 runs), or --compare found a regression;\n"
         "2 bad usage, or a --compare file that cannot be read.\n"
         "\n"
         "Scenarios:\n";
  print_list(out, "  ");
}

void print_list(std::ostream& out, std::string_view indent) {
  std::size_t width = 0;
  auto all = registered_scenarios();
  for (const auto& s : all) width = std::max(width, s.name.size());
  for (const auto& s : all)
    out << indent << s.name << std::string(width - s.name.size() + 2, ' ') << s.description << '\n';
}

} // namespace plexus::bench
