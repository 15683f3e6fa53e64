// SPDX-License-Identifier: Apache-2.0
#pragma once

// A token trie of subscription patterns. Matching a topic walks one path per
// wildcard branch and never allocates; insert and erase cost one node per
// token. Values are pointers owned elsewhere.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace plexus::broker {

template <class T>
class pattern_trie {
public:
  /// `pattern` must be valid (plexus::validate_pattern).
  void insert(std::string_view pattern, T* value) {
    memo_valid_ = false;
    node* n = &root_;
    walk_tokens(pattern, [&](std::string_view tok, bool last) {
      if (tok == ">" && last) {
        n->tail.push_back(value);
        return;
      }
      auto& child = tok == "*" ? n->star : n->children[std::string{tok}];
      if (!child) child = std::make_unique<node>();
      n = child.get();
      if (last) n->here.push_back(value);
    });
    ++size_;
  }

  /// Removes one (pattern, value) pair; false if it was not there. Empty
  /// nodes are pruned, so memory follows the live subscriptions.
  bool erase(std::string_view pattern, T* value) {
    memo_valid_ = false;
    std::vector<std::string_view> tokens;
    walk_tokens(pattern, [&](std::string_view tok, bool) { tokens.push_back(tok); });
    if (!erase_at(root_, tokens, 0, value)) return false;
    --size_;
    return true;
  }

  /// Appends every value whose pattern matches `topic` (a valid topic).
  /// A pattern starting with a wildcard does not match a `$` topic.
  void match(std::string_view topic, std::vector<T*>& out) const {
    bool dollar = !topic.empty() && topic[0] == '$';
    match_at(root_, topic, 0, !dollar, out);
  }

  /// match(), remembering the last topic's answer until the trie changes:
  /// a topic published again costs one comparison instead of a hash lookup
  /// per token.
  void match_cached(std::string_view topic, std::vector<T*>& out) {
    if (memo_valid_ && topic == memo_topic_) {
      out.insert(out.end(), memo_.begin(), memo_.end());
      return;
    }
    auto from = out.size();
    match(topic, out);
    memo_topic_.assign(topic);
    memo_.assign(out.begin() + static_cast<std::ptrdiff_t>(from), out.end());
    memo_valid_ = true;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct node {
    std::unordered_map<std::string, std::unique_ptr<node>, string_hash, std::equal_to<>> children;
    std::unique_ptr<node> star;
    std::vector<T*> here; // patterns ending at this node
    std::vector<T*> tail; // patterns "<path>.>"
    [[nodiscard]] bool empty() const noexcept {
      return children.empty() && !star && here.empty() && tail.empty();
    }
  };

  template <class Fn>
  static void walk_tokens(std::string_view s, Fn&& fn) {
    std::size_t start = 0;
    for (;;) {
      auto dot = s.find('.', start);
      bool last = dot == std::string_view::npos;
      fn(s.substr(start, last ? std::string_view::npos : dot - start), last);
      if (last) return;
      start = dot + 1;
    }
  }

  static void match_at(const node& n, std::string_view topic, std::size_t pos,
                       bool wildcards, std::vector<T*>& out) {
    // `pos` is the start of the next topic token; at least one remains.
    if (wildcards) out.insert(out.end(), n.tail.begin(), n.tail.end());
    auto dot = topic.find('.', pos);
    bool last = dot == std::string_view::npos;
    auto tok = topic.substr(pos, last ? std::string_view::npos : dot - pos);
    auto visit = [&](const node& child) {
      if (last) out.insert(out.end(), child.here.begin(), child.here.end());
      else match_at(child, topic, dot + 1, true, out);
    };
    if (auto it = n.children.find(tok); it != n.children.end()) visit(*it->second);
    if (wildcards && n.star) visit(*n.star);
  }

  static bool remove_value(std::vector<T*>& v, T* value) {
    auto it = std::find(v.begin(), v.end(), value);
    if (it == v.end()) return false;
    *it = v.back();
    v.pop_back();
    return true;
  }

  static bool erase_at(node& n, const std::vector<std::string_view>& tokens, std::size_t i,
                       T* value) {
    auto tok = tokens[i];
    bool last = i + 1 == tokens.size();
    if (tok == ">" && last) return remove_value(n.tail, value);
    std::unique_ptr<node>* child = nullptr;
    typename decltype(n.children)::iterator it;
    if (tok == "*") {
      child = &n.star;
    } else {
      it = n.children.find(tok);
      if (it == n.children.end()) return false;
      child = &it->second;
    }
    if (!*child) return false;
    bool removed = last ? remove_value((*child)->here, value)
                        : erase_at(**child, tokens, i + 1, value);
    if (removed && (*child)->empty()) {
      if (tok == "*") n.star.reset();
      else n.children.erase(it);
    }
    return removed;
  }

  node root_;
  std::size_t size_ = 0;
  // match_cached()'s last topic and its matches; insert() and erase() clear it.
  bool memo_valid_ = false;
  std::string memo_topic_;
  std::vector<T*> memo_;
};

} // namespace plexus::broker
