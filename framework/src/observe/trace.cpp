// SPDX-License-Identifier: Apache-2.0
#include "plexus/trace.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>

namespace plexus {

const char* to_string(span_status s) noexcept {
  switch (s) {
    case span_status::ok: return "ok";
    case span_status::error: return "error";
    case span_status::crash: return "crash";
    case span_status::timeout: return "timeout";
    case span_status::downstream: return "downstream";
    case span_status::no_responders: return "no_responders";
    case span_status::rejected: return "rejected";
    case span_status::dead_lettered: return "dead_lettered";
  }
  return "unknown";
}

namespace {
std::string millis(std::uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  return buf;
}

std::string line_of(const span& s) {
  std::string out = to_string(s.status);
  out += ' ';
  if (s.kind == "request") out += "request " + s.service + "." + s.function + " -> " + s.topic;
  else out += s.service + "." + s.function + " on " + s.topic;
  out += ' ' + millis(s.duration_ns);
  if (s.cold_start) out += " (cold start)";
  if (s.delivery > 1) out += " (delivery " + std::to_string(s.delivery) + ")";
  if (!s.cause.empty()) out += ": " + s.cause;
  return out;
}
} // namespace

std::string describe(const span& s) { return line_of(s) + " (trace " + s.trace_id + ")"; }

void dependency_graph::link(const std::string& parent, const span& child) {
  auto p = parents_.find(parent);
  if (p == parents_.end()) return;
  auto& e = edges_[{p->second.function, child.service + "." + child.function}];
  e.caller = p->second.function;
  e.callee = child.service + "." + child.function;
  e.request = p->second.request;
  ++e.calls;
  if (child.status != span_status::ok) ++e.failures;
}

void dependency_graph::add(const std::vector<span>& spans) {
  // Parents first (spans of one batch come in any order), then children;
  // a child whose parent is in a later batch waits (a bounded while).
  for (auto& s : spans)
    parents_[s.span_id] = {s.service + "." + s.function, s.kind == "request"};
  std::vector<std::pair<std::string, span>> waiting;
  auto place = [&](const span& s) {
    if (s.kind != "invocation" || s.parent_id.empty()) return;
    if (parents_.contains(s.parent_id)) link(s.parent_id, s);
    else if (waiting.size() < 65536) waiting.emplace_back(s.parent_id, s);
  };
  for (auto& [parent, s] : orphans_) place(s);
  for (auto& s : spans) place(s);
  orphans_ = std::move(waiting);
}

std::vector<dependency> dependency_graph::edges() const {
  std::vector<dependency> out;
  for (auto& [k, e] : edges_) out.push_back(e);
  return out;
}

namespace {
std::string percent(const dependency& e) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f%%", e.calls ? 100.0 * static_cast<double>(e.failures) / static_cast<double>(e.calls) : 0.0);
  return buf;
}
} // namespace

std::string dependency_graph::dot() const {
  std::string out = "digraph plexus {\n  rankdir=LR;\n  node [shape=box];\n";
  for (auto& e : edges()) {
    out += "  \"" + e.caller + "\" -> \"" + e.callee + "\" [label=\"" + std::to_string(e.calls)
           + (e.request ? " requests" : " messages") + ", " + percent(e) + " failed\"";
    if (e.failures) out += ", color=red";
    if (!e.request) out += ", style=dashed";
    out += "];\n";
  }
  return out + "}\n";
}

std::string dependency_graph::mermaid() const {
  // Mermaid ids may not hold '.' or '-': n0, n1, ... labelled with the names.
  std::map<std::string, std::string> ids;
  auto id = [&](const std::string& name) {
    auto [it, fresh] = ids.try_emplace(name, "n" + std::to_string(ids.size()));
    return fresh ? it->second + "[\"" + name + "\"]" : it->second;
  };
  std::string out = "flowchart LR\n";
  for (auto& e : edges()) {
    auto from = id(e.caller);
    auto to = id(e.callee);
    out += "  " + from + (e.request ? " -->|" : " -.->|") + std::to_string(e.calls) + ", "
           + percent(e) + " failed| " + to + "\n";
  }
  return out;
}

std::string render_trace(std::vector<span> spans) {
  std::sort(spans.begin(), spans.end(),
            [](const span& a, const span& b) { return a.start_ns < b.start_ns; });
  std::map<std::string, std::vector<const span*>> children;
  std::map<std::string, const span*> by_id;
  for (auto& s : spans) by_id[s.span_id] = &s;
  std::vector<const span*> roots;
  for (auto& s : spans) {
    if (s.parent_id.empty() || !by_id.contains(s.parent_id)) roots.push_back(&s);
    else children[s.parent_id].push_back(&s);
  }
  std::string out;
  std::function<void(const span&, int)> walk = [&](const span& s, int depth) {
    out.append(static_cast<std::size_t>(depth) * 2, ' ');
    out += line_of(s);
    out += '\n';
    if (auto it = children.find(s.span_id); it != children.end())
      for (auto* c : it->second) walk(*c, depth + 1);
  };
  for (auto* r : roots) walk(*r, 0);
  return out;
}

} // namespace plexus
