// SPDX-License-Identifier: Apache-2.0
#pragma once

// CurveZMQ keys as text (Z85) and the credentials file a user, a node or a
// broker's peer links connect with (issue #18). Both ends share this: the
// CLI writes credentials files, nodes, the CLI and plexus-broker read
// them. No ZeroMQ here: keys are made elsewhere (zmq_curve_keypair). The
// Z85 functions are in every build (creds/z85.cpp); the file functions
// need toml++, which a fuzz build (PLEXUS_BUILD_FUZZ) leaves out.
//
// A credentials file (TOML, written by `plexus keys user NAME`, mode 0600):
//
//   user = "alice"                 # the name the broker's auth file gives
//   public_key = "<40 chars Z85>"  # this user's CURVE public key
//   secret_key = "<40 chars Z85>"  # and its secret key
//   broker_key = "<40 chars Z85>"  # the broker's (the cluster's) public key

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace plexus {

/// A CURVE key in Z85 is 40 characters; 32 bytes in binary.
inline constexpr std::size_t z85_key_chars = 40;
inline constexpr std::size_t curve_key_bytes = 32;

/// True when `text` is 40 characters of the Z85 alphabet that decode to a
/// key (each group of five within 32 bits).
[[nodiscard]] bool is_z85_key(std::string_view text) noexcept;

/// The 32 bytes a Z85 key stands for; nullopt when it is not one.
[[nodiscard]] std::optional<std::array<std::uint8_t, curve_key_bytes>>
z85_key_bytes(std::string_view text) noexcept;

/// Z85 of 32 bytes (40 characters).
[[nodiscard]] std::string z85_encode_key(const std::array<std::uint8_t, curve_key_bytes>& key);

struct credentials {
  std::string user;
  std::string public_key, secret_key, broker_key; // Z85
};

/// A credentials file that is missing or wrong: one line naming the file
/// and, when it is about one, the field.
struct creds_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses a credentials file's text; `name` (the file's path) starts every
/// error. Throws creds_error.
[[nodiscard]] credentials parse_credentials(std::string_view text, std::string_view name);

/// Reads and parses the file at `path`. Throws creds_error.
[[nodiscard]] credentials read_credentials(const std::string& path);

/// The TOML text of a credentials file (what parse_credentials reads).
[[nodiscard]] std::string format_credentials(const credentials& c);

/// Reads a public key file (NAME.pub: one Z85 key, white space around it
/// ignored); throws creds_error naming the file.
[[nodiscard]] std::string read_key_file(const std::string& path);

} // namespace plexus
