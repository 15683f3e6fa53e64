// SPDX-License-Identifier: Apache-2.0
#include "json_msgpack.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <msgpack.hpp>

#include "plexus/json.hpp"

namespace plexus::actors::detail {

namespace {

// msgpack's packer writes to a stream with write(): this one appends to a string.
struct string_out {
  std::string& s;
  void write(const char* p, std::size_t n) { s.append(p, n); }
};
using packer = msgpack::packer<string_out>;

// A recursive descent over the text, packing as it goes. Containers are
// packed with their sizes, which JSON says only at their end: each is
// parsed into a buffer of its own first (its elements counted), then its
// header and that buffer go to the parent.
class json_reader {
public:
  explicit json_reader(std::string_view text) : s_(text) {}

  bool parse(std::string& out, std::string& error) {
    skip_ws();
    if (!value(out, 0)) {
      error = "at byte " + std::to_string(at_) + ": " + why_;
      return false;
    }
    skip_ws();
    if (at_ != s_.size()) {
      error = "at byte " + std::to_string(at_) + ": text after the value";
      return false;
    }
    return true;
  }

private:
  bool fail(const char* why) {
    why_ = why;
    return false;
  }

  void skip_ws() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n' || s_[at_] == '\r'))
      ++at_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(at_, word.size()) != word) return fail("not a JSON value");
    at_ += word.size();
    return true;
  }

  bool value(std::string& out, std::size_t depth) {
    if (depth >= max_json_depth) return fail("nested too deep");
    if (at_ >= s_.size()) return fail("unexpected end");
    string_out sink{out};
    packer pk{sink};
    switch (s_[at_]) {
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case '"': {
        std::string text;
        if (!string(text)) return false;
        pk.pack(text);
        return true;
      }
      case 't': if (!literal("true")) return false; pk.pack_true(); return true;
      case 'f': if (!literal("false")) return false; pk.pack_false(); return true;
      case 'n': if (!literal("null")) return false; pk.pack_nil(); return true;
      default: return number(out);
    }
  }

  bool object(std::string& out, std::size_t depth) {
    ++at_; // {
    std::string body;
    std::uint32_t n = 0;
    skip_ws();
    if (at_ < s_.size() && s_[at_] == '}') {
      ++at_;
    } else {
      for (;;) {
        skip_ws();
        if (at_ >= s_.size() || s_[at_] != '"') return fail("expected a string key");
        std::string key;
        if (!string(key)) return false;
        string_out sink{body};
        packer{sink}.pack(key);
        skip_ws();
        if (at_ >= s_.size() || s_[at_] != ':') return fail("expected ':'");
        ++at_;
        skip_ws();
        if (!value(body, depth + 1)) return false;
        ++n;
        skip_ws();
        if (at_ < s_.size() && s_[at_] == ',') {
          ++at_;
          continue;
        }
        if (at_ < s_.size() && s_[at_] == '}') {
          ++at_;
          break;
        }
        return fail("expected ',' or '}'");
      }
    }
    string_out sink{out};
    packer{sink}.pack_map(n);
    out += body;
    return true;
  }

  bool array(std::string& out, std::size_t depth) {
    ++at_; // [
    std::string body;
    std::uint32_t n = 0;
    skip_ws();
    if (at_ < s_.size() && s_[at_] == ']') {
      ++at_;
    } else {
      for (;;) {
        skip_ws();
        if (!value(body, depth + 1)) return false;
        ++n;
        skip_ws();
        if (at_ < s_.size() && s_[at_] == ',') {
          ++at_;
          continue;
        }
        if (at_ < s_.size() && s_[at_] == ']') {
          ++at_;
          break;
        }
        return fail("expected ',' or ']'");
      }
    }
    string_out sink{out};
    packer{sink}.pack_array(n);
    out += body;
    return true;
  }

  bool hex4(std::uint32_t& v) {
    if (s_.size() - at_ < 4) return fail("a \\u escape needs 4 hex digits");
    v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[at_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<std::uint32_t>(c - 'A' + 10);
      else return fail("a \\u escape needs 4 hex digits");
    }
    return true;
  }

  static void utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool string(std::string& text) {
    ++at_; // "
    while (at_ < s_.size()) {
      char c = s_[at_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("a control character in a string");
      if (c != '\\') {
        text += c;
        continue;
      }
      if (at_ >= s_.size()) break;
      switch (char e = s_[at_++]) {
        case '"': case '\\': case '/': text += e; break;
        case 'b': text += '\b'; break;
        case 'f': text += '\f'; break;
        case 'n': text += '\n'; break;
        case 'r': text += '\r'; break;
        case 't': text += '\t'; break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) { // a high surrogate: its low one must follow
            std::uint32_t low = 0;
            if (s_.substr(at_, 2) != "\\u") return fail("a lone surrogate");
            at_ += 2;
            if (!hex4(low) || low < 0xDC00 || low >= 0xE000) return fail("a lone surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return fail("a lone surrogate");
          }
          utf8(text, cp);
          break;
        }
        default: return fail("an unknown escape");
      }
    }
    return fail("a string without its closing quote");
  }

  bool number(std::string& out) {
    auto start = at_;
    if (at_ < s_.size() && s_[at_] == '-') ++at_;
    auto digits = [&] {
      auto from = at_;
      while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
      return at_ - from;
    };
    auto int_start = at_;
    if (digits() == 0) return fail("not a JSON value");
    if (s_[int_start] == '0' && at_ - int_start > 1) return fail("a number with a leading zero");
    bool whole = true;
    if (at_ < s_.size() && s_[at_] == '.') {
      ++at_;
      whole = false;
      if (digits() == 0) return fail("a digit must follow '.'");
    }
    if (at_ < s_.size() && (s_[at_] == 'e' || s_[at_] == 'E')) {
      ++at_;
      whole = false;
      if (at_ < s_.size() && (s_[at_] == '+' || s_[at_] == '-')) ++at_;
      if (digits() == 0) return fail("a digit must follow the exponent");
    }
    auto text = s_.substr(start, at_ - start);
    string_out sink{out};
    packer pk{sink};
    if (whole) {
      if (text.front() == '-') {
        std::int64_t v = 0;
        if (auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v); ec == std::errc{}) {
          pk.pack(v);
          return true;
        }
      } else {
        std::uint64_t v = 0;
        if (auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v); ec == std::errc{}) {
          pk.pack(v);
          return true;
        }
      }
    }
    double d = 0; // a fraction, an exponent, or a whole number past 64 bits
    std::from_chars(text.data(), text.data() + text.size(), d);
    pk.pack(d);
    return true;
  }

  std::string_view s_;
  std::size_t at_ = 0;
  const char* why_ = "";
};

bool write_json(const msgpack::object& o, std::string& out, std::size_t depth) {
  if (depth >= max_json_depth) return false;
  switch (o.type) {
    case msgpack::type::NIL: out += "null"; return true;
    case msgpack::type::BOOLEAN: out += o.via.boolean ? "true" : "false"; return true;
    case msgpack::type::POSITIVE_INTEGER: out += std::to_string(o.via.u64); return true;
    case msgpack::type::NEGATIVE_INTEGER: out += std::to_string(o.via.i64); return true;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: {
      if (!std::isfinite(o.via.f64)) {
        out += "null";
        return true;
      }
      char buf[32];
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, o.via.f64);
      out.append(buf, p);
      return true;
    }
    case msgpack::type::STR: append_json_string(out, {o.via.str.ptr, o.via.str.size}); return true;
    case msgpack::type::BIN: append_json_string(out, {o.via.bin.ptr, o.via.bin.size}); return true;
    case msgpack::type::ARRAY:
      out += '[';
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out += ',';
        if (!write_json(o.via.array.ptr[i], out, depth + 1)) return false;
      }
      out += ']';
      return true;
    case msgpack::type::MAP:
      out += '{';
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out += ',';
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR) {
          append_json_string(out, {kv.key.via.str.ptr, kv.key.via.str.size});
        } else { // a key of another type: its JSON text, as a string
          std::string key;
          if (!write_json(kv.key, key, depth + 1)) return false;
          append_json_string(out, key);
        }
        out += ':';
        if (!write_json(kv.val, out, depth + 1)) return false;
      }
      out += '}';
      return true;
    default: return false; // ext
  }
}

} // namespace

bool json_to_msgpack(std::string_view json, std::string& out, std::string& error) {
  return json_reader{json}.parse(out, error);
}

bool msgpack_to_json(std::string_view mp, std::string& out) {
  if (mp.empty()) return false;
  try {
    std::size_t off = 0;
    // Bounded: a reply is a function's, but no header is trusted.
    const msgpack::unpack_limit limit{1u << 20, 1u << 20, 1u << 26, 1u << 26, 1u << 26, max_json_depth};
    auto handle = msgpack::unpack(mp.data(), mp.size(), off, nullptr, nullptr, limit);
    if (off != mp.size()) return false;
    std::string text;
    if (!write_json(handle.get(), text, 0)) return false;
    out += text;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace plexus::actors::detail
