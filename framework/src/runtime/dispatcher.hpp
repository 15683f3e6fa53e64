// SPDX-License-Identifier: Apache-2.0
#pragma once

// A dispatcher of its own for functions that ask for one (plexus::
// thread_pool, SObjectizer's thread-pool dispatcher as the model): N plain
// threads taking jobs from one queue. The handlers of its functions run
// here and nowhere else; their instances stay CAF actors on the shared
// scheduler, which only hand a run over and take its end back as a
// message (instance.cpp), so a CPU-bound function holds up its own
// threads only.
//
// Why not a second caf::actor_system with its own scheduler: in CAF 0.17
// an actor woken by a message is run on the *sender's* execution unit when
// the sender is an actor (scheduled_actor::enqueue calls eu->exec_later),
// so an actor of another system ends up on the sender's worker, and a
// CPU-bound handler on a shared worker again. These threads run no actor:
// what they send (anon_send from a thread with no execution unit) goes
// through the scheduler's queue, and no actor's work comes back to them.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "plexus/client.hpp"

namespace plexus::detail {

class dispatcher {
public:
  /// `conn`: the node's connection, which its threads never wait on.
  dispatcher(std::string name, std::uint32_t threads, const client* conn = nullptr)
    : name_(std::move(name)), conn_(conn) {
    threads_.reserve(threads);
    for (std::uint32_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
  }
  /// Runs what was posted, then joins the threads.
  ~dispatcher() {
    {
      std::lock_guard lock{m_};
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// Queues `job` for the next free thread (FIFO). Never blocks on a job.
  void post(std::function<void()> job) {
    {
      std::lock_guard lock{m_};
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] std::uint32_t threads() const noexcept {
    return static_cast<std::uint32_t>(threads_.size());
  }

private:
  void run() {
    // Handlers run here: a publish to a paused queue group never waits on
    // this thread (an invocation's own scope makes it fail instead).
    if (conn_) thread_when_paused(paused_override{paused_publish::hold, conn_});
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock{m_};
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return; // stopping, and nothing left
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job(); // jobs catch what their handlers throw (instance.cpp)
    }
  }

  std::string name_;
  const client* conn_ = nullptr;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_; // last: started once the rest is ready
};

} // namespace plexus::detail
