#pragma once
// Errors and checks used across selfsup.
//
// `Error` is what library code throws at API boundaries: bad input, bad config, I/O failures. Its
// message is meant for the user: what went wrong, where, and what to do. `SELFSUP_CHECK` builds
// such an error; `SELFSUP_ASSERT` guards internal invariants (a failure there is a bug in selfsup,
// not in the input).

#include <sstream>
#include <stdexcept>
#include <string>

namespace selfsup {

/// An error the user can act on; `what()` is one line.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A configuration error: names the key path, the value given and what is expected.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(message) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] void throw_internal(const char* file, int line, const char* expr,
                                 const std::string& message);
}  // namespace detail

}  // namespace selfsup

/// Throws selfsup::Error with the concatenated message when `cond` is false.
#define SELFSUP_CHECK(cond, ...)                                                 \
  do {                                                                           \
    if (!(cond)) throw ::selfsup::Error(::selfsup::detail::concat(__VA_ARGS__)); \
  } while (0)

/// Internal invariant: a failure is a selfsup bug; reports file:line and the expression.
#define SELFSUP_ASSERT(cond, ...)                                                                  \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      ::selfsup::detail::throw_internal(__FILE__, __LINE__, #cond,                                 \
                                        ::selfsup::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
