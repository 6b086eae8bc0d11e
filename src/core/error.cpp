#include "selfsup/core/error.h"

namespace selfsup::detail {

void throw_internal(const char* file, int line, const char* expr, const std::string& message) {
  throw std::logic_error(concat("internal error (a selfsup bug, please report it) at ", file, ":",
                                line, ": ", expr, message.empty() ? "" : ": ", message));
}

}  // namespace selfsup::detail
