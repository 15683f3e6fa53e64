// SPDX-License-Identifier: Apache-2.0
#pragma once

// The shipping chain's ways in from outside (plexus::actors): orders over
// HTTP, where an order is over HTTP, a summary on a schedule, orders in a
// CSV file dropped in a directory.
//
//   curl -X POST localhost:8080/orders/shipped -H 'Content-Type: application/json'
//        -d '{"id": 42, "customer": "ada", "address": "1 Main St"}'   (one line)
//   curl -X POST localhost:8080/rpc/orders.status -H 'Content-Type: application/json' -d '{"id": 42}'
//   printf '7,grace,2 Elm St\n8,alan,3 Oak St\n' > DROP/orders.csv

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "plexus/actors/http.hpp"
#include "plexus/node.hpp"

namespace shipping {

struct order {
  int id = 0;
  std::string customer;
  std::string address;
  bool poison = false; // fault injection: this one always crashes validation
  MSGPACK_DEFINE_MAP(id, customer, address, poison)
};

/// Where each order got to, as the chain's functions in this process saw
/// it (orders.status answers from it).
class tracker {
public:
  void saw(int id, std::string stage) {
    std::lock_guard lock{m_};
    if (stages_.size() >= max_tracked && !stages_.contains(id)) stages_.erase(stages_.begin());
    stages_[id] = std::move(stage);
  }
  [[nodiscard]] std::string stage(int id) const {
    std::lock_guard lock{m_};
    auto it = stages_.find(id);
    return it == stages_.end() ? "unknown" : it->second;
  }

private:
  static constexpr std::size_t max_tracked = 100000; // the oldest ids go first
  mutable std::mutex m_;
  std::map<int, std::string> stages_;
};

struct entry_options {
  int http_port = -1;          // -1: no gateway; 0: a free port
  std::string summary = "@daily"; // the summary's schedule; empty: none
  std::string drop_dir;        // empty: no CSV drop
};

/// Adds the entry functions to `node` (order-status, the summary timer and
/// its function, the CSV drop and import-orders); start() the returned
/// gateway (if any) after node.start(), stop() it before node.stop().
std::unique_ptr<plexus::actors::gateway> add_entry(plexus::node& node, const entry_options& o,
                                                   std::shared_ptr<tracker> t);

/// POSTs `o` as JSON to the gateway on `port`: the HTTP status (0: no answer).
int post_order(int port, const order& o);

} // namespace shipping
