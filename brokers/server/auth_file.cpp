// SPDX-License-Identifier: Apache-2.0
#include "auth_file.hpp"

#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "plexus/creds.hpp"
#include "plexus/topic.hpp"

namespace plexus::broker {

namespace {

struct bad_file {
  std::string what;
};

struct reader {
  std::string_view name;

  [[noreturn]] void fail(const std::string& what) const { throw bad_file{std::string{name} + ": " + what}; }

  void only_keys(const toml::table& t, std::initializer_list<std::string_view> known,
                 const std::string& where) const {
    for (auto&& [k, node] : t) {
      bool ok = false;
      for (auto want : known) ok = ok || k.str() == want;
      if (!ok) fail(where + "unknown key '" + std::string{k.str()} + "'");
    }
  }

  std::string string(const toml::table& t, std::string_view key, const std::string& where,
                     bool required) const {
    auto* node = t.get(key);
    if (!node) {
      if (required) fail(where + "no '" + std::string{key} + "'");
      return {};
    }
    auto s = node->value<std::string>();
    if (!s) fail(where + std::string{key} + " must be a string");
    return *s;
  }

  std::vector<std::string> patterns(const toml::table& t, std::string_view key,
                                    const std::string& where, bool check_pattern) const {
    std::vector<std::string> out;
    auto* node = t.get(key);
    if (!node) return out;
    auto* arr = node->as_array();
    if (!arr) fail(where + std::string{key} + " must be an array of strings");
    for (auto&& el : *arr) {
      auto s = el.value<std::string>();
      if (!s) fail(where + std::string{key} + " must be an array of strings");
      if (check_pattern) {
        if (auto e = validate_pattern(*s); e != topic_errc::ok)
          fail(where + std::string{key} + ": bad pattern '" + *s + "': " + to_string(e));
      } else if (s->empty()) {
        fail(where + std::string{key} + ": empty name");
      }
      out.push_back(std::move(*s));
    }
    return out;
  }

  std::string key(const toml::table& t, const std::string& where) const {
    auto k = string(t, "public_key", where, true);
    if (!is_z85_key(k))
      fail(where + "public_key must be a CURVE key: 40 characters of Z85, got "
           + std::to_string(k.size()) + " characters" + (k.size() == z85_key_chars ? " that are not Z85" : ""));
    return k;
  }

  const toml::array* tables(const toml::table& t, std::string_view key) const {
    auto* node = t.get(key);
    if (!node) return nullptr;
    auto* arr = node->as_array();
    if (!arr || !arr->is_array_of_tables())
      fail(std::string{key} + " must be an array of tables ([[" + std::string{key} + "]])");
    return arr;
  }
};

bool plain_name(std::string_view n) {
  if (n.empty() || n.front() == '$') return false;
  for (char ch : n)
    if (static_cast<unsigned char>(ch) < 0x21 || ch == 0x7f || ch == '"' || ch == '\\') return false;
  return true;
}

auth_file parse(std::string_view text, std::string_view name) {
  reader r{name};
  toml::table tbl;
  try {
    tbl = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
       << e.description();
    throw bad_file{os.str()};
  }
  r.only_keys(tbl, {"secret_key_file", "users", "peers"}, "");
  auth_file out;
  out.secret_key_file = r.string(tbl, "secret_key_file", "", true);
  if (out.secret_key_file.empty()) r.fail("secret_key_file must not be empty");
  std::set<std::string> keys;
  if (auto* users = r.tables(tbl, "users")) {
    std::size_t i = 0;
    for (auto&& node : *users) {
      auto& t = *node.as_table();
      auto where = "users[" + std::to_string(i++) + "]: ";
      auto user = r.string(t, "name", where, true);
      if (!plain_name(user))
        r.fail(where + "name '" + user + "' must be non-empty, without spaces or quotes, and not "
               "start with '$' (reserved)");
      where = "user '" + user + "': ";
      r.only_keys(t, {"name", "public_key", "publish_allow", "publish_deny", "subscribe_allow",
                      "subscribe_deny", "allow_responses", "queue_groups"}, where);
      if (out.policy.users.contains(user)) r.fail(where + "listed twice");
      auto k = r.key(t, where);
      if (!keys.insert(k).second) r.fail(where + "public_key is another user's or peer's too");
      user_permissions p;
      p.publish.allow = r.patterns(t, "publish_allow", where, true);
      p.publish.deny = r.patterns(t, "publish_deny", where, true);
      p.subscribe.allow = r.patterns(t, "subscribe_allow", where, true);
      p.subscribe.deny = r.patterns(t, "subscribe_deny", where, true);
      p.queue_groups = r.patterns(t, "queue_groups", where, false);
      if (auto* ar = t.get("allow_responses")) {
        auto b = ar->value<bool>();
        if (!b) r.fail(where + "allow_responses must be true or false");
        p.allow_responses = *b;
      }
      out.users.push_back({user, k});
      out.policy.users.emplace(user, std::move(p));
    }
  }
  if (auto* peers = r.tables(tbl, "peers")) {
    std::size_t i = 0;
    for (auto&& node : *peers) {
      auto& t = *node.as_table();
      auto where = "peers[" + std::to_string(i++) + "]: ";
      r.only_keys(t, {"public_key", "name"}, where);
      auto k = r.key(t, where);
      if (!keys.insert(k).second) r.fail(where + "public_key is a user's or another peer's too");
      out.peer_keys.push_back(k);
    }
  }
  return out;
}

} // namespace

std::optional<auth_file> parse_auth_file(std::string_view text, std::string_view name,
                                         std::string& error) {
  try {
    return parse(text, name);
  } catch (const bad_file& e) {
    error = e.what;
    return std::nullopt;
  }
}

} // namespace plexus::broker
