// SPDX-License-Identifier: Apache-2.0
#include "report.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <stdexcept>
#include <utility>

#include "json_writer.hpp"

namespace plexus::bench {

// ---------------------------------------------------------------- stats

namespace {

// Median of a sorted, non-empty range.
double sorted_median(const std::vector<double>& v) {
  assert(!v.empty());
  auto mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

} // namespace

run_stats summarize(std::span<const double> samples) {
  run_stats s;
  s.runs = samples.size();
  if (samples.empty()) return s;
  std::vector<double> v(samples.begin(), samples.end());
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = sorted_median(v);
  for (auto& x : v) x = std::fabs(x - s.median);
  std::sort(v.begin(), v.end());
  s.mad = sorted_median(v);
  return s;
}

std::string format_number(double v) {
  if (!std::isfinite(v)) return std::to_string(v);
  auto a = std::fabs(v);
  int decimals = a >= 1000 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  std::array<char, 64> buf{};
  auto n = std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

// ---------------------------------------------------------------- text

void print_header(std::ostream& out, const machine_info& m) {
  out << "plexus-bench\n"
      << "  git_sha     " << m.git_sha << '\n'
      << "  compiler    " << m.compiler << '\n'
      << "  build_type  " << m.build_type << '\n'
      << "  cpu         " << m.cpu << '\n'
      << "  cores       " << m.cores << '\n'
      << "  date        " << m.date << '\n'
      << "  load        " << m.load << "\n\n";
}

namespace {

bool same_measurement(const result& a, const result& b) {
  return a.scenario == b.scenario && a.case_name == b.case_name && a.metric == b.metric;
}

// Position in ratio_systems; unlisted systems come after every listed one.
std::size_t ratio_rank(std::string_view system) {
  auto it = std::find(ratio_systems.begin(), ratio_systems.end(), system);
  return static_cast<std::size_t>(it - ratio_systems.begin());
}

// "plexus / msgpack-object = 0.41x" for each system of the same case that
// ranks after this row's.
std::string ratios(const result& r, std::span<const result> all) {
  const auto rank = ratio_rank(r.system);
  if (rank == ratio_systems.size()) return {};
  std::string text;
  for (const auto& base : all) {
    if (&base == &r || ratio_rank(base.system) <= rank || !same_measurement(base, r)) continue;
    if (!text.empty()) text += ", ";
    auto ratio = base.stats.median != 0 ? r.stats.median / base.stats.median : 0.0;
    text += r.system + " / " + base.system + " = " + format_number(ratio) + "x";
  }
  return text;
}

using row = std::array<std::string, 10>;

row table_row(const result& r, std::span<const result> all) {
  return {r.scenario, r.case_name, r.system, r.metric,
          format_number(r.stats.median), format_number(r.stats.mad),
          format_number(r.stats.min), format_number(r.stats.max), r.unit, ratios(r, all)};
}

void print_row(std::ostream& out, const row& cells, const std::array<std::size_t, 10>& width) {
  constexpr std::array<bool, 10> right{false, false, false, false, true, true, true, true,
                                       false, false};
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i > 0) line += "  ";
    auto pad = std::string(width[i] - cells[i].size(), ' ');
    line += right[i] ? pad + cells[i] : cells[i] + (i + 1 < cells.size() ? pad : "");
  }
  out << line.substr(0, line.find_last_not_of(' ') + 1) << '\n';
}

} // namespace

void print_table(std::ostream& out, std::span<const result> results) {
  std::vector<row> rows;
  rows.push_back({"scenario", "case", "system", "metric", "median", "mad", "min", "max",
                  "unit", "ratio"});
  for (const auto& r : results) rows.push_back(table_row(r, results));
  std::array<std::size_t, 10> width{};
  for (const auto& cells : rows)
    for (std::size_t i = 0; i < cells.size(); ++i) width[i] = std::max(width[i], cells[i].size());
  for (const auto& cells : rows) print_row(out, cells, width);
}

// ---------------------------------------------------------------- csv, markdown

namespace {

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string{s};
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

std::vector<std::pair<std::string_view, std::string>> header_fields(const machine_info& m) {
  return {{"git_sha", m.git_sha}, {"compiler", m.compiler}, {"build_type", m.build_type},
          {"cpu", m.cpu},         {"cores", std::to_string(m.cores)}, {"date", m.date},
          {"load", m.load}};
}

// Markdown cells: a '|' would end the cell.
std::string md_cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

} // namespace

std::string to_csv(const machine_info& m, std::span<const result> results) {
  std::string out = "# plexus-bench\n";
  for (const auto& [k, v] : header_fields(m)) out += "# " + std::string{k} + ": " + v + '\n';
  out += "scenario,case,system,metric,median,mad,min,max,unit,runs,ratio\n";
  for (const auto& r : results) {
    auto cells = table_row(r, results);
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i == 9) line += csv_field(std::to_string(r.stats.runs)) + ',';
      line += csv_field(cells[i]);
      if (i + 1 < cells.size()) line += ',';
    }
    out += line + '\n';
  }
  return out;
}

std::string to_markdown(const machine_info& m, std::span<const result> results) {
  std::string out;
  for (const auto& [k, v] : header_fields(m))
    out += "- " + std::string{k} + ": " + md_cell(v) + '\n';
  out += "\n| scenario | case | system | metric | median | mad | min | max | unit | ratio |\n"
         "|---|---|---|---|--:|--:|--:|--:|---|---|\n";
  for (const auto& r : results) {
    std::string line = "|";
    for (const auto& cell : table_row(r, results)) line += " " + md_cell(cell) + " |";
    out += line + '\n';
  }
  return out;
}

// ---------------------------------------------------------------- sanity

std::vector<std::string> sanity_problems(std::span<const result> results) {
  std::vector<std::string> problems;
  auto bad = [&](const result& r, const std::string& why) {
    problems.push_back(r.scenario + " " + r.case_name + " " + r.system + " " + r.metric + ": " +
                       why);
  };
  for (const auto& r : results) {
    const auto& s = r.stats;
    if (s.runs < 3) bad(r, std::to_string(s.runs) + " runs, need at least 3");
    const std::pair<const char*, double> values[]{{"median", s.median}, {"min", s.min}, {"max", s.max}};
    for (auto [what, v] : values)
      if (!std::isfinite(v) || v <= 0)
        bad(r, std::string{what} + " " + std::to_string(v) + " is not finite and > 0");
    if (!std::isfinite(s.mad) || s.mad < 0) bad(r, "mad " + std::to_string(s.mad) + " is not finite");
    if (!(s.min <= s.median && s.median <= s.max))
      bad(r, "min <= median <= max does not hold (" + std::to_string(s.min) + ", " +
               std::to_string(s.median) + ", " + std::to_string(s.max) + ")");
  }
  return problems;
}

// ---------------------------------------------------------------- json

void write_machine_fields(json_writer& w, const machine_info& m) {
  w.key("git_sha"); w.string(m.git_sha);
  w.key("compiler"); w.string(m.compiler);
  w.key("build_type"); w.string(m.build_type);
  w.key("cpu"); w.string(m.cpu);
  w.key("cores"); w.integer(m.cores);
  w.key("date"); w.string(m.date);
  w.key("load"); w.string(m.load);
}


namespace {

void write_header(json_writer& w, const machine_info& m) {
  w.begin_object();
  write_machine_fields(w, m);
  w.end_object();
}

void write_result(json_writer& w, const result& r) {
  w.begin_object();
  w.key("scenario"); w.string(r.scenario);
  w.key("case"); w.string(r.case_name);
  w.key("system"); w.string(r.system);
  w.key("metric"); w.string(r.metric);
  w.key("value"); w.number(r.stats.median);
  w.key("unit"); w.string(r.unit);
  w.key("runs"); w.integer(static_cast<std::int64_t>(r.stats.runs));
  w.key("min"); w.number(r.stats.min);
  w.key("max"); w.number(r.stats.max);
  w.key("mad"); w.number(r.stats.mad);
  w.end_object();
}

} // namespace

std::string to_json(const machine_info& m, std::span<const result> results) {
  json_writer w;
  w.begin_object();
  w.key("header");
  write_header(w, m);
  w.key("results");
  w.begin_array();
  for (const auto& r : results) write_result(w, r);
  w.end_array();
  w.end_object();
  return w.str();
}

void write_file(const std::string& path, std::string_view text) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  if (out) out.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (out) out.close();
  if (!out) throw std::runtime_error("cannot write " + path);
}

} // namespace plexus::bench
