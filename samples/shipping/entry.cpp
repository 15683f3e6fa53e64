// SPDX-License-Identifier: Apache-2.0
#include "entry.hpp"

#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <sstream>
#include <string_view>

#include "plexus/actors/files.hpp"
#include "plexus/actors/timer.hpp"
#include "plexus/json.hpp"

namespace shipping {

namespace {

struct status_query {
  int id = 0;
  MSGPACK_DEFINE_MAP(id)
};

struct status_answer {
  int id = 0;
  std::string stage;
  MSGPACK_DEFINE_MAP(id, stage)
};

// One CSV line, "id,customer,address" (the address may hold commas).
bool parse_line(std::string_view line, order& o) {
  auto c1 = line.find(',');
  if (c1 == std::string_view::npos) return false;
  auto c2 = line.find(',', c1 + 1);
  if (c2 == std::string_view::npos) return false;
  try {
    std::size_t used = 0;
    auto id_text = std::string{line.substr(0, c1)};
    o.id = std::stoi(id_text, &used);
    if (used != id_text.size() || o.id <= 0) return false;
  } catch (...) {
    return false;
  }
  o.customer = std::string{line.substr(c1 + 1, c2 - c1 - 1)};
  o.address = std::string{line.substr(c2 + 1)};
  return !o.customer.empty() && !o.address.empty();
}

} // namespace

std::unique_ptr<plexus::actors::gateway> add_entry(plexus::node& node, const entry_options& o,
                                                   std::shared_ptr<tracker> t) {
  auto& entry = node.service("entry");
  // POST /rpc/orders.status {"id": 42} -> {"id": 42, "stage": "..."}
  entry.function("order-status").on("orders.status")
    .handle([t](const status_query& q, plexus::context& ctx) -> plexus::result<void> {
      ctx.reply(status_answer{q.id, t->stage(q.id)});
      return {};
    });
  if (!o.summary.empty()) {
    plexus::actors::add_timer(entry, {.name = "summary", .schedule = o.summary, .topic = "reports.summary"});
    auto fired = std::make_shared<std::atomic<long>>(0);
    entry.function("summary").on("reports.summary")
      .handle([fired](const plexus::actors::tick& tick, plexus::context&) -> plexus::result<void> {
        std::printf("summary #%ld at %s (the chain's counts are on the line above)\n", ++*fired,
                    tick.fire_time_iso.c_str());
        std::fflush(stdout);
        return {};
      });
  }
  if (!o.drop_dir.empty()) {
    plexus::actors::add_file_drop(entry, {.name = "orders", .dir = o.drop_dir, .topic = "orders.csv",
                                          .pattern = "*.csv"});
    // Each good line becomes an order on orders.shipped (reliable: confirmed
    // before the file is ACKed, so a file is done only once its orders are
    // taken); a file without one good line is refused (failed/, with why).
    entry.function("import-orders").on("orders.csv").reliable()
      .handle([](const plexus::actors::file_event& f, plexus::context& ctx) -> plexus::result<void> {
        if (!f.has_content) return plexus::reject{f.name + ": too big to import (" + std::to_string(f.size) + " bytes)"};
        std::istringstream in{f.content};
        int good = 0, bad = 0;
        for (std::string line; std::getline(in, line);) {
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.empty()) continue;
          order ord;
          if (parse_line(line, ord)) {
            ctx.publish("orders.shipped", ord);
            ++good;
          } else {
            ++bad;
          }
        }
        if (good == 0) return plexus::reject{f.name + ": no line of the form id,customer,address"};
        ctx.log(plexus::log_level::info, f.name + ": " + std::to_string(good) + " order(s) imported, " +
                                           std::to_string(bad) + " bad line(s) skipped");
        return {};
      });
  }
  if (o.http_port < 0) return nullptr;
  plexus::actors::http_options h;
  h.port = o.http_port;
  // POST /orders/shipped starts the chain (202 once validate-address took
  // it); /rpc/<topic> and /events/<topic> stay on for everything else.
  h.routes = {{"POST", "/orders/shipped", "orders.shipped", false}};
  return std::make_unique<plexus::actors::gateway>(std::move(h));
}

int post_order(int port, const order& o) {
  thread_local std::unique_ptr<httplib::Client> client;
  thread_local int client_port = -1;
  if (!client || client_port != port) {
    client = std::make_unique<httplib::Client>("127.0.0.1", port);
    client->set_keep_alive(true);
    client_port = port;
  }
  std::string body = "{\"id\":" + std::to_string(o.id) + ",\"customer\":";
  plexus::append_json_string(body, o.customer);
  body += ",\"address\":";
  plexus::append_json_string(body, o.address);
  body += o.poison ? ",\"poison\":true}" : "}";
  auto res = client->Post("/orders/shipped", body, "application/json");
  return res ? res->status : 0;
}

} // namespace shipping
