// SPDX-License-Identifier: Apache-2.0
#include "compare.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <iterator>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "plexus/json.hpp"

namespace plexus::bench {

// ---------------------------------------------------------------- reading

namespace {


const json_value& member(const json_value& obj, std::string_view key, json_value::kind kind,
                         std::string_view where) {
  const auto* v = obj.find(key);
  // A non-finite number was written as null (json_writer): read it as NaN.
  if (v != nullptr && kind == json_value::kind::number && v->type == json_value::kind::null)
    return *v;
  if (v == nullptr || v->type != kind)
    throw std::runtime_error(std::string{where} + ": missing or mistyped \"" + std::string{key} +
                             "\"");
  return *v;
}

std::string text_of(const json_value& obj, std::string_view key, std::string_view where) {
  return member(obj, key, json_value::kind::string, where).text;
}

double number_of(const json_value& obj, std::string_view key, std::string_view where) {
  const auto& v = member(obj, key, json_value::kind::number, where);
  return v.type == json_value::kind::null ? std::nan("") : v.number;
}

} // namespace

results_file parse_results(std::string_view text, std::string_view name) {
  json_value doc;
  try {
    doc = parse_json(text);
  } catch (const json_error& e) {
    throw std::runtime_error(std::string{name} + ": " + e.what());
  }
  const auto where = std::string{name};
  results_file f;
  const auto& h = member(doc, "header", json_value::kind::object, where);
  f.machine.git_sha = text_of(h, "git_sha", where + " header");
  // Optional fields: older files lack some.
  auto opt_text = [&](std::string_view key) {
    const auto* v = h.find(key);
    return v != nullptr && v->type == json_value::kind::string ? v->text : std::string{};
  };
  f.machine.compiler = opt_text("compiler");
  f.machine.build_type = opt_text("build_type");
  f.machine.cpu = opt_text("cpu");
  f.machine.date = opt_text("date");
  f.machine.load = opt_text("load");
  if (const auto* c = h.find("cores"); c != nullptr && c->type == json_value::kind::number)
    f.machine.cores = static_cast<unsigned>(c->number);
  const auto& rows = member(doc, "results", json_value::kind::array, where);
  for (std::size_t i = 0; i < rows.items.size(); ++i) {
    const auto& r = rows.items[i];
    const auto at = where + " results[" + std::to_string(i) + "]";
    if (r.type != json_value::kind::object) throw std::runtime_error(at + ": not an object");
    result out;
    out.scenario = text_of(r, "scenario", at);
    out.case_name = text_of(r, "case", at);
    out.system = text_of(r, "system", at);
    out.metric = text_of(r, "metric", at);
    out.unit = text_of(r, "unit", at);
    out.stats.median = number_of(r, "value", at);
    out.stats.mad = number_of(r, "mad", at);
    out.stats.min = number_of(r, "min", at);
    out.stats.max = number_of(r, "max", at);
    out.stats.runs = static_cast<std::size_t>(number_of(r, "runs", at));
    f.results.push_back(std::move(out));
  }
  return f;
}

results_file read_results_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw std::runtime_error("cannot read " + path);
  std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  return parse_results(text, path);
}

// ---------------------------------------------------------------- logic

better better_direction(std::string_view unit) noexcept {
  constexpr std::array<std::string_view, 3> higher{"msg/s", "MB/s", "x"};
  constexpr std::array<std::string_view, 7> lower{"ns", "us", "ms", "s", "B", "bytes", "msgs"};
  if (std::find(higher.begin(), higher.end(), unit) != higher.end()) return better::higher;
  if (std::find(lower.begin(), lower.end(), unit) != lower.end()) return better::lower;
  return better::unknown;
}

std::string_view verdict_name(verdict v) noexcept {
  switch (v) {
    case verdict::same: return "same";
    case verdict::improved: return "improved";
    case verdict::regressed: return "REGRESSED";
    case verdict::incomparable: return "?";
  }
  return "?";
}

std::size_t comparison::count(verdict v) const noexcept {
  return static_cast<std::size_t>(
    std::count_if(rows.begin(), rows.end(), [v](const auto& r) { return r.outcome == v; }));
}

namespace {

bool same_row(const result& x, const result& y) {
  return x.scenario == y.scenario && x.case_name == y.case_name && x.system == y.system &&
         x.metric == y.metric;
}

double relative_mad(const run_stats& s) {
  return s.median != 0 ? std::fabs(s.mad / s.median) : 0.0;
}

compared_row compare_row(const result& a, const result& b, const noise_rule& rule) {
  compared_row r{a, b};
  r.overlap = a.stats.min <= b.stats.max && b.stats.min <= a.stats.max;
  r.threshold = std::max(rule.floor,
                         rule.mads * std::max(relative_mad(a.stats), relative_mad(b.stats)));
  const auto dir = better_direction(b.unit);
  if (a.stats.median == 0 || !std::isfinite(a.stats.median) || !std::isfinite(b.stats.median) ||
      dir == better::unknown || a.unit != b.unit) {
    r.outcome = verdict::incomparable;
    r.ratio = a.stats.median != 0 ? b.stats.median / a.stats.median : 0.0;
    return r;
  }
  r.ratio = b.stats.median / a.stats.median;
  if (r.overlap || std::fabs(r.ratio - 1) <= r.threshold) {
    r.outcome = verdict::same;
    return r;
  }
  const bool up = r.ratio > 1;
  r.outcome = up == (dir == better::higher) ? verdict::improved : verdict::regressed;
  return r;
}

} // namespace

comparison compare(std::span<const result> a, std::span<const result> b, const noise_rule& rule) {
  comparison c;
  for (const auto& rb : b) {
    auto it = std::find_if(a.begin(), a.end(), [&](const auto& ra) { return same_row(ra, rb); });
    if (it == a.end())
      c.only_b.push_back(rb);
    else
      c.rows.push_back(compare_row(*it, rb, rule));
  }
  for (const auto& ra : a)
    if (std::none_of(b.begin(), b.end(), [&](const auto& rb) { return same_row(ra, rb); }))
      c.only_a.push_back(ra);
  return c;
}

// ---------------------------------------------------------------- text

namespace {

std::string fixed(double v, int decimals) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(decimals);
  s << v;
  return s.str();
}

std::string describe(const results_file& f) {
  return f.machine.git_sha + ", " + f.machine.build_type + ", " + f.machine.date;
}

} // namespace

void print_comparison(std::ostream& out, const results_file& a, const results_file& b,
                      const comparison& c) {
  out << "plexus-bench --compare\n"
      << "  A  " << describe(a) << '\n'
      << "  B  " << describe(b) << '\n'
      << "  B/A per row; beyond the noise when min..max of A and B do not overlap and\n"
      << "  |B/A - 1| > max(3 x MAD/median, 2%)\n\n";
  using row = std::array<std::string, 10>;
  std::vector<row> rows;
  rows.push_back({"scenario", "case", "system", "metric", "A", "B", "unit", "B/A", "noise",
                  "verdict"});
  for (const auto& r : c.rows)
    rows.push_back({r.b.scenario, r.b.case_name, r.b.system, r.b.metric,
                    format_number(r.a.stats.median), format_number(r.b.stats.median), r.b.unit,
                    fixed(r.ratio, 3) + "x", "+-" + fixed(r.threshold * 100, 1) + "%",
                    std::string{verdict_name(r.outcome)}});
  std::array<std::size_t, 10> width{};
  for (const auto& cells : rows)
    for (std::size_t i = 0; i < cells.size(); ++i) width[i] = std::max(width[i], cells[i].size());
  constexpr std::array<bool, 10> right{false, false, false, false, true, true, false, true, true,
                                       false};
  for (const auto& cells : rows) {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) line += "  ";
      auto pad = std::string(width[i] - cells[i].size(), ' ');
      line += right[i] ? pad + cells[i] : cells[i] + pad;
    }
    out << line.substr(0, line.find_last_not_of(' ') + 1) << '\n';
  }
  for (const auto& r : c.only_a)
    out << "only in A: " << r.scenario << ' ' << r.case_name << ' ' << r.system << ' ' << r.metric
        << '\n';
  for (const auto& r : c.only_b)
    out << "only in B: " << r.scenario << ' ' << r.case_name << ' ' << r.system << ' ' << r.metric
        << '\n';
  out << "\n" << c.rows.size() << " rows compared: " << c.count(verdict::regressed)
      << " regressed, " << c.count(verdict::improved) << " improved, " << c.count(verdict::same)
      << " within noise, " << c.count(verdict::incomparable) << " incomparable; "
      << c.only_a.size() << " only in A, " << c.only_b.size() << " only in B\n";
}

} // namespace plexus::bench
