// SPDX-License-Identifier: Apache-2.0
#include "plexus/trace.hpp"
#include "plexus/json.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
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
    case span_status::circuit_open: return "circuit_open";
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

// ---------------------------------------------------------------- Zipkin v2

namespace {

// The length of the well-formed UTF-8 sequence `s` starts with (2 to 4
// bytes), 0 when it starts with none (Unicode's table of well-formed byte
// sequences: no overlongs, no surrogates, nothing past U+10FFFF).
std::size_t utf8_sequence(std::string_view s) {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  auto lead = at(0);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf; // the second byte's range
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3;
    if (lead == 0xe0) lo = 0xa0; // else overlong
    if (lead == 0xed) hi = 0x9f; // else a surrogate
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4;
    if (lead == 0xf0) lo = 0x90; // else overlong
    if (lead == 0xf4) hi = 0x8f; // else past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || at(1) < lo || at(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (at(k) < 0x80 || at(k) > 0xbf) return 0;
  return n;
}

// Text a person can read: well-formed UTF-8 without control characters.
bool is_text(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
    } else if (auto n = utf8_sequence(s.substr(i)); n > 0) {
      i += n;
    } else {
      return false;
    }
  }
  return true;
}

std::string hex_of(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "0x";
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Zipkin wants lower-case hex ids.
std::string lower(std::string_view id) {
  std::string out{id};
  for (auto& c : out)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void json_field(std::string& out, std::string_view name, std::string_view value, bool& first) {
  if (!first) out += ',';
  first = false;
  append_json_string(out, name);
  out += ':';
  append_json_string(out, value);
}

} // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      if (auto n = utf8_sequence(text.substr(i)); n > 0) {
        out.append(text.substr(i, n));
        i += n;
      } else {
        out += "\\ufffd";
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

std::string zipkin_json(const std::vector<span>& spans) {
  std::set<std::string_view> requests; // a callee's parent is its caller's request span
  for (auto& s : spans)
    if (s.kind == "request") requests.insert(s.span_id);
  std::string out = "[";
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const auto& s = spans[i];
    bool request = s.kind == "request";
    out += i ? ",\n" : "\n";
    out += '{';
    bool first = true;
    json_field(out, "traceId", lower(s.trace_id), first);
    json_field(out, "id", lower(s.span_id), first);
    if (!s.parent_id.empty()) json_field(out, "parentId", lower(s.parent_id), first);
    json_field(out, "name", request ? "request " + s.topic : s.function, first);
    json_field(out, "kind",
               request ? "CLIENT" : requests.contains(s.parent_id) ? "SERVER" : "CONSUMER", first);
    out += ",\"timestamp\":" + std::to_string(s.start_ns / 1000);
    out += ",\"duration\":" + std::to_string(std::max<std::uint64_t>(1, (s.duration_ns + 999) / 1000));
    out += ",\"localEndpoint\":{";
    first = true;
    json_field(out, "serviceName", s.service, first);
    out += "},\"tags\":{";
    first = true;
    json_field(out, "function", s.function, first);
    json_field(out, "topic", s.topic, first);
    if (!s.msg_id.empty()) json_field(out, "msg_id", is_text(s.msg_id) ? s.msg_id : hex_of(s.msg_id), first);
    json_field(out, "delivery", std::to_string(s.delivery), first);
    json_field(out, "cold_start", s.cold_start ? "true" : "false", first);
    json_field(out, "status", to_string(s.status), first);
    if (!s.cause.empty()) json_field(out, "cause", s.cause, first);
    if (!s.callee.empty()) json_field(out, "callee", s.callee, first);
    json_field(out, "node", s.node, first);
    if (s.status != span_status::ok)
      json_field(out, "error", s.cause.empty() ? std::string{to_string(s.status)} : s.cause, first);
    out += "}}";
  }
  out += spans.empty() ? "]\n" : "\n]\n";
  return out;
}

void dependency_graph::link(const std::string& parent, const span& child) {
  auto p = parents_.find(parent);
  if (p == parents_.end()) return;
  auto& e = edges_[{p->second.function, child.service + "." + child.function, p->second.request}];
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
