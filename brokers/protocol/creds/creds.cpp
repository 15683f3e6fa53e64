// SPDX-License-Identifier: Apache-2.0
#include "plexus/creds.hpp"

#include <fstream>
#include <iterator>
#include <sstream>

#include <toml++/toml.h>

namespace plexus {

namespace {

std::string trimmed(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return std::string{s};
}

std::string slurp(const std::string& path, bool& ok) {
  std::ifstream in{path, std::ios::binary};
  ok = static_cast<bool>(in);
  if (!ok) return {};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

credentials parse_credentials(std::string_view text, std::string_view name) {
  auto fail = [&](const std::string& what) -> creds_error {
    return creds_error(std::string{name} + ": " + what);
  };
  toml::table tbl;
  try {
    tbl = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
       << e.description();
    throw creds_error(os.str());
  }
  credentials c;
  auto field = [&](const char* key, std::string& into) {
    auto* node = tbl.get(key);
    if (!node) throw fail(std::string{"no '"} + key + "' (a credentials file has user, "
                          "public_key, secret_key and broker_key; `plexus keys user` writes one)");
    auto s = node->value<std::string>();
    if (!s) throw fail(std::string{key} + " must be a string");
    into = *s;
  };
  for (auto&& [k, node] : tbl) {
    auto key = k.str();
    if (key != "user" && key != "public_key" && key != "secret_key" && key != "broker_key")
      throw fail("unknown key '" + std::string{key} + "'");
  }
  field("user", c.user);
  field("public_key", c.public_key);
  field("secret_key", c.secret_key);
  field("broker_key", c.broker_key);
  if (c.user.empty()) throw fail("user must not be empty");
  for (auto [key, value] : {std::pair{"public_key", &c.public_key}, std::pair{"secret_key", &c.secret_key},
                            std::pair{"broker_key", &c.broker_key}})
    if (!is_z85_key(*value))
      throw fail(std::string{key} + " must be a CURVE key: 40 characters of Z85, got "
                 + std::to_string(value->size()) + " characters"
                 + (value->size() == z85_key_chars ? " that are not Z85" : ""));
  return c;
}

credentials read_credentials(const std::string& path) {
  bool ok = false;
  auto text = slurp(path, ok);
  if (!ok) throw creds_error(path + ": cannot read the credentials file");
  return parse_credentials(text, path);
}

std::string format_credentials(const credentials& c) {
  // Keys and user names never hold quotes or backslashes (Z85 has neither
  // '"' nor '\'; user names are topic tokens).
  return "# plexus credentials: keep this file secret (mode 0600)\n"
         "user = \"" + c.user + "\"\n"
         "public_key = \"" + c.public_key + "\"\n"
         "secret_key = \"" + c.secret_key + "\"\n"
         "broker_key = \"" + c.broker_key + "\"\n";
}

std::string read_key_file(const std::string& path) {
  bool ok = false;
  auto text = slurp(path, ok);
  if (!ok) throw creds_error(path + ": cannot read the key file");
  auto key = trimmed(text);
  if (!is_z85_key(key))
    throw creds_error(path + ": not a CURVE key (40 characters of Z85 expected, got "
                      + std::to_string(key.size()) + " characters)");
  return key;
}

} // namespace plexus
